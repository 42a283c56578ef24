package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/smsctl/smsctl/sms"
)

// The patterns the OpenAPI document gives for what the API returns.
var (
	specE164     = regexp.MustCompile(`^\+[1-9][0-9]{1,14}$`)
	specSenderID = regexp.MustCompile(`^[A-Za-z0-9 ]*[A-Za-z][A-Za-z0-9 ]*$`)
)

// FuzzDecodeAndValidate feeds arbitrary bytes to what POST /v1/messages
// does with a body: DecodeJSON, then SendInput.Validate. Nothing panics;
// every refusal is a 400 naming fields; and what is accepted is what the
// spec promises: E.164 phones (stable under normalizing again), a sender
// ID within the carrier rules, the text unchanged (never a replaced
// character) with its encoding and at least one segment.
func FuzzDecodeAndValidate(f *testing.F) {
	for _, seed := range []string{
		`{"sender":"+14155552671","recipient":"+442071838750","text":"Hello"}`,
		`{"sender":"+1 (415) 555-2671","recipient":"+44 20 7183 8750","text":"See you at 6."}`,
		`{"sender":"+33.1.23.45.67.89","recipient":"+1-415-555-2671","text":"€{}[]~|^\\"}`,
		`{"sender":"Acme Bank","recipient":"+14155552671","text":"Ваш код: 428913 😀"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"\ud83d\ude00\u00e9\n"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"\ud83d"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"\\ud800"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"a\u0000b"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"\ufffd"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"  "}`,
		`{"sender":1,"recipient":true,"text":{"a":[1]}}`,
		`{"TEXT":"x","Sender":"Acme","RECIPIENT":"+14155552671"}`,
		`{"sender":"+44 (0)20 7946 0958","recipient":"+82000000 0000","text":"x"}`,
		`{"sender":"Acme","recipient":"+14155552671","text":"x"} trailing`,
		`[{"text":"x"}]`,
		`null`,
		``,
		"{\"text\":\"\xff\"}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var in sms.SendInput
		err := DecodeJSON(body, &in)
		if err == nil {
			var d sms.Draft
			if d, err = in.Validate(); err == nil {
				checkDraft(t, body, in, d)
				return
			}
		}
		checkRefusal(t, err)
	})
}

// checkRefusal checks that err is one the API answers with 400.
func checkRefusal(t *testing.T, err error) {
	t.Helper()
	var ve *sms.ValidationError
	if !errors.As(err, &ve) && !errors.Is(err, sms.ErrMalformed) {
		t.Fatalf("error %v (%T) is neither a validation error nor a malformed body", err, err)
	}
	if p := ProblemFor(err); p == nil || p.Status != http.StatusBadRequest || p.Detail == "" {
		t.Fatalf("error %v maps to problem %+v, want a 400", err, p)
	}
	if ve == nil {
		return
	}
	if len(ve.Violations) == 0 {
		t.Fatal("a validation error without violations")
	}
	for _, v := range ve.Violations {
		if v.Field == "" || v.Message == "" {
			t.Fatalf("violation %+v lacks a field or a message", v)
		}
	}
}

// checkDraft checks an accepted message against the spec's promises.
func checkDraft(t *testing.T, body []byte, in sms.SendInput, d sms.Draft) {
	t.Helper()
	if !specE164.MatchString(d.Recipient) {
		t.Fatalf("recipient %q (from %q) is not E.164", d.Recipient, in.Recipient)
	}
	if again, err := sms.NormalizePhone(d.Recipient); err != nil || again != d.Recipient {
		t.Fatalf("recipient %q normalizes again to %q, %v", d.Recipient, again, err)
	}
	switch {
	case strings.HasPrefix(d.Sender, "+"):
		if !specE164.MatchString(d.Sender) {
			t.Fatalf("sender %q (from %q) is not E.164", d.Sender, in.Sender)
		}
		if again, err := sms.NormalizeSender(d.Sender); err != nil || again != d.Sender {
			t.Fatalf("sender %q normalizes again to %q, %v", d.Sender, again, err)
		}
	case !specSenderID.MatchString(d.Sender) || len(d.Sender) > 11 || d.Sender != strings.TrimSpace(d.Sender):
		t.Fatalf("sender %q (from %q) is neither E.164 nor a sender ID", d.Sender, in.Sender)
	}
	if d.Text != in.Text {
		t.Fatalf("text changed from %q to %q", in.Text, d.Text)
	}
	if n := utf8.RuneCountInString(d.Text); n < 1 || n > sms.MaxTextLength || !utf8.ValidString(d.Text) || strings.ContainsRune(d.Text, 0) ||
		strings.TrimSpace(d.Text) == "" {
		t.Fatalf("accepted text %q", d.Text)
	}
	// A replacement character in the text must have been sent as one,
	// never made up by the decoder.
	if strings.ContainsRune(d.Text, utf8.RuneError) && !bytes.Contains(body, []byte("\uFFFD")) &&
		!bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`)) {
		t.Fatalf("text %q has a U+FFFD the body %q did not", d.Text, body)
	}
	if enc, n := sms.Segments(d.Text); d.Segments < 1 || d.Segments != n || d.Encoding != enc ||
		(d.Encoding != sms.EncodingGSM7 && d.Encoding != sms.EncodingUCS2) {
		t.Fatalf("text %q: %s in %d segments (Segments says %s, %d)", d.Text, d.Encoding, d.Segments, enc, n)
	}
	// What the API answers decodes back to the same text.
	out, err := json.Marshal(d.Text)
	if err != nil {
		t.Fatal(err)
	}
	var back string
	if err := json.Unmarshal(out, &back); err != nil || back != d.Text {
		t.Fatalf("text %q does not survive the response: %q, %v", d.Text, back, err)
	}
}
