package sms

// Encoding is the character set an SMS travels in.
type Encoding string

const (
	// EncodingGSM7 is the GSM 03.38 default alphabet with its extension
	// table, packed at 7 bits a character.
	EncodingGSM7 Encoding = "GSM-7"
	// EncodingUCS2 is UTF-16, used when any character falls outside GSM-7.
	EncodingUCS2 Encoding = "UCS-2"
)

// Part sizes. A concatenated message spends 6 bytes of each part on the
// user data header, which leaves 153 septets or 67 UTF-16 code units.
const (
	gsm7Single = 160
	gsm7Part   = 153
	ucs2Single = 70
	ucs2Part   = 67
)

// gsm7ASCII holds the septet cost of each ASCII character: 1 for the basic
// table, 2 for the extension table (escape plus the character), 0 for
// characters GSM-7 cannot carry. Backtick and control characters other than
// LF, CR and form feed are the only ASCII characters missing.
var gsm7ASCII = [128]uint8{
	'\n': 1, '\r': 1, ' ': 1,
	'!': 1, '"': 1, '#': 1, '$': 1, '%': 1, '&': 1, '\'': 1,
	'(': 1, ')': 1, '*': 1, '+': 1, ',': 1, '-': 1, '.': 1, '/': 1,
	'0': 1, '1': 1, '2': 1, '3': 1, '4': 1, '5': 1, '6': 1, '7': 1, '8': 1, '9': 1,
	':': 1, ';': 1, '<': 1, '=': 1, '>': 1, '?': 1, '@': 1,
	'A': 1, 'B': 1, 'C': 1, 'D': 1, 'E': 1, 'F': 1, 'G': 1, 'H': 1, 'I': 1,
	'J': 1, 'K': 1, 'L': 1, 'M': 1, 'N': 1, 'O': 1, 'P': 1, 'Q': 1, 'R': 1,
	'S': 1, 'T': 1, 'U': 1, 'V': 1, 'W': 1, 'X': 1, 'Y': 1, 'Z': 1,
	'_': 1,
	'a': 1, 'b': 1, 'c': 1, 'd': 1, 'e': 1, 'f': 1, 'g': 1, 'h': 1, 'i': 1,
	'j': 1, 'k': 1, 'l': 1, 'm': 1, 'n': 1, 'o': 1, 'p': 1, 'q': 1, 'r': 1,
	's': 1, 't': 1, 'u': 1, 'v': 1, 'w': 1, 'x': 1, 'y': 1, 'z': 1,
	// Extension table.
	'\f': 2, '^': 2, '{': 2, '}': 2, '\\': 2, '[': 2, '~': 2, ']': 2, '|': 2,
}

// gsm7Cost returns the septets r takes in GSM-7, or 0 if GSM-7 cannot
// carry it.
func gsm7Cost(r rune) int {
	if r < 128 {
		return int(gsm7ASCII[r])
	}
	switch r {
	case '£', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', 'Ø', 'ø', 'Å', 'å',
		'Δ', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ',
		'Æ', 'æ', 'ß', 'É', '¤', '¡', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
		'¿', 'ä', 'ö', 'ñ', 'ü', 'à':
		return 1
	case '€':
		return 2
	}
	return 0
}

// Segments reports the encoding a text needs and how many SMS parts it
// takes. Text that fits GSM-7 entirely is counted in septets, anything else
// in UTF-16 code units as UCS-2. Long texts are split the way handsets and
// SMSCs split them: an escaped GSM-7 character or a UTF-16 surrogate pair is
// never cut in two, so it moves whole to the next part. Empty text takes no
// parts. Invalid UTF-8 counts as U+FFFD, which needs UCS-2.
func Segments(text string) (Encoding, int) {
	if text == "" {
		return EncodingGSM7, 0
	}
	total, parts, fill := 0, 1, 0
	for _, r := range text {
		n := gsm7Cost(r)
		if n == 0 {
			return EncodingUCS2, ucs2Segments(text)
		}
		total += n
		// A character that does not fit whole in the current part starts
		// the next one.
		if fill += n; fill > gsm7Part {
			parts++
			fill = n
		}
	}
	if total <= gsm7Single {
		return EncodingGSM7, 1
	}
	return EncodingGSM7, parts
}

// ucs2Segments counts the parts text takes as UCS-2, splitting it like
// Segments does for GSM-7.
func ucs2Segments(text string) int {
	total, parts, fill := 0, 1, 0
	for _, r := range text {
		// Range yields U+FFFD for invalid UTF-8, so r is always valid and
		// takes 1 unit, or 2 (a surrogate pair) above U+FFFF.
		n := 1
		if r > 0xFFFF {
			n = 2
		}
		total += n
		if fill += n; fill > ucs2Part {
			parts++
			fill = n
		}
	}
	if total <= ucs2Single {
		return 1
	}
	return parts
}
