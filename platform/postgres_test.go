package platform

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestIsUnavailable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), true},
		{fmt.Errorf("insert batch: %w", errors.New("unexpected EOF")), true}, // lib/pq when the server goes away mid-read
		{errors.New("write tcp: broken pipe"), true},
		{errors.New(`pq: relation "sms.nope" does not exist`), false},
		{context.Canceled, false},
	} {
		if got := IsUnavailable(tt.err); got != tt.want {
			t.Errorf("IsUnavailable(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
