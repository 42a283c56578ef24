package processor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// Store keeps delivery outcomes in PostgreSQL schema processor.
type Store struct {
	db    *sqlx.DB
	stmts *platform.Statements
	// acked holds outcomes the API acknowledged until they are marked
	// reported: the next Record does it in its own transaction, saving a
	// commit (each commit's WAL flush took 1.7 ms on a loaded 2-core
	// machine), and FlushReported marks what no Record took.
	acked struct {
		sync.Mutex
		ids []string
	}
}

// NewStore returns a store on db.
func NewStore(db *sqlx.DB) *Store { return &Store{db: db, stmts: platform.NewStatements(db)} }

// recordSQL stores new outcomes, as unreported, and returns the ids it
// stored. An outcome already recorded is left as it is, reported or not.
const recordSQL = `
        WITH recorded AS (
            INSERT INTO processor.deliveries (message_id, status, failure_reason, attempts, processed_at, traceparent)
            SELECT id, status, NULLIF(reason, ''), attempts, at, tp
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[]) AS u(id, status, reason, attempts, at, tp)
            ON CONFLICT (message_id) DO NOTHING
            RETURNING message_id, processed_at
        )
        INSERT INTO processor.unreported (message_id, processed_at) SELECT message_id, processed_at FROM recorded
        RETURNING message_id`

// Outcome is the recorded result of delivering one message.
type Outcome struct {
	MessageID     uuid.UUID  `db:"message_id"`
	Status        sms.Status `db:"status"`
	FailureReason *string    `db:"failure_reason"`
	Attempts      int        `db:"attempts"`
	ProcessedAt   time.Time  `db:"processed_at"`
	// Traceparent continues the message's trace in the report.
	Traceparent string `db:"traceparent"`
}

// Known returns which of ids already have a recorded outcome.
func (s *Store) Known(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	// Not prepared: a generic plan made while the table was small scanned
	// it with the array as a plain filter, seconds a call once it had grown.
	var found []uuid.UUID
	if err := s.db.SelectContext(ctx, &found, `SELECT message_id FROM processor.deliveries WHERE message_id = ANY($1::uuid[])`, pq.Array(strs)); err != nil {
		return nil, fmt.Errorf("look up deliveries: %w", err)
	}
	known := make(map[uuid.UUID]bool, len(found))
	for _, id := range found {
		known[id] = true
	}
	return known, nil
}

// Record stores outcomes, and forgets the acknowledged ones, in one
// transaction, and returns the outcomes it stored. An outcome already
// recorded for a message is kept (the first one wins, as when two replicas
// delivered the same message); only the stored ones may be reported.
func (s *Store) Record(ctx context.Context, outs []Outcome) ([]Outcome, error) {
	n := len(outs)
	ids, statuses, reasons, attempts, at := make([]string, n), make([]string, n), make([]string, n), make([]int64, n), make([]string, n)
	traces := make([]string, n)
	for i, o := range outs {
		ids[i], statuses[i], attempts[i], at[i] = o.MessageID.String(), string(o.Status), int64(o.Attempts), o.ProcessedAt.Format(time.RFC3339Nano)
		traces[i] = o.Traceparent
		if o.FailureReason != nil {
			reasons[i] = *o.FailureReason
		}
	}
	record, err := s.stmts.Get(ctx, recordSQL)
	if err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	acked := s.takeAcked()
	args := []any{pq.Array(ids), pq.Array(statuses), pq.Array(reasons), pq.Array(attempts), pq.Array(at), pq.Array(traces)}
	var stored []uuid.UUID
	if len(acked) == 0 {
		err = record.SelectContext(ctx, &stored, args...)
	} else {
		stored, err = s.recordAndForget(ctx, record, args, acked)
	}
	if err != nil {
		s.Acknowledged(acked)
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	if len(stored) == len(outs) {
		return outs, nil
	}
	kept := make(map[uuid.UUID]bool, len(stored))
	for _, id := range stored {
		kept[id] = true
	}
	out := make([]Outcome, 0, len(stored))
	for _, o := range outs {
		if kept[o.MessageID] {
			out = append(out, o)
			delete(kept, o.MessageID) // one outcome per message, even if given twice
		}
	}
	return out, nil
}

// recordAndForget records outcomes and forgets acknowledged ones in one
// commit, and returns the ids it stored. The delete is planned for its ids
// each time (not prepared), so that a large unreported backlog is read
// through its index.
func (s *Store) recordAndForget(ctx context.Context, record *sqlx.Stmt, args []any, acked []string) ([]uuid.UUID, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	if err := forgetReported(ctx, tx, acked); err != nil {
		return nil, err
	}
	var stored []uuid.UUID
	if err := tx.StmtxContext(ctx, record).SelectContext(ctx, &stored, args...); err != nil {
		return nil, err
	}
	return stored, tx.Commit()
}

// Acknowledged queues outcomes the API acknowledged, to be marked reported
// by the next Record or FlushReported. Until then a restart reports them
// again, which the API absorbs as duplicates.
func (s *Store) Acknowledged(ids []string) {
	s.acked.Lock()
	s.acked.ids = append(s.acked.ids, ids...)
	s.acked.Unlock()
}

func (s *Store) takeAcked() []string {
	s.acked.Lock()
	defer s.acked.Unlock()
	ids := s.acked.ids
	s.acked.ids = nil
	return ids
}

// FlushReported marks the acknowledged outcomes no Record has taken yet.
func (s *Store) FlushReported(ctx context.Context) error {
	ids := s.takeAcked()
	if len(ids) == 0 {
		return nil
	}
	if err := forgetReported(ctx, s.db, ids); err != nil {
		s.Acknowledged(ids)
		return fmt.Errorf("mark reported: %w", err)
	}
	return nil
}

// Unreported counts outcomes the API has not acknowledged yet.
func (s *Store) Unreported(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM processor.unreported`); err != nil {
		return 0, fmt.Errorf("count unreported: %w", err)
	}
	// Acknowledged outcomes whose rows wait for the next statement to
	// delete them are not waiting for the API any more.
	s.acked.Lock()
	n -= int64(len(s.acked.ids))
	s.acked.Unlock()
	return max(n, 0), nil
}

// ReportBatch claims up to limit unreported outcomes recorded at least
// olderThan ago, lets send report them, and marks them reported only if
// send succeeds. Other replicas skip the claimed rows meanwhile.
func (s *Store) ReportBatch(ctx context.Context, limit int, olderThan time.Duration, send func([]Outcome) error) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var outs []Outcome
	err = tx.SelectContext(ctx, &outs, `
        SELECT d.message_id, d.status, d.failure_reason, d.attempts, d.processed_at, d.traceparent
        FROM processor.unreported u JOIN processor.deliveries d ON d.message_id = u.message_id
        WHERE u.processed_at <= now() - $2::interval
        ORDER BY u.processed_at LIMIT $1 FOR UPDATE OF u SKIP LOCKED`, limit, fmt.Sprintf("%d microseconds", olderThan.Microseconds()))
	if err != nil {
		return 0, fmt.Errorf("claim unreported: %w", err)
	}
	if len(outs) == 0 {
		return 0, nil
	}
	if err := send(outs); err != nil {
		return 0, err
	}
	if err := markReported(ctx, tx, outs); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit reported: %w", err)
	}
	return len(outs), nil
}

// markReported forgets the outcomes the API has acknowledged.
func markReported(ctx context.Context, db sqlx.ExecerContext, outs []Outcome) error {
	ids := make([]string, len(outs))
	for i, o := range outs {
		ids[i] = o.MessageID.String()
	}
	return forgetReported(ctx, db, ids)
}

// forgetReported drops acknowledged outcomes from the unreported ones.
func forgetReported(ctx context.Context, db sqlx.ExecerContext, ids []string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM processor.unreported WHERE message_id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
		return fmt.Errorf("mark reported: %w", err)
	}
	return nil
}

// Prune deletes up to limit reported outcomes of messages created and
// processed before cutoff, and returns how many it deleted. Message ids are
// UUIDv7, so the primary key bounds the scan to old rows. Unreported
// outcomes stay whatever their age.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	res, err := s.db.ExecContext(ctx, `
        DELETE FROM processor.deliveries WHERE message_id IN (
            SELECT d.message_id FROM processor.deliveries d
            WHERE d.message_id < $1::uuid AND d.processed_at < $2
                AND NOT EXISTS (SELECT 1 FROM processor.unreported u WHERE u.message_id = d.message_id)
            LIMIT $3)`, sms.UUIDv7Floor(cutoff), cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return res.RowsAffected()
}
