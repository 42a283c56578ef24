package sms

import (
	"errors"
	"slices"
	"strings"
	"testing"
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
