package http

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smsctl/smsctl/sms"
)

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		want      sms.SendInput
		fields    []string // a *sms.ValidationError naming these
		malformed bool     // an sms.ErrMalformed
	}{
		{"object", `{"sender":"a","recipient":"b","text":"c"}`, sms.SendInput{Sender: "a", Recipient: "b", Text: "c"}, nil, false},
		{"surrounding whitespace", " \n{\"text\":\"c\"}\r\n\t", sms.SendInput{Text: "c"}, nil, false},
		{"unknown fields are ignored", `{"text":"c","channel":"whatsapp"}`, sms.SendInput{Text: "c"}, nil, false},
		{"escapes", `{"text":"\u00e9\n\"\\"}`, sms.SendInput{Text: "é\n\"\\"}, nil, false},
		{"a surrogate pair", `{"text":"\ud83d\ude00"}`, sms.SendInput{Text: "😀"}, nil, false},
		{"upper case surrogate pair", `{"text":"\uD83D\uDE00 ok"}`, sms.SendInput{Text: "😀 ok"}, nil, false},
		{"an escaped backslash before u", `{"text":"\\ud800"}`, sms.SendInput{Text: `\ud800`}, nil, false},
		{"NUL escape decodes, validation refuses it", `{"text":"\u0000"}`, sms.SendInput{Text: "\x00"}, nil, false},
		{"null is not an object", `null`, sms.SendInput{}, nil, true},
		{"null with white space", " null\n", sms.SendInput{}, nil, true},
		{"lone high surrogate", `{"text":"\ud83d"}`, sms.SendInput{}, []string{"body"}, false},
		{"lone high surrogate before text", `{"text":"\ud83dabc"}`, sms.SendInput{}, []string{"body"}, false},
		{"high surrogate then another escape", `{"text":"\ud83d\n"}`, sms.SendInput{}, []string{"body"}, false},
		{"two high surrogates", `{"text":"\ud83d\ud83d"}`, sms.SendInput{}, []string{"body"}, false},
		{"lone low surrogate", `{"text":"\ude00"}`, sms.SendInput{}, []string{"body"}, false},
		{"surrogate in a key", `{"\ud800":"x"}`, sms.SendInput{}, []string{"body"}, false},
		{"invalid UTF-8", "{\"text\":\"\xff\"}", sms.SendInput{}, []string{"body"}, false},
		{"one wrong type", `{"text":5}`, sms.SendInput{}, []string{"text"}, false},
		{"every wrong type", `{"sender":[],"recipient":{},"text":false}`, sms.SendInput{}, []string{"sender", "recipient", "text"}, false},
		{"keys match in any case", `{"TEXT":5,"Sender":1}`, sms.SendInput{}, []string{"sender", "text"}, false},
		{"wrong type and trailing data", `{"text":5} x`, sms.SendInput{}, []string{"text"}, false},
		{"empty", ``, sms.SendInput{}, nil, true},
		{"whitespace", "  \n", sms.SendInput{}, nil, true},
		{"truncated", `{"text":`, sms.SendInput{}, nil, true},
		{"trailing data", `{"text":"a"} {}`, sms.SendInput{}, nil, true},
		{"trailing garbage", `{"text":"a"}x`, sms.SendInput{}, nil, true},
		{"an array", `[1]`, sms.SendInput{}, nil, true},
		{"a string", `"text"`, sms.SendInput{}, nil, true},
		{"a bad escape", `{"text":"\q"}`, sms.SendInput{}, nil, true},
		{"a short unicode escape", `{"text":"\u12"}`, sms.SendInput{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got sms.SendInput
			err := DecodeJSON([]byte(tt.body), &got)
			var ve *sms.ValidationError
			switch {
			case tt.malformed:
				if !errors.Is(err, sms.ErrMalformed) {
					t.Errorf("DecodeJSON(%q) = %v, want ErrMalformed", tt.body, err)
				} else if strings.Contains(err.Error(), "sms.") {
					t.Errorf("error %q names a Go type", err)
				}
			case tt.fields != nil:
				if !errors.As(err, &ve) {
					t.Fatalf("DecodeJSON(%q) = %v, want a *ValidationError", tt.body, err)
				}
				var fields []string
				for _, v := range ve.Violations {
					fields = append(fields, v.Field)
				}
				if !slices.Equal(fields, tt.fields) {
					t.Errorf("violations name %q, want %q", fields, tt.fields)
				}
			default:
				if err != nil || got != tt.want {
					t.Errorf("DecodeJSON(%q) = %+v, %v; want %+v", tt.body, got, err, tt.want)
				}
			}
		})
	}
}

func TestDecodeJSONNestedTypes(t *testing.T) {
	t.Parallel()
	var dst struct {
		Reports []struct {
			ID     string         `json:"message_id"`
			At     time.Time      `json:"processed_at"`
			Reason *string        `json:"failure_reason"`
			Inner  *sms.SendInput `json:"inner"`
		} `json:"reports"`
		Count int `json:"count"`
	}
	body := `{"reports":[{"message_id":"ok","processed_at":"2025-06-01T12:00:00Z"},{"message_id":5,"failure_reason":["x"],"processed_at":7,"inner":{"text":1}}],"count":"x"}`
	err := DecodeJSON([]byte(body), &dst)
	var ve *sms.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("DecodeJSON = %v, want a *ValidationError", err)
	}
	want := []sms.Violation{
		{Field: "reports[1].message_id", Message: "must be a string"},
		{Field: "reports[1].processed_at", Message: "must be a string"},
		{Field: "reports[1].failure_reason", Message: "must be a string"},
		{Field: "reports[1].inner.text", Message: "must be a string"},
		{Field: "count", Message: "must be a number"},
	}
	if !slices.Equal(ve.Violations, want) {
		t.Errorf("violations\n%v\nwant\n%v", ve.Violations, want)
	}
	if err := DecodeJSON([]byte(`{"reports":{}}`), &dst); !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0] != (sms.Violation{Field: "reports", Message: "must be a JSON array"}) {
		t.Errorf("an object for an array: %v", err)
	}
}

func TestHasLoneSurrogate(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]bool{
		`"\ud800"`:             true,
		`"\udfff"`:             true,
		`"\ud7ff"`:             false,
		`"\ue000"`:             false,
		`"\ud800\udc00"`:       false,
		`"\udbff\udfff"`:       false,
		`"\ud800\\udc00"`:      true,  // the second is an escaped backslash, then text
		`"\\ud800"`:            false, // an escaped backslash, then text
		`"\\\ud800"`:           true,
		`"\"\ud800"`:           true,
		`"a\u"`:                false, // malformed; the decoder reports it
		`"\ud800\u"`:           true,
		`{"k":"v"} "\udc00"`:   true,
		`"ok" \ud800`:          false, // outside a string: the decoder reports it
		`["\ud83d\ude00","x"]`: false,
	} {
		if got := hasLoneSurrogate([]byte(body)); got != want {
			t.Errorf("hasLoneSurrogate(%s) = %v, want %v", body, got, want)
		}
	}
}
