package sms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// Draft is a validated, normalized message not stored yet.
type Draft struct {
	Sender    string
	Recipient string
	Text      string
	Encoding  Encoding
	Segments  int
}

// ErrMalformed wraps request bodies that are not the JSON expected.
var ErrMalformed = errors.New("malformed request body")

// DecodeJSON decodes one JSON object from body into dst. Text that is not
// valid UTF-8 is refused rather than silently replaced, and a field of the
// wrong type is reported as a violation naming it.
func DecodeJSON(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return &ValidationError{Violations: []Violation{{Field: "body", Message: "must be valid UTF-8"}}}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return &ValidationError{Violations: []Violation{{Field: typeErr.Field, Message: "must be a " + jsonKind(typeErr.Type.Kind().String())}}}
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: empty body, expected a JSON object", ErrMalformed)
		}
		return fmt.Errorf("%w: %s", ErrMalformed, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrMalformed)
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "JSON object"
	case "slice", "array":
		return "JSON array"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}

// Validate checks every field at once and returns the normalized draft, or
// a *ValidationError listing all violations.
func (in SendInput) Validate() (Draft, error) {
	var v ValidationError
	d := Draft{Text: in.Text}
	var err error
	if strings.TrimSpace(in.Sender) == "" {
		v.Add("sender", "required")
	} else if d.Sender, err = NormalizeSender(in.Sender); err != nil {
		v.Add("sender", err.Error())
	}
	if strings.TrimSpace(in.Recipient) == "" {
		v.Add("recipient", "required")
	} else if d.Recipient, err = NormalizePhone(in.Recipient); err != nil {
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
