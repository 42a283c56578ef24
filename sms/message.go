package sms

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

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
	Priority      Priority  `json:"priority" db:"priority"`
	// SendAt is when a scheduled message is due; nil when sent at once.
	SendAt *time.Time `json:"send_at" db:"send_at"`
	// ValidityPeriod, in seconds, and the time it ends (not shown).
	ValidityPeriod *int       `json:"validity_period" db:"validity_period"`
	ValidUntil     *time.Time `json:"-" db:"valid_until"`
	// CarrierMessageID is the carrier's id (its first part's), once known.
	CarrierMessageID *string `json:"carrier_message_id" db:"carrier_message_id"`
	// DeliveredAt is when the receipt says the message reached the handset.
	DeliveredAt *time.Time `json:"delivered_at" db:"delivered_at"`
	// Retries counts the retries so far (explicit and scheduled).
	Retries   int       `json:"retries" db:"retries"`
	CreatedAt time.Time `json:"created_at" db:"created_at"`
	UpdatedAt time.Time `json:"updated_at" db:"updated_at"`
}

// SendRequest is what the processor is asked to deliver for m.
func (m Message) SendRequest() SendRequest {
	return SendRequest{MessageID: m.ID, Sender: m.Sender, Recipient: m.Recipient, Text: m.Text,
		Encoding: m.Encoding, Segments: m.Segments, CreatedAt: m.CreatedAt, ValidUntil: m.ValidUntil, Priority: m.Priority,
		Retry: m.Retries}
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
	// Retry is the message's try: 0 at first, one more for each retry. The
	// processor keeps one outcome per try, and the API applies a report
	// only to the try it is about.
	Retry int `json:"retry,omitempty"`
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

// DeliveryReport is what the processor tells the API about one message:
// the outcome of handing it to the carrier (SENT, FAILED, or EXPIRED when
// its validity ended first), or later what the carrier's receipts say
// (DELIVERED, UNDELIVERED, EXPIRED).
type DeliveryReport struct {
	MessageID     uuid.UUID `json:"message_id"`
	Status        Status    `json:"status"`
	FailureReason *string   `json:"failure_reason"`
	// ProcessedAt is when the outcome was known; for a receipt, when the
	// carrier says the message reached its final state.
	ProcessedAt time.Time `json:"processed_at"`
	// Traceparent, when set, is the W3C trace context of the delivery, so
	// that applying the report joins the message's trace.
	Traceparent string `json:"traceparent,omitempty"`
	// CarrierMessageID is the carrier's id of the message (of its first
	// part), on the outcome of a message the carrier accepted.
	CarrierMessageID string `json:"carrier_message_id,omitempty"`
	// Attempts are the carrier calls behind an outcome, in order; each
	// becomes a message.attempt event.
	Attempts []Attempt `json:"attempts,omitempty"`
	// Parts are the receipts of the message's parts behind a receipt
	// report; they go into the event's detail.
	Parts []PartReceipt `json:"parts,omitempty"`
	// Retry is the try of the message the report is about (see
	// SendRequest.Retry); a report of an earlier try changes nothing.
	Retry int `json:"retry,omitempty"`
}

// Attempt is one carrier call for a message.
type Attempt struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	// Result is accepted, transient, throttled or permanent.
	Result string `json:"result"`
	Error  string `json:"error,omitempty"`
}

// PartReceipt is what the carrier's receipt said of one part.
type PartReceipt struct {
	CarrierID string     `json:"carrier_id"`
	Status    Status     `json:"status"`
	State     string     `json:"state,omitempty"`
	Err       string     `json:"err,omitempty"`
	DoneAt    *time.Time `json:"done_at,omitempty"`
}

// MaxClaims is the most claims one dispatch request may hold.
const MaxClaims = 5000

// Claim asks to hand a message (one try of it) to the carrier.
type Claim struct {
	MessageID uuid.UUID `json:"message_id" db:"id"`
	Retry     int       `json:"retry" db:"retry"`
}

// Verdict is the API's answer to a claim.
type Verdict string

// The verdicts.
const (
	// VerdictSend: hand it to the carrier; a cancel is too late from now on.
	VerdictSend Verdict = "send"
	// VerdictSkip: don't (canceled, past PENDING, or an older try).
	VerdictSkip Verdict = "skip"
	// VerdictOptedOut: don't; the recipient opted out, the message FAILED.
	VerdictOptedOut Verdict = "opted_out"
	// VerdictExpired: don't; its validity ended, the message EXPIRED.
	VerdictExpired Verdict = "expired"
)

// ClaimResult is the verdict on one claim.
type ClaimResult struct {
	MessageID uuid.UUID `json:"message_id" db:"id"`
	Verdict   Verdict   `json:"verdict" db:"verdict"`
}

// Event is one state change in a message's history.
type Event struct {
	Sequence   int       `json:"sequence" db:"sequence"`
	Type       string    `json:"type" db:"type"`
	Status     Status    `json:"status" db:"status"`
	OccurredAt time.Time `json:"occurred_at" db:"occurred_at"`
	// Detail says more where there is more to say (attempt results,
	// failure reasons, carrier ids, receipts); null otherwise.
	Detail JSON `json:"detail" db:"detail"`
}

// JSON is a raw JSON value stored as jsonb; null when empty.
type JSON []byte

// MarshalJSON writes the value as is, or null.
func (j JSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return j, nil
}

// UnmarshalJSON keeps the value as is.
func (j *JSON) UnmarshalJSON(b []byte) error {
	*j = append((*j)[:0], b...)
	return nil
}

// Scan reads a jsonb column.
func (j *JSON) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*j = nil
	case []byte:
		*j = append((*j)[:0], v...)
	case string:
		*j = JSON(v)
	default:
		return fmt.Errorf("json: cannot scan %T", src)
	}
	return nil
}

// ReportableStatuses are the statuses a delivery report may carry.
var ReportableStatuses = []Status{StatusSent, StatusDelivered, StatusUndelivered, StatusFailed, StatusExpired}

// MaxFailureReason and MaxTraceparent are the longest failure_reason and
// traceparent a report may carry, in characters (Unicode code points).
const (
	MaxFailureReason = 1000
	MaxTraceparent   = 128
	// MaxReportAttempts and MaxReportParts bound a report's attempts
	// and parts (a message has at most 255 parts).
	MaxReportAttempts = 100
	MaxReportParts    = 255
	// MaxRetry is the highest try number PostgreSQL's integer column holds.
	MaxRetry = math.MaxInt32
)

// Validate checks a report; the violations name the fields.
func (r DeliveryReport) Validate() error {
	var v ValidationError
	if r.MessageID == uuid.Nil {
		v.Add("message_id", "required, a UUID")
	}
	if !slices.Contains(ReportableStatuses, r.Status) {
		v.Add("status", "must be one of SENT, DELIVERED, UNDELIVERED, FAILED, EXPIRED")
	}
	switch {
	case r.FailureReason != nil && (*r.FailureReason == "" || utf8.RuneCountInString(*r.FailureReason) > MaxFailureReason):
		v.Add("failure_reason", fmt.Sprintf("must be 1 to %d characters, or null", MaxFailureReason))
	case r.FailureReason != nil && strings.ContainsRune(*r.FailureReason, 0):
		v.Add("failure_reason", "must not contain NUL characters")
	case r.Status == StatusFailed && (r.FailureReason == nil || strings.TrimSpace(*r.FailureReason) == ""):
		v.Add("failure_reason", "required when status is FAILED, and not only whitespace")
	}
	switch {
	case utf8.RuneCountInString(r.CarrierMessageID) > MaxCarrierMessageID:
		v.Add("carrier_message_id", fmt.Sprintf("must be at most %d characters", MaxCarrierMessageID))
	case strings.ContainsRune(r.CarrierMessageID, 0):
		v.Add("carrier_message_id", "must not contain NUL characters")
	}
	if r.Retry < 0 || r.Retry > MaxRetry {
		v.Add("retry", fmt.Sprintf("must be 0 to %d", MaxRetry))
	}
	if len(r.Attempts) > MaxReportAttempts {
		v.Add("attempts", fmt.Sprintf("must hold at most %d attempts", MaxReportAttempts))
	}
	for i, a := range r.Attempts {
		prefix := fmt.Sprintf("attempts[%d].", i)
		refuseNUL(&v, prefix+"result", a.Result)
		refuseNUL(&v, prefix+"error", a.Error)
		if !a.At.IsZero() && !StorableTime(a.At) {
			v.Add(prefix+"at", storableTimeRule)
		}
	}
	if len(r.Parts) > MaxReportParts {
		v.Add("parts", fmt.Sprintf("must hold at most %d parts", MaxReportParts))
	}
	for i, p := range r.Parts {
		prefix := fmt.Sprintf("parts[%d].", i)
		refuseNUL(&v, prefix+"carrier_id", p.CarrierID)
		refuseNUL(&v, prefix+"status", string(p.Status))
		refuseNUL(&v, prefix+"state", p.State)
		refuseNUL(&v, prefix+"err", p.Err)
		if p.DoneAt != nil && !StorableTime(*p.DoneAt) {
			v.Add(prefix+"done_at", storableTimeRule)
		}
	}
	if utf8.RuneCountInString(r.Traceparent) > MaxTraceparent {
		v.Add("traceparent", fmt.Sprintf("must be at most %d characters", MaxTraceparent))
	}
	switch {
	case r.ProcessedAt.IsZero():
		v.Add("processed_at", "required, an RFC 3339 timestamp")
	case !StorableTime(r.ProcessedAt):
		v.Add("processed_at", storableTimeRule)
	}
	return v.Err()
}

const storableTimeRule = "must be between 0001-01-01 and 9999-12-31 in UTC"

// StorableTime reports whether t, in UTC, falls in years 1 to 9999: RFC
// 3339 offsets can carry 0001-01-01T00:00:00+01:00 into year 0, which
// PostgreSQL refuses.
func StorableTime(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// refuseNUL adds a violation when s holds a NUL, which PostgreSQL text
// cannot store.
func refuseNUL(v *ValidationError, field, s string) {
	if strings.ContainsRune(s, 0) {
		v.Add(field, "must not contain NUL characters")
	}
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

// Stats summarizes an account's messages. The first fields keep their
// wave-1 meaning over the new statuses: pending is not yet at the carrier
// (SCHEDULED, PENDING), sent is accepted by it and not known lost (SENT,
// DELIVERED), failed is not delivered (FAILED, UNDELIVERED, EXPIRED);
// CANCELED counts in the total and in ByStatus only.
type Stats struct {
	TotalMessages   int64   `json:"total_messages"`
	PendingMessages int64   `json:"pending_messages"`
	SentMessages    int64   `json:"sent_messages"`
	FailedMessages  int64   `json:"failed_messages"`
	SuccessRate     float64 `json:"success_rate"`
	// ByStatus counts every status, zero ones included.
	ByStatus map[Status]int64 `json:"by_status"`
}

// NewStats computes the summary fields from counts by status.
func NewStats(byStatus map[Status]int64) Stats {
	st := Stats{ByStatus: make(map[Status]int64, len(Statuses))}
	for _, s := range Statuses {
		n := byStatus[s]
		st.ByStatus[s] = n
		st.TotalMessages += n
		switch {
		case s == StatusScheduled || s == StatusPending:
			st.PendingMessages += n
		case s.Succeeded():
			st.SentMessages += n
		case s.Unsuccessful():
			st.FailedMessages += n
		}
	}
	if done := st.SentMessages + st.FailedMessages; done > 0 {
		st.SuccessRate = float64(st.SentMessages) * 100 / float64(done)
	}
	return st
}

// AppliedReport says what one report did and the message's status after it.
type AppliedReport struct {
	MessageID uuid.UUID     `db:"id" json:"message_id"`
	Outcome   ReportOutcome `db:"outcome" json:"outcome"`
	Status    Status        `db:"status" json:"-"`
	// Previous is the status the report moved the message from (applied
	// reports only).
	Previous Status `db:"old" json:"-"`
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

// MaxReportBatchBytes is the largest body of a batch of reports. A full
// batch of the longest failure reasons and traceparents fits, however
// its JSON escapes them; attempts and parts can make a batch larger, so
// the processor's client splits what it sends to fit.
const MaxReportBatchBytes = 8 << 20

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
