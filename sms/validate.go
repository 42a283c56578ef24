package sms

import (
	"fmt"
	"strings"
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
}

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
}

// Validate checks every field at once and returns the normalized draft, or
// a *ValidationError listing all violations.
func (in SendInput) Validate() (Draft, error) { return in.ValidateWith(nil) }

// ValidateWith is Validate with normalized numbers remembered in phones
// (nil remembers nothing).
func (in SendInput) ValidateWith(phones *PhoneCache) (Draft, error) {
	var v ValidationError
	d := Draft{Text: in.Text}
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
	if err := v.Err(); err != nil {
		return Draft{}, err
	}
	d.Encoding, d.Segments = Segments(d.Text)
	return d, nil
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
