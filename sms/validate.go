package sms

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
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
// valid UTF-8, or that escapes half of a UTF-16 surrogate pair ("\ud800"),
// is refused rather than silently replaced, and every field of the wrong
// type is reported as a violation naming it.
func DecodeJSON(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return &ValidationError{Violations: []Violation{{Field: "body", Message: "must be valid UTF-8"}}}
	}
	if hasLoneSurrogate(body) {
		return &ValidationError{Violations: []Violation{{Field: "body",
			Message: "must not contain an unpaired UTF-16 surrogate escape (\\uD800 to \\uDFFF); it is not a character"}}}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: empty body, expected a JSON object", ErrMalformed)
		}
		// Well-formed JSON with values of the wrong type: name each field.
		var syntaxErr *json.SyntaxError
		if !errors.As(err, &syntaxErr) && !errors.Is(err, io.ErrUnexpectedEOF) {
			if ve := fieldViolations(body, dst); ve != nil {
				return ve
			}
		}
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return fmt.Errorf("%w: expected a JSON object, got a JSON %s", ErrMalformed, typeErr.Value)
		case errors.As(err, &typeErr):
			return &ValidationError{Violations: []Violation{{Field: typeErr.Field, Message: "must be a " + jsonKind(typeErr.Type.Kind().String())}}}
		}
		return fmt.Errorf("%w: %s", ErrMalformed, strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: unexpected data after the JSON object", ErrMalformed)
	}
	return nil
}

// fieldViolations names every field of dst whose JSON value in body has
// the wrong type, not only the first one the decoder met: nested fields as
// "reports[3].status". It returns nil when it can't tell which fields.
func fieldViolations(body []byte, dst any) *ValidationError {
	t := reflect.TypeOf(dst)
	var raw json.RawMessage
	if t == nil || t.Kind() != reflect.Pointer || json.NewDecoder(bytes.NewReader(body)).Decode(&raw) != nil {
		return nil
	}
	var v ValidationError
	typeErrors(raw, t.Elem(), "", &v)
	if len(v.Violations) == 0 || v.Violations[0].Field == "" {
		return nil // the body itself has the wrong type
	}
	return &v
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// typeErrors adds a violation for each value in raw, at path, that can't
// be decoded into t for its JSON type.
func typeErrors(raw json.RawMessage, t reflect.Type, path string, v *ValidationError) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return
	}
	custom := reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler)
	switch {
	case !custom && t.Kind() == reflect.Struct:
		var fields map[string]json.RawMessage
		if json.Unmarshal(raw, &fields) != nil {
			v.Add(path, "must be a JSON object")
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			value, ok := fields[name]
			for k, val := range fields {
				if !ok && strings.EqualFold(k, name) { // as encoding/json matches keys
					value, ok = val, true
				}
			}
			if ok {
				typeErrors(value, f.Type, strings.TrimPrefix(path+"."+name, "."), v)
			}
		}
	case !custom && (t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 || t.Kind() == reflect.Array):
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			v.Add(path, "must be a JSON array")
			return
		}
		for i, item := range items {
			typeErrors(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), v)
		}
	default:
		err := json.Unmarshal(raw, reflect.New(t).Interface())
		var te *json.UnmarshalTypeError
		switch {
		case err == nil:
		case custom && !bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`)):
			// Types that decode themselves (times, UUIDs) are strings.
			v.Add(path, "must be a string")
		case custom:
			v.Add(path, "is not a valid value")
		case errors.As(err, &te):
			v.Add(path, "must be a "+jsonKind(t.Kind().String()))
		}
	}
}

// hasLoneSurrogate reports whether a JSON text escapes half of a UTF-16
// surrogate pair, which encoding/json would silently turn into U+FFFD.
func hasLoneSurrogate(body []byte) bool {
	if !bytes.Contains(body, []byte(`\u`)) {
		return false
	}
	inString := false
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"':
			inString = !inString
		case c == '\\' && inString && i+1 < len(body):
			if body[i+1] != 'u' {
				i++ // a one-character escape, such as \" or \\
				continue
			}
			r, ok := hex4(body, i+2)
			if !ok {
				continue // not a valid escape; the decoder reports it
			}
			i += 5
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return true
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := hex4(body, i+3)
				if i+2 >= len(body) || body[i+1] != '\\' || body[i+2] != 'u' || !ok || lo < 0xDC00 || lo > 0xDFFF {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

// hex4 reads 4 hex digits at b[i:].
func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
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
