package sms

import (
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
