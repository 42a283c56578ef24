package sms

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxTextLength is the longest text accepted, in characters.
const MaxTextLength = 1600

// SendInput is the body of POST /v1/messages as the client sent it.
type SendInput struct {
	Sender    string `json:"sender"`
	Recipient string `json:"recipient"`
	Text      string `json:"text"`
	// SendAt, when set, holds the message (SCHEDULED) until then.
	SendAt *time.Time `json:"send_at,omitempty"`
	// ValidityPeriod, in seconds, is how long the message is worth sending
	// from when it is due.
	ValidityPeriod *int `json:"validity_period,omitempty"`
	// Priority is high, normal (the default) or low.
	Priority Priority `json:"priority,omitempty"`
}

// Scheduling and validity limits.
const (
	// MaxScheduleAhead is how far ahead send_at may be.
	MaxScheduleAhead = 35 * 24 * time.Hour
	// ScheduleSlack is how far in the past send_at may be and still count
	// as "now" (clients' clocks drift); further back is refused.
	ScheduleSlack = time.Minute
	// MaxValidityPeriod is the longest validity_period, in seconds: what
	// carriers keep a message for at most.
	MaxValidityPeriod = 7 * 24 * 3600
)

// NewMessage is a validated draft ready to be stored for an account.
type NewMessage struct {
	AccountID int64
	Draft
	// Traceparent is the trace of the request that accepted the message;
	// the outbox keeps it so the Kafka record continues that trace.
	Traceparent string
}

// Draft is a validated, normalized message not stored yet.
type Draft struct {
	Sender    string
	Recipient string
	Text      string
	Encoding  Encoding
	Segments  int
	Priority  Priority
	// SendAt is set for a scheduled message (in the future when accepted).
	SendAt *time.Time
	// ValidityPeriod (seconds) and ValidUntil, computed from it and the
	// time the message is due, are set together or not at all.
	ValidityPeriod *int
	ValidUntil     *time.Time
}

// Scheduled reports whether the draft waits for its send_at.
func (d Draft) Scheduled(now time.Time) bool { return d.SendAt != nil && d.SendAt.After(now) }

// Validate checks every field at once and returns the normalized draft, or
// a *ValidationError listing all violations.
func (in SendInput) Validate() (Draft, error) { return in.ValidateWith(nil) }

// ValidateWith is Validate with normalized numbers remembered in phones
// (nil remembers nothing).
func (in SendInput) ValidateWith(phones *PhoneCache) (Draft, error) {
	return in.ValidateAt(phones, time.Now())
}

// ValidateAt is ValidateWith with send_at judged against now.
func (in SendInput) ValidateAt(phones *PhoneCache, now time.Time) (Draft, error) {
	var v ValidationError
	d := Draft{Text: in.Text, Priority: PriorityNormal}
	var err error
	if strings.TrimSpace(in.Sender) == "" {
		v.Add("sender", "required")
	} else if d.Sender, err = phones.Sender(in.Sender); err != nil {
		v.Add("sender", err.Error())
	}
	if strings.TrimSpace(in.Recipient) == "" {
		v.Add("recipient", "required")
	} else if d.Recipient, err = phones.Phone(in.Recipient); err != nil {
		v.Add("recipient", err.Error())
	}
	if msg := validateText(in.Text); msg != "" {
		v.Add("text", msg)
	}
	switch in.Priority {
	case "":
	case PriorityHigh, PriorityNormal, PriorityLow:
		d.Priority = in.Priority
	default:
		v.Add("priority", "must be one of high, normal, low")
	}
	due := now
	if in.SendAt != nil {
		switch at := in.SendAt.UTC().Truncate(time.Microsecond); {
		case at.Before(now.Add(-ScheduleSlack)):
			v.Add("send_at", "must not be in the past")
		case at.After(now.Add(MaxScheduleAhead)):
			v.Add("send_at", fmt.Sprintf("must be at most %d days ahead", int(MaxScheduleAhead.Hours()/24)))
		default:
			d.SendAt = &at
			due = maxTime(at, now)
		}
	}
	if in.ValidityPeriod != nil {
		if p := *in.ValidityPeriod; p < 1 || p > MaxValidityPeriod {
			v.Add("validity_period", fmt.Sprintf("must be 1 to %d seconds", MaxValidityPeriod))
		} else {
			until := due.Add(time.Duration(p) * time.Second).UTC().Truncate(time.Microsecond)
			d.ValidityPeriod, d.ValidUntil = &p, &until
		}
	}
	if err := v.Err(); err != nil {
		return Draft{}, err
	}
	d.Encoding, d.Segments = Segments(d.Text)
	return d, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func validateText(text string) string {
	switch n := utf8.RuneCountInString(text); {
	case n == 0:
		return "required, 1 to 1600 characters"
	case n > MaxTextLength:
		return fmt.Sprintf("must be at most %d characters, got %d", MaxTextLength, n)
	}
	if !utf8.ValidString(text) {
		return "must be valid UTF-8"
	}
	if strings.IndexFunc(text, func(r rune) bool { return !unicode.IsSpace(r) }) < 0 {
		return "must contain more than whitespace"
	}
	if strings.ContainsRune(text, 0) {
		return "must not contain NUL characters"
	}
	return ""
}
