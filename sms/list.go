package sms

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxOffset is the most messages a list may skip with page: each page
// reads and discards the ones before it, so deep pages cost the database
// ever more. next_after (keyset) pages cost the same at any depth.
const MaxOffset = 100_000

// Filter selects a page of an account's messages, newest first.
type Filter struct {
	// Status, when set, keeps only messages in that status.
	Status Status
	// Phone, when set, keeps messages it sent or received.
	Phone string
	// Page is 0-based; ignored when After is set.
	Page int
	// Size is the page size, 1..100.
	Size int
	// After continues after the last message of a previous page.
	After *Cursor
}

// Cursor marks a position in the newest-first order.
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// String encodes c for the after query parameter.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + "." + c.ID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes an after parameter.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, errors.New("is not a cursor returned by this API")
	}
	micros, id, ok := strings.Cut(string(raw), ".")
	us, err1 := strconv.ParseInt(micros, 10, 64)
	uid, err2 := uuid.Parse(id)
	c := Cursor{CreatedAt: time.UnixMicro(us).UTC(), ID: uid}
	// Only the form String writes: uuid.Parse and ParseInt also take
	// braces, upper case, a plus or leading zeros, of any length.
	if !ok || err1 != nil || err2 != nil || c.String() != s {
		return Cursor{}, errors.New("is not a cursor returned by this API")
	}
	return c, nil
}

// Page is one page of messages and the counts around it.
type Page struct {
	Messages   []Message
	TotalCount int64
	// Next continues the list, or is nil on the last page.
	Next *Cursor
}
