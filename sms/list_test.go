package sms

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := Cursor{CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 123456000, time.UTC), ID: uuid.New()}
	got, err := ParseCursor(c.String())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
	}
	for _, bad := range []string{"", "!!!", "bm90LWEtY3Vyc29y", "MTIzLm5vdC1hLXV1aWQ", c.String() + "="} {
		if _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
	// Positions written in another form than String's: each decodes to
	// the same position, but the document says a cursor is 51 to 76
	// characters as the API writes it.
	micros, id := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10), c.ID.String()
	for _, raw := range []string{
		"+" + micros + "." + id,
		strings.Repeat("0", 40) + micros + "." + id,
		micros + "." + strings.ToUpper(id),
		micros + ".{" + id + "}",
		micros + ".urn:uuid:" + id,
		micros + "." + strings.ReplaceAll(id, "-", ""),
	} {
		if cur, err := ParseCursor(base64.RawURLEncoding.EncodeToString([]byte(raw))); err == nil {
			t.Errorf("ParseCursor of %q accepted as %+v", raw, cur)
		}
	}
}

func TestUUIDV7Floor(t *testing.T) {
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	var ms int64 // the id's own millisecond: its first 48 bits
	for _, b := range id[:6] {
		ms = ms<<8 | int64(b)
	}
	at := time.UnixMilli(ms)
	if floor := UUIDv7Floor(at); floor > id.String() {
		t.Errorf("floor of %s's own millisecond is %s, want it not larger", id, floor)
	}
	if floor := UUIDv7Floor(at.Add(-time.Millisecond)); floor >= id.String() {
		t.Errorf("floor of a millisecond before %s is %s, want it smaller", id, floor)
	}
	if floor := UUIDv7Floor(at.Add(time.Millisecond)); floor <= id.String() {
		t.Errorf("floor of a millisecond after %s is %s, want it larger", id, floor)
	}
}
