package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// Store keeps messages, their outbox entries and counters in PostgreSQL
// schema sms.
type Store struct {
	db    *sqlx.DB
	stmts *platform.Statements
	// committed receives the outbox batch of every committed insert.
	committed func(sms.OutboxBatch)
	shards    chan int
	published outboxDeletes
}

// NewStore returns a store on db.
func NewStore(db *sqlx.DB) *Store {
	return &Store{db: db, stmts: platform.NewStatements(db), committed: func(sms.OutboxBatch) {}, shards: newShardPool()}
}

// OnCommit sets the function that receives the outbox batch of every
// committed insert, so that the relay can publish it without reading it
// back. Call it before the store is used.
func (s *Store) OnCommit(fn func(sms.OutboxBatch)) { s.committed = fn }

// Published takes over the deletion of outbox batches (by id) whose
// records Kafka has acknowledged: the next insert deletes them in its own
// statement, and FlushPublished deletes what no insert took.
func (s *Store) Published(ids []uuid.UUID) {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	s.published.add(strs)
}

// FlushPublished deletes the acknowledged batches no insert has taken yet.
func (s *Store) FlushPublished(ctx context.Context) error {
	ids := s.published.take()
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sms.outbox WHERE batch_id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
		s.published.add(ids)
		return storeErr("delete outbox batches", err)
	}
	return nil
}

// outboxDeletes holds the ids of published outbox batches until a
// statement deletes them. Should the process die first, the sweep
// publishes them again, and the processor recognizes them.
type outboxDeletes struct {
	mu  sync.Mutex
	ids []string
}

func (d *outboxDeletes) add(ids []string) {
	d.mu.Lock()
	d.ids = append(d.ids, ids...)
	d.mu.Unlock()
}

func (d *outboxDeletes) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ids := d.ids
	d.ids = nil
	return ids
}

// prepared returns a hot statement, planned once per connection instead of
// once per batch.
func (s *Store) prepared(ctx context.Context, query string) (*sqlx.Stmt, error) {
	st, err := s.stmts.Get(ctx, query)
	if err != nil {
		return nil, storeErr("prepare", err)
	}
	return st, nil
}

// newMessages builds the rows for drafts: ids are UUIDv7 so they sort by
// time, and timestamps are cut to what PostgreSQL keeps.
func newMessages(in []sms.NewMessage) []sms.Message {
	now := time.Now().UTC().Truncate(time.Microsecond)
	out := make([]sms.Message, len(in))
	for i, n := range in {
		status := sms.StatusPending
		if n.Scheduled(now) {
			status = sms.StatusScheduled
		}
		priority := n.Priority
		if priority == "" {
			priority = sms.PriorityNormal
		}
		out[i] = sms.Message{
			ID: sms.NewID(), AccountID: n.AccountID, Sender: n.Sender, Recipient: n.Recipient, Text: n.Text,
			Status: status, Encoding: n.Encoding, Segments: n.Segments, Priority: priority,
			SendAt: n.SendAt, ValidityPeriod: n.ValidityPeriod, ValidUntil: n.ValidUntil,
			CreatedAt: now, UpdatedAt: now,
		}
	}
	return out
}

// insertSQL writes messages, their first event (message.accepted, and
// message.scheduled for a scheduled one), the outbox row of those due now
// and the account counters in one statement, so one round trip commits a
// whole batch atomically. It also deletes the outbox rows Kafka has
// acknowledged since ($11): each commit's WAL flush costs about 1.7 ms on a
// loaded 2-core machine, and this saves one commit per relay batch.
// Scheduled messages get no outbox row: the scheduler gives them one when
// they are due.
const insertSQL = `
WITH ins AS (
    INSERT INTO sms.messages (id, account_id, sender, recipient, text, status, encoding, segments, created_at, updated_at,
        priority, send_at, validity_period, valid_until, last_seq)
    SELECT u.id, u.account_id, u.sender, u.recipient, u.text, u.status, u.encoding, u.segments, u.created_at, u.created_at,
        u.priority, u.send_at, u.validity, u.valid_until, CASE WHEN u.status = 'SCHEDULED' THEN 2 ELSE 1 END
    FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[], $8::timestamptz[],
        $12::text[], $13::text[], $14::timestamptz[], $15::int[], $16::timestamptz[])
        AS u(id, account_id, sender, recipient, text, encoding, segments, created_at, status, priority, send_at, validity, valid_until)
    RETURNING id, account_id, status, created_at, send_at
), events AS (
    INSERT INTO sms.message_events (message_id, sequence, type, status, occurred_at, detail)
    SELECT id, 1, 'message.accepted', status, created_at, NULL FROM ins
    UNION ALL
    SELECT id, 2, 'message.scheduled', status, created_at, jsonb_build_object('send_at', send_at) FROM ins WHERE status = 'SCHEDULED'
), outbox AS (
    INSERT INTO sms.outbox (batch_id, created_at, message_ids, traceparents)
    SELECT ($9::uuid[])[1], ($8::timestamptz[])[1], $9::uuid[], $10::text[] WHERE cardinality($9::uuid[]) > 0
), published AS (
    DELETE FROM sms.outbox WHERE batch_id = ANY($11::uuid[])
)
INSERT INTO sms.account_counters AS c (account_id, shard, pending, scheduled)
SELECT account_id, $17, count(*) FILTER (WHERE status = 'PENDING'), count(*) FILTER (WHERE status = 'SCHEDULED')
FROM ins GROUP BY account_id ORDER BY account_id
ON CONFLICT (account_id, shard) DO UPDATE SET pending = c.pending + EXCLUDED.pending, scheduled = c.scheduled + EXCLUDED.scheduled`

// An account's counts are spread over counter rows (shards), so that
// concurrent transactions don't wait on one another's row lock: each store
// takes shardsPerStore of counterShards at random, and a transaction holds
// one of them for itself. Readers sum all of an account's shards.
const (
	counterShards  = 64
	shardsPerStore = 16
)

func newShardPool() chan int {
	pool := make(chan int, shardsPerStore)
	for _, shard := range rand.Perm(counterShards)[:shardsPerStore] {
		pool <- shard
	}
	return pool
}

// withShard runs fn with a counter shard no other transaction of this
// store is using.
func (s *Store) withShard(ctx context.Context, fn func(shard int) error) error {
	var shard int
	select {
	case shard = <-s.shards:
	case <-ctx.Done():
		return storeErr("wait for a counter shard", ctx.Err())
	}
	defer func() { s.shards <- shard }()
	return fn(shard)
}

// stmtExecer runs a prepared statement: *sql.Stmt, alone or in a transaction.
type stmtExecer interface {
	ExecContext(ctx context.Context, args ...any) (sql.Result, error)
}

// insertMessages runs insertSQL for msgs and returns the outbox batch of
// those due now (no records when every message is scheduled).
func insertMessages(ctx context.Context, insert stmtExecer, msgs []sms.Message, traces []string, shard int, published []string) (sms.OutboxBatch, error) {
	n := len(msgs)
	ids, accounts := make([]string, n), make([]int64, n)
	senders, recipients, texts, encodings := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	segments, created := make([]int64, n), make([]string, n)
	statuses, priorities, sendAt, validity, validUntil := make([]string, n), make([]string, n), make([]*string, n), make([]*int64, n), make([]*string, n)
	var due, dueTraces []string
	var batch sms.OutboxBatch
	for i, m := range msgs {
		ids[i], accounts[i] = m.ID.String(), m.AccountID
		senders[i], recipients[i], texts[i], encodings[i] = m.Sender, m.Recipient, m.Text, string(m.Encoding)
		segments[i], created[i] = int64(m.Segments), m.CreatedAt.Format(time.RFC3339Nano)
		statuses[i], priorities[i] = string(m.Status), string(m.Priority)
		sendAt[i], validUntil[i] = timeArg(m.SendAt), timeArg(m.ValidUntil)
		if m.ValidityPeriod != nil {
			v := int64(*m.ValidityPeriod)
			validity[i] = &v
		}
		if m.Status != sms.StatusPending {
			continue
		}
		rec, err := sms.NewOutboxRecord(m, traces[i])
		if err != nil {
			return sms.OutboxBatch{}, err
		}
		if len(batch.Records) == 0 {
			batch.ID = m.ID
		}
		batch.Records = append(batch.Records, rec)
		due, dueTraces = append(due, ids[i]), append(dueTraces, traces[i])
	}
	_, err := insert.ExecContext(ctx, pq.Array(ids), pq.Array(accounts), pq.Array(senders), pq.Array(recipients),
		pq.Array(texts), pq.Array(encodings), pq.Array(segments), pq.Array(created), pq.Array(due), pq.Array(dueTraces),
		pq.Array(published), pq.Array(statuses), pq.Array(priorities), pq.Array(sendAt), pq.Array(validity), pq.Array(validUntil), shard)
	if err != nil {
		return sms.OutboxBatch{}, storeErr("insert messages", err)
	}
	return batch, nil
}

// timeArg is t as a text array element, NULL when nil.
func timeArg(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(time.RFC3339Nano)
	return &s
}

// Insert stores messages as PENDING together with their outbox row in one
// transaction and returns them.
func (s *Store) Insert(ctx context.Context, in []sms.NewMessage) ([]sms.Message, error) {
	msgs := newMessages(in)
	traces := make([]string, len(in))
	for i, n := range in {
		traces[i] = n.Traceparent
	}
	insert, err := s.prepared(ctx, insertSQL)
	if err != nil {
		return nil, err
	}
	published := s.published.take()
	var batch sms.OutboxBatch
	err = s.withShard(ctx, func(shard int) (err error) {
		batch, err = insertMessages(ctx, insert, msgs, traces, shard, published)
		return err
	})
	if err != nil {
		s.published.add(published) // not deleted: the next statement tries
		return nil, err
	}
	if len(batch.Records) > 0 {
		s.committed(batch)
	}
	return msgs, nil
}

// InsertIdempotent stores a message under an idempotency key. A key seen in
// the last 24 hours with the same request returns the original message and
// replayed=true; with another request it fails with sms.ErrIdempotencyMismatch.
// Concurrent calls with one key wait on the key's row, so only one message
// is ever stored.
func (s *Store) InsertIdempotent(ctx context.Context, in sms.NewMessage, key string) (msg sms.Message, replayed bool, err error) {
	hash := sms.RequestHash(in.Draft)
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return sms.Message{}, false, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()

	m := newMessages([]sms.NewMessage{in})[0]
	var claimed uuid.UUID
	err = tx.QueryRowxContext(ctx, `
        INSERT INTO sms.idempotency_keys AS k (account_id, key, request_hash, message_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (account_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, message_id = EXCLUDED.message_id, created_at = now()
            WHERE k.created_at < now() - $5::interval
        RETURNING message_id`,
		in.AccountID, key, hash, m.ID, fmt.Sprintf("%d seconds", int(sms.IdempotencyTTL.Seconds()))).Scan(&claimed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		var prev struct {
			Hash      []byte     `db:"request_hash"`
			MessageID *uuid.UUID `db:"message_id"` // nil for a batch's key
		}
		if err := tx.GetContext(ctx, &prev, `SELECT request_hash, message_id FROM sms.idempotency_keys WHERE account_id = $1 AND key = $2`, in.AccountID, key); err != nil {
			return sms.Message{}, false, storeErr("read idempotency key", err)
		}
		if string(prev.Hash) != string(hash) || prev.MessageID == nil {
			return sms.Message{}, false, sms.ErrIdempotencyMismatch
		}
		orig, err := getMessage(ctx, tx, in.AccountID, *prev.MessageID)
		if err != nil {
			return sms.Message{}, false, err
		}
		return orig, true, nil
	case err != nil:
		return sms.Message{}, false, storeErr("claim idempotency key", err)
	}
	insert, err := s.prepared(ctx, insertSQL)
	if err != nil {
		return sms.Message{}, false, err
	}
	var batch sms.OutboxBatch
	err = s.withShard(ctx, func(shard int) (err error) {
		batch, err = insertMessages(ctx, tx.StmtxContext(ctx, insert), []sms.Message{m}, []string{in.Traceparent}, shard, nil)
		if err != nil {
			return err
		}
		if err := tx.Commit(); err != nil {
			return storeErr("commit", err)
		}
		return nil
	})
	if err != nil {
		return sms.Message{}, false, err
	}
	if len(batch.Records) > 0 {
		s.committed(batch)
	}
	return m, false, nil
}

// Replayed returns the message an earlier request with this idempotency
// key stored, when it was the same request and the key has not expired:
// what a retry of an accepted request is answered with even where a new
// request would now be refused (the recipient opted out meanwhile).
func (s *Store) Replayed(ctx context.Context, in sms.NewMessage, key string) (sms.Message, bool, error) {
	var prev struct {
		Hash      []byte     `db:"request_hash"`
		MessageID *uuid.UUID `db:"message_id"`
	}
	err := s.db.GetContext(ctx, &prev, `SELECT request_hash, message_id FROM sms.idempotency_keys
        WHERE account_id = $1 AND key = $2 AND created_at >= now() - $3::interval`,
		in.AccountID, key, fmt.Sprintf("%d seconds", int(sms.IdempotencyTTL.Seconds())))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return sms.Message{}, false, nil
	case err != nil:
		return sms.Message{}, false, storeErr("read idempotency key", err)
	case prev.MessageID == nil || string(prev.Hash) != string(sms.RequestHash(in.Draft)):
		return sms.Message{}, false, nil
	}
	m, err := s.Get(ctx, in.AccountID, *prev.MessageID)
	return m, err == nil, err
}

// InsertBatchIdempotent stores a batch under an idempotency key and keeps
// the answer respond builds for it, in one transaction. A key seen in the
// last 24 hours with the same request (hash) replays the kept answer; with
// another request, or one a single message used, it fails with
// sms.ErrIdempotencyMismatch.
func (s *Store) InsertBatchIdempotent(ctx context.Context, accountID int64, in []sms.NewMessage, key string, hash []byte,
	respond func([]sms.Message) ([]byte, error)) ([]byte, bool, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, false, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	var claimed bool
	err = tx.QueryRowxContext(ctx, `
        INSERT INTO sms.idempotency_keys AS k (account_id, key, request_hash, message_id, response)
        VALUES ($1, $2, $3, NULL, NULL)
        ON CONFLICT (account_id, key) DO UPDATE
            SET request_hash = EXCLUDED.request_hash, message_id = NULL, response = NULL, created_at = now()
            WHERE k.created_at < now() - $4::interval
        RETURNING true`, accountID, key, hash, fmt.Sprintf("%d seconds", int(sms.IdempotencyTTL.Seconds()))).Scan(&claimed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		var prev struct {
			Hash     []byte `db:"request_hash"`
			Response []byte `db:"response"`
		}
		if err := tx.GetContext(ctx, &prev, `SELECT request_hash, response FROM sms.idempotency_keys WHERE account_id = $1 AND key = $2`, accountID, key); err != nil {
			return nil, false, storeErr("read idempotency key", err)
		}
		if string(prev.Hash) != string(hash) || prev.Response == nil {
			return nil, false, sms.ErrIdempotencyMismatch
		}
		return prev.Response, true, nil
	case err != nil:
		return nil, false, storeErr("claim idempotency key", err)
	}
	msgs := newMessages(in)
	var batch sms.OutboxBatch
	if len(msgs) > 0 {
		insert, err := s.prepared(ctx, insertSQL)
		if err != nil {
			return nil, false, err
		}
		traces := make([]string, len(in))
		for i, n := range in {
			traces[i] = n.Traceparent
		}
		err = s.withShard(ctx, func(shard int) (err error) {
			batch, err = insertMessages(ctx, tx.StmtxContext(ctx, insert), msgs, traces, shard, nil)
			return err
		})
		if err != nil {
			return nil, false, err
		}
	}
	resp, err := respond(msgs)
	if err != nil {
		return nil, false, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sms.idempotency_keys SET response = $3 WHERE account_id = $1 AND key = $2`, accountID, key, resp); err != nil {
		return nil, false, storeErr("keep the batch's answer", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, false, storeErr("commit", err)
	}
	if len(batch.Records) > 0 {
		s.committed(batch)
	}
	return resp, false, nil
}

// DeleteExpiredIdempotencyKeys forgets keys older than the TTL.
func (s *Store) DeleteExpiredIdempotencyKeys(ctx context.Context) (int64, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM sms.idempotency_keys WHERE created_at < now() - $1::interval`,
		fmt.Sprintf("%d seconds", int(sms.IdempotencyTTL.Seconds())))
	if err != nil {
		return 0, storeErr("delete expired idempotency keys", err)
	}
	return res.RowsAffected()
}
