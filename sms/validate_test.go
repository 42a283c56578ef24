package sms

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSendInputValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     SendInput
		want   Draft
		fields []string // violations, in order; nil when valid
	}{
		{"valid", SendInput{"+14155552671", "+442071838750", "Hello"},
			Draft{"+14155552671", "+442071838750", "Hello", EncodingGSM7, 1}, nil},
		{"normalized phones", SendInput{"+1 (415) 555-2671", "+44 20 7183 8750", "Hi"},
			Draft{"+14155552671", "+442071838750", "Hi", EncodingGSM7, 1}, nil},
		{"alphanumeric sender", SendInput{"Acme Bank", "+14155552671", "Привет"},
			Draft{"Acme Bank", "+14155552671", "Привет", EncodingUCS2, 1}, nil},
		{"text is kept as given", SendInput{"Acme", "+14155552671", "  padded\n"},
			Draft{"Acme", "+14155552671", "  padded\n", EncodingGSM7, 1}, nil},
		{"1600 characters", SendInput{"Acme", "+14155552671", strings.Repeat("ж", 1600)},
			Draft{"Acme", "+14155552671", strings.Repeat("ж", 1600), EncodingUCS2, 24}, nil},
		{"everything missing", SendInput{}, Draft{}, []string{"sender", "recipient", "text"}},
		{"whitespace everywhere", SendInput{" ", "\t", "\n "}, Draft{}, []string{"sender", "recipient", "text"}},
		{"everything invalid", SendInput{"Acme-Bank!", "Acme", strings.Repeat("a", 1601)}, Draft{}, []string{"sender", "recipient", "text"}},
		{"recipient only", SendInput{"Acme", "+1 555", "x"}, Draft{}, []string{"recipient"}},
		{"NUL", SendInput{"Acme", "+14155552671", "a\x00"}, Draft{}, []string{"text"}},
		{"invalid UTF-8 text", SendInput{"Acme", "+14155552671", "caf\xe9"}, Draft{}, []string{"text"}},
		{"sender of 12 characters", SendInput{"ACME BANK UK", "+14155552671", "x"}, Draft{}, []string{"sender"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.Validate()
			if tt.fields == nil {
				if err != nil || got != tt.want {
					t.Errorf("Validate() = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate() error %v, want a *ValidationError", err)
			}
			var fields []string
			for _, v := range ve.Violations {
				fields = append(fields, v.Field)
				if v.Message == "" {
					t.Errorf("violation of %s has no message", v.Field)
				}
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("violations name %q, want %q", fields, tt.fields)
			}
			if got != (Draft{}) {
				t.Errorf("an invalid input gave draft %+v", got)
			}
			if !strings.HasPrefix(err.Error(), "invalid request: ") {
				t.Errorf("error text %q", err.Error())
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		body      string
		want      SendInput
		fields    []string // a *ValidationError naming these
		malformed bool     // an ErrMalformed
	}{
		{"object", `{"sender":"a","recipient":"b","text":"c"}`, SendInput{"a", "b", "c"}, nil, false},
		{"surrounding whitespace", " \n{\"text\":\"c\"}\r\n\t", SendInput{Text: "c"}, nil, false},
		{"unknown fields are ignored", `{"text":"c","priority":"high"}`, SendInput{Text: "c"}, nil, false},
		{"escapes", `{"text":"\u00e9\n\"\\"}`, SendInput{Text: "é\n\"\\"}, nil, false},
		{"a surrogate pair", `{"text":"\ud83d\ude00"}`, SendInput{Text: "😀"}, nil, false},
		{"upper case surrogate pair", `{"text":"\uD83D\uDE00 ok"}`, SendInput{Text: "😀 ok"}, nil, false},
		{"an escaped backslash before u", `{"text":"\\ud800"}`, SendInput{Text: `\ud800`}, nil, false},
		{"NUL escape decodes, validation refuses it", `{"text":"\u0000"}`, SendInput{Text: "\x00"}, nil, false},
		{"null", `null`, SendInput{}, nil, false},
		{"lone high surrogate", `{"text":"\ud83d"}`, SendInput{}, []string{"body"}, false},
		{"lone high surrogate before text", `{"text":"\ud83dabc"}`, SendInput{}, []string{"body"}, false},
		{"high surrogate then another escape", `{"text":"\ud83d\n"}`, SendInput{}, []string{"body"}, false},
		{"two high surrogates", `{"text":"\ud83d\ud83d"}`, SendInput{}, []string{"body"}, false},
		{"lone low surrogate", `{"text":"\ude00"}`, SendInput{}, []string{"body"}, false},
		{"surrogate in a key", `{"\ud800":"x"}`, SendInput{}, []string{"body"}, false},
		{"invalid UTF-8", "{\"text\":\"\xff\"}", SendInput{}, []string{"body"}, false},
		{"one wrong type", `{"text":5}`, SendInput{}, []string{"text"}, false},
		{"every wrong type", `{"sender":[],"recipient":{},"text":false}`, SendInput{}, []string{"sender", "recipient", "text"}, false},
		{"keys match in any case", `{"TEXT":5,"Sender":1}`, SendInput{}, []string{"sender", "text"}, false},
		{"wrong type and trailing data", `{"text":5} x`, SendInput{}, []string{"text"}, false},
		{"empty", ``, SendInput{}, nil, true},
		{"whitespace", "  \n", SendInput{}, nil, true},
		{"truncated", `{"text":`, SendInput{}, nil, true},
		{"trailing data", `{"text":"a"} {}`, SendInput{}, nil, true},
		{"trailing garbage", `{"text":"a"}x`, SendInput{}, nil, true},
		{"an array", `[1]`, SendInput{}, nil, true},
		{"a string", `"text"`, SendInput{}, nil, true},
		{"a bad escape", `{"text":"\q"}`, SendInput{}, nil, true},
		{"a short unicode escape", `{"text":"\u12"}`, SendInput{}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got SendInput
			err := DecodeJSON([]byte(tt.body), &got)
			var ve *ValidationError
			switch {
			case tt.malformed:
				if !errors.Is(err, ErrMalformed) {
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
			ID     string     `json:"message_id"`
			At     time.Time  `json:"processed_at"`
			Reason *string    `json:"failure_reason"`
			Inner  *SendInput `json:"inner"`
		} `json:"reports"`
		Count int `json:"count"`
	}
	body := `{"reports":[{"message_id":"ok","processed_at":"2025-06-01T12:00:00Z"},{"message_id":5,"failure_reason":["x"],"processed_at":7,"inner":{"text":1}}],"count":"x"}`
	err := DecodeJSON([]byte(body), &dst)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("DecodeJSON = %v, want a *ValidationError", err)
	}
	want := []Violation{
		{"reports[1].message_id", "must be a string"},
		{"reports[1].processed_at", "must be a string"},
		{"reports[1].failure_reason", "must be a string"},
		{"reports[1].inner.text", "must be a string"},
		{"count", "must be a number"},
	}
	if !slices.Equal(ve.Violations, want) {
		t.Errorf("violations\n%v\nwant\n%v", ve.Violations, want)
	}
	if err := DecodeJSON([]byte(`{"reports":{}}`), &dst); !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0] != (Violation{"reports", "must be a JSON array"}) {
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
