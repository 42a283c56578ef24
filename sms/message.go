package sms

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Status is where a message stands. PENDING moves once to SENT or FAILED;
// the final states never change.
type Status string

// The statuses of a message.
const (
	StatusPending Status = "PENDING"
	StatusSent    Status = "SENT"
	StatusFailed  Status = "FAILED"
)

// ParseStatus accepts the status names in any case.
func ParseStatus(s string) (Status, error) {
	switch st := Status(strings.ToUpper(strings.TrimSpace(s))); st {
	case StatusPending, StatusSent, StatusFailed:
		return st, nil
	}
	return "", fmt.Errorf("must be one of PENDING, SENT, FAILED, got %q", s)
}

// Final reports whether s is a terminal status.
func (s Status) Final() bool { return s == StatusSent || s == StatusFailed }

// Message is one SMS as the API stores and returns it.
type Message struct {
	ID            uuid.UUID `json:"id" db:"id"`
	AccountID     int64     `json:"-" db:"account_id"`
	Sender        string    `json:"sender" db:"sender"`
	Recipient     string    `json:"recipient" db:"recipient"`
	Text          string    `json:"text" db:"text"`
	Status        Status    `json:"status" db:"status"`
	FailureReason *string   `json:"failure_reason" db:"failure_reason"`
	Encoding      Encoding  `json:"encoding" db:"encoding"`
	Segments      int       `json:"segments" db:"segments"`
	CreatedAt     time.Time `json:"created_at" db:"created_at"`
	UpdatedAt     time.Time `json:"updated_at" db:"updated_at"`
}

// SendRequest is what the processor is asked to deliver for m.
func (m Message) SendRequest() SendRequest {
	return SendRequest{MessageID: m.ID, Sender: m.Sender, Recipient: m.Recipient, Text: m.Text,
		Encoding: m.Encoding, Segments: m.Segments, CreatedAt: m.CreatedAt}
}

// SendRequest is the Kafka record value on the requests topic: everything
// the processor needs to deliver one message. The record key is the recipient.
type SendRequest struct {
	MessageID uuid.UUID `json:"message_id"`
	Sender    string    `json:"sender"`
	Recipient string    `json:"recipient"`
	Text      string    `json:"text"`
	Encoding  Encoding  `json:"encoding"`
	Segments  int       `json:"segments"`
	CreatedAt time.Time `json:"created_at"`
	// ValidUntil, when set, is when the message stops being worth sending:
	// not handed to the carrier after it, and passed to the carrier as its
	// validity period.
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	// Priority is the lane the message travels in: high, normal or low.
	Priority Priority `json:"priority,omitempty"`
}

// Priority is a message's lane: high messages overtake normal ones, and
// normal ones low ones, at the processor.
type Priority string

// The priorities; the zero value reads as normal.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Validate checks a request read from Kafka, so that poison records are
// told apart from deliverable ones.
func (r SendRequest) Validate() error {
	var errs []error
	if r.MessageID == uuid.Nil {
		errs = append(errs, errors.New("message_id: required"))
	}
	if r.Sender == "" {
		errs = append(errs, errors.New("sender: required"))
	}
	if r.Recipient == "" {
		errs = append(errs, errors.New("recipient: required"))
	}
	if r.Text == "" {
		errs = append(errs, errors.New("text: required"))
	}
	return errors.Join(errs...)
}

// DeliveryReport is what the processor tells the API about one message.
type DeliveryReport struct {
	MessageID     uuid.UUID `json:"message_id"`
	Status        Status    `json:"status"`
	FailureReason *string   `json:"failure_reason"`
	ProcessedAt   time.Time `json:"processed_at"`
	// Traceparent, when set, is the W3C trace context of the delivery, so
	// that applying the report joins the message's trace.
	Traceparent string `json:"traceparent,omitempty"`
}

// MaxFailureReason and MaxTraceparent are the longest failure_reason and
// traceparent a report may carry, in characters (Unicode code points).
const (
	MaxFailureReason = 1000
	MaxTraceparent   = 128
)

// Validate checks a report; the violations name the fields.
func (r DeliveryReport) Validate() error {
	var v ValidationError
	if r.MessageID == uuid.Nil {
		v.Add("message_id", "required, a UUID")
	}
	if !r.Status.Final() {
		v.Add("status", "must be SENT or FAILED")
	}
	switch {
	case r.FailureReason != nil && (*r.FailureReason == "" || utf8.RuneCountInString(*r.FailureReason) > MaxFailureReason):
		v.Add("failure_reason", fmt.Sprintf("must be 1 to %d characters, or null", MaxFailureReason))
	case r.FailureReason != nil && strings.ContainsRune(*r.FailureReason, 0):
		v.Add("failure_reason", "must not contain NUL characters")
	case r.Status == StatusFailed && (r.FailureReason == nil || strings.TrimSpace(*r.FailureReason) == ""):
		v.Add("failure_reason", "required when status is FAILED, and not only whitespace")
	}
	if utf8.RuneCountInString(r.Traceparent) > MaxTraceparent {
		v.Add("traceparent", fmt.Sprintf("must be at most %d characters", MaxTraceparent))
	}
	if r.ProcessedAt.IsZero() {
		v.Add("processed_at", "required, an RFC 3339 timestamp")
	}
	return v.Err()
}

// ReportOutcome is what applying one delivery report did.
type ReportOutcome string

// Outcomes of a delivery report.
const (
	// ReportApplied moved the message from PENDING to its final status.
	ReportApplied ReportOutcome = "applied"
	// ReportDuplicate found the message already final; nothing changed.
	ReportDuplicate ReportOutcome = "duplicate"
	// ReportNotFound names no message.
	ReportNotFound ReportOutcome = "not_found"
)

// Stats summarizes an account's messages.
type Stats struct {
	TotalMessages   int64   `json:"total_messages"`
	PendingMessages int64   `json:"pending_messages"`
	SentMessages    int64   `json:"sent_messages"`
	FailedMessages  int64   `json:"failed_messages"`
	SuccessRate     float64 `json:"success_rate"`
}

// AppliedReport says what one report did and the message's status after it.
type AppliedReport struct {
	MessageID uuid.UUID     `db:"id" json:"message_id"`
	Outcome   ReportOutcome `db:"outcome" json:"outcome"`
	Status    Status        `db:"status" json:"-"`
	// FailureReason and CreatedAt are set for applied reports only.
	FailureReason *string    `db:"failure_reason" json:"-"`
	CreatedAt     *time.Time `db:"created_at" json:"-"`
}

// ReportResult is the answer to a single delivery report.
type ReportResult struct {
	MessageID uuid.UUID `json:"message_id"`
	Status    Status    `json:"status"`
	Applied   bool      `json:"applied"`
}

// ReportBatch is the body of the batch delivery-report endpoint.
type ReportBatch struct {
	Reports []DeliveryReport `json:"reports"`
}

// ReportResults answers a batch of reports, one result per report in the
// order of the request.
type ReportResults struct {
	Results []AppliedReport `json:"results"`
}

// MaxReportBatch is the most reports accepted in one batch request.
const MaxReportBatch = 1000

// ReasonClass groups failure reasons into a few label values: the text
// before the first colon when it is a known class, else "other".
func ReasonClass(reason *string) string {
	if reason == nil {
		return "other"
	}
	class, _, _ := strings.Cut(*reason, ":")
	switch class {
	case "permanent", "exhausted", "invalid":
		return class
	}
	return "other"
}
