package sms

import (
	"fmt"
	"time"

	"github.com/google/uuid"
)

// NewID returns a new message id: a UUIDv7, so that ids sort by time.
func NewID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}

// UUIDv7Floor is the smallest UUIDv7 of t's millisecond (RFC 9562: the
// first 48 bits are the Unix time in milliseconds). Message ids are UUIDv7,
// so "id < UUIDv7Floor(t)" selects messages created before t through the
// primary key.
func UUIDv7Floor(t time.Time) string {
	ms := fmt.Sprintf("%012x", max(t.UnixMilli(), 0)) // 48 bits until the year 10889
	return ms[:8] + "-" + ms[8:12] + "-0000-0000-000000000000"
}
