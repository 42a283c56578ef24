package config

import (
	"errors"
	"time"
)

// Retries configures the scheduled retry of failed messages (ADR-007).
type Retries struct {
	// RetryFailedAfter retries a message that FAILED or EXPIRED for a
	// reason worth another try (attempts exhausted, a transient error,
	// never a permanent refusal or an opt-out) this long after it did.
	// Defaults to 0: off.
	RetryFailedAfter time.Duration `mapstructure:"retry-failed-after" flag:"retry failed messages this long after they failed (0: never)"`
	// RetryFailedMax is how many times one message is retried so. Defaults
	// to 3.
	RetryFailedMax int `mapstructure:"retry-failed-max" flag:"how many scheduled retries one message gets"`
}

func defaultRetries() Retries { return Retries{RetryFailedMax: 3} }

func (r Retries) validate() error {
	return errors.Join(
		zeroOrAtLeast("retry-failed-after", r.RetryFailedAfter, MinRetryFailedAfter, "never"),
		between("retry-failed-max", r.RetryFailedMax, 0, 100))
}
