package postgres

import (
	"bytes"
	"context"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms"
)

// applySQL applies delivery reports: each message whose move (from its
// status now to the reported one) sms.CanMove allows moves, records its
// events, and shifts the counters; the others are left alone, so
// duplicates, late and out-of-order reports change and count nothing. The
// rows are locked first, in id order, so concurrent batches see each
// other's moves and don't deadlock.
var applySQL = `
WITH r AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::jsonb[], $8::int[])
        AS r(id, status, reason, carrier_id, at, events, retry)
), locked AS (
    SELECT m.id, m.status, m.retries FROM sms.messages m WHERE m.id = ANY($1::uuid[]) ORDER BY m.id FOR UPDATE
), moves AS (
    SELECT r.*, l.status AS old FROM r JOIN locked l ON l.id = r.id
    WHERE (l.status, r.status) IN (` + allowedMoves + `) AND l.retries = r.retry
), upd AS (
    UPDATE sms.messages m SET status = mv.status,
        failure_reason = CASE WHEN mv.status IN ('SENT', 'DELIVERED') THEN m.failure_reason ELSE NULLIF(mv.reason, '') END,
        carrier_message_id = COALESCE(NULLIF(mv.carrier_id, ''), m.carrier_message_id),
        -- Receipts' done dates have minute precision (SMPP): never before
        -- the message was known to be at the carrier.
        delivered_at = CASE WHEN mv.status = 'DELIVERED' THEN GREATEST(mv.at, m.updated_at) ELSE m.delivered_at END,
        updated_at = now(), last_seq = m.last_seq + jsonb_array_length(mv.events)
    FROM moves mv WHERE m.id = mv.id
    RETURNING m.id, m.account_id, mv.old, m.status, m.failure_reason, m.created_at, m.last_seq, mv.events
), ev AS (` + eventsInsertSQL + `
), counted AS (` + countersShiftSQL("$7") + `
)
SELECT id, old, status, failure_reason, created_at FROM upd`

// ApplyReports applies delivery reports in one statement. Reports must be
// valid; a message id given twice is applied once.
func (s *Store) ApplyReports(ctx context.Context, reports []sms.DeliveryReport) ([]sms.AppliedReport, error) {
	seen := make(map[uuid.UUID]bool, len(reports))
	n := len(reports)
	ids, statuses, reasons, carrierIDs := make([]string, 0, n), make([]string, 0, n), make([]string, 0, n), make([]string, 0, n)
	at, events, retries := make([]string, 0, n), make([]string, 0, n), make([]int64, 0, n)
	// Sorted ids lock rows in one order, so concurrent batches don't
	// deadlock. The sort is stable so that of several reports for one
	// message, the first in the request is the one applied.
	sorted := append([]sms.DeliveryReport(nil), reports...)
	sort.SliceStable(sorted, func(i, j int) bool { return bytes.Compare(sorted[i].MessageID[:], sorted[j].MessageID[:]) < 0 })
	for _, r := range sorted {
		if seen[r.MessageID] {
			continue
		}
		seen[r.MessageID] = true
		reason := ""
		if r.FailureReason != nil && r.Status != sms.StatusSent && r.Status != sms.StatusDelivered {
			reason = *r.FailureReason
		}
		evs, err := eventsJSON(reportEvents(r))
		if err != nil {
			return nil, err
		}
		ids, statuses, reasons = append(ids, r.MessageID.String()), append(statuses, string(r.Status)), append(reasons, reason)
		carrierIDs, at, events = append(carrierIDs, r.CarrierMessageID), append(at, r.ProcessedAt.Format(time.RFC3339Nano)), append(events, evs)
		retries = append(retries, int64(r.Retry))
	}
	apply, err := s.prepared(ctx, applySQL)
	if err != nil {
		return nil, err
	}
	var applied []struct {
		ID            uuid.UUID  `db:"id"`
		Old           sms.Status `db:"old"`
		Status        sms.Status `db:"status"`
		FailureReason *string    `db:"failure_reason"`
		CreatedAt     time.Time  `db:"created_at"`
	}
	err = s.withShard(ctx, func(shard int) error {
		if err := apply.SelectContext(ctx, &applied, pq.Array(ids), pq.Array(statuses), pq.Array(reasons), pq.Array(carrierIDs),
			pq.Array(at), pq.Array(events), shard, pq.Array(retries)); err != nil {
			return storeErr("apply reports", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	found := make(map[uuid.UUID]sms.AppliedReport, len(ids))
	for _, r := range applied {
		found[r.ID] = sms.AppliedReport{MessageID: r.ID, Outcome: sms.ReportApplied, Status: r.Status, Previous: r.Old,
			FailureReason: r.FailureReason, CreatedAt: &r.CreatedAt}
	}
	// Usually every report applies. Those that didn't are duplicates
	// (already past that status) or unknown ids; only they are looked up
	// again.
	if len(applied) < len(ids) {
		var rest []string
		for _, r := range sorted {
			if _, ok := found[r.MessageID]; !ok {
				rest = append(rest, r.MessageID.String())
			}
		}
		var final []struct {
			ID     uuid.UUID  `db:"id"`
			Status sms.Status `db:"status"`
		}
		if err := s.db.SelectContext(ctx, &final, `SELECT id, status FROM sms.messages WHERE id = ANY($1::uuid[])`, pq.Array(rest)); err != nil {
			return nil, storeErr("look up reported messages", err)
		}
		for _, m := range final {
			found[m.ID] = sms.AppliedReport{MessageID: m.ID, Outcome: sms.ReportDuplicate, Status: m.Status}
		}
	}
	out := make([]sms.AppliedReport, 0, len(ids))
	for _, r := range sorted {
		a, ok := found[r.MessageID]
		if !ok {
			a = sms.AppliedReport{MessageID: r.MessageID, Outcome: sms.ReportNotFound}
		}
		if len(out) > 0 && out[len(out)-1].MessageID == r.MessageID {
			continue // given twice: applied once (sorted, so repeats are adjacent)
		}
		out = append(out, a)
	}
	return out, nil
}
