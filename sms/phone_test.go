package sms

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string
		err  error
	}{
		{"US separators", "+1 (415) 555-2671", "+14155552671", nil},
		{"US dots", "+1.415.555.2671", "+14155552671", nil},
		{"US plain with surrounding space", " \t+14155552671\n", "+14155552671", nil},
		{"US plus in parentheses", "(+1) 415 555 2671", "+14155552671", nil},
		{"UK landline", "+44 20 7946 0958", "+442079460958", nil},
		{"UK trunk zero dropped", "+44 (0)20 7946 0958", "+442079460958", nil},
		{"UK mobile", "+44 7911 123456", "+447911123456", nil},
		{"FR dots", "+33.1.23.45.67.89", "+33123456789", nil},
		{"FR mobile", "+33 6 12 34 56 78", "+33612345678", nil},
		{"DE landline", "+49 (30) 1234-5678", "+493012345678", nil},
		{"DE mobile", "+49 1512 3456789", "+4915123456789", nil},
		{"IN mobile", "+91 98765 43210", "+919876543210", nil},
		{"BR mobile", "+55 (11) 98765-4321", "+5511987654321", nil},
		{"IT leading zero kept", "+39 06 1234 5678", "+390612345678", nil},
		{"non-geographic", "+800 1234 5678", "+80012345678", nil},

		{"empty", "", "", ErrPhoneFormat},
		{"blank", "   ", "", ErrPhoneFormat},
		{"no plus", "12345", "", ErrPhoneFormat},
		{"00 instead of +", "00441234567890", "", ErrPhoneExitCode},
		{"011 instead of +", "011 44 20 7946 0958", "", ErrPhoneExitCode},
		{"national number with a trunk 0", "020 7946 0958", "", ErrPhoneFormat},
		{"national format", "(415) 555-2671", "", ErrPhoneFormat},
		{"separators only", "()-.", "", ErrPhoneFormat},
		{"plus only", "+", "", ErrPhoneTooShort},
		{"one digit", "+1", "", ErrPhoneTooShort},
		{"16 digits", "+1234567890123456", "", ErrPhoneTooLong},
		{"16 digits with separators", "+1 234 567 890 123 456", "", ErrPhoneTooLong},
		{"country code zero", "+0123456789", "", ErrPhoneCountryCode},
		{"unassigned country code", "+999 123 456", "", ErrPhoneCountryCode},
		{"unassigned country code 2", "+803 123 456", "", ErrPhoneCountryCode},
		{"letters", "+1415555CALL", "", ErrPhoneCharacters},
		{"extension", "+1 415 555 2671 ext 3", "", ErrPhoneCharacters},
		{"extension x", "+1 415 555 2671x3", "", ErrPhoneCharacters},
		{"slashes", "+1/415/555/2671", "", ErrPhoneCharacters},
		{"hash", "+14155552671#", "", ErrPhoneCharacters},
		{"star", "*+14155552671", "", ErrPhoneCharacters},
		{"tab inside", "+1\t4155552671", "", ErrPhoneCharacters},
		{"no-break space inside", "+1\u00a04155552671", "", ErrPhoneCharacters},
		{"arabic-indic digits", "+١٤١٥٥٥٥٢٦٧١", "", ErrPhoneCharacters},
		{"fullwidth digits", "+１４１５５５５２６７１", "", ErrPhoneCharacters},
		{"fullwidth plus", "＋14155552671", "", ErrPhoneCharacters},
		{"two pluses", "++14155552671", "", ErrPhoneCharacters},
		{"plus inside", "1+4155552671", "", ErrPhoneCharacters},
		{"invalid UTF-8", "+1415\xff5552671", "", ErrPhoneCharacters},
		{"country code alone", "+44", "", ErrPhoneNotPossible},
		{"US too short", "+1 415 555 267", "", ErrPhoneNotPossible},
		{"US too long", "+1 415 555 26710", "", ErrPhoneNotPossible},
		// Possible only when dialled locally, without the area code.
		{"US local only", "+1 555 2671", "", ErrPhoneNotPossible},
		{"UK local only", "+44 20 7946", "", ErrPhoneNotPossible},
		{"non-geographic too short", "+882 123456", "", ErrPhoneNotPossible},
		// Found by fuzzing: each parse drops one more trunk prefix 0, so the
		// result would not normalize to itself.
		{"trunk prefix twice", "+82000000 0000", "", ErrPhoneNotPossible},
		{"KR trunk prefix once", "+82 (0)2 312 3456", "+8223123456", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizePhone(tt.raw)
			if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("NormalizePhone(%q) = %q, %v; want %q, %v", tt.raw, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNormalizeSender(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string
		err  error
	}{
		{"word", "ACME", "ACME", nil},
		{"with space", "Acme Bank", "Acme Bank", nil},
		{"letters and digits", "MyShop24", "MyShop24", nil},
		{"trimmed", "  ACME \n", "ACME", nil},
		{"one letter", "A", "A", nil},
		{"eleven", "ABCDEFGHIJK", "ABCDEFGHIJK", nil},
		{"leading digit", "24Shop", "24Shop", nil},
		{"phone", "+1 (415) 555-2671", "+14155552671", nil},
		{"phone trimmed", " +44 20 7946 0958 ", "+442079460958", nil},

		{"empty", "", "", ErrSenderLength},
		{"blank", " ", "", ErrSenderLength},
		{"twelve", "ABCDEFGHIJKL", "", ErrSenderLength},
		{"twelve with space", "Acme Bank UK", "", ErrSenderLength},
		{"non-ASCII letter", "Caf\u00e9", "", ErrSenderCharacters},
		{"eleven runes non-ASCII", "ABCDEFGHIJé", "", ErrSenderCharacters},
		{"punctuation", "Acme-Bank", "", ErrSenderCharacters},
		{"ampersand", "A&B", "", ErrSenderCharacters},
		{"tab inside", "Acme\tBank", "", ErrSenderCharacters},
		{"digits only", "12345", "", ErrPhoneFormat},
		{"digits and spaces", "415 555 2671", "", ErrPhoneFormat},
		{"national phone", "(415) 555-2671", "", ErrPhoneFormat},
		{"plus and letters", "+ACME", "", ErrPhoneCharacters},
		{"phone too long", "+1234567890123456", "", ErrPhoneTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeSender(tt.raw)
			if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Errorf("NormalizeSender(%q) = %q, %v; want %q, %v", tt.raw, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestNormalizePhoneLongInput(t *testing.T) {
	t.Parallel()
	// Separators are unbounded; digits past 15 must not overflow the buffer.
	raw := "+1" + strings.Repeat(" ", 1<<16) + strings.Repeat("9", 1000)
	if _, err := NormalizePhone(raw); !errors.Is(err, ErrPhoneTooLong) {
		t.Errorf("NormalizePhone(long) error = %v, want %v", err, ErrPhoneTooLong)
	}
}

func TestNormalizePhoneRoundTrip(t *testing.T) {
	t.Parallel()
	// Random digit strings reach far more of the phone metadata than
	// hand-picked cases; whatever is accepted must normalize to itself.
	r := rand.New(rand.NewPCG(1, 2))
	n := 5000
	if testing.Short() {
		n = 500
	}
	accepted := 0
	for range n {
		b := []byte{'+'}
		for range 2 + r.IntN(maxPhoneDigits-1) {
			b = append(b, byte('0'+r.IntN(10)))
		}
		got, err := NormalizePhone(string(b))
		if err != nil {
			if !knownPhoneError(err) {
				t.Fatalf("NormalizePhone(%q) returned unexpected error %v", b, err)
			}
			continue
		}
		accepted++
		checkE164(t, string(b), got)
	}
	if accepted == 0 {
		t.Error("no random number was accepted")
	}
}

func BenchmarkNormalizePhone(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NormalizePhone("+1 (415) 555-2671"); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{
		"", "+", "+1", "+14155552671", "+1 (415) 555-2671", "+44 (0)20 7946 0958",
		"+33.1.23.45.67.89", "+0123456789", "+999 123 456", "+1234567890123456",
		"+1415555CALL", "+١٤١٥٥٥٥٢٦٧١", "+39 06 1234 5678", "+800 1234 5678",
		"+111111111111111", "+44 00 00", "ACME", "12345", "+1\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePhone(raw)
		if err != nil {
			if got != "" {
				t.Fatalf("NormalizePhone(%q) = %q with error %v", raw, got, err)
			}
			if !knownPhoneError(err) {
				t.Fatalf("NormalizePhone(%q) returned unexpected error %v", raw, err)
			}
		} else {
			checkE164(t, raw, got)
		}

		// Arbitrary strings rarely get past the character checks, so also
		// map the input onto a plus and up to 15 digits to exercise the
		// parsing and metadata behind them.
		digits := []byte{'+'}
		for i := 0; i < len(raw) && i < maxPhoneDigits; i++ {
			digits = append(digits, '0'+raw[i]%10)
		}
		if got, err := NormalizePhone(string(digits)); err == nil {
			checkE164(t, string(digits), got)
		} else if !knownPhoneError(err) {
			t.Fatalf("NormalizePhone(%q) returned unexpected error %v", digits, err)
		}

		// A sender that looks like a phone number gets exactly the phone
		// result; any other sender is an ID returned trimmed.
		sender, serr := NormalizeSender(raw)
		if looksLikePhone(strings.TrimSpace(raw)) {
			if want, werr := NormalizePhone(strings.TrimSpace(raw)); sender != want || !errors.Is(serr, werr) {
				t.Fatalf("NormalizeSender(%q) = %q, %v; NormalizePhone gives %q, %v", raw, sender, serr, want, werr)
			}
		} else if serr == nil {
			if sender != strings.TrimSpace(raw) || len(sender) < 1 || len(sender) > 11 {
				t.Fatalf("NormalizeSender(%q) = %q", raw, sender)
			}
			letter := false
			for _, c := range []byte(sender) {
				switch {
				case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
					letter = true
				case '0' <= c && c <= '9', c == ' ':
				default:
					t.Fatalf("NormalizeSender(%q) = %q, which has %q", raw, sender, c)
				}
			}
			if !letter {
				t.Fatalf("NormalizeSender(%q) = %q, which has no letter", raw, sender)
			}
		}
	})
}

// checkE164 fails unless got is a plus and 2 to 15 digits that normalize to
// themselves.
func checkE164(t *testing.T, raw, got string) {
	t.Helper()
	if len(got) < 3 || len(got) > 16 || got[0] != '+' {
		t.Fatalf("NormalizePhone(%q) = %q, not E.164", raw, got)
	}
	for _, c := range []byte(got[1:]) {
		if c < '0' || c > '9' {
			t.Fatalf("NormalizePhone(%q) = %q, not E.164", raw, got)
		}
	}
	again, err := NormalizePhone(got)
	if again != got || err != nil {
		t.Fatalf("NormalizePhone(%q) = %q, but NormalizePhone(%q) = %q, %v", raw, got, got, again, err)
	}
}

func knownPhoneError(err error) bool {
	for _, e := range []error{
		ErrPhoneCharacters, ErrPhoneFormat, ErrPhoneTooShort, ErrPhoneTooLong,
		ErrPhoneCountryCode, ErrPhoneNotPossible,
	} {
		if err == e {
			return true
		}
	}
	return false
}
