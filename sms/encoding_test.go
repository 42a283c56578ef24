package sms

import (
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// gsm7Basic is the GSM 03.38 default alphabet in code order, 0x00 to 0x7F,
// without 0x1B (the escape to the extension table). It is written out
// independently of the lookup table in encoding.go so each checks the other.
const gsm7Basic = "@£$¥èéùìòÇ\nØø\rÅå" +
	"Δ_ΦΓΛΩΠΨΣΘΞ" + /* 0x1B escape */ "ÆæßÉ" +
	" !\"#¤%&'()*+,-./" +
	"0123456789:;<=>?" +
	"¡ABCDEFGHIJKLMNO" +
	"PQRSTUVWXYZÄÖÑÜ§" +
	"¿abcdefghijklmno" +
	"pqrstuvwxyzäöñüà"

// gsm7Extension is the GSM 03.38 extension table, 2 septets each.
const gsm7Extension = "\f^{}\\[~]|€"

func TestGSM7Tables(t *testing.T) {
	t.Parallel()
	if n := utf8.RuneCountInString(gsm7Basic); n != 127 {
		t.Fatalf("gsm7Basic has %d characters, want 127", n)
	}
	in := map[rune]int{}
	for _, r := range gsm7Basic {
		in[r] = 1
	}
	for _, r := range gsm7Extension {
		in[r] = 2
	}
	if len(in) != 127+10 {
		t.Fatalf("tables share or repeat characters: %d distinct, want 137", len(in))
	}
	// Every rune up to U+FFFF plus a few above: the lookup must agree with
	// the written-out tables exactly.
	for r := rune(0); r <= 0x10FFFF; r++ {
		if r > 0xFFFF && r%0x1000 != 0 {
			continue
		}
		if got, want := gsm7Cost(r), in[r]; got != want {
			t.Errorf("gsm7Cost(%U %q) = %d, want %d", r, r, got, want)
		}
	}
}

func TestSegments(t *testing.T) {
	t.Parallel()
	rep := strings.Repeat
	tests := []struct {
		name     string
		text     string
		enc      Encoding
		segments int
	}{
		{"empty", "", EncodingGSM7, 0},
		{"one char", "a", EncodingGSM7, 1},
		{"whole basic table", gsm7Basic, EncodingGSM7, 1},
		{"whole extension table", gsm7Extension, EncodingGSM7, 1},
		{"160 GSM", rep("a", 160), EncodingGSM7, 1},
		{"161 GSM", rep("a", 161), EncodingGSM7, 2},
		{"306 GSM", rep("a", 306), EncodingGSM7, 2},
		{"307 GSM", rep("a", 307), EncodingGSM7, 3},
		{"459 GSM", rep("a", 459), EncodingGSM7, 3},
		{"460 GSM", rep("a", 460), EncodingGSM7, 4},
		{"80 euro is 160 septets", rep("€", 80), EncodingGSM7, 1},
		{"81 euro is 162 septets", rep("€", 81), EncodingGSM7, 2},
		{"159 a and euro is 161 septets", rep("a", 159) + "€", EncodingGSM7, 2},
		{"158 a and euro is 160 septets", rep("a", 158) + "€", EncodingGSM7, 1},
		// 306 septets would be 2 parts, but the euro does not fit in the
		// last septet of part 1, which pushes one septet into part 3.
		{"escape not split", rep("a", 152) + "€" + rep("a", 152), EncodingGSM7, 3},
		{"escape fits exactly", rep("a", 151) + "€" + rep("a", 153), EncodingGSM7, 2},
		{"brackets are escapes", rep("[", 80), EncodingGSM7, 1},
		{"brackets over", rep("[", 80) + "]", EncodingGSM7, 2},
		{"greek capitals", "ΔΦΓΛΩΠΨΣΘΞ", EncodingGSM7, 1},
		{"CR LF", "line one\r\nline two\n", EncodingGSM7, 1},
		{"accents in table", "Déjà vu, señor? Ça où ¿qué?", EncodingGSM7, 1},
		{"lowercase c cedilla", "ça", EncodingUCS2, 1},
		{"a acute", "á", EncodingUCS2, 1},
		{"greek alpha looks latin", "Α", EncodingUCS2, 1},
		{"backtick", "`", EncodingUCS2, 1},
		{"tab", "a\tb", EncodingUCS2, 1},
		{"escape control", "\x1b", EncodingUCS2, 1},
		{"invalid UTF-8", "a\xffb", EncodingUCS2, 1},
		{"one non-GSM char switches all", rep("a", 100) + "á", EncodingUCS2, 2},
		{"70 UCS-2", rep("ж", 70), EncodingUCS2, 1},
		{"71 UCS-2", rep("ж", 71), EncodingUCS2, 2},
		{"134 UCS-2", rep("ж", 134), EncodingUCS2, 2},
		{"135 UCS-2", rep("ж", 135), EncodingUCS2, 3},
		{"35 emoji are 70 units", rep("😀", 35), EncodingUCS2, 1},
		{"36 emoji are 72 units", rep("😀", 36), EncodingUCS2, 2},
		{"67 emoji are 134 units", rep("😀", 67), EncodingUCS2, 3},
		// 134 units would be 2 parts, but the pair does not fit in the last
		// unit of part 1.
		{"surrogate pair not split", rep("ж", 66) + "😀" + rep("ж", 66), EncodingUCS2, 3},
		{"surrogate pair fits exactly", rep("ж", 65) + "😀" + rep("ж", 67), EncodingUCS2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc, n := Segments(tt.text)
			if enc != tt.enc || n != tt.segments {
				t.Errorf("Segments(%q) = %s, %d; want %s, %d", tt.text, enc, n, tt.enc, tt.segments)
			}
		})
	}
}

func TestSegmentsAllocs(t *testing.T) {
	for _, text := range []string{strings.Repeat("a", 400), strings.Repeat("ж😀", 100)} {
		if n := testing.AllocsPerRun(100, func() { Segments(text) }); n != 0 {
			t.Errorf("Segments allocates %v times, want 0", n)
		}
	}
}

func BenchmarkSegments(b *testing.B) {
	for _, bc := range []struct{ name, text string }{
		{"GSM7-160", strings.Repeat("Hello, world! ", 12)[:160]},
		{"UCS2-70", strings.Repeat("Привет мир", 7)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.text)))
			for b.Loop() {
				Segments(bc.text)
			}
		})
	}
}

// refSegments is a slow, direct model of splitting: it encodes the text as
// a list of indivisible characters with their sizes and cuts parts greedily.
func refSegments(text string) (Encoding, int) {
	if text == "" {
		return EncodingGSM7, 0
	}
	enc, single, part := EncodingGSM7, 160, 153
	var sizes []int
	for _, r := range text {
		switch {
		case strings.ContainsRune(gsm7Basic, r):
			sizes = append(sizes, 1)
		case strings.ContainsRune(gsm7Extension, r):
			sizes = append(sizes, 2)
		default:
			enc = EncodingUCS2
		}
	}
	if enc == EncodingUCS2 {
		single, part = 70, 67
		sizes = sizes[:0]
		for _, r := range text {
			sizes = append(sizes, len(utf16.Encode([]rune{r})))
		}
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	if total <= single {
		return enc, 1
	}
	var parts [][]int
	for len(sizes) > 0 {
		n, used := 0, 0
		for n < len(sizes) && used+sizes[n] <= part {
			used += sizes[n]
			n++
		}
		parts = append(parts, sizes[:n])
		sizes = sizes[n:]
	}
	return enc, len(parts)
}

func FuzzSegments(f *testing.F) {
	for _, s := range []string{
		"", "a", "€", "😀", "ç", gsm7Basic, gsm7Extension,
		strings.Repeat("a", 152) + "€" + strings.Repeat("a", 152),
		strings.Repeat("ж", 66) + "😀" + strings.Repeat("ж", 66),
		"a\xffb", "\xed\xa0\x80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		enc, n := Segments(text)
		wantEnc, wantN := refSegments(text)
		if enc != wantEnc || n != wantN {
			t.Fatalf("Segments(%q) = %s, %d; reference says %s, %d", text, enc, n, wantEnc, wantN)
		}
		if text == "" {
			return
		}
		if n < 1 {
			t.Fatalf("Segments(%q) = %d parts for non-empty text", text, n)
		}
		// Bounds that hold whatever the split: a part carries at most its
		// size and, as characters are at most 2 units, at least one less.
		var units int
		switch enc {
		case EncodingGSM7:
			for _, r := range text {
				c := gsm7Cost(r)
				if c == 0 {
					t.Fatalf("Segments(%q) = GSM-7 but %q is not in GSM-7", text, r)
				}
				units += c
			}
			checkBounds(t, text, units, n, 160, 153)
		case EncodingUCS2:
			units = len(utf16.Encode([]rune(text)))
			checkBounds(t, text, units, n, 70, 67)
		default:
			t.Fatalf("Segments(%q) returned encoding %q", text, enc)
		}
	})
}

func checkBounds(t *testing.T, text string, units, n, single, part int) {
	t.Helper()
	if units <= single {
		if n != 1 {
			t.Fatalf("Segments(%q): %d units fit one part, got %d", text, units, n)
		}
		return
	}
	if n*part < units || (n-1)*(part-1) >= units {
		t.Fatalf("Segments(%q): %d units in %d parts of %d", text, units, n, part)
	}
}
