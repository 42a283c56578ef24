package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms"
)

// The moves of a message that are not delivery reports: cancel, retry, the
// scheduler's release, and the processor's claim before the carrier.

// cancelSQL cancels one of the account's messages if it is SCHEDULED, or
// PENDING and not yet claimed by a processor for the carrier. It returns
// the status the message had (” if there is none) and whether it moved.
var cancelSQL = `
WITH locked AS (
    SELECT id, status, dispatched_at FROM sms.messages WHERE id = $1 AND account_id = $2 FOR UPDATE
), upd AS (
    UPDATE sms.messages m SET status = 'CANCELED', updated_at = now(), last_seq = m.last_seq + 1
    FROM locked l WHERE m.id = l.id AND (l.status = 'SCHEDULED' OR l.status = 'PENDING' AND l.dispatched_at IS NULL)
    RETURNING m.id, m.account_id, l.status AS old, m.status, m.last_seq,
        jsonb_build_array(jsonb_build_object('type', 'message.canceled', 'status', 'CANCELED', 'occurred_at', now())) AS events
), ev AS (` + eventsInsertSQL + `
), counted AS (` + countersShiftSQL("$3") + `
)
SELECT COALESCE((SELECT status FROM locked), '') AS before, (SELECT count(*) FROM upd) > 0 AS moved`

// Cancel cancels the account's message id: sms.ErrNotFound if there is
// none, a conflict if it has reached the carrier or is final.
func (s *Store) Cancel(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error) {
	var res struct {
		Before sms.Status `db:"before"`
		Moved  bool       `db:"moved"`
	}
	err := s.withShard(ctx, func(shard int) error {
		return s.db.GetContext(ctx, &res, cancelSQL, id, accountID, shard)
	})
	if err != nil {
		return sms.Message{}, storeErr("cancel", err)
	}
	switch {
	case res.Before == "":
		return sms.Message{}, sms.ErrNotFound
	case !res.Moved:
		why := "has reached the carrier"
		if res.Before.Final() {
			why = "final"
		}
		return sms.Message{}, &sms.Error{Code: sms.CodeConflict, Kind: "not-cancelable",
			Message: fmt.Sprintf("the message is %s and %s: only SCHEDULED messages, and PENDING ones not yet handed to the carrier, can be canceled", res.Before, why)}
	}
	return s.Get(ctx, accountID, id)
}

// retrySQL takes messages FAILED, UNDELIVERED or EXPIRED back to PENDING
// for another try: a new generation (retries + 1) whose reports the old
// one's can't be mistaken for, a fresh validity, and an outbox row. $1 are
// the ids, $2 the account (0: any), $3 the counter shard, $4 the reason
// written in the event.
var retrySQL = `
WITH locked AS (
    SELECT id, status FROM sms.messages WHERE id = ANY($1::uuid[]) AND ($2 = 0 OR account_id = $2)
        AND status IN ('FAILED', 'UNDELIVERED', 'EXPIRED') ORDER BY id FOR UPDATE
), upd AS (
    UPDATE sms.messages m SET status = 'PENDING', failure_reason = NULL, dispatched_at = NULL, carrier_message_id = NULL,
        delivered_at = NULL, retries = m.retries + 1, updated_at = now(), last_seq = m.last_seq + 1,
        valid_until = CASE WHEN m.validity_period IS NULL THEN NULL ELSE now() + make_interval(secs => m.validity_period) END
    FROM locked l WHERE m.id = l.id
    RETURNING m.id, m.account_id, l.status AS old, m.status, m.last_seq,
        jsonb_build_array(jsonb_build_object('type', 'message.queued', 'status', 'PENDING', 'occurred_at', now(),
            'detail', jsonb_build_object('retry', m.retries, 'reason', $4::text))) AS events
), ev AS (` + eventsInsertSQL + `
), counted AS (` + countersShiftSQL("$3") + `
), outbox AS (
    INSERT INTO sms.outbox (batch_id, message_ids, traceparents)
    SELECT $5, array_agg(id ORDER BY id), array_agg(''::text) FROM upd HAVING count(*) > 0
)
SELECT id FROM upd`

// Retry takes the account's message id back to PENDING for another try:
// sms.ErrNotFound if there is none, a conflict unless it is FAILED,
// UNDELIVERED or EXPIRED.
func (s *Store) Retry(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error) {
	moved, err := s.retry(ctx, accountID, []uuid.UUID{id}, "requested")
	if err != nil {
		return sms.Message{}, err
	}
	m, err := s.Get(ctx, accountID, id)
	if err != nil {
		return sms.Message{}, err
	}
	if len(moved) == 0 {
		return sms.Message{}, &sms.Error{Code: sms.CodeConflict, Kind: "not-retryable",
			Message: fmt.Sprintf("the message is %s: only FAILED, UNDELIVERED and EXPIRED messages can be retried", m.Status)}
	}
	return m, nil
}

func (s *Store) retry(ctx context.Context, accountID int64, ids []uuid.UUID, reason string) ([]uuid.UUID, error) {
	var moved []uuid.UUID
	err := s.withShard(ctx, func(shard int) error {
		// The outbox row gets an id of its own: the message's first row may
		// still be there, named after it.
		return s.db.SelectContext(ctx, &moved, retrySQL, pq.Array(uuidStrings(ids)), accountID, shard, reason, sms.NewID())
	})
	if err != nil {
		return nil, storeErr("retry", err)
	}
	return moved, nil
}

// RetryFailed is the scheduled retry of ADR-007: up to limit messages that
// FAILED or EXPIRED for a reason worth another try (attempts exhausted or a
// transient error, not a permanent refusal or an opt-out) at least after
// ago, retried fewer than max times, go back to PENDING. It returns how many.
func (s *Store) RetryFailed(ctx context.Context, after time.Duration, max, limit int) (int, error) {
	var ids []uuid.UUID
	err := s.db.SelectContext(ctx, &ids, `
        SELECT id FROM sms.messages
        WHERE status IN ('FAILED', 'EXPIRED') AND retries < $1 AND updated_at < now() - $2::interval
            AND failure_reason NOT LIKE 'permanent:%' AND failure_reason <> 'opted_out' AND failure_reason NOT LIKE 'invalid:%'
        ORDER BY updated_at LIMIT $3`, max, fmt.Sprintf("%d milliseconds", after.Milliseconds()), limit)
	if err != nil {
		return 0, storeErr("find failed messages", err)
	}
	if len(ids) == 0 {
		return 0, nil
	}
	moved, err := s.retry(ctx, 0, ids, "scheduled retry")
	return len(moved), err
}

// releaseSQL moves up to $1 SCHEDULED messages that are due to PENDING and
// gives them an outbox row. Several API replicas release at once: each
// skips the rows another has locked. Due is judged by the database's
// clock, the same for every replica.
var releaseSQL = `
WITH due AS (
    SELECT id FROM sms.messages WHERE status = 'SCHEDULED' AND send_at <= now()
    ORDER BY send_at LIMIT $1 FOR UPDATE SKIP LOCKED
), upd AS (
    UPDATE sms.messages m SET status = 'PENDING', updated_at = now(), last_seq = m.last_seq + 1
    FROM due WHERE m.id = due.id
    RETURNING m.id, m.account_id, 'SCHEDULED'::text AS old, m.status, m.last_seq,
        jsonb_build_array(jsonb_build_object('type', 'message.queued', 'status', 'PENDING', 'occurred_at', now())) AS events
), ev AS (` + eventsInsertSQL + `
), counted AS (` + countersShiftSQL("$2") + `
), outbox AS (
    INSERT INTO sms.outbox (batch_id, message_ids, traceparents)
    SELECT $3, array_agg(id ORDER BY id), array_agg(''::text) FROM upd HAVING count(*) > 0
)
SELECT count(*) FROM upd`

// ReleaseDue moves up to limit due scheduled messages to PENDING and the
// outbox, and returns how many.
func (s *Store) ReleaseDue(ctx context.Context, limit int) (int, error) {
	var n int
	err := s.withShard(ctx, func(shard int) error {
		return s.db.GetContext(ctx, &n, releaseSQL, limit, shard, sms.NewID())
	})
	if err != nil {
		return 0, storeErr("release scheduled messages", err)
	}
	return n, nil
}

// NextDue returns when the earliest scheduled message is due, or false
// when none is scheduled.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var at sql.NullTime
	if err := s.db.GetContext(ctx, &at, `SELECT min(send_at) FROM sms.messages WHERE status = 'SCHEDULED'`); err != nil {
		return time.Time{}, false, storeErr("next scheduled message", err)
	}
	return at.Time, at.Valid, nil
}

// dispatchSQL is the processor's claim of messages for the carrier. Each
// (id, retry) gets a verdict: send (and the message is claimed: a cancel
// is too late from now on), opted_out or expired (the message ends FAILED
// or EXPIRED here; an automatic reply to STOP, START or HELP, marked
// keyword_reply, is never opted_out: it must reach the recipient who just
// opted out), or skip (canceled, already past PENDING, or a report of
// an older try). A message claimed before is sent again (the processor's
// own record tells a repeat apart).
var dispatchSQL = `
WITH c AS (
    SELECT * FROM unnest($1::uuid[], $2::int[]) WITH ORDINALITY AS c(id, retry, ord)
), locked AS (
    SELECT m.id, m.account_id, m.status, m.recipient, m.valid_until, m.dispatched_at, m.retries, m.keyword_reply
    FROM sms.messages m WHERE m.id = ANY($1::uuid[]) ORDER BY m.id FOR UPDATE
), decided AS (
    SELECT l.*, c.retry AS claimed_retry, CASE
        WHEN l.status <> 'PENDING' OR l.retries <> c.retry THEN 'skip'
        WHEN l.dispatched_at IS NOT NULL THEN 'send'
        WHEN NOT l.keyword_reply AND EXISTS (SELECT 1 FROM sms.suppressions s WHERE s.account_id = l.account_id AND s.phone = l.recipient) THEN 'opted_out'
        WHEN l.valid_until IS NOT NULL AND l.valid_until < now() THEN 'expired'
        ELSE 'send' END AS verdict
    FROM locked l JOIN c ON c.id = l.id
), upd AS (
    UPDATE sms.messages m SET dispatched_at = now(), updated_at = now(), last_seq = m.last_seq + 1,
        status = CASE d.verdict WHEN 'opted_out' THEN 'FAILED' WHEN 'expired' THEN 'EXPIRED' ELSE m.status END,
        failure_reason = CASE d.verdict WHEN 'opted_out' THEN 'opted_out'
            WHEN 'expired' THEN 'expired: the validity period ended before the message reached the carrier' END
    FROM decided d WHERE m.id = d.id AND d.verdict <> 'skip' AND d.dispatched_at IS NULL
    RETURNING m.id, m.account_id, d.status AS old, m.status, m.last_seq,
        jsonb_build_array(jsonb_build_object('occurred_at', now(), 'status', m.status,
            'type', CASE d.verdict WHEN 'opted_out' THEN 'message.failed' WHEN 'expired' THEN 'message.expired' ELSE 'message.queued' END,
            'detail', CASE d.verdict WHEN 'send' THEN NULL ELSE jsonb_build_object('failure_reason', m.failure_reason) END)) AS events
), ev AS (` + eventsInsertSQL + `
), counted AS (` + countersShiftSQL("$3") + `
)
SELECT c.id, c.retry, COALESCE(d.verdict, 'skip') AS verdict
FROM c LEFT JOIN decided d ON d.id = c.id AND d.claimed_retry = c.retry ORDER BY c.ord`

// Dispatch claims messages for the carrier and says, for each, whether to
// send it; see sms.Verdict.
// Results come in the order of claims; a claim repeated in one call gets
// the same answer as its first copy.
func (s *Store) Dispatch(ctx context.Context, claims []sms.Claim) ([]sms.ClaimResult, error) {
	var ids []string
	var retries []int64
	seen := make(map[sms.Claim]bool, len(claims))
	for _, c := range claims {
		if !seen[c] {
			seen[c] = true
			ids, retries = append(ids, c.MessageID.String()), append(retries, int64(c.Retry))
		}
	}
	stmt, err := s.prepared(ctx, dispatchSQL)
	if err != nil {
		return nil, err
	}
	var rows []struct {
		sms.Claim
		Verdict sms.Verdict `db:"verdict"`
	}
	err = s.withShard(ctx, func(shard int) error {
		return stmt.SelectContext(ctx, &rows, pq.Array(ids), pq.Array(retries), shard)
	})
	if err != nil {
		return nil, storeErr("dispatch", err)
	}
	verdicts := make(map[sms.Claim]sms.Verdict, len(rows))
	for _, r := range rows {
		verdicts[r.Claim] = r.Verdict
	}
	out := make([]sms.ClaimResult, len(claims))
	for i, c := range claims {
		out[i] = sms.ClaimResult{MessageID: c.MessageID, Verdict: verdicts[c]}
	}
	return out, nil
}

// Events returns the account's message's history, oldest first, or
// sms.ErrNotFound.
func (s *Store) Events(ctx context.Context, accountID int64, id uuid.UUID) ([]sms.Event, error) {
	var evs []sms.Event
	err := s.db.SelectContext(ctx, &evs, `
        SELECT e.sequence, e.type, e.status, e.occurred_at, e.detail FROM sms.message_events e
        JOIN sms.messages m ON m.id = e.message_id
        WHERE e.message_id = $1 AND m.account_id = $2 ORDER BY e.sequence`, id, accountID)
	if err != nil {
		return nil, storeErr("events", err)
	}
	if len(evs) == 0 {
		if _, err := s.Get(ctx, accountID, id); err != nil {
			return nil, err
		}
		evs = []sms.Event{}
	}
	return evs, nil
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
