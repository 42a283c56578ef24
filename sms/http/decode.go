package http

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

// readJSON checks the content type and size, then decodes the body.
func readJSON(c echo.Context, dst any) error { return readJSONLimit(c, dst, MaxBodyBytes) }

// readJSONLimit is readJSON for bodies of at most limit bytes.
func readJSONLimit(c echo.Context, dst any, limit int) error {
	body, err := readBody(c, limit)
	if err != nil {
		return err
	}
	return DecodeJSON(body, dst)
}

// readBody checks the content type (application/json only) and reads a
// body of at most limit bytes.
func readBody(c echo.Context, limit int) ([]byte, error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return nil, echo.NewHTTPError(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type must be application/json, got %q", ct))
	}
	body, err := io.ReadAll(io.LimitReader(c.Request().Body, int64(limit)+1))
	if err != nil {
		return nil, sms.Malformed("read body: %v", err)
	}
	if len(body) > limit {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
	}
	return body, nil
}

// DecodeJSON decodes one JSON object from body into dst. Text that is not
// valid UTF-8, or that escapes half of a UTF-16 surrogate pair ("\ud800"),
// is refused rather than silently replaced, and every field of the wrong
// type is reported as a violation naming it.
func DecodeJSON(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return sms.Invalid("body", "must be valid UTF-8")
	}
	if hasLoneSurrogate(body) {
		return sms.Invalid("body", "must not contain an unpaired UTF-16 surrogate escape (\\uD800 to \\uDFFF); it is not a character")
	}
	// encoding/json leaves a struct untouched for null: it would pass
	// as an empty object, and PUT would reset settings to their defaults.
	if bytes.Equal(bytes.TrimSpace(body), []byte("null")) {
		return sms.Malformed("expected a JSON object, got null")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return sms.Malformed("empty body, expected a JSON object")
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
			return sms.Malformed("expected a JSON object, got a JSON %s", typeErr.Value)
		case errors.As(err, &typeErr):
			return sms.Invalid(typeErr.Field, "must be a "+jsonKind(typeErr.Type.Kind().String()))
		}
		return sms.Malformed("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return sms.Malformed("unexpected data after the JSON object")
	}
	return nil
}

// fieldViolations names every field of dst whose JSON value in body has
// the wrong type, not only the first one the decoder met: nested fields as
// "reports[3].status". It returns nil when it can't tell which fields.
func fieldViolations(body []byte, dst any) *sms.ValidationError {
	t := reflect.TypeOf(dst)
	var raw json.RawMessage
	if t == nil || t.Kind() != reflect.Pointer || json.NewDecoder(bytes.NewReader(body)).Decode(&raw) != nil {
		return nil
	}
	var v sms.ValidationError
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
func typeErrors(raw json.RawMessage, t reflect.Type, path string, v *sms.ValidationError) {
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
