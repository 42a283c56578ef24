package sms

import (
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Errors from NormalizePhone and NormalizeSender. Their text is a lowercase
// fragment meant to follow a field name, as in "recipient: " + err.Error().
var (
	// ErrPhoneCharacters reports a character other than digits, separators
	// and a leading plus.
	ErrPhoneCharacters = errors.New("must contain only digits, spaces, dashes, dots and parentheses after a leading +")
	// ErrPhoneFormat reports a number without a leading plus and country code.
	ErrPhoneFormat = errors.New("must be in international format starting with + and a country code")
	// ErrPhoneExitCode reports a number dialled with an international
	// prefix (00, or 011 from North America) instead of the plus.
	ErrPhoneExitCode = errors.New("must start with + and a country code: write the international prefix (00 or 011) as +")
	// ErrPhoneTooShort reports fewer than 2 digits.
	ErrPhoneTooShort = errors.New("must have at least 2 digits")
	// ErrPhoneTooLong reports more than the 15 digits E.164 allows.
	ErrPhoneTooLong = errors.New("must have at most 15 digits")
	// ErrPhoneCountryCode reports a country calling code that is not assigned.
	ErrPhoneCountryCode = errors.New("has an unknown country code")
	// ErrPhoneNotPossible reports a number whose length cannot be right for
	// its country, or that could be dialled only locally, within an area.
	ErrPhoneNotPossible = errors.New("is not a possible number for its country")

	// ErrSenderLength reports an alphanumeric sender ID that is empty or too long.
	ErrSenderLength = errors.New("alphanumeric sender ID must be 1 to 11 characters")
	// ErrSenderCharacters reports a character carriers do not accept in a
	// sender ID.
	ErrSenderCharacters = errors.New("alphanumeric sender ID may contain only letters, digits and spaces")
)

// E.164 bounds on the digits after the plus, country code included.
const (
	minPhoneDigits = 2
	maxPhoneDigits = 15
)

// maxSenderIDLen is the longest alphanumeric sender ID: 11 GSM-7 characters
// fill the 77 bits of the originating address field.
const maxSenderIDLen = 11

// NormalizePhone turns what people type ("+1 (415) 555-2671",
// "+44 20 7946 0958", "+33.1.23.45.67.89") into E.164 ("+14155552671"),
// returning an error that says what is wrong when it isn't a possible
// number. Only ASCII spaces, dashes, dots and parentheses are removed;
// anything else, such as letters or an extension, is rejected rather than
// guessed at. Possible means the length fits the country as a full
// national number, which is checked from metadata; whether the number is
// assigned is left to the carrier. A trunk prefix written after the
// country code, as in "+44 (0)20 7946 0958", is dropped.
func NormalizePhone(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	// At most 1 + 15 digits are kept, but the separators around them have
	// no bound, so count digits instead of sizing the buffer from s.
	var buf [1 + maxPhoneDigits]byte
	out := buf[:0]
	plus, digits := false, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		case c == '+' && !plus && digits == 0:
			plus = true
			out = append(out, c)
		case '0' <= c && c <= '9':
			digits++
			if digits <= maxPhoneDigits {
				out = append(out, c)
			}
		default:
			return "", ErrPhoneCharacters
		}
	}
	switch {
	case !plus && (strings.HasPrefix(string(out), "00") || strings.HasPrefix(string(out), "011")):
		return "", ErrPhoneExitCode
	case !plus:
		return "", ErrPhoneFormat
	case digits < minPhoneDigits:
		return "", ErrPhoneTooShort
	case digits > maxPhoneDigits:
		return "", ErrPhoneTooLong
	}
	if e164, ok := fastE164(string(out)); ok {
		return e164, nil
	}
	num, err := phonenumbers.Parse(string(out), "")
	if err != nil {
		// With a plus and 2 to 15 digits, parsing fails only on the country
		// code or a number too short to have a national part.
		if errors.Is(err, phonenumbers.ErrInvalidCountryCode) {
			return "", ErrPhoneCountryCode
		}
		return "", ErrPhoneNotPossible
	}
	if phonenumbers.GetRegionCodeForCountryCode(int(num.GetCountryCode())) == phonenumbers.UNKNOWN_REGION {
		return "", ErrPhoneCountryCode
	}
	// IsPossibleNumber would also accept a number that is only a local
	// subscriber number behind a country code ("+1 555 2671"), which cannot
	// be reached from abroad, so require the full length.
	if phonenumbers.IsPossibleNumberWithReason(num) != phonenumbers.IS_POSSIBLE {
		return "", ErrPhoneNotPossible
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if e164 == string(out) {
		return e164, nil
	}
	// Parse dropped a trunk prefix after the country code ("+44 (0)20"),
	// but it drops only one: with two, the result would lose another digit
	// each time it is normalized again. Such a number is not a real one;
	// reject it so stored numbers stay the same through any round trip.
	again, err := phonenumbers.Parse(e164, "")
	if err != nil || phonenumbers.Format(again, phonenumbers.E164) != e164 {
		return "", ErrPhoneNotPossible
	}
	return e164, nil
}

// NormalizeSender accepts a phone number (normalized as NormalizePhone
// does) or an alphanumeric sender ID: 1 to 11 characters of ASCII letters,
// digits and spaces with at least one letter, as carriers allow. IDs are
// returned trimmed but otherwise as given. Input that starts with a plus
// or has only digits and phone separators is taken for a phone number, so
// "4155552671" gets the phone error asking for a country code; that is
// also why an ID always has a letter.
func NormalizeSender(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if looksLikePhone(s) {
		return NormalizePhone(s)
	}
	if n := utf8.RuneCountInString(s); n == 0 || n > maxSenderIDLen {
		return "", ErrSenderLength
	}
	// Digits and spaces alone were taken for a phone number above, so what
	// passes here has a letter.
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == ' ':
		default:
			return "", ErrSenderCharacters
		}
	}
	return s, nil
}

// looksLikePhone reports whether a trimmed sender is meant as a phone
// number: it starts with a plus, or it is digits with phone separators.
func looksLikePhone(s string) bool {
	if strings.HasPrefix(s, "+") {
		return true
	}
	digits := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case '0' <= c && c <= '9':
			digits = true
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
		default:
			return false
		}
	}
	return digits
}
