package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

func sentOutcome(id uuid.UUID, at time.Time) Outcome {
	return Outcome{MessageID: id, Status: sms.StatusSent, Attempts: 1, ProcessedAt: at}
}

func failedOutcome(id uuid.UUID, reason string, at time.Time) Outcome {
	return Outcome{MessageID: id, Status: sms.StatusFailed, FailureReason: &reason, Attempts: 2, ProcessedAt: at}
}

// insertOutcomes records n SENT outcomes one millisecond apart and returns
// their ids, oldest first.
func insertOutcomes(tb testing.TB, store *Store, n int) []uuid.UUID {
	tb.Helper()
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Millisecond)
	ids := make([]uuid.UUID, n)
	outs := make([]Outcome, n)
	for i := range outs {
		ids[i] = uuid.New()
		outs[i] = sentOutcome(ids[i], base.Add(time.Duration(i)*time.Millisecond))
	}
	if _, err := store.Record(context.Background(), outs); err != nil {
		tb.Fatalf("Record: %v", err)
	}
	return ids
}

// isReported tells whether the API acknowledged id's recorded outcome.
func isReported(tb testing.TB, db *sqlx.DB, id uuid.UUID) bool {
	tb.Helper()
	var recorded, unreported bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM processor.deliveries WHERE message_id = $1),
        EXISTS (SELECT 1 FROM processor.unreported WHERE message_id = $1)`, id).Scan(&recorded, &unreported); err != nil {
		tb.Fatalf("reported state of %s: %v", id, err)
	}
	if !recorded {
		tb.Fatalf("no outcome recorded for %s", id)
	}
	return !unreported
}

// TestStoreRecordFirstWins checks that an outcome once recorded is never
// replaced: a redelivered message's second outcome is dropped.
func TestStoreRecordFirstWins(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC)
	a, b := uuid.New(), uuid.New()
	cases := []struct {
		name    string
		batches [][]Outcome
		// stored is what each Record call says it stored: the only
		// outcomes the processor may report.
		stored [][]uuid.UUID
		want   map[uuid.UUID]Outcome
	}{
		{
			name:    "single outcome is stored as given",
			batches: [][]Outcome{{failedOutcome(a, "permanent: blocked", at)}},
			stored:  [][]uuid.UUID{{a}},
			want:    map[uuid.UUID]Outcome{a: failedOutcome(a, "permanent: blocked", at)},
		},
		{
			name:    "a later outcome for the same message is ignored",
			batches: [][]Outcome{{sentOutcome(a, at)}, {failedOutcome(a, "permanent: late", at.Add(time.Second))}},
			stored:  [][]uuid.UUID{{a}, nil},
			want:    map[uuid.UUID]Outcome{a: sentOutcome(a, at)},
		},
		{
			name:    "a batch mixing known and new messages stores only the new ones",
			batches: [][]Outcome{{sentOutcome(a, at)}, {failedOutcome(a, "permanent: late", at), sentOutcome(b, at.Add(time.Second))}},
			stored:  [][]uuid.UUID{{a}, {b}},
			want:    map[uuid.UUID]Outcome{a: sentOutcome(a, at), b: sentOutcome(b, at.Add(time.Second))},
		},
		{
			name:    "the same message twice in one batch is stored once, without error",
			batches: [][]Outcome{{sentOutcome(a, at), failedOutcome(a, "permanent: dup", at)}},
			stored:  [][]uuid.UUID{{a}},
			want:    map[uuid.UUID]Outcome{a: sentOutcome(a, at)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			store := NewStore(db)
			for i, batch := range tc.batches {
				stored, err := store.Record(context.Background(), batch)
				if err != nil {
					t.Fatalf("Record batch %d: %v", i, err)
				}
				var ids []uuid.UUID
				for _, o := range stored {
					ids = append(ids, o.MessageID)
					if w := tc.want[o.MessageID]; o.Status != w.Status || !equalReason(o.FailureReason, w.FailureReason) {
						t.Errorf("batch %d: Record returned %s %s/%v, but the stored outcome is %s/%v", i, o.MessageID, o.Status, deref(o.FailureReason), w.Status, deref(w.FailureReason))
					}
				}
				if fmt.Sprint(ids) != fmt.Sprint(tc.stored[i]) {
					t.Errorf("batch %d: Record returned %v as stored, want %v", i, ids, tc.stored[i])
				}
			}
			got := recordedOutcomes(t, db)
			if len(got) != len(tc.want) {
				t.Fatalf("%d rows stored, want %d: %+v", len(got), len(tc.want), got)
			}
			for id, w := range tc.want {
				g, ok := got[id]
				if !ok {
					t.Fatalf("no row for %s", id)
				}
				if g.Status != w.Status || g.Attempts != w.Attempts || !g.ProcessedAt.Equal(w.ProcessedAt) || !equalReason(g.FailureReason, w.FailureReason) {
					t.Errorf("row %s = %s/%v/%d/%v, want %s/%v/%d/%v", id,
						g.Status, deref(g.FailureReason), g.Attempts, g.ProcessedAt, w.Status, deref(w.FailureReason), w.Attempts, w.ProcessedAt)
				}
			}
			if n, err := store.Unreported(context.Background()); err != nil || n != int64(len(tc.want)) {
				t.Errorf("Unreported = %d, %v; want %d", n, err, len(tc.want))
			}
		})
	}
}

func equalReason(a, b *string) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestStoreKnown checks that Known reports exactly the recorded messages.
func TestStoreKnown(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	store := NewStore(db)
	recorded := insertOutcomes(t, store, 3)
	unknown := uuid.New()
	cases := []struct {
		name string
		ids  []uuid.UUID
		want []uuid.UUID
	}{
		{"no ids", nil, nil},
		{"only unknown", []uuid.UUID{unknown}, nil},
		{"only recorded", recorded, recorded},
		{"mixed, with a duplicate id", []uuid.UUID{recorded[0], unknown, recorded[2], recorded[0]}, []uuid.UUID{recorded[0], recorded[2]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tries := make([]Try, len(tc.ids))
			for i, id := range tc.ids {
				tries[i] = Try{MessageID: id}
			}
			got, err := store.Known(context.Background(), tries)
			if err != nil {
				t.Fatalf("Known: %v", err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Known = %v, want %v", got, tc.want)
			}
			for _, id := range tc.want {
				if !got[Try{MessageID: id}] {
					t.Errorf("Known misses recorded %s", id)
				}
				if got[Try{MessageID: id, Retry: 1}] {
					t.Errorf("Known claims try 1 of %s, recorded only for try 0", id)
				}
			}
			if got[Try{MessageID: unknown}] {
				t.Errorf("Known claims the unrecorded %s", unknown)
			}
		})
	}
}

// TestStoreReportBatch checks that outcomes are marked reported only when
// the send succeeds, oldest first, a batch at a time.
func TestStoreReportBatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		outcomes     int
		limit        int
		sendErr      error
		wantN        int
		wantErr      bool
		wantReported int // oldest first
	}{
		{name: "success marks the batch", outcomes: 5, limit: 10, wantN: 5, wantReported: 5},
		{name: "limit bounds the batch to the oldest", outcomes: 5, limit: 3, wantN: 3, wantReported: 3},
		{name: "failed send marks nothing", outcomes: 5, limit: 10, sendErr: errors.New("API down"), wantErr: true, wantReported: 0},
		{name: "nothing to report does not call send", outcomes: 0, limit: 10, wantN: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			store := NewStore(db)
			ids := insertOutcomes(t, store, tc.outcomes)
			var sent []Outcome
			n, err := store.ReportBatch(context.Background(), tc.limit, 0, func(outs []Outcome) error {
				sent = append(sent, outs...)
				return tc.sendErr
			})
			if (err != nil) != tc.wantErr {
				t.Fatalf("ReportBatch error = %v, want error %v", err, tc.wantErr)
			}
			if tc.sendErr != nil && !errors.Is(err, tc.sendErr) {
				t.Errorf("ReportBatch error = %v, want the send error", err)
			}
			if n != tc.wantN {
				t.Errorf("ReportBatch = %d, want %d", n, tc.wantN)
			}
			if tc.outcomes == 0 && sent != nil {
				t.Errorf("send called with %d outcomes when there was nothing to report", len(sent))
			}
			if tc.outcomes > 0 && len(sent) != min(tc.limit, tc.outcomes) {
				t.Errorf("send got %d outcomes, want %d", len(sent), min(tc.limit, tc.outcomes))
			}
			for i, o := range sent {
				if o.MessageID != ids[i] {
					t.Errorf("send got %s at %d, want the oldest unreported %s", o.MessageID, i, ids[i])
				}
				if o.Status != sms.StatusSent || o.Attempts != 1 || o.ProcessedAt.IsZero() {
					t.Errorf("send got an incomplete outcome %+v", o)
				}
			}
			for i, id := range ids {
				if got, want := isReported(t, db, id), i < tc.wantReported; got != want {
					t.Errorf("outcome %d reported = %v, want %v", i, got, want)
				}
			}
			left, err := store.Unreported(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if left != int64(tc.outcomes-tc.wantReported) {
				t.Errorf("Unreported = %d, want %d", left, tc.outcomes-tc.wantReported)
			}
		})
	}
}

// TestStoreReportBatchClaimsDoNotOverlap checks that a batch being sent is
// skipped, not waited for, by other reporters: while one send is held open
// another ReportBatch returns different outcomes.
func TestStoreReportBatchClaimsDoNotOverlap(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	store := NewStore(db)
	insertOutcomes(t, store, 10)

	claimed := make(chan []Outcome, 1)
	release := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := store.ReportBatch(context.Background(), 5, 0, func(outs []Outcome) error {
			claimed <- outs
			<-release
			return nil
		})
		firstDone <- err
	}()
	var first []Outcome
	select {
	case first = <-claimed:
	case <-time.After(waitFor):
		t.Fatal("first ReportBatch never called send")
	}
	// Without SKIP LOCKED this blocks on the first batch's row locks until
	// the timeout; without FOR UPDATE it hands out the same rows.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var second []Outcome
	n, err := store.ReportBatch(ctx, 5, 0, func(outs []Outcome) error { second = outs; return nil })
	close(release)
	if err != nil {
		t.Fatalf("second ReportBatch while the first is sending: %v", err)
	}
	if n != 5 {
		t.Fatalf("second ReportBatch reported %d, want the 5 not claimed", n)
	}
	seen := make(map[uuid.UUID]bool)
	for _, o := range first {
		seen[o.MessageID] = true
	}
	for _, o := range second {
		if seen[o.MessageID] {
			t.Errorf("%s handed to both senders", o.MessageID)
		}
	}
	if err := <-firstDone; err != nil {
		t.Fatalf("first ReportBatch: %v", err)
	}
	if left, _ := store.Unreported(context.Background()); left != 0 {
		t.Fatalf("Unreported = %d after both batches, want 0", left)
	}
}

// TestStoreReportBatchConcurrent checks that many reporters draining the
// same backlog hand every outcome to exactly one sender.
func TestStoreReportBatchConcurrent(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	store := NewStore(db)
	const total, workers = 300, 8
	ids := insertOutcomes(t, store, total)

	var mu sync.Mutex
	handed := make(map[uuid.UUID]int)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				n, err := store.ReportBatch(context.Background(), 7, 0, func(outs []Outcome) error {
					mu.Lock()
					for _, o := range outs {
						handed[o.MessageID]++
					}
					mu.Unlock()
					time.Sleep(5 * time.Millisecond) // hold the claim while others look
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ReportBatch: %v", err)
	}
	// A worker stops when it sees nothing it can claim, which may happen
	// while others still hold batches; those batches finish before Wait.
	for _, id := range ids {
		if handed[id] != 1 {
			t.Errorf("outcome %s handed to %d senders, want 1", id, handed[id])
		}
	}
	if left, _ := store.Unreported(context.Background()); left != 0 {
		t.Errorf("Unreported = %d, want 0", left)
	}
}

// TestRecordMarksAcknowledged checks that the next Record marks the
// outcomes handed to Acknowledged in its own statement, that a failed
// Record keeps them for the next one, and that FlushReported marks the rest.
func TestRecordMarksAcknowledged(t *testing.T) {
	t.Parallel()
	store := NewStore(platformtest.NewDB(t))
	ctx := context.Background()
	at := time.Now().UTC().Truncate(time.Microsecond)
	first := []Outcome{sentOutcome(uuid.New(), at), sentOutcome(uuid.New(), at), sentOutcome(uuid.New(), at)}
	if _, err := store.Record(ctx, first); err != nil {
		t.Fatal(err)
	}
	store.Acknowledged([]reportKey{first[0].key(), first[1].key()})
	bad := sentOutcome(uuid.New(), at)
	bad.Status = "LOST" // refused by the table's check
	if _, err := store.Record(ctx, []Outcome{bad}); err == nil {
		t.Fatal("an outcome with an unknown status was recorded")
	}
	// Acknowledged, but their rows stay until a statement deletes them;
	// Unreported no longer counts them.
	if n, err := store.Unreported(ctx); err != nil || n != 1 {
		t.Fatalf("Unreported with 2 of 3 acknowledged = %d, %v; want 1", n, err)
	}
	if n, err := unreportedRows(store); err != nil || n != 3 {
		t.Fatalf("Unreported after a failed Record = %d, %v; want 3", n, err)
	}
	if _, err := store.Record(ctx, []Outcome{sentOutcome(uuid.New(), at)}); err != nil {
		t.Fatal(err)
	}
	if n, err := unreportedRows(store); err != nil || n != 2 {
		t.Fatalf("Unreported after the next Record = %d, %v; want 2 (first[2] and the new one)", n, err)
	}
	store.Acknowledged([]reportKey{first[2].key()})
	if err := store.FlushReported(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := unreportedRows(store); err != nil || n != 1 {
		t.Errorf("Unreported after FlushReported = %d, %v; want 1", n, err)
	}
}

// unreportedRows counts the rows of processor.unreported.
func unreportedRows(s *Store) (int64, error) {
	var n int64
	err := s.db.Get(&n, `SELECT count(*) FROM processor.unreported`)
	return n, err
}
