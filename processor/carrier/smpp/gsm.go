package smpp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/linxGnu/gosmpp/data"

	"github.com/smsctl/smsctl/sms"
)

// gsmBasic is the GSM 03.38 default alphabet, indexed by septet.
var gsmBasic = [128]rune{
	'@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å',
	'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', 0x1B, 'Æ', 'æ', 'ß', 'É',
	' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/',
	'0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?',
	'¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O',
	'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§',
	'¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
	'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
}

// gsmExtension is the extension table: the septet after the 0x1B escape.
var gsmExtension = map[byte]rune{
	0x0A: '\f', 0x14: '^', 0x28: '{', 0x29: '}', 0x2F: '\\',
	0x3C: '[', 0x3D: '~', 0x3E: ']', 0x40: '|', 0x65: '€',
}

const gsmEscape = 0x1B

// gsmEncode maps runes to their septets, one or two (escape first).
var gsmEncode = func() map[rune][]byte {
	m := make(map[rune][]byte, 140)
	for i, r := range gsmBasic {
		if i != gsmEscape {
			m[r] = []byte{byte(i)}
		}
	}
	for b, r := range gsmExtension {
		m[r] = []byte{gsmEscape, b}
	}
	return m
}()

// Single-message and per-part capacities: a part spends 6 octets on the
// concatenation header (8-bit reference), as sms.Segments counts.
const (
	gsmSingle  = 160
	gsmPart    = 153
	ucs2Single = 70
	ucs2Part   = 67
	maxParts   = 255
)

// SMPP data_coding values.
const (
	codingGSM      byte = 0x00
	codingIA5      byte = 0x01
	codingLatin1   byte = 0x03
	codingUCS2     byte = 0x08
	codingCyrillic byte = 0x06
	codingHebrew   byte = 0x07
)

// errNotGSM is text that GSM-7 cannot carry, sent as GSM-7.
var errNotGSM = errors.New("text has characters GSM-7 cannot carry")

// splitText encodes text for enc and cuts it into the parts of one SMS
// each: GSM-7 unpacked (one septet an octet, data_coding 0) or UTF-16BE
// (data_coding 8). Like sms.Segments, it fills each part and moves a
// character that does not fit whole (an escaped GSM character, a surrogate
// pair) to the next, so it makes as many parts as sms.Segments counted.
func splitText(text string, enc sms.Encoding) (coding byte, parts [][]byte, err error) {
	var units [][]byte // the encoded form of each character, kept whole
	var single, part int
	switch enc {
	case sms.EncodingGSM7:
		coding, single, part = codingGSM, gsmSingle, gsmPart
		for _, r := range text {
			septets, ok := gsmEncode[r]
			if !ok {
				return 0, nil, fmt.Errorf("%w: %q", errNotGSM, r)
			}
			units = append(units, septets)
		}
	case sms.EncodingUCS2:
		// Counted in octets here: two per UTF-16 unit.
		coding, single, part = codingUCS2, 2*ucs2Single, 2*ucs2Part
		for _, r := range text {
			var b []byte
			for _, u := range utf16.Encode([]rune{r}) {
				b = append(b, byte(u>>8), byte(u))
			}
			units = append(units, b)
		}
	default:
		return 0, nil, fmt.Errorf("unknown encoding %q", enc)
	}
	total := 0
	for _, u := range units {
		total += len(u)
	}
	if total <= single {
		return coding, [][]byte{joinUnits(units)}, nil
	}
	var cur []byte
	for _, u := range units {
		if len(cur)+len(u) > part {
			parts = append(parts, cur)
			cur = nil
		}
		cur = append(cur, u...)
	}
	parts = append(parts, cur)
	if len(parts) > maxParts {
		return 0, nil, fmt.Errorf("text needs %d parts, more than %d", len(parts), maxParts)
	}
	return coding, parts, nil
}

func joinUnits(units [][]byte) []byte {
	var b []byte
	for _, u := range units {
		b = append(b, u...)
	}
	return b
}

// decodeGSM reads unpacked GSM 03.38 septets. An escape followed by a
// septet the extension table lacks reads as that septet's basic character,
// as 03.38 asks of receivers.
func decodeGSM(b []byte) string {
	var s strings.Builder
	for i := 0; i < len(b); i++ {
		c := b[i] & 0x7F
		if c == gsmEscape && i+1 < len(b) {
			i++
			next := b[i] & 0x7F
			if r, ok := gsmExtension[next]; ok {
				s.WriteRune(r)
			} else if next != gsmEscape {
				s.WriteRune(gsmBasic[next])
			}
			continue
		}
		if c != gsmEscape {
			s.WriteRune(gsmBasic[c])
		}
	}
	return s.String()
}

// decodeLatin1 reads ISO-8859-1, where each octet is its code point.
func decodeLatin1(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = rune(c)
	}
	return string(r)
}

// decodeUCS2 reads UTF-16BE; surrogate pairs make one character, and a
// lone odd octet at the end is dropped.
func decodeUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	return string(utf16.Decode(u))
}

// decodeText reads an inbound message's user data by its data_coding.
// Codings not meant as text (binary, unknown) read as Latin-1 so that
// nothing is lost; ok reports whether the coding was a text one.
func decodeText(coding byte, b []byte) (text string, ok bool) {
	switch {
	case coding == codingGSM:
		return decodeGSM(b), true
	case coding == codingIA5 || coding == codingLatin1:
		return decodeLatin1(b), true
	case coding == codingUCS2:
		return decodeUCS2(b), true
	case coding == codingCyrillic || coding == codingHebrew:
		if s, err := data.FromDataCoding(coding).Decode(b); err == nil {
			return s, true
		}
	case coding&0xF0 == 0xF0:
		// GSM 03.38 data coding group F: bit 2 clear means the default
		// alphabet, set means 8-bit data.
		if coding&0x04 == 0 {
			return decodeGSM(b), true
		}
	case coding&0xF0 == 0x10:
		// GSM 03.38 general group with a message class, uncompressed:
		// bits 3-2 say the alphabet. (0x00-0x0F are SMPP's own values.)
		switch coding & 0x0C {
		case 0x00:
			return decodeGSM(b), true
		case 0x08:
			return decodeUCS2(b), true
		}
	}
	return decodeLatin1(b), false
}
