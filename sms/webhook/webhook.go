package webhook

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
)

// EventTypes lists every event type an endpoint may subscribe to
// (shared/design.md, "Event types").
var EventTypes = []string{
	"message.accepted", "message.scheduled", "message.queued", "message.attempt", "message.sent",
	"message.delivered", "message.undelivered", "message.failed", "message.expired", "message.canceled",
	"message.received", "webhook.test",
}

// TypeTest is the type of the event POST .../test sends.
const TypeTest = "webhook.test"

// Limits of an endpoint's fields.
const (
	MaxURLLength         = 2048
	MaxDescriptionLength = 500
	// MaxEndpoints is the most endpoints an account may have; it also
	// bounds the endpoint label of the failure metric.
	MaxEndpoints = 20
)

// Endpoint is where an account's webhooks go.
type Endpoint struct {
	ID          uuid.UUID `json:"id"`
	AccountID   int64     `json:"-"`
	URL         string    `json:"url"`
	Description string    `json:"description"`
	// EventTypes are the types sent; empty means every type.
	EventTypes []string `json:"event_types"`
	// Secret is shown once, in the answer to the creation or a rotation.
	Secret  string `json:"secret,omitempty"`
	Enabled bool   `json:"enabled"`
	// DisabledReason says why the endpoint was disabled (a 410 from it, or
	// a request); null while enabled.
	DisabledReason *string   `json:"disabled_reason"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// EndpointInput is the body of POST and PATCH /v1/webhook-endpoints: a nil
// field is absent (on PATCH, unchanged).
type EndpointInput struct {
	URL         *string   `json:"url"`
	Description *string   `json:"description"`
	EventTypes  *[]string `json:"event_types"`
	Enabled     *bool     `json:"enabled"`
}

// Validate checks the fields that are present; with create, url is
// required. Event types are deduplicated in place. Whether the url is
// safe to call is Guard's to say.
func (in *EndpointInput) Validate(create bool) error {
	var v sms.ValidationError
	switch {
	case in.URL == nil && create:
		v.Add("url", "required: the https URL to post events to")
	case in.URL != nil:
		if msg := urlProblem(*in.URL); msg != "" {
			v.Add("url", msg)
		}
	}
	if in.Description != nil {
		if utf8.RuneCountInString(*in.Description) > MaxDescriptionLength || strings.ContainsRune(*in.Description, 0) {
			v.Add("description", fmt.Sprintf("must be at most %d characters, without NUL", MaxDescriptionLength))
		}
	}
	if in.EventTypes != nil {
		var types []string
		for i, t := range *in.EventTypes {
			switch {
			case !slices.Contains(EventTypes, t):
				v.Add("event_types["+strconv.Itoa(i)+"]", "must be one of "+strings.Join(EventTypes, ", "))
			case !slices.Contains(types, t):
				types = append(types, t)
			}
		}
		*in.EventTypes = types
		if types == nil {
			*in.EventTypes = []string{}
		}
	}
	return v.Err()
}

// urlProblem says what is wrong with the form of raw, or "".
func urlProblem(raw string) string {
	if raw == "" || len(raw) > MaxURLLength {
		return fmt.Sprintf("must be an absolute http(s) URL of at most %d bytes", MaxURLLength)
	}
	if _, err := parseURL(raw); err != nil {
		return err.Error()
	}
	return ""
}

// Delivery is one event on its way to one endpoint, as the dispatcher
// claims it.
type Delivery struct {
	ID uuid.UUID
	// WebhookID is the webhook-id header: the same on every attempt.
	WebhookID  uuid.UUID
	EndpointID uuid.UUID
	URL        string
	// Secrets sign the request: the endpoint's secret, and its previous
	// one during a rotation.
	Secrets   []string
	EventType string
	MessageID *uuid.UUID
	Sequence  *int
	// Payload is the exact body, the same on every attempt.
	Payload []byte
	// Attempt is this attempt's number, from 1.
	Attempt   int
	CreatedAt time.Time
}

// ClaimRequest asks the store for due deliveries.
type ClaimRequest struct {
	// Limit is the most deliveries to take.
	Limit int
	// PerEndpoint bounds the deliveries of one endpoint this dispatcher
	// holds (in flight or queued behind them), Held counting those it
	// holds already.
	PerEndpoint int
	Held        map[uuid.UUID]int
	// Lease is how long the deliveries taken stay with this dispatcher.
	Lease time.Duration
}

// Outcome is what an attempt did to its delivery.
type Outcome string

// The outcomes.
const (
	// OutcomeSucceeded: a 2xx answer.
	OutcomeSucceeded Outcome = "succeeded"
	// OutcomeRetrying: it failed; another attempt at Result.NextAttemptAt.
	OutcomeRetrying Outcome = "retrying"
	// OutcomeFailed: it failed for good (the schedule ran out, or 410).
	OutcomeFailed Outcome = "failed"
	// OutcomeReleased: the dispatcher stopped before the attempt ended;
	// the delivery is due again at once, the attempt not counted.
	OutcomeReleased Outcome = "released"
)

// Result is the end of one attempt.
type Result struct {
	DeliveryID uuid.UUID
	EndpointID uuid.UUID
	// Attempt is the attempt's number (Delivery.Attempt).
	Attempt int
	Outcome Outcome
	// StatusCode is the endpoint's answer; 0 when none came.
	StatusCode int
	// Error says why the attempt failed: the transport's error, or the
	// status and the start of the answer's body.
	Error         string
	Latency       time.Duration
	AttemptedAt   time.Time
	NextAttemptAt time.Time
	// Gone disables the endpoint (it answered 410), with DisabledReason.
	Gone           bool
	DisabledReason string
}

// Attempt is one entry of an endpoint's delivery log.
type Attempt struct {
	WebhookID     uuid.UUID  `json:"webhook_id" db:"webhook_id"`
	EventType     string     `json:"event_type" db:"event_type"`
	MessageID     *uuid.UUID `json:"message_id" db:"message_id"`
	Attempt       int        `json:"attempt" db:"attempt"`
	State         string     `json:"state" db:"state"`
	StatusCode    *int       `json:"status_code" db:"status_code"`
	Error         *string    `json:"error" db:"error"`
	LatencyMS     int        `json:"latency_ms" db:"latency_ms"`
	AttemptedAt   time.Time  `json:"attempted_at" db:"attempted_at"`
	NextAttemptAt *time.Time `json:"next_attempt_at" db:"next_attempt_at"`
	// DeliveryID places the entry in the log's order.
	DeliveryID uuid.UUID `json:"-" db:"delivery_id"`
}

// AttemptFilter selects a page of an endpoint's log, newest first.
type AttemptFilter struct {
	// Size is the page size, 1..100.
	Size int
	// After continues after the last entry of a previous page.
	After *Cursor
}

// AttemptPage is one page of the log.
type AttemptPage struct {
	Attempts []Attempt
	// Next continues the log, or is nil on the last page.
	Next *Cursor
}

// Cursor marks a position in the log's newest-first order.
type Cursor struct {
	AttemptedAt time.Time
	DeliveryID  uuid.UUID
	Attempt     int
}

// CursorOf is the position of a.
func CursorOf(a Attempt) Cursor {
	return Cursor{AttemptedAt: a.AttemptedAt, DeliveryID: a.DeliveryID, Attempt: a.Attempt}
}

// String encodes c for the after query parameter.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.AttemptedAt.UnixMicro(), 10) + "." + c.DeliveryID.String() + "." + strconv.Itoa(c.Attempt)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes an after parameter.
func ParseCursor(s string) (Cursor, error) {
	bad := errors.New("is not a cursor returned by this API")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 {
		return Cursor{}, bad
	}
	us, err1 := strconv.ParseInt(parts[0], 10, 64)
	id, err2 := uuid.Parse(parts[1])
	n, err3 := strconv.Atoi(parts[2])
	c := Cursor{AttemptedAt: time.UnixMicro(us).UTC(), DeliveryID: id, Attempt: n}
	if err1 != nil || err2 != nil || err3 != nil || c.String() != s { // only the form String writes
		return Cursor{}, bad
	}
	return c, nil
}

// QueueStats describes the deliveries not yet done, across replicas.
type QueueStats struct {
	Pending int64
	// Oldest is when the oldest pending delivery was queued; zero when
	// none is.
	Oldest time.Time
}

// The Kinds of the errors about webhook endpoints (problem types at the
// HTTP edge).
const (
	// KindURLRefused is the Kind of the 422 for an endpoint URL that is
	// not https, or reaches an internal address.
	KindURLRefused = "webhook-url-refused"
	// KindTooManyEndpoints is the Kind of the 422 past MaxEndpoints.
	KindTooManyEndpoints = "too-many-webhook-endpoints"
	// KindEndpointDisabled is the Kind of the 409 for a test event to a
	// disabled endpoint.
	KindEndpointDisabled = "webhook-endpoint-disabled"
)
