package sms

import (
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	custom := KeywordSettings{StopWords: []string{"STOP", "ARRET"}, StartWords: []string{}, HelpWords: []string{"AIDE"}}
	tests := []struct {
		name     string
		settings KeywordSettings
		text     string
		want     Keyword
	}{
		{"STOP", KeywordSettings{}, "STOP", KeywordStop},
		{"lower case", KeywordSettings{}, "stop", KeywordStop},
		{"mixed case", KeywordSettings{}, "sToP", KeywordStop},
		{"surrounding spaces", KeywordSettings{}, "  Stop \t", KeywordStop},
		{"surrounding newlines", KeywordSettings{}, "\nSTOP\r\n", KeywordStop},
		{"every default stop word", KeywordSettings{}, "stopall", KeywordStop},
		{"unsubscribe", KeywordSettings{}, "Unsubscribe", KeywordStop},
		{"cancel", KeywordSettings{}, "CANCEL", KeywordStop},
		{"end", KeywordSettings{}, "end", KeywordStop},
		{"quit", KeywordSettings{}, "Quit", KeywordStop},
		{"START", KeywordSettings{}, "START", KeywordStart},
		{"unstop", KeywordSettings{}, "unstop", KeywordStart},
		{"yes", KeywordSettings{}, " Yes ", KeywordStart},
		{"HELP", KeywordSettings{}, "help", KeywordHelp},
		{"INFO", KeywordSettings{}, "Info", KeywordHelp},
		{"stop please is not STOP", KeywordSettings{}, "stop please", ""},
		{"please stop is not STOP", KeywordSettings{}, "please stop", ""},
		{"STOP with punctuation is not STOP", KeywordSettings{}, "STOP!", ""},
		{"inner space", KeywordSettings{}, "S TOP", ""},
		{"empty", KeywordSettings{}, "", ""},
		{"spaces only", KeywordSettings{}, "   ", ""},
		{"a sentence", KeywordSettings{}, "Thanks, see you tomorrow", ""},
		{"custom stop word", custom, "arret", KeywordStop},
		{"custom list replaces the defaults", custom, "QUIT", ""},
		{"start turned off", custom, "START", ""},
		{"custom help", custom, "Aide", KeywordHelp},
		{"default help gone with a custom list", custom, "HELP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.settings.Classify(tt.text); got != tt.want {
				t.Errorf("Classify(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestReply(t *testing.T) {
	t.Parallel()
	var d KeywordSettings
	for k, want := range map[Keyword]string{KeywordStop: DefaultStopReply, KeywordStart: DefaultStartReply, KeywordHelp: DefaultHelpReply, "": ""} {
		if got := d.Reply(k); got != want {
			t.Errorf("default reply to %q = %q, want %q", k, got, want)
		}
	}
	custom := KeywordSettings{HelpReply: "Acme: call 555-0100"}
	if got := custom.Reply(KeywordHelp); got != "Acme: call 555-0100" {
		t.Errorf("custom help reply = %q", got)
	}
	if got := custom.Reply(KeywordStop); got != DefaultStopReply {
		t.Errorf("stop reply left to the default = %q", got)
	}
	// The defaults are one segment each, and no keyword themselves.
	for _, r := range []string{DefaultStopReply, DefaultStartReply, DefaultHelpReply} {
		if enc, n := Segments(r); enc != EncodingGSM7 || n != 1 {
			t.Errorf("%q is %s in %d segments, want one GSM-7 segment", r, enc, n)
		}
		if k := d.Classify(r); k != "" {
			t.Errorf("default reply %q is keyword %q", r, k)
		}
	}
}

func TestKeywordSettingsNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		in     KeywordSettings
		want   KeywordSettings
		fields []string
	}{
		{"all defaults", KeywordSettings{}, KeywordSettings{}, nil},
		{"words upper-cased and trimmed", KeywordSettings{StopWords: []string{" stop", "arrêt "}, HelpWords: []string{"aide"}},
			KeywordSettings{StopWords: []string{"STOP", "ARRÊT"}, HelpWords: []string{"AIDE"}}, nil},
		{"empty start list kept", KeywordSettings{StartWords: []string{}}, KeywordSettings{StartWords: []string{}}, nil},
		{"replies kept", KeywordSettings{HelpReply: "Acme support: 555-0100"}, KeywordSettings{HelpReply: "Acme support: 555-0100"}, nil},
		{"stop words without STOP", KeywordSettings{StopWords: []string{"QUIT"}}, KeywordSettings{}, []string{"stop_words"}},
		{"empty stop list", KeywordSettings{StopWords: []string{}}, KeywordSettings{}, []string{"stop_words"}},
		{"a word in two lists", KeywordSettings{StartWords: []string{"GO"}, HelpWords: []string{"go"}}, KeywordSettings{}, []string{"help_words[0]"}},
		{"a word with a space", KeywordSettings{HelpWords: []string{"HELP ME"}}, KeywordSettings{}, []string{"help_words[0]"}},
		{"an empty word", KeywordSettings{HelpWords: []string{" "}}, KeywordSettings{}, []string{"help_words[0]"}},
		{"a word too long", KeywordSettings{HelpWords: []string{strings.Repeat("H", MaxKeywordLength+1)}}, KeywordSettings{}, []string{"help_words[0]"}},
		{"too many words", KeywordSettings{HelpWords: slices.Repeat([]string{"H"}, MaxKeywords+1)}, KeywordSettings{}, []string{"help_words"}},
		{"a reply that is a keyword", KeywordSettings{StopReply: "yes"}, KeywordSettings{}, []string{"stop_reply"}},
		{"a reply that is a custom keyword", KeywordSettings{HelpWords: []string{"AIDE"}, HelpReply: " aide "}, KeywordSettings{}, []string{"help_reply"}},
		{"a reply with NUL", KeywordSettings{HelpReply: "a\x00b"}, KeywordSettings{}, []string{"help_reply"}},
		{"a reply too long", KeywordSettings{HelpReply: strings.Repeat("a", MaxTextLength+1)}, KeywordSettings{}, []string{"help_reply"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.Normalize()
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Normalize: %v", err)
				}
				if !slices.Equal(got.StopWords, tt.want.StopWords) || !slices.Equal(got.StartWords, tt.want.StartWords) ||
					!slices.Equal(got.HelpWords, tt.want.HelpWords) || (got.StartWords == nil) != (tt.want.StartWords == nil) ||
					got.StopReply != tt.want.StopReply || got.HelpReply != tt.want.HelpReply || got.StartReply != tt.want.StartReply {
					t.Errorf("Normalize = %+v, want %+v", got, tt.want)
				}
				return
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Normalize: %v, want violations of %v", err, tt.fields)
			}
			var fields []string
			for _, v := range ve.Violations {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("violations %v, want %v", ve.Violations, tt.fields)
			}
		})
	}
}

func TestInboundReportNormalize(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("X", 3600))
	valid := InboundReport{From: "+1 (415) 555-2671", To: "+44 20 7183 8750", Text: "STOP", ReceivedAt: at, CarrierMessageID: " abc-1 "}
	got, err := valid.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	want := InboundReport{From: "+14155552671", To: "+442071838750", Text: "STOP", ReceivedAt: at.UTC().Truncate(time.Microsecond), CarrierMessageID: "abc-1"}
	if got != want {
		t.Errorf("Normalize = %+v, want %+v", got, want)
	}
	longest := valid
	longest.CarrierMessageID = strings.Repeat("é", MaxCarrierMessageID) // counted in characters, not bytes
	if _, err := longest.Normalize(); err != nil {
		t.Errorf("a carrier id of %d characters: %v", MaxCarrierMessageID, err)
	}
	tests := []struct {
		name   string
		edit   func(*InboundReport)
		fields []string
	}{
		{"everything missing", func(r *InboundReport) { *r = InboundReport{} }, []string{"from", "to", "text", "received_at", "carrier_message_id"}},
		{"from not a phone", func(r *InboundReport) { r.From = "Acme" }, []string{"from"}},
		{"to without country code", func(r *InboundReport) { r.To = "4155552671" }, []string{"to"}},
		{"text too long", func(r *InboundReport) { r.Text = strings.Repeat("x", MaxTextLength+1) }, []string{"text"}},
		{"text with NUL", func(r *InboundReport) { r.Text = "a\x00" }, []string{"text"}},
		{"text not UTF-8", func(r *InboundReport) { r.Text = "\xff" }, []string{"text"}},
		{"carrier id too long", func(r *InboundReport) { r.CarrierMessageID = strings.Repeat("é", MaxCarrierMessageID+1) }, []string{"carrier_message_id"}},
		{"carrier id too long with the white space around it", func(r *InboundReport) { r.CarrierMessageID = " " + strings.Repeat("x", MaxCarrierMessageID) }, []string{"carrier_message_id"}},
		{"carrier id with a control character", func(r *InboundReport) { r.CarrierMessageID = "a\nb" }, []string{"carrier_message_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := valid
			tt.edit(&r)
			_, err := r.Normalize()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Normalize: %v, want violations", err)
			}
			var fields []string
			for _, v := range ve.Violations {
				fields = append(fields, v.Field)
			}
			if !slices.Equal(fields, tt.fields) {
				t.Errorf("violations %v, want %v", ve.Violations, tt.fields)
			}
		})
	}
	// A text of exactly the limit, and a whitespace text, are what the handset sent.
	for _, text := range []string{strings.Repeat("ж", MaxTextLength), " "} {
		r := valid
		r.Text = text
		if _, err := r.Normalize(); err != nil {
			t.Errorf("text of %d characters: %v", len([]rune(text)), err)
		}
	}
}

func TestOptedOut(t *testing.T) {
	t.Parallel()
	err := OptedOut("+14155552671")
	if !errors.Is(err, ErrOptedOut) || ErrorCode(err) != CodeUnprocessable {
		t.Errorf("OptedOut: %v is not ErrOptedOut (code %s)", err, ErrorCode(err))
	}
	if !strings.Contains(err.Error(), "+14155552671") {
		t.Errorf("OptedOut does not name the recipient: %v", err)
	}
	if errors.Is(ErrIdempotencyMismatch, ErrOptedOut) {
		t.Error("another unprocessable kind matches ErrOptedOut")
	}
}

func TestSuppressionCursor(t *testing.T) {
	t.Parallel()
	c := SuppressionCursor{CreatedAt: time.UnixMicro(1767225600123456).UTC(), Phone: "+14155552671"}
	got, err := ParseSuppressionCursor(c.String())
	if err != nil || got != c {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, c)
	}
	nonCanonical := base64.RawURLEncoding.EncodeToString([]byte("+1767225600123456.+14155552671"))
	for _, bad := range []string{"", "!!", "MTIz", Cursor{}.String(), nonCanonical} {
		if _, err := ParseSuppressionCursor(bad); err == nil {
			t.Errorf("ParseSuppressionCursor(%q) accepted", bad)
		}
	}
}

func TestNormalizeReason(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": ReasonManual, "  ": ReasonManual, " imported from Acme CRM ": "imported from Acme CRM"} {
		if got, err := NormalizeReason(in); err != nil || got != want {
			t.Errorf("NormalizeReason(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{strings.Repeat("r", MaxReasonLength+1), "a\x00b", "line\nbreak"} {
		if _, err := NormalizeReason(bad); err == nil {
			t.Errorf("NormalizeReason(%q) accepted", bad)
		}
	}
}
