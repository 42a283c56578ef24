package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms"
)

// Outbox is the outbox table as the relay sees it: rows claimed for
// publishing, deleted once Kafka has them, counted, and refilled with
// messages that got stuck.
type Outbox struct {
	db *sqlx.DB
}

// NewOutbox returns the outbox of db.
func NewOutbox(db *sqlx.DB) *Outbox { return &Outbox{db: db} }

// PublishStale claims the oldest outbox rows created before cutoff, up to
// limit records (at least one row), and calls publish with the records of
// their messages that are still PENDING. The claim, the publish and the
// delete share one transaction: if publish fails, the rows are released
// and published later. Several relays may run at once: rows claimed by one
// are skipped by the others. It returns how many records the rows held.
func (o *Outbox) PublishStale(ctx context.Context, cutoff time.Time, limit int, publish func([]sms.OutboxRecord) error) (int, error) {
	tx, err := o.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Batch ids are UUIDv7, ordered by creation time: the smallest id of
	// the cut-off's millisecond bounds the range, so the scan stops at the
	// first young row instead of reading every row in flight.
	var rows []struct {
		ID           uuid.UUID      `db:"batch_id"`
		MessageIDs   pq.StringArray `db:"message_ids"`
		Traceparents pq.StringArray `db:"traceparents"`
	}
	err = tx.SelectContext(ctx, &rows, `
        SELECT batch_id, message_ids, traceparents FROM sms.outbox
        WHERE batch_id < $2 ORDER BY batch_id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit, sms.UUIDv7Floor(cutoff))
	if err != nil {
		return 0, storeErr("claim outbox", err)
	}
	var ids, messageIDs []string
	traces := map[string]string{}
	for _, row := range rows {
		if len(messageIDs) >= limit {
			break // the rest stay for the next round
		}
		ids = append(ids, row.ID.String())
		for i, id := range row.MessageIDs {
			messageIDs = append(messageIDs, id)
			if i < len(row.Traceparents) {
				traces[id] = row.Traceparents[i]
			}
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var pending []sms.Message
	if err := tx.SelectContext(ctx, &pending, `SELECT `+messageColumns+` FROM sms.messages WHERE id = ANY($1::uuid[]) AND status = 'PENDING'`,
		pq.Array(messageIDs)); err != nil {
		return 0, storeErr("read outbox messages", err)
	}
	records := make([]sms.OutboxRecord, len(pending))
	for i, m := range pending {
		if records[i], err = sms.NewOutboxRecord(m, traces[m.ID.String()]); err != nil {
			return 0, err
		}
	}
	if len(records) > 0 {
		if err := publish(records); err != nil {
			return 0, err
		}
	}
	if err := deleteBatches(ctx, tx, ids); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, storeErr("commit outbox", err)
	}
	return len(messageIDs), nil
}

// Delete deletes outbox rows by batch id.
func (o *Outbox) Delete(ctx context.Context, ids []uuid.UUID) error {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	return deleteBatches(ctx, o.db, strs)
}

func deleteBatches(ctx context.Context, db sqlx.ExecerContext, ids []string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM sms.outbox WHERE batch_id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
		return storeErr("delete outbox batches", err)
	}
	return nil
}

// Backlog counts the records waiting in the outbox and the age of the
// oldest row. It reads every row and the dead rows the deletes left (26 ms
// under load): sample it, don't call it per request.
func (o *Outbox) Backlog(ctx context.Context) (records int64, oldest time.Duration, err error) {
	var s struct {
		N      int64   `db:"n"`
		Oldest float64 `db:"oldest"`
	}
	err = o.db.GetContext(ctx, &s, `SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint AS n,
            COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest FROM sms.outbox`)
	if err != nil {
		return 0, 0, storeErr("count outbox", err)
	}
	return s.N, time.Duration(s.Oldest * float64(time.Second)), nil
}

// Requeue puts messages PENDING for longer than after, and not in the
// outbox, back in the outbox as one batch, and returns how many. The
// processor recognizes a message it already handled, so a re-queue never
// delivers twice.
func (o *Outbox) Requeue(ctx context.Context, after time.Duration) (int64, error) {
	var n int64
	err := o.db.GetContext(ctx, &n, `
        WITH queued AS MATERIALIZED (
            SELECT unnest(message_ids) AS id FROM sms.outbox
        ), stuck AS (
            UPDATE sms.messages m SET updated_at = now()
            WHERE id IN (
                -- Per account through messages_account_status_created:
                -- updated_at is never before created_at, so the range on
                -- created_at holds every candidate.
                SELECT c.id FROM (SELECT DISTINCT account_id AS id FROM sms.account_counters) a CROSS JOIN LATERAL (
                    SELECT id FROM sms.messages
                    WHERE account_id = a.id AND status = 'PENDING'
                        AND created_at < now() - $1::interval AND updated_at < now() - $1::interval
                        AND NOT EXISTS (SELECT 1 FROM queued q WHERE q.id = sms.messages.id)
                    ORDER BY created_at LIMIT 1000) c
                LIMIT 1000)
            -- Checked again on the locked row: once a concurrent re-queue
            -- of another replica has moved updated_at, this one skips it.
            AND status = 'PENDING' AND updated_at < now() - $1::interval
            RETURNING m.id
        ), batch AS (
            -- Its id is its oldest message's: no other row holds that
            -- message, and the sweep sees the row as stale at once.
            INSERT INTO sms.outbox (batch_id, message_ids, traceparents)
            SELECT (array_agg(id ORDER BY id))[1], array_agg(id ORDER BY id), array_agg(''::text) FROM stuck HAVING count(*) > 0
            RETURNING cardinality(message_ids) AS n
        )
        SELECT COALESCE(sum(n), 0)::bigint FROM batch`,
		fmt.Sprintf("%d milliseconds", after.Milliseconds()))
	if err != nil {
		return 0, storeErr("requeue", err)
	}
	return n, nil
}
