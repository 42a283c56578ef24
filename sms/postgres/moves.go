package postgres

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// A move changes a message's status in one statement with everything that
// goes with it: the events it records (their sequence taken from the
// message's last_seq), and the account counters it shifts. The statements
// below share these pieces; each lists the moves it may make.

// allowedMoves is the VALUES list of (from, to) pairs sms.CanMove allows,
// for "(old, new) IN (...)".
var allowedMoves = func() string {
	var pairs []string
	for _, from := range sms.Statuses {
		for _, to := range sms.Statuses {
			if sms.CanMove(from, to) {
				pairs = append(pairs, fmt.Sprintf("('%s', '%s')", from, to))
			}
		}
	}
	return "VALUES " + strings.Join(pairs, ", ")
}()

// eventsInsertSQL inserts the events of the moved rows of CTE upd, which
// returns id, last_seq (after the move) and events (a JSON array of
// {type, status, occurred_at, detail}); their sequences end at last_seq.
const eventsInsertSQL = `
    INSERT INTO sms.message_events (message_id, sequence, type, status, occurred_at, detail)
    SELECT u.id, u.last_seq - jsonb_array_length(u.events) + e.ord::int, e.ev->>'type', e.ev->>'status',
        (e.ev->>'occurred_at')::timestamptz, e.ev->'detail'
    FROM upd u CROSS JOIN LATERAL jsonb_array_elements(u.events) WITH ORDINALITY AS e(ev, ord)`

// countersShiftSQL moves the counts of the rows of CTE upd (account_id,
// old, status) from their old status's column to their new one; $shard is
// the parameter holding the counter shard.
func countersShiftSQL(shard string) string {
	var cols, deltas, sets []string
	for _, st := range sms.Statuses {
		col := counterColumns[st]
		cols = append(cols, col)
		deltas = append(deltas, fmt.Sprintf("count(*) FILTER (WHERE status = '%s') - count(*) FILTER (WHERE old = '%s')", st, st))
		sets = append(sets, fmt.Sprintf("%s = c.%s + EXCLUDED.%s", col, col, col))
	}
	return fmt.Sprintf(`
    INSERT INTO sms.account_counters AS c (account_id, shard, %s)
    SELECT account_id, %s, %s
    FROM upd GROUP BY account_id ORDER BY account_id
    ON CONFLICT (account_id, shard) DO UPDATE SET %s`,
		strings.Join(cols, ", "), shard, strings.Join(deltas, ", "), strings.Join(sets, ", "))
}

// counterColumns are the account_counters columns, one per status.
var counterColumns = map[sms.Status]string{
	sms.StatusScheduled: "scheduled", sms.StatusPending: "pending", sms.StatusSent: "sent",
	sms.StatusDelivered: "delivered", sms.StatusUndelivered: "undelivered", sms.StatusFailed: "failed",
	sms.StatusExpired: "expired", sms.StatusCanceled: "canceled",
}

// event is one row of sms.message_events as the move statements take it.
type event struct {
	Type       string         `json:"type"`
	Status     sms.Status     `json:"status"`
	OccurredAt time.Time      `json:"occurred_at"`
	Detail     map[string]any `json:"detail,omitempty"`
}

// EventType is the event recorded when a message reaches a status.
func EventType(st sms.Status) string {
	switch st {
	case sms.StatusScheduled:
		return "message.scheduled"
	case sms.StatusPending:
		return "message.queued"
	}
	return "message." + strings.ToLower(string(st))
}

// reportEvents are the events a delivery report records: one
// message.attempt per carrier call (the message still PENDING), then the
// event of the status it reached.
func reportEvents(r sms.DeliveryReport) []event {
	var evs []event
	for _, a := range r.Attempts {
		d := map[string]any{"attempt": a.Attempt, "result": a.Result}
		if a.Error != "" {
			d["error"] = a.Error
		}
		evs = append(evs, event{Type: "message.attempt", Status: sms.StatusPending, OccurredAt: a.At, Detail: d})
	}
	d := map[string]any{}
	if r.FailureReason != nil && r.Status != sms.StatusSent && r.Status != sms.StatusDelivered {
		d["failure_reason"] = *r.FailureReason
	}
	if r.CarrierMessageID != "" {
		d["carrier_message_id"] = r.CarrierMessageID
	}
	if len(r.Parts) > 0 {
		d["parts"] = r.Parts
	}
	if len(d) == 0 {
		d = nil
	}
	return append(evs, event{Type: EventType(r.Status), Status: r.Status, OccurredAt: r.ProcessedAt, Detail: d})
}

// eventsJSON encodes events for a jsonb[] parameter.
func eventsJSON(evs []event) (string, error) {
	b, err := json.Marshal(evs)
	if err != nil {
		return "", fmt.Errorf("encode events: %w", err)
	}
	return string(b), nil
}
