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
		{"valid", SendInput{Sender: "+14155552671", Recipient: "+442071838750", Text: "Hello"},
			Draft{Sender: "+14155552671", Recipient: "+442071838750", Text: "Hello", Encoding: EncodingGSM7, Segments: 1, Priority: PriorityNormal}, nil},
		{"normalized phones", SendInput{Sender: "+1 (415) 555-2671", Recipient: "+44 20 7183 8750", Text: "Hi"},
			Draft{Sender: "+14155552671", Recipient: "+442071838750", Text: "Hi", Encoding: EncodingGSM7, Segments: 1, Priority: PriorityNormal}, nil},
		{"alphanumeric sender", SendInput{Sender: "Acme Bank", Recipient: "+14155552671", Text: "Привет"},
			Draft{Sender: "Acme Bank", Recipient: "+14155552671", Text: "Привет", Encoding: EncodingUCS2, Segments: 1, Priority: PriorityNormal}, nil},
		{"text is kept as given", SendInput{Sender: "Acme", Recipient: "+14155552671", Text: "  padded\n"},
			Draft{Sender: "Acme", Recipient: "+14155552671", Text: "  padded\n", Encoding: EncodingGSM7, Segments: 1, Priority: PriorityNormal}, nil},
		{"1600 characters", SendInput{Sender: "Acme", Recipient: "+14155552671", Text: strings.Repeat("ж", 1600)},
			Draft{Sender: "Acme", Recipient: "+14155552671", Text: strings.Repeat("ж", 1600), Encoding: EncodingUCS2, Segments: 24, Priority: PriorityNormal}, nil},
		{"everything missing", SendInput{}, Draft{}, []string{"sender", "recipient", "text"}},
		{"whitespace everywhere", SendInput{Sender: " ", Recipient: "\t", Text: "\n "}, Draft{}, []string{"sender", "recipient", "text"}},
		{"everything invalid", SendInput{Sender: "Acme-Bank!", Recipient: "Acme", Text: strings.Repeat("a", 1601)}, Draft{}, []string{"sender", "recipient", "text"}},
		{"recipient only", SendInput{Sender: "Acme", Recipient: "+1 555", Text: "x"}, Draft{}, []string{"recipient"}},
		{"NUL", SendInput{Sender: "Acme", Recipient: "+14155552671", Text: "a\x00"}, Draft{}, []string{"text"}},
		{"invalid UTF-8 text", SendInput{Sender: "Acme", Recipient: "+14155552671", Text: "caf\xe9"}, Draft{}, []string{"text"}},
		{"sender of 12 characters", SendInput{Sender: "ACME BANK UK", Recipient: "+14155552671", Text: "x"}, Draft{}, []string{"sender"}},
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

// TestStatusMoves checks the table of shared/design.md: the moves it
// allows, and that nothing moves a message backwards or out of a final
// status.
func TestStatusMoves(t *testing.T) {
	allowed := map[[2]Status]bool{}
	for _, m := range [][2]Status{
		{StatusScheduled, StatusPending}, {StatusScheduled, StatusCanceled},
		{StatusPending, StatusSent}, {StatusPending, StatusFailed}, {StatusPending, StatusExpired}, {StatusPending, StatusCanceled},
		{StatusSent, StatusDelivered}, {StatusSent, StatusUndelivered}, {StatusSent, StatusExpired},
	} {
		allowed[m] = true
	}
	for _, from := range Statuses {
		for _, to := range Statuses {
			if got := CanMove(from, to); got != allowed[[2]Status{from, to}] {
				t.Errorf("CanMove(%s, %s) = %v", from, to, got)
			}
			if from.Final() && CanMove(from, to) {
				t.Errorf("%s is final but moves to %s", from, to)
			}
		}
	}
	if got := MovesTo(StatusExpired); len(got) != 2 || got[0] != StatusPending || got[1] != StatusSent {
		t.Errorf("MovesTo(EXPIRED) = %v", got)
	}
	for _, st := range Statuses {
		if p, err := ParseStatus(string(st)); err != nil || p != st {
			t.Errorf("ParseStatus(%s) = %s, %v", st, p, err)
		}
	}
	if _, err := ParseStatus("sent"); err == nil {
		t.Error("ParseStatus accepted lower case")
	}
}

// TestSendInputScheduleAndValidity checks send_at, validity_period and
// priority: the limits, what the draft holds, and that validity counts
// from when the message is due.
func TestSendInputScheduleAndValidity(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	secs := func(n int) *int { return &n }
	base := SendInput{Sender: "Acme", Recipient: "+14155552671", Text: "x"}
	for _, tc := range []struct {
		name      string
		edit      func(*SendInput)
		fields    []string
		scheduled bool
		until     *time.Time
		priority  Priority
	}{
		{name: "defaults", edit: func(*SendInput) {}, priority: PriorityNormal},
		{name: "an hour ahead", edit: func(in *SendInput) { in.SendAt = at(time.Hour) }, scheduled: true, priority: PriorityNormal},
		{name: "35 days ahead", edit: func(in *SendInput) { in.SendAt = at(MaxScheduleAhead) }, scheduled: true, priority: PriorityNormal},
		{name: "a second more than 35 days", edit: func(in *SendInput) { in.SendAt = at(MaxScheduleAhead + time.Second) }, fields: []string{"send_at"}},
		{name: "an hour ago", edit: func(in *SendInput) { in.SendAt = at(-time.Hour) }, fields: []string{"send_at"}},
		{name: "a few seconds ago is now", edit: func(in *SendInput) { in.SendAt = at(-5 * time.Second) }, priority: PriorityNormal},
		{name: "validity from now", edit: func(in *SendInput) { in.ValidityPeriod = secs(600) }, until: at(10 * time.Minute), priority: PriorityNormal},
		{name: "validity from send_at", edit: func(in *SendInput) { in.SendAt, in.ValidityPeriod = at(time.Hour), secs(600) },
			scheduled: true, until: at(70 * time.Minute), priority: PriorityNormal},
		{name: "validity 0", edit: func(in *SendInput) { in.ValidityPeriod = secs(0) }, fields: []string{"validity_period"}},
		{name: "validity over a week", edit: func(in *SendInput) { in.ValidityPeriod = secs(MaxValidityPeriod + 1) }, fields: []string{"validity_period"}},
		{name: "high priority", edit: func(in *SendInput) { in.Priority = PriorityHigh }, priority: PriorityHigh},
		{name: "unknown priority", edit: func(in *SendInput) { in.Priority = "urgent" }, fields: []string{"priority"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := base
			tc.edit(&in)
			d, err := in.ValidateAt(nil, now)
			if tc.fields != nil {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Violations) != 1 || ve.Violations[0].Field != tc.fields[0] {
					t.Fatalf("ValidateAt = %v, want a violation of %v", err, tc.fields)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Scheduled(now) != tc.scheduled || d.Priority != tc.priority {
				t.Errorf("scheduled %v priority %q, want %v %q", d.Scheduled(now), d.Priority, tc.scheduled, tc.priority)
			}
			if (d.ValidUntil == nil) != (tc.until == nil) || d.ValidUntil != nil && !d.ValidUntil.Equal(*tc.until) {
				t.Errorf("valid until %v, want %v", d.ValidUntil, tc.until)
			}
		})
	}
}
