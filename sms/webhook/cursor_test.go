package webhook

import (
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// TestCursorRoundTrip: a cursor reads back as the position it was made
// from, and only in the form String writes it.
func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := Cursor{AttemptedAt: time.UnixMicro(1748779204200000).UTC(), DeliveryID: uuid.New(), Attempt: 3}
	got, err := ParseCursor(c.String())
	if err != nil || got != c {
		t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
	}
	micros, id := strconv.FormatInt(c.AttemptedAt.UnixMicro(), 10), c.DeliveryID.String()
	for _, raw := range []string{
		"", "x.y.z", micros + "." + id,
		"+" + micros + "." + id + ".3",
		micros + "." + strings.ToUpper(id) + ".3",
		micros + "." + id + ".03",
	} {
		if cur, err := ParseCursor(base64.RawURLEncoding.EncodeToString([]byte(raw))); err == nil {
			t.Errorf("ParseCursor of %q accepted as %+v", raw, cur)
		}
	}
}
