package platform

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaLoggerKeepsErrors: franz-go passes errors as key-value pairs;
// logged as JSON values they came out as {}.
func TestKafkaLoggerKeepsErrors(t *testing.T) {
	var buf bytes.Buffer
	NewKafkaLogger(zerolog.New(&buf)).Log(kgo.LogLevelWarn, "group manage loop errored", "err", errors.New("broker closed the connection"), "group", "g")
	if out := buf.String(); !strings.Contains(out, `"err":"broker closed the connection"`) || !strings.Contains(out, `"group":"g"`) {
		t.Errorf("logged %s, want the error's text and the other fields", out)
	}
}
