package processor

import (
	"testing"
	"time"

	"github.com/smsctl/smsctl/config"
)

// TestRetryDelay: the wait doubles per attempt and stops at
// config.MaxRetryDelay, even after more attempts than a shift could take.
func TestRetryDelay(t *testing.T) {
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{
		{1, 500 * time.Millisecond},
		{2, time.Second},
		{4, 4 * time.Second},
		{8, config.MaxRetryDelay},  // 64 s without the cap
		{40, config.MaxRetryDelay}, // a shift by 39 overflows
	} {
		if got := retryDelay(500*time.Millisecond, tt.attempt); got != tt.want {
			t.Errorf("attempt %d: %s, want %s", tt.attempt, got, tt.want)
		}
	}
}
