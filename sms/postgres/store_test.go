package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
)

func TestStoreInsertBatch(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	in := []sms.NewMessage{
		{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "one")},
		{AccountID: 2, Draft: smstest.Draft("+442071838750", "+14155552671", "два")},
		{AccountID: 1, Draft: smstest.Draft("Acme", "+442071838750", "three")},
	}
	msgs, err := s.Insert(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("%d messages back, want 3", len(msgs))
	}
	for i, m := range msgs {
		got, err := s.Get(ctx, in[i].AccountID, m.ID)
		if err != nil {
			t.Fatalf("message %d not stored: %v", i, err)
		}
		if got.Text != in[i].Text || got.Sender != in[i].Sender || got.Status != sms.StatusPending || got.Encoding != in[i].Encoding ||
			got.Segments != in[i].Segments || !got.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("stored %+v, inserted %+v", got, m)
		}
	}
	if got := smstest.Outboxed(t, db); !slices.Equal(got, smstest.IDs(msgs)) {
		t.Errorf("outbox holds %v, want %v", got, smstest.IDs(msgs))
	}
	if n := smstest.Count(t, db, "outbox"); n != 1 {
		t.Errorf("%d outbox rows for one batch, want 1", n)
	}
	if p, _, _ := smstest.Counters(t, db, 1); p != 2 {
		t.Errorf("account 1 pending %d, want 2", p)
	}
	if p, _, _ := smstest.Counters(t, db, 2); p != 1 {
		t.Errorf("account 2 pending %d, want 1", p)
	}
	// The counters add up across batches.
	if _, err := s.Insert(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := smstest.Counters(t, db, 1); p != 3 {
		t.Errorf("account 1 pending %d after another batch, want 3", p)
	}
	if _, err := s.Get(ctx, 2, msgs[0].ID); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("another account's message: %v, want ErrNotFound", err)
	}
}

func TestStoreInsertIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		msgs func() []sms.Message
	}{
		{"a duplicate id", func() []sms.Message {
			ms := newMessages([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "a")}, {AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "b")}})
			ms[1].ID = ms[0].ID
			return ms
		}},
		{"a text PostgreSQL refuses", func() []sms.Message {
			return newMessages([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "fine")}, {AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "nul \x00")}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			insert, err := NewStore(db).prepared(ctx, insertSQL)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := insertMessages(ctx, insert, tt.msgs(), make([]string, len(tt.msgs())), 0, nil); err == nil {
				t.Fatal("the batch was stored")
			} else if errors.Is(err, sms.ErrUnavailable) {
				t.Errorf("a refused row is reported as an outage: %v", err)
			}
			if m, o, c := smstest.Count(t, db, "messages"), smstest.Count(t, db, "outbox"), smstest.Count(t, db, "account_counters"); m+o+c != 0 {
				t.Errorf("a failed batch left %d messages, %d outbox rows, %d counters", m, o, c)
			}
		})
	}
}

func TestStoreApplyReports(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 7, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 4))
	if err != nil {
		t.Fatal(err)
	}
	reason := "permanent: unknown subscriber"
	late := "exhausted: too late"
	unknown := uuid.New()
	at := time.Now()
	res, err := s.ApplyReports(ctx, []sms.DeliveryReport{
		{MessageID: msgs[0].ID, Status: sms.StatusSent, ProcessedAt: at},
		{MessageID: msgs[1].ID, Status: sms.StatusFailed, FailureReason: &reason, ProcessedAt: at},
		{MessageID: msgs[0].ID, Status: sms.StatusFailed, FailureReason: &late, ProcessedAt: at}, // again in the same batch
		{MessageID: unknown, Status: sms.StatusSent, ProcessedAt: at},
		{MessageID: msgs[2].ID, Status: sms.StatusSent, FailureReason: &reason, ProcessedAt: at}, // a reason on SENT is dropped
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]sms.AppliedReport{}
	for _, r := range res {
		if _, dup := got[r.MessageID]; dup {
			t.Errorf("two outcomes for %s", r.MessageID)
		}
		got[r.MessageID] = r
	}
	wantOutcome := map[uuid.UUID]struct {
		outcome sms.ReportOutcome
		status  sms.Status
	}{
		msgs[0].ID: {sms.ReportApplied, sms.StatusSent}, // the first report of the batch wins
		msgs[1].ID: {sms.ReportApplied, sms.StatusFailed},
		msgs[2].ID: {sms.ReportApplied, sms.StatusSent},
		unknown:    {sms.ReportNotFound, ""},
	}
	if len(got) != len(wantOutcome) {
		t.Errorf("%d outcomes, want %d", len(got), len(wantOutcome))
	}
	for id, w := range wantOutcome {
		if g := got[id]; g.Outcome != w.outcome || g.Status != w.status {
			t.Errorf("%s: %s %s, want %s %s", id, g.Outcome, g.Status, w.outcome, w.status)
		}
	}
	if r := got[msgs[1].ID]; r.FailureReason == nil || *r.FailureReason != reason || r.CreatedAt == nil || !r.CreatedAt.Equal(msgs[1].CreatedAt) {
		t.Errorf("applied report lacks its reason or creation time: %+v", r)
	}
	if m, _ := s.Get(ctx, 7, msgs[2].ID); m.FailureReason != nil {
		t.Errorf("a SENT message got failure reason %q", *m.FailureReason)
	}
	if p, sent, failed := smstest.Counters(t, db, 7); p != 1 || sent != 2 || failed != 1 {
		t.Errorf("counters %d/%d/%d, want 1 pending, 2 sent, 1 failed", p, sent, failed)
	}

	// A later batch: a late report for a final message, and the last one.
	res, err = s.ApplyReports(ctx, []sms.DeliveryReport{
		{MessageID: msgs[1].ID, Status: sms.StatusSent, ProcessedAt: at},
		{MessageID: msgs[3].ID, Status: sms.StatusFailed, FailureReason: &late, ProcessedAt: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		want := sms.ReportApplied
		if r.MessageID == msgs[1].ID {
			want = sms.ReportDuplicate
			if r.Status != sms.StatusFailed || r.FailureReason != nil {
				t.Errorf("duplicate report: %+v, want the final FAILED status and no change", r)
			}
		}
		if r.Outcome != want {
			t.Errorf("%s: %s, want %s", r.MessageID, r.Outcome, want)
		}
	}
	if p, sent, failed := smstest.Counters(t, db, 7); p != 0 || sent != 2 || failed != 2 {
		t.Errorf("counters %d/%d/%d, want 0 pending, 2 sent, 2 failed", p, sent, failed)
	}
	if st, err := s.Stats(ctx, 7); err != nil || !reflect.DeepEqual(st, sms.NewStats(map[sms.Status]int64{sms.StatusSent: 2, sms.StatusFailed: 2})) {
		t.Errorf("stats %+v, %v", st, err)
	}
}

func TestStoreApplyReportsFirstOfBatchWins(t *testing.T) {
	t.Parallel()
	// Two reports for each of many messages in one batch, the first SENT,
	// the later FAILED: the first one is applied, whatever the batch size
	// (sorting the batch by id must keep the request order of equal ids).
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 40))
	if err != nil {
		t.Fatal(err)
	}
	reason := "exhausted: later report"
	var reports []sms.DeliveryReport
	for _, m := range msgs {
		reports = append(reports, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: time.Now()})
	}
	for _, m := range slices.Backward(msgs) {
		reports = append(reports, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusFailed, FailureReason: &reason, ProcessedAt: time.Now()})
	}
	res, err := s.ApplyReports(ctx, reports)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != sms.ReportApplied || r.Status != sms.StatusSent {
			t.Errorf("%s: %s %s, want the first report (SENT) applied", r.MessageID, r.Outcome, r.Status)
		}
	}
	if p, sent, failed := smstest.Counters(t, db, 1); p != 0 || sent != 40 || failed != 0 {
		t.Errorf("counters %d/%d/%d, want 40 sent", p, sent, failed)
	}
}

func TestStoreApplyReportsConcurrently(t *testing.T) {
	t.Parallel()
	// Processors retry and rebalance: the same reports arrive several
	// times at once, in any order. Each message is applied once, the
	// counters count it once, and no batch deadlocks another.
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 60))
	if err != nil {
		t.Fatal(err)
	}
	reason := "permanent: x"
	reports := make([]sms.DeliveryReport, len(msgs))
	for i, m := range msgs {
		reports[i] = sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: time.Now()}
		if i%4 == 0 {
			reports[i].Status, reports[i].FailureReason = sms.StatusFailed, &reason
		}
	}
	var applied atomic.Int64
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			mine := slices.Clone(reports)
			rand.New(rand.NewPCG(uint64(w), 1)).Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
			res, err := s.ApplyReports(ctx, mine)
			if err != nil {
				t.Errorf("worker %d: %v", w, err)
				return
			}
			for _, r := range res {
				if r.Outcome == sms.ReportApplied {
					applied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if applied.Load() != int64(len(msgs)) {
		t.Errorf("%d reports applied, want %d, once per message", applied.Load(), len(msgs))
	}
	if p, sent, failed := smstest.Counters(t, db, 1); p != 0 || sent != 45 || failed != 15 {
		t.Errorf("counters %d/%d/%d, want 0 pending, 45 sent, 15 failed", p, sent, failed)
	}
}

func TestStoreList(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	const a, b = "+14155552671", "+442071838750"
	phones := []string{a, b, "+33123456789", "Acme"}
	// 40 messages across 4 batches, so that some share a created_at (one
	// batch, one timestamp) and the id breaks the tie.
	var all []sms.Message
	rng := rand.New(rand.NewPCG(3, 4))
	for batch := range 4 {
		var in []sms.NewMessage
		for i := range 10 {
			sender := phones[rng.IntN(len(phones))]
			recipient := phones[rng.IntN(len(phones)-1)] // never "Acme"
			in = append(in, sms.NewMessage{AccountID: 1, Draft: smstest.Draft(sender, recipient, fmt.Sprintf("%d.%d", batch, i))})
		}
		ms, err := s.Insert(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ms...)
	}
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 2, Draft: smstest.Draft(a, b, "other account")}}); err != nil {
		t.Fatal(err)
	}
	var reports []sms.DeliveryReport
	for i, m := range all {
		if i%3 == 0 {
			reports = append(reports, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: time.Now()})
			all[i].Status = sms.StatusSent
		}
	}
	if _, err := s.ApplyReports(ctx, reports); err != nil {
		t.Fatal(err)
	}
	// The reference: newest first by (created_at, id).
	slices.SortFunc(all, func(x, y sms.Message) int {
		if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
			return c
		}
		return slices.Compare(y.ID[:], x.ID[:])
	})
	for _, phone := range []string{"", a, b, "Acme", "+15005550006"} {
		for _, status := range []sms.Status{"", sms.StatusSent, sms.StatusPending, sms.StatusFailed} {
			var want []sms.Message
			for _, m := range all {
				if (phone == "" || m.Sender == phone || m.Recipient == phone) && (status == "" || m.Status == status) {
					want = append(want, m)
				}
			}
			for _, size := range []int{1, 3, 10, 100} {
				name := fmt.Sprintf("phone=%q status=%q size=%d", phone, status, size)
				var paged, walked []sms.Message
				for page := 0; page <= len(want)/size; page++ {
					p, err := s.List(ctx, 1, sms.Filter{Phone: phone, Status: status, Page: page, Size: size})
					if err != nil {
						t.Fatalf("%s page %d: %v", name, page, err)
					}
					if p.TotalCount != int64(len(want)) {
						t.Errorf("%s page %d: total %d, want %d", name, page, p.TotalCount, len(want))
					}
					paged = append(paged, p.Messages...)
				}
				f := sms.Filter{Phone: phone, Status: status, Size: size}
				for range 200 {
					p, err := s.List(ctx, 1, f)
					if err != nil {
						t.Fatalf("%s after %v: %v", name, f.After, err)
					}
					walked = append(walked, p.Messages...)
					if p.Next == nil {
						break
					}
					f.After = p.Next
				}
				if !slices.Equal(smstest.IDs(paged), smstest.IDs(want)) {
					t.Errorf("%s: pages give %d messages, want %d in order", name, len(paged), len(want))
				}
				if !slices.Equal(smstest.IDs(walked), smstest.IDs(want)) {
					t.Errorf("%s: the cursor walk gives %d messages, want %d in order", name, len(walked), len(want))
				}
			}
		}
	}
}

func TestRequeue(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 4))
	if err != nil {
		t.Fatal(err)
	}
	// 0: stuck (published, old, PENDING); 1: final; 2: still in the outbox; 3: recent.
	if _, err := db.Exec(`DELETE FROM sms.outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO sms.outbox (batch_id, message_ids, traceparents) VALUES ($1, ARRAY[$1::uuid], ARRAY[''])`, msgs[2].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE sms.messages SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour' WHERE id = ANY($1::uuid[])`,
		"{"+msgs[0].ID.String()+","+msgs[1].ID.String()+","+msgs[2].ID.String()+"}"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyReports(ctx, []sms.DeliveryReport{{MessageID: msgs[1].ID, Status: sms.StatusSent, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	outbox := NewOutbox(db)
	n, err := outbox.Requeue(ctx, 10*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v; want 1", n, err)
	}
	if queued := smstest.Outboxed(t, db); !slices.Equal(queued, []uuid.UUID{msgs[0].ID, msgs[2].ID}) { // in id order
		t.Errorf("outbox %v, want the queued message and the stuck one", queued)
	}
	// The re-queued row is named after its oldest message, so the sweep
	// sees it as stale at once.
	var batches []uuid.UUID
	if err := db.Select(&batches, `SELECT batch_id FROM sms.outbox WHERE $1 = ANY(message_ids)`, msgs[0].ID); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(batches, []uuid.UUID{msgs[0].ID}) {
		t.Errorf("re-queued into batches %v, want one named %s", batches, msgs[0].ID)
	}
	// The stuck message waits another period before it is queued again.
	if n, err := outbox.Requeue(ctx, 10*time.Minute); err != nil || n != 0 {
		t.Errorf("second Requeue = %d, %v; want 0", n, err)
	}
}

// TestInsertDeletesPublished checks that the next insert deletes the outbox
// batches handed to Published, in its own statement, and that a failed
// insert keeps them for the next one.
func TestInsertDeletesPublished(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	first, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 3))
	if err != nil {
		t.Fatal(err)
	}
	s.Published([]uuid.UUID{first[0].ID}) // the batch is named after its first message
	// A batch the database refuses (a text of NUL) deletes nothing.
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "\x00")}}); err == nil {
		t.Fatal("a text with NUL was stored")
	}
	if got := smstest.Outboxed(t, db); !slices.Equal(got, smstest.IDs(first)) {
		t.Fatalf("outbox holds %v after a failed insert, want %v", got, smstest.IDs(first))
	}
	second, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "y")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := smstest.Outboxed(t, db); !slices.Equal(got, smstest.IDs(second)) {
		t.Errorf("outbox holds %v, want %v", got, smstest.IDs(second))
	}
	s.Published([]uuid.UUID{second[0].ID})
	if err := s.FlushPublished(ctx); err != nil {
		t.Fatal(err)
	}
	if n := smstest.Count(t, db, "outbox"); n != 0 {
		t.Errorf("%d outbox rows after FlushPublished, want 0", n)
	}
}
