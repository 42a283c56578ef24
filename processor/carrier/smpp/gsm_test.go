package smpp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/smsctl/smsctl/sms"
)

// TestGSMTableAgreesWithSegments checks that every character sms.Segments
// counts as GSM-7 can be encoded, at the width it counted: otherwise the
// parts sent would not be the parts promised.
func TestGSMTableAgreesWithSegments(t *testing.T) {
	for r := rune(0); r < 0x2200; r++ {
		s := string(r)
		if enc, _ := sms.Segments(s); enc != sms.EncodingGSM7 {
			continue
		}
		septets, ok := gsmEncode[r]
		if !ok {
			t.Errorf("%q: GSM-7 for sms.Segments, missing from the table", r)
			continue
		}
		// 80 characters fit one SMS at width 2 and 160 at width 1: the
		// part count of 81 copies tells the width sms.Segments used.
		_, n := sms.Segments(strings.Repeat(s, 81))
		if width := map[int]int{1: 1, 2: 2}[n]; width != len(septets) {
			t.Errorf("%q: %d septets here, sms.Segments counts %d parts for 81", r, len(septets), n)
		}
		if got := decodeGSM(septets); got != s {
			t.Errorf("%q: decodes back as %q", r, got)
		}
	}
	if _, ok := gsmEncode['`']; ok {
		t.Error("backtick is not in GSM 03.38")
	}
}

// TestSplitText checks the parts of long texts: as many as sms.Segments
// counted, none over its size, no escape or surrogate pair cut, and the
// text whole again when the parts are joined.
func TestSplitText(t *testing.T) {
	for _, tc := range []struct {
		name, text string
	}{
		{"empty", ""},
		{"one part", "Hello"},
		{"160 septets", strings.Repeat("a", 160)},
		{"161 septets", strings.Repeat("a", 161)},
		{"escape at 160", strings.Repeat("a", 158) + "€"},
		{"escape over 160", strings.Repeat("a", 159) + "€"},
		{"escape across the first boundary", strings.Repeat("a", 152) + "€" + strings.Repeat("b", 10)},
		{"escapes only", strings.Repeat("{}", 100)},
		{"escape across the second boundary", strings.Repeat("a", 305) + "[" + strings.Repeat("c", 5)},
		{"ucs2 70", strings.Repeat("ж", 70)},
		{"ucs2 71", strings.Repeat("ж", 71)},
		{"emoji across the boundary", strings.Repeat("ж", 66) + "😀" + strings.Repeat("ы", 5)},
		{"emoji only", strings.Repeat("😀", 70)},
		{"emoji at 70", strings.Repeat("ж", 68) + "😀"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enc, want := sms.Segments(tc.text)
			coding, parts, err := splitText(tc.text, enc)
			if err != nil {
				t.Fatal(err)
			}
			if want == 0 {
				want = 1 // an empty text is still one (empty) SMS
			}
			if len(parts) != want {
				t.Fatalf("%d parts, sms.Segments counted %d", len(parts), want)
			}
			limit := map[bool]int{true: 153, false: 160}[len(parts) > 1]
			if enc == sms.EncodingUCS2 {
				limit = map[bool]int{true: 134, false: 140}[len(parts) > 1]
			}
			var joined []byte
			for i, p := range parts {
				if len(p) > limit {
					t.Errorf("part %d: %d octets, more than %d", i+1, len(p), limit)
				}
				switch enc {
				case sms.EncodingGSM7:
					if coding != codingGSM {
						t.Errorf("data_coding %d, want 0", coding)
					}
					if len(p) > 0 && p[len(p)-1] == gsmEscape {
						t.Errorf("part %d ends with an escape", i+1)
					}
				case sms.EncodingUCS2:
					if coding != codingUCS2 {
						t.Errorf("data_coding %d, want 8", coding)
					}
					if u := uint16(p[len(p)-2])<<8 | uint16(p[len(p)-1]); u >= 0xD800 && u <= 0xDBFF {
						t.Errorf("part %d ends with a high surrogate", i+1)
					}
				}
				joined = append(joined, p...)
			}
			back := decodeGSM(joined)
			if enc == sms.EncodingUCS2 {
				back = decodeUCS2(joined)
			}
			if back != tc.text {
				t.Errorf("joined parts read %q", back)
			}
		})
	}
}

func TestSplitTextRefusesNonGSMAsGSM(t *testing.T) {
	if _, _, err := splitText("price: 5`", sms.EncodingGSM7); err == nil {
		t.Fatal("a backtick was encoded as GSM-7")
	}
}

func TestUnpackedGSMOctets(t *testing.T) {
	_, parts, err := splitText("Hi €[@$", sms.EncodingGSM7)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x48, 0x69, 0x20, 0x1B, 0x65, 0x1B, 0x3C, 0x00, 0x02}
	if !bytes.Equal(parts[0], want) {
		t.Errorf("octets % x, want % x", parts[0], want)
	}
}

func TestDecodeText(t *testing.T) {
	for _, tc := range []struct {
		name   string
		coding byte
		octets []byte
		want   string
		text   bool
	}{
		{"gsm with escapes", 0x00, []byte{0x48, 0x69, 0x20, 0x1B, 0x65, 0x1B, 0x3C, 0x00}, "Hi €[@", true},
		{"gsm unknown escape reads the basic character", 0x00, []byte{0x1B, 0x41}, "A", true},
		{"latin-1", 0x03, []byte("caf\xe9"), "café", true},
		{"ia5", 0x01, []byte("STOP"), "STOP", true},
		{"ucs-2 with a surrogate pair", 0x08, []byte{0x04, 0x1F, 0xD8, 0x3D, 0xDE, 0x00}, "П😀", true},
		{"gsm group F", 0xF1, []byte{0x41}, "A", true},
		{"gsm general group with class", 0x18, []byte{0x00, 0x41}, "A", true},
		{"binary reads as latin-1", 0x04, []byte{0x41, 0xFF}, "Aÿ", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, text := decodeText(tc.coding, tc.octets)
			if got != tc.want || text != tc.text {
				t.Errorf("decodeText = %q, %v; want %q, %v", got, text, tc.want, tc.text)
			}
		})
	}
}
