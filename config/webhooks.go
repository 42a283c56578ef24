package config

import (
	"errors"
	"strings"
	"time"
)

// Webhooks configures the API's webhook dispatcher.
type Webhooks struct {
	// AllowPrivate lets endpoints be http:// and on loopback, private,
	// link-local or other internal addresses. Defaults to false: such
	// endpoints are refused with 422 at creation and again at connection
	// time; smsctl dev and tests turn it on.
	AllowPrivate bool `mapstructure:"webhook-allow-private" flag:"allow webhook endpoints on http:// and internal addresses (development only)"`
	// Timeout bounds one delivery attempt. Defaults to 15s.
	Timeout time.Duration `mapstructure:"webhook-timeout" flag:"how long one webhook delivery attempt may take"`
	// RetrySchedule is the wait before each retry of a delivery, as a
	// comma-separated list of durations; after the last, the delivery is
	// failed. Defaults to the Standard Webhooks schedule: 5s, 5m, 30m, 2h,
	// 5h, 10h, 14h, 20h, 24h (jittered). Each wait is at least
	// MinWebhookRetry.
	RetrySchedule string `mapstructure:"webhook-retry-schedule" flag:"waits before each webhook retry, comma-separated durations (each at least 100ms)"`
	// Concurrency is how many deliveries this replica sends at once, and
	// PerEndpoint how many of them may go to one endpoint, so that one slow
	// endpoint cannot take them all. Default to 32 and 4.
	Concurrency int `mapstructure:"webhook-concurrency" flag:"webhook deliveries in flight at once"`
	PerEndpoint int `mapstructure:"webhook-per-endpoint" flag:"webhook deliveries in flight at once to one endpoint"`
}

// DefaultRetrySchedule is the Standard Webhooks schedule after the first,
// immediate attempt.
const DefaultRetrySchedule = "5s,5m,30m,2h,5h,10h,14h,20h,24h"

func defaultWebhooks() Webhooks {
	return Webhooks{Timeout: 15 * time.Second, RetrySchedule: DefaultRetrySchedule, Concurrency: 32, PerEndpoint: 4}
}

// Schedule parses RetrySchedule. Validate also holds each wait to
// MinWebhookRetry; Schedule itself takes any positive one, for tests.
func (w Webhooks) Schedule() ([]time.Duration, error) {
	var out []time.Duration
	for _, part := range strings.Split(w.RetrySchedule, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		d, err := time.ParseDuration(part)
		if err != nil || d <= 0 {
			return nil, invalid("webhook-retry-schedule", "must be comma-separated durations such as 5s or 2h; %q is not one", part)
		}
		out = append(out, d)
	}
	return out, nil
}

func (w Webhooks) validate() error {
	schedule, err := w.Schedule()
	for _, d := range schedule {
		if d < MinWebhookRetry {
			err = errors.Join(err, invalid("webhook-retry-schedule", "must wait at least %s before each retry, got %s", MinWebhookRetry, d))
		}
	}
	return errors.Join(err,
		atLeast("webhook-timeout", w.Timeout, MinWebhookTimeout),
		positive("webhook-concurrency", w.Concurrency),
		positive("webhook-per-endpoint", w.PerEndpoint))
}
