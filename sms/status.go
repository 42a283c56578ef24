package sms

import (
	"fmt"
	"slices"
	"strings"
)

// Status is where a message stands (shared/design.md, "Message statuses").
type Status string

// The statuses of a message.
const (
	// StatusScheduled: accepted with send_at in the future.
	StatusScheduled Status = "SCHEDULED"
	// StatusPending: accepted, on its way to the carrier.
	StatusPending Status = "PENDING"
	// StatusSent: the carrier accepted it; final unless a receipt follows.
	StatusSent Status = "SENT"
	// StatusDelivered: the carrier's receipt says it reached the handset.
	StatusDelivered Status = "DELIVERED"
	// StatusUndelivered: the receipt says it did not.
	StatusUndelivered Status = "UNDELIVERED"
	// StatusFailed: the carrier never accepted it (a permanent error,
	// attempts exhausted, the recipient opted out).
	StatusFailed Status = "FAILED"
	// StatusExpired: its validity ended before delivery, or no receipt came.
	StatusExpired Status = "EXPIRED"
	// StatusCanceled: canceled by the client before it reached the carrier.
	StatusCanceled Status = "CANCELED"
)

// Statuses lists every status in the order of a message's life.
var Statuses = []Status{StatusScheduled, StatusPending, StatusSent, StatusDelivered, StatusUndelivered,
	StatusFailed, StatusExpired, StatusCanceled}

// ParseStatus accepts a status name exactly as the API spells it.
func ParseStatus(s string) (Status, error) {
	if st := Status(s); slices.Contains(Statuses, st) {
		return st, nil
	}
	names := make([]string, len(Statuses))
	for i, st := range Statuses {
		names[i] = string(st)
	}
	return "", fmt.Errorf("must be one of %s", strings.Join(names, ", "))
}

// Final reports whether s is a terminal status: nothing but an explicit
// retry moves a message out of it. SENT is not final: a receipt may follow.
func (s Status) Final() bool {
	switch s {
	case StatusDelivered, StatusUndelivered, StatusFailed, StatusExpired, StatusCanceled:
		return true
	}
	return false
}

// Settled reports whether the message is done as far as sending goes: the
// carrier took it (SENT), or it is final.
func (s Status) Settled() bool { return s == StatusSent || s.Final() }

// Succeeded reports whether s counts as sent in the stats: the carrier
// accepted the message and nothing says it was lost.
func (s Status) Succeeded() bool { return s == StatusSent || s == StatusDelivered }

// Unsuccessful reports whether s counts as failed in the stats.
func (s Status) Unsuccessful() bool {
	return s == StatusFailed || s == StatusUndelivered || s == StatusExpired
}

// Retryable reports whether POST /v1/messages/{id}/retry may take a
// message in s back to PENDING.
func (s Status) Retryable() bool {
	return s == StatusFailed || s == StatusUndelivered || s == StatusExpired
}

// moves are the allowed transitions; a report or receipt that asks for
// any other is late or repeated and changes nothing.
var moves = map[Status][]Status{
	StatusScheduled: {StatusPending, StatusCanceled},
	StatusPending:   {StatusSent, StatusFailed, StatusExpired, StatusCanceled},
	StatusSent:      {StatusDelivered, StatusUndelivered, StatusExpired},
}

// CanMove reports whether a message in from may move to to. Retries (out
// of a final status back to PENDING) are not moves: see Retryable.
func CanMove(from, to Status) bool { return slices.Contains(moves[from], to) }

// MovesTo lists the statuses from which a message may move to to, for
// statements that apply a move only where it is allowed.
func MovesTo(to Status) []Status {
	var from []Status
	for _, st := range Statuses {
		if CanMove(st, to) {
			from = append(from, st)
		}
	}
	return from
}
