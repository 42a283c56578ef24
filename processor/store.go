package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// Store keeps delivery outcomes, the carrier's ids of their parts and its
// receipts in PostgreSQL schema processor.
type Store struct {
	db    *sqlx.DB
	stmts *platform.Statements
	// acked holds reports the API acknowledged until they are marked
	// reported: the next Record does it in its own transaction, saving a
	// commit (each commit's WAL flush took 1.7 ms on a loaded 2-core
	// machine), and FlushReported marks what no Record took.
	acked struct {
		sync.Mutex
		keys []reportKey
	}
}

// NewStore returns a store on db.
func NewStore(db *sqlx.DB) *Store { return &Store{db: db, stmts: platform.NewStatements(db)} }

// Try is one try of a message: a retry of a message is a new try, with its
// own outcome.
type Try struct {
	MessageID uuid.UUID
	Retry     int
}

// Report kinds: the outcome of a try, and later what its receipts came to.
const (
	kindOutcome = "outcome"
	kindReceipt = "receipt"
)

// Outcome is the recorded result of delivering one try of a message, or
// (Kind receipt) what its receipts came to; the reporter reports both.
type Outcome struct {
	MessageID     uuid.UUID  `db:"message_id"`
	Retry         int        `db:"retry"`
	Status        sms.Status `db:"status"`
	FailureReason *string    `db:"failure_reason"`
	Attempts      int        `db:"attempts"`
	ProcessedAt   time.Time  `db:"processed_at"`
	// Traceparent continues the message's trace in the report.
	Traceparent string `db:"traceparent"`
	// Kind is outcome (the default) or receipt.
	Kind string `db:"kind"`
	// CarrierMessageID is the carrier's id of the first part.
	CarrierMessageID *string `db:"carrier_message_id"`
	// Parts are the carrier's ids of every part, in order (not read back).
	Parts []string `db:"-"`
	// ReceiptsExpected says the carrier will send receipts for the parts.
	ReceiptsExpected bool `db:"receipts_expected"`
	// AttemptLog lists the carrier calls, for the message's history.
	AttemptLog attemptLog `db:"attempt_log"`
	// PartReceipts are what the receipts said (Kind receipt, read back).
	PartReceipts []sms.PartReceipt `db:"-"`
}

// attemptLog is a list of attempts stored as jsonb.
type attemptLog []sms.Attempt

// Scan reads the jsonb column.
func (a *attemptLog) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*a = nil
		return nil
	case []byte:
		return json.Unmarshal(v, a)
	case string:
		return json.Unmarshal([]byte(v), a)
	}
	return fmt.Errorf("attempt log: cannot scan %T", src)
}

func (o Outcome) key() reportKey {
	kind := o.Kind
	if kind == "" {
		kind = kindOutcome
	}
	return reportKey{o.MessageID, o.Retry, kind}
}

func (o Outcome) try() Try { return Try{o.MessageID, o.Retry} }

// reportKey names one unreported row.
type reportKey struct {
	id    uuid.UUID
	retry int
	kind  string
}

// Known returns which tries already have a recorded outcome.
func (s *Store) Known(ctx context.Context, tries []Try) (map[Try]bool, error) {
	ids, retries := make([]string, len(tries)), make([]int64, len(tries))
	for i, t := range tries {
		ids[i], retries[i] = t.MessageID.String(), int64(t.Retry)
	}
	// Not prepared: a generic plan made while the table was small scanned
	// it with the array as a plain filter, seconds a call once it had grown.
	var found []struct {
		ID    uuid.UUID `db:"message_id"`
		Retry int       `db:"retry"`
	}
	err := s.db.SelectContext(ctx, &found, `
        SELECT d.message_id, d.retry FROM processor.deliveries d
        JOIN unnest($1::uuid[], $2::int[]) AS t(id, retry) ON d.message_id = t.id AND d.retry = t.retry`,
		pq.Array(ids), pq.Array(retries))
	if err != nil {
		return nil, fmt.Errorf("look up deliveries: %w", err)
	}
	known := make(map[Try]bool, len(found))
	for _, f := range found {
		known[Try{f.ID, f.Retry}] = true
	}
	return known, nil
}

// recordSQL stores new outcomes, as unreported (SKIPPED ones need no
// report), and returns the tries it stored. An outcome already recorded
// for a try is left as it is, reported or not.
const recordSQL = `
        WITH recorded AS (
            INSERT INTO processor.deliveries (message_id, retry, status, failure_reason, attempts, processed_at, traceparent,
                carrier_message_id, receipts_expected, attempt_log)
            SELECT id, retry, status, NULLIF(reason, ''), attempts, at, tp, NULLIF(carrier_id, ''), expect, log
            FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::int[], $6::timestamptz[], $7::text[], $8::text[],
                $9::bool[], $10::jsonb[]) AS u(id, retry, status, reason, attempts, at, tp, carrier_id, expect, log)
            ON CONFLICT (message_id, retry) DO NOTHING
            RETURNING message_id, retry, status, processed_at
        ), queued AS (
            INSERT INTO processor.unreported (message_id, retry, kind, processed_at)
            SELECT message_id, retry, 'outcome', processed_at FROM recorded WHERE status <> 'SKIPPED'
        )
        SELECT message_id, retry FROM recorded`

// Record stores outcomes and the carrier ids of their parts, matches
// receipts that came before them, and forgets the acknowledged reports, in
// one transaction; it returns the outcomes it stored. An outcome already
// recorded for a try is kept (the first one wins, as when two replicas
// delivered the same message); only the stored ones may be reported, and
// only their parts are stored: a losing outcome's carrier ids would count
// as parts of the winner's try, which its receipts could then never settle.
func (s *Store) Record(ctx context.Context, outs []Outcome) ([]Outcome, error) {
	outs = firstPerTry(outs)
	n := len(outs)
	ids, retries, statuses, reasons := make([]string, n), make([]int64, n), make([]string, n), make([]string, n)
	attempts, at, traces, carrierIDs := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	expect, logs := make([]bool, n), make([]*string, n)
	for i, o := range outs {
		ids[i], retries[i], statuses[i], attempts[i] = o.MessageID.String(), int64(o.Retry), string(o.Status), int64(o.Attempts)
		at[i], traces[i], expect[i] = o.ProcessedAt.Format(time.RFC3339Nano), o.Traceparent, o.ReceiptsExpected
		if o.FailureReason != nil {
			reasons[i] = *o.FailureReason
		}
		if o.CarrierMessageID != nil {
			carrierIDs[i] = *o.CarrierMessageID
		}
		if len(o.AttemptLog) > 0 {
			b, err := json.Marshal(o.AttemptLog)
			if err != nil {
				return nil, fmt.Errorf("record outcomes: %w", err)
			}
			l := string(b)
			logs[i] = &l
		}
	}
	record, err := s.stmts.Get(ctx, recordSQL)
	if err != nil {
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	acked := s.takeAcked()
	var stored []Outcome
	err = s.inTx(ctx, func(tx *sqlx.Tx) error {
		if len(acked) > 0 {
			if err := forgetReported(ctx, tx, acked); err != nil {
				return err
			}
		}
		var rows []struct {
			ID    uuid.UUID `db:"message_id"`
			Retry int       `db:"retry"`
		}
		if err := tx.StmtxContext(ctx, record).SelectContext(ctx, &rows, pq.Array(ids), pq.Array(retries), pq.Array(statuses),
			pq.Array(reasons), pq.Array(attempts), pq.Array(at), pq.Array(traces), pq.Array(carrierIDs), pq.Array(expect), pq.Array(logs)); err != nil {
			return err
		}
		kept := make(map[Try]bool, len(rows))
		for _, r := range rows {
			kept[Try{r.ID, r.Retry}] = true
		}
		stored = stored[:0]
		var partIDs, partMsgs []string
		var partRetries, partNums []int64
		for _, o := range outs {
			if !kept[o.try()] {
				continue
			}
			stored = append(stored, o)
			for j, p := range o.Parts {
				partIDs, partMsgs = append(partIDs, carrier.NormalizeID(p)), append(partMsgs, o.MessageID.String())
				partRetries, partNums = append(partRetries, int64(o.Retry)), append(partNums, int64(j+1))
			}
		}
		if len(partIDs) == 0 {
			return nil
		}
		return recordParts(ctx, tx, partIDs, partMsgs, partRetries, partNums)
	})
	if err != nil {
		s.Acknowledged(acked)
		return nil, fmt.Errorf("record outcomes: %w", err)
	}
	return stored, nil
}

// firstPerTry drops every outcome but the first of each try, so that the
// outcome Record stores for a try given twice is known, not left to the
// order in which PostgreSQL inserts the rows.
func firstPerTry(outs []Outcome) []Outcome {
	seen := make(map[Try]bool, len(outs))
	var dup bool
	for _, o := range outs {
		if seen[o.try()] {
			dup = true
			break
		}
		seen[o.try()] = true
	}
	if !dup {
		return outs
	}
	clear(seen)
	first := make([]Outcome, 0, len(outs))
	for _, o := range outs {
		if !seen[o.try()] {
			seen[o.try()] = true
			first = append(first, o)
		}
	}
	return first
}

// recordParts stores the carrier ids of the parts of the tries just
// recorded (a carrier id stored before is left alone), gives the
// receipts that came before them their message, and settles the tries
// whose receipts are all in.
func recordParts(ctx context.Context, tx *sqlx.Tx, ids, msgs []string, retries, parts []int64) error {
	var matched []struct {
		ID    uuid.UUID `db:"message_id"`
		Retry int       `db:"retry"`
	}
	alts := make([]string, len(ids))
	for i, id := range ids {
		if forms := carrier.IDForms(id); len(forms) > 1 {
			alts[i] = forms[1]
		}
	}
	if err := lockCarrierIDs(ctx, tx, ids, alts); err != nil {
		return err
	}
	err := tx.SelectContext(ctx, &matched, `
        WITH p AS (
            INSERT INTO processor.carrier_parts (carrier_id, message_id, retry, part)
            SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::int[])
            ON CONFLICT (carrier_id) DO NOTHING
            RETURNING carrier_id, message_id, retry
        ), m AS (
            UPDATE processor.receipts r SET message_id = p.message_id, retry = p.retry
            FROM p JOIN unnest($1::text[], $5::text[]) AS a(id, alt) ON a.id = p.carrier_id
            WHERE r.message_id IS NULL AND (r.carrier_id = p.carrier_id OR r.carrier_id = a.alt)
            RETURNING r.message_id, r.retry
        )
        SELECT DISTINCT message_id, retry FROM m`, pq.Array(ids), pq.Array(msgs), pq.Array(retries), pq.Array(parts), pq.Array(alts))
	if err != nil {
		return fmt.Errorf("record parts: %w", err)
	}
	tries := make([]Try, len(matched))
	for i, m := range matched {
		tries[i] = Try{m.ID, m.Retry}
	}
	return settle(ctx, tx, tries)
}

// carrierIDLocks is the namespace (the upper 32 bits) of the advisory
// locks on carrier ids.
const carrierIDLocks = 0x534d5343 // "SMSC"

// lockCarrierIDs takes a transaction-scoped lock on each carrier id (in
// every form given), in one order. Storing a try's parts and storing a
// receipt for one of them each look for the other: without the lock, two
// transactions doing so at once would each miss the other's uncommitted
// row, leaving the receipt unmatched for good. With it, the second waits
// for the first to commit, and its next statement sees the first's rows.
func lockCarrierIDs(ctx context.Context, tx sqlx.ExecerContext, forms ...[]string) error {
	var keys []int64
	for _, ids := range forms {
		for _, id := range ids {
			if id != "" {
				h := fnv.New32a()
				_, _ = h.Write([]byte(id))
				keys = append(keys, carrierIDLocks<<32|int64(h.Sum32()))
			}
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k`, pq.Array(keys)); err != nil {
		return fmt.Errorf("lock carrier ids: %w", err)
	}
	return nil
}

// settleSQL settles tries whose receipts say enough: UNDELIVERED as soon as
// one part is undelivered or rejected, else once every part has its
// receipt, EXPIRED if one expired, DELIVERED if all were delivered. The
// settled tries get a receipt report.
const settleSQL = `
WITH t AS (
    SELECT * FROM unnest($1::uuid[], $2::int[]) AS t(message_id, retry)
), agg AS (
    SELECT t.message_id, t.retry,
        (SELECT count(*) FROM processor.carrier_parts p WHERE p.message_id = t.message_id AND p.retry = t.retry) AS parts,
        count(r.carrier_id) AS got, bool_or(r.status = 'UNDELIVERED') AS undelivered,
        bool_or(r.status = 'EXPIRED') AS expired, max(r.done_at) AS done_at
    FROM t JOIN processor.receipts r ON r.message_id = t.message_id AND r.retry = t.retry
    GROUP BY t.message_id, t.retry
), fin AS (
    UPDATE processor.deliveries d SET final_at = a.done_at,
        final_status = CASE WHEN a.undelivered THEN 'UNDELIVERED' WHEN a.expired THEN 'EXPIRED' ELSE 'DELIVERED' END
    FROM agg a WHERE d.message_id = a.message_id AND d.retry = a.retry AND d.status = 'SENT' AND d.final_status IS NULL
        AND (a.undelivered OR a.got >= a.parts)
    RETURNING d.message_id, d.retry, d.final_at
)
INSERT INTO processor.unreported (message_id, retry, kind, processed_at)
SELECT message_id, retry, 'receipt', final_at FROM fin ON CONFLICT DO NOTHING`

func settle(ctx context.Context, tx sqlx.ExecerContext, tries []Try) error {
	if len(tries) == 0 {
		return nil
	}
	ids, retries := make([]string, len(tries)), make([]int64, len(tries))
	for i, t := range tries {
		ids[i], retries[i] = t.MessageID.String(), int64(t.Retry)
	}
	if _, err := tx.ExecContext(ctx, settleSQL, pq.Array(ids), pq.Array(retries)); err != nil {
		return fmt.Errorf("settle receipts: %w", err)
	}
	return nil
}

// RecordReceipts stores receipts (the first final one of a part counts),
// matched to their message through the part's carrier id (tried as given,
// then in the other base), or kept unmatched until the part is recorded;
// and settles the tries whose receipts are all in. One transaction: once
// it returns nil, the receipts are durable and the SMSC may be told so.
func (s *Store) RecordReceipts(ctx context.Context, rs []carrier.Receipt) error {
	n := len(rs)
	ids, alts, statuses, states, errs, done := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, r := range rs {
		forms := carrier.IDForms(r.CarrierID)
		ids[i] = forms[0]
		if len(forms) > 1 {
			alts[i] = forms[1]
		}
		statuses[i], states[i], errs[i], done[i] = string(r.Status), r.State, r.Err, r.DoneAt.Format(time.RFC3339Nano)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := lockCarrierIDs(ctx, tx, ids, alts); err != nil {
			return err
		}
		var matched []struct {
			ID    uuid.UUID `db:"message_id"`
			Retry int       `db:"retry"`
		}
		err := tx.SelectContext(ctx, &matched, `
            WITH r AS (
                SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
                    AS r(carrier_id, alt, status, state, err, done_at)
            ), m AS (
                SELECT DISTINCT ON (r.carrier_id) r.*, p.message_id, p.retry FROM r
                LEFT JOIN processor.carrier_parts p ON p.carrier_id = r.carrier_id OR p.carrier_id = r.alt
                ORDER BY r.carrier_id, (p.carrier_id = r.carrier_id) DESC NULLS LAST
            ), ins AS (
                INSERT INTO processor.receipts (carrier_id, status, state, err, done_at, message_id, retry)
                SELECT carrier_id, status, state, err, done_at, message_id, retry FROM m
                ON CONFLICT (carrier_id) DO NOTHING
                RETURNING message_id, retry
            )
            SELECT DISTINCT message_id, retry FROM ins WHERE message_id IS NOT NULL`,
			pq.Array(ids), pq.Array(alts), pq.Array(statuses), pq.Array(states), pq.Array(errs), pq.Array(done))
		if err != nil {
			return fmt.Errorf("record receipts: %w", err)
		}
		tries := make([]Try, len(matched))
		for i, m := range matched {
			tries[i] = Try{m.ID, m.Retry}
		}
		return settle(ctx, tx, tries)
	})
}

// ExpireUnreceipted settles up to limit tries SENT longer than timeout ago
// whose receipts never all came: EXPIRED, with a receipt report. It
// returns how many.
func (s *Store) ExpireUnreceipted(ctx context.Context, timeout time.Duration, limit int) (int64, error) {
	res, err := s.db.ExecContext(ctx, `
        WITH fin AS (
            UPDATE processor.deliveries d SET final_status = 'EXPIRED', final_at = now()
            WHERE (d.message_id, d.retry) IN (
                SELECT message_id, retry FROM processor.deliveries
                WHERE receipts_expected AND final_status IS NULL AND status = 'SENT' AND processed_at < now() - $1::interval
                ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING d.message_id, d.retry, d.final_at
        )
        INSERT INTO processor.unreported (message_id, retry, kind, processed_at)
        SELECT message_id, retry, 'receipt', final_at FROM fin ON CONFLICT DO NOTHING`,
		fmt.Sprintf("%d milliseconds", timeout.Milliseconds()), limit)
	if err != nil {
		return 0, fmt.Errorf("expire unreceipted: %w", err)
	}
	return res.RowsAffected()
}

func (s *Store) inTx(ctx context.Context, fn func(*sqlx.Tx) error) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Acknowledged queues reports the API acknowledged, to be marked reported
// by the next Record or FlushReported. Until then a restart reports them
// again, which the API absorbs as duplicates.
func (s *Store) Acknowledged(keys []reportKey) {
	s.acked.Lock()
	s.acked.keys = append(s.acked.keys, keys...)
	s.acked.Unlock()
}

func (s *Store) takeAcked() []reportKey {
	s.acked.Lock()
	defer s.acked.Unlock()
	keys := s.acked.keys
	s.acked.keys = nil
	return keys
}

// FlushReported marks the acknowledged reports no Record has taken yet.
func (s *Store) FlushReported(ctx context.Context) error {
	keys := s.takeAcked()
	if len(keys) == 0 {
		return nil
	}
	if err := forgetReported(ctx, s.db, keys); err != nil {
		s.Acknowledged(keys)
		return fmt.Errorf("mark reported: %w", err)
	}
	return nil
}

// Unreported counts reports the API has not acknowledged yet.
func (s *Store) Unreported(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM processor.unreported`); err != nil {
		return 0, fmt.Errorf("count unreported: %w", err)
	}
	// Acknowledged reports whose rows wait for the next statement to
	// delete them are not waiting for the API any more.
	s.acked.Lock()
	n -= int64(len(s.acked.keys))
	s.acked.Unlock()
	return max(n, 0), nil
}

// ReportBatch claims up to limit unreported reports recorded at least
// olderThan ago, lets send report them, and marks them reported only if
// send succeeds. Other replicas skip the claimed rows meanwhile. A receipt
// report waits until its try's outcome is acknowledged, so the API never
// hears DELIVERED before SENT.
func (s *Store) ReportBatch(ctx context.Context, limit int, olderThan time.Duration, send func([]Outcome) error) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var outs []Outcome
	err = tx.SelectContext(ctx, &outs, `
        SELECT d.message_id, d.retry, u.kind,
            CASE u.kind WHEN 'receipt' THEN d.final_status ELSE d.status END AS status,
            CASE WHEN u.kind = 'receipt' AND d.final_status = 'EXPIRED' AND NOT EXISTS (
                    SELECT 1 FROM processor.receipts r WHERE r.message_id = d.message_id AND r.retry = d.retry AND r.status = 'EXPIRED')
                THEN 'expired: no receipt from the carrier in time'
                WHEN u.kind = 'receipt' AND d.final_status = 'UNDELIVERED' THEN 'undelivered: the carrier could not deliver the message'
                WHEN u.kind = 'receipt' AND d.final_status = 'EXPIRED' THEN 'expired: the carrier gave up before delivery'
                WHEN u.kind = 'receipt' THEN NULL ELSE d.failure_reason END AS failure_reason,
            d.attempts, u.processed_at, d.traceparent, d.carrier_message_id, d.receipts_expected, d.attempt_log
        FROM processor.unreported u JOIN processor.deliveries d ON d.message_id = u.message_id AND d.retry = u.retry
        -- Receipts have no in-memory hand-over to wait for.
        WHERE (u.kind = 'receipt' OR u.processed_at <= now() - $2::interval)
            AND (u.kind = 'outcome' OR NOT EXISTS (SELECT 1 FROM processor.unreported o
                WHERE o.message_id = u.message_id AND o.retry = u.retry AND o.kind = 'outcome'))
        ORDER BY u.processed_at LIMIT $1 FOR UPDATE OF u SKIP LOCKED`, limit, fmt.Sprintf("%d microseconds", olderThan.Microseconds()))
	if err != nil {
		return 0, fmt.Errorf("claim unreported: %w", err)
	}
	if len(outs) == 0 {
		return 0, nil
	}
	if err := s.loadPartReceipts(ctx, tx, outs); err != nil {
		return 0, err
	}
	if err := send(outs); err != nil {
		return 0, err
	}
	keys := make([]reportKey, len(outs))
	for i, o := range outs {
		keys[i] = o.key()
	}
	if err := forgetReported(ctx, tx, keys); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit reported: %w", err)
	}
	return len(outs), nil
}

// loadPartReceipts reads the receipts behind the receipt reports.
func (s *Store) loadPartReceipts(ctx context.Context, q sqlx.QueryerContext, outs []Outcome) error {
	var ids []string
	var retries []int64
	for _, o := range outs {
		if o.Kind == kindReceipt {
			ids, retries = append(ids, o.MessageID.String()), append(retries, int64(o.Retry))
		}
	}
	if len(ids) == 0 {
		return nil
	}
	var rows []struct {
		ID        uuid.UUID  `db:"message_id"`
		Retry     int        `db:"retry"`
		CarrierID string     `db:"carrier_id"`
		Status    sms.Status `db:"status"`
		State     string     `db:"state"`
		Err       string     `db:"err"`
		DoneAt    time.Time  `db:"done_at"`
	}
	err := sqlx.SelectContext(ctx, q, &rows, `
        SELECT r.message_id, r.retry, r.carrier_id, r.status, r.state, r.err, r.done_at
        FROM processor.receipts r JOIN unnest($1::uuid[], $2::int[]) AS t(id, retry) ON r.message_id = t.id AND r.retry = t.retry
        LEFT JOIN processor.carrier_parts p ON p.carrier_id = r.carrier_id
        ORDER BY p.part`, pq.Array(ids), pq.Array(retries))
	if err != nil {
		return fmt.Errorf("read receipts: %w", err)
	}
	byTry := map[Try][]sms.PartReceipt{}
	for _, r := range rows {
		done := r.DoneAt
		byTry[Try{r.ID, r.Retry}] = append(byTry[Try{r.ID, r.Retry}], sms.PartReceipt{CarrierID: r.CarrierID, Status: r.Status, State: r.State, Err: r.Err, DoneAt: &done})
	}
	for i := range outs {
		if outs[i].Kind == kindReceipt {
			outs[i].PartReceipts = byTry[outs[i].try()]
		}
	}
	return nil
}

// forgetReported drops acknowledged reports from the unreported ones.
func forgetReported(ctx context.Context, db sqlx.ExecerContext, keys []reportKey) error {
	ids, retries, kinds := make([]string, len(keys)), make([]int64, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ids[i], retries[i], kinds[i] = k.id.String(), int64(k.retry), k.kind
	}
	if _, err := db.ExecContext(ctx, `
        DELETE FROM processor.unreported u USING unnest($1::uuid[], $2::int[], $3::text[]) AS k(id, retry, kind)
        WHERE u.message_id = k.id AND u.retry = k.retry AND u.kind = k.kind`, pq.Array(ids), pq.Array(retries), pq.Array(kinds)); err != nil {
		return fmt.Errorf("mark reported: %w", err)
	}
	return nil
}

// markReported forgets the reports the API has acknowledged.
func markReported(ctx context.Context, db sqlx.ExecerContext, outs []Outcome) error {
	keys := make([]reportKey, len(outs))
	for i, o := range outs {
		keys[i] = o.key()
	}
	return forgetReported(ctx, db, keys)
}

// Prune deletes up to limit reported outcomes (with their parts and
// receipts) of messages created and processed before cutoff, and returns
// how many outcomes it deleted. Message ids are UUIDv7, so the primary key
// bounds the scan to old rows. Unreported outcomes stay whatever their age.
func (s *Store) Prune(ctx context.Context, cutoff time.Time, limit int) (int64, error) {
	var n int64
	err := s.db.GetContext(ctx, &n, `
        WITH gone AS (
            DELETE FROM processor.deliveries WHERE (message_id, retry) IN (
                SELECT d.message_id, d.retry FROM processor.deliveries d
                WHERE d.message_id < $1::uuid AND d.processed_at < $2
                    AND NOT EXISTS (SELECT 1 FROM processor.unreported u WHERE u.message_id = d.message_id AND u.retry = d.retry)
                LIMIT $3)
            RETURNING message_id, retry
        ), parts AS (
            DELETE FROM processor.carrier_parts p USING gone g WHERE p.message_id = g.message_id AND p.retry = g.retry
        ), receipts AS (
            DELETE FROM processor.receipts r USING gone g WHERE r.message_id = g.message_id AND r.retry = g.retry
        )
        SELECT count(*) FROM gone`, sms.UUIDv7Floor(cutoff), cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("prune deliveries: %w", err)
	}
	return n, nil
}

// String is a try's log form.
func (t Try) String() string { return t.MessageID.String() + "/" + strconv.Itoa(t.Retry) }
