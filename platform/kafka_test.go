package platform

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kfake"
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

func TestTopicPartitions(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "three"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := NewKafkaClient(c.ListenAddrs(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if n, err := TopicPartitions(context.Background(), cl, "three"); err != nil || n != 3 {
		t.Errorf("TopicPartitions(three) = %d, %v; want 3", n, err)
	}
	if _, err := TopicPartitions(context.Background(), cl, "missing"); err == nil {
		t.Error("TopicPartitions of a missing topic: no error")
	}
}
