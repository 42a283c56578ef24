package postgres

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
)

// scheduled inserts n messages of account 1 scheduled an hour ahead, then
// makes them due (send_at in the past) without the scheduler's help.
func scheduled(t *testing.T, s *Store, n int) []sms.Message {
	t.Helper()
	later := time.Now().Add(time.Hour)
	d := smstest.Draft("Acme", "+14155552671", "later")
	d.SendAt = &later
	msgs, err := s.Insert(t.Context(), slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: d}}, n))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`UPDATE sms.messages SET send_at = now() - interval '1 second' WHERE status = 'SCHEDULED'`); err != nil {
		t.Fatal(err)
	}
	return msgs
}

// statusCount is how many of the account's messages the counters say have
// status st.
func statusCount(t *testing.T, s *Store, st sms.Status) int64 {
	t.Helper()
	stats, err := s.Stats(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return stats.ByStatus[st]
}

// eventsOfType counts the events of type typ across all messages.
func eventsOfType(t *testing.T, s *Store, typ string) map[uuid.UUID]int {
	t.Helper()
	var rows []struct {
		ID uuid.UUID `db:"message_id"`
		N  int       `db:"n"`
	}
	if err := s.db.Select(&rows, `SELECT message_id, count(*) AS n FROM sms.message_events WHERE type = $1 GROUP BY message_id`, typ); err != nil {
		t.Fatal(err)
	}
	out := make(map[uuid.UUID]int, len(rows))
	for _, r := range rows {
		out[r.ID] = r.N
	}
	return out
}

// TestReleaseDueConcurrently has four schedulers (API replicas) release
// the same due messages at once: each message is released once, with one
// outbox entry and one event, and the counters add up.
func TestReleaseDueConcurrently(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	msgs := scheduled(t, s, 2000)

	var wg sync.WaitGroup
	released := make([]int, 4)
	for i := range released {
		wg.Go(func() {
			for {
				n, err := s.ReleaseDue(t.Context(), 100)
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
				released[i] += n
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range released {
		total += n
	}
	if total != len(msgs) {
		t.Fatalf("released %d in all (%v), want each of %d once", total, released, len(msgs))
	}
	outboxed := smstest.Outboxed(t, db)
	if len(outboxed) != len(msgs) {
		t.Errorf("outbox holds %d entries, want %d", len(outboxed), len(msgs))
	}
	for _, m := range msgs {
		if _, found := slices.BinarySearchFunc(outboxed, m.ID, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) }); !found {
			t.Fatalf("message %s released but not in the outbox", m.ID)
		}
	}
	queued := eventsOfType(t, s, "message.queued")
	for _, m := range msgs {
		if queued[m.ID] != 1 {
			t.Fatalf("message %s has %d queued events, want 1", m.ID, queued[m.ID])
		}
	}
	if p, sc := statusCount(t, s, sms.StatusPending), statusCount(t, s, sms.StatusScheduled); p != int64(len(msgs)) || sc != 0 {
		t.Errorf("counters: %d PENDING and %d SCHEDULED, want %d and 0", p, sc, len(msgs))
	}
	if _, ok, err := s.NextDue(t.Context()); err != nil || ok {
		t.Errorf("NextDue after releasing everything: %v, %v; want none", ok, err)
	}
}

// TestCancelRacesClaim cancels messages while the processor claims them:
// each message is either canceled (and its claim says skip) or claimed
// (and its cancel is a conflict), never both and never neither.
func TestCancelRacesClaim(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	msgs, err := s.Insert(t.Context(), slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 200))
	if err != nil {
		t.Fatal(err)
	}
	canceled := make([]bool, len(msgs))
	verdicts := make([]sms.Verdict, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		cancel := func() {
			_, err := s.Cancel(t.Context(), 1, m.ID)
			var e *sms.Error
			switch {
			case err == nil:
				canceled[i] = true
			case !errors.As(err, &e) || e.Kind != "not-cancelable":
				t.Errorf("cancel %s: %v", m.ID, err)
			}
		}
		claim := func() {
			res, err := s.Dispatch(t.Context(), []sms.Claim{{MessageID: m.ID}})
			if err != nil {
				t.Errorf("claim %s: %v", m.ID, err)
				return
			}
			verdicts[i] = res[0].Verdict
		}
		if i%2 == 0 { // either one asked first
			cancel, claim = claim, cancel
		}
		wg.Go(cancel)
		wg.Go(claim)
	}
	wg.Wait()
	var nCanceled int64
	for i := range msgs {
		switch {
		case canceled[i] && verdicts[i] != sms.VerdictSkip:
			t.Errorf("message %d canceled and claimed (%s)", i, verdicts[i])
		case !canceled[i] && verdicts[i] != sms.VerdictSend:
			t.Errorf("message %d neither canceled nor claimed (%s)", i, verdicts[i])
		}
		if canceled[i] {
			nCanceled++
		}
	}
	if got := statusCount(t, s, sms.StatusCanceled); got != nCanceled {
		t.Errorf("counters say %d CANCELED, the answers %d", got, nCanceled)
	}
	if got := statusCount(t, s, sms.StatusPending); got != int64(len(msgs))-nCanceled {
		t.Errorf("counters say %d PENDING, want %d", got, int64(len(msgs))-nCanceled)
	}
	t.Logf("%d of %d canceled before their claim", nCanceled, len(msgs))
}

// TestDispatchTwice claims the same messages from two processors at once
// (a rebalance): both are told to send (the carrier's duplicate is the
// processor's ledger's to stop), and the message is queued once.
func TestDispatchTwice(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	msgs, err := s.Insert(t.Context(), slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 300))
	if err != nil {
		t.Fatal(err)
	}
	claims := make([]sms.Claim, len(msgs))
	for i, m := range msgs {
		claims[i] = sms.Claim{MessageID: m.ID}
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			res, err := s.Dispatch(t.Context(), claims)
			if err != nil {
				t.Error(err)
				return
			}
			for i, r := range res {
				if r.MessageID != msgs[i].ID || r.Verdict != sms.VerdictSend {
					t.Errorf("claim %d answered %+v, want send for %s", i, r, msgs[i].ID)
					return
				}
			}
		})
	}
	wg.Wait()
	queued := eventsOfType(t, s, "message.queued")
	for _, m := range msgs {
		if queued[m.ID] != 1 {
			t.Fatalf("message %s has %d queued events, want 1", m.ID, queued[m.ID])
		}
	}
}

// TestRetryFailed checks which messages the scheduled retry takes back:
// FAILED and EXPIRED ones for a reason worth another try, old enough,
// retried fewer than max times; never permanent refusals, opt-outs,
// UNDELIVERED ones (the carrier tried), recent ones or exhausted ones.
func TestRetryFailed(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	cases := []struct {
		name, status, reason string
		retries              int
		recent               bool
		want                 bool
	}{
		{"transient failure", "FAILED", "transient: carrier timeout", 0, false, true},
		{"attempts exhausted", "FAILED", "attempts exhausted: 5 tries", 1, false, true},
		{"expired", "EXPIRED", "expired: the validity period ended", 0, false, true},
		{"permanent refusal", "FAILED", "permanent: invalid destination", 0, false, false},
		{"invalid", "FAILED", "invalid: unknown number", 0, false, false},
		{"opted out", "FAILED", "opted_out", 0, false, false},
		{"undelivered", "UNDELIVERED", "carrier: UNDELIV", 0, false, false},
		{"too recent", "FAILED", "transient: carrier timeout", 0, true, false},
		{"retried enough", "FAILED", "transient: carrier timeout", 3, false, false},
	}
	msgs, err := s.Insert(t.Context(), slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, len(cases)))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		age := "1 hour"
		if c.recent {
			age = "1 second"
		}
		if _, err := db.Exec(`UPDATE sms.messages SET status = $2, failure_reason = $3, retries = $4, updated_at = now() - $5::interval WHERE id = $1`,
			msgs[i].ID, c.status, c.reason, c.retries, age); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.RetryFailed(t.Context(), 10*time.Minute, 3, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i, c := range cases {
		m, err := s.Get(t.Context(), 1, msgs[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if moved := m.Status == sms.StatusPending; moved != c.want {
			t.Errorf("%s: status %s after the scheduled retry; retried = %v, want %v", c.name, m.Status, moved, c.want)
		} else if moved && m.Retries != c.retries+1 {
			t.Errorf("%s: retries %d, want %d", c.name, m.Retries, c.retries+1)
		}
		if c.want {
			want++
		}
	}
	if n != want {
		t.Errorf("RetryFailed = %d, want %d", n, want)
	}
	var inOutbox int
	if err := db.Get(&inOutbox, `SELECT count(*) FROM sms.outbox, unnest(message_ids) id WHERE id = ANY($1::uuid[])`, pq.Array(uuidStrings(smstest.IDs(msgs)))); err != nil {
		t.Fatal(err)
	}
	// The insert's own outbox row still names all of them; the retried
	// ones are named once more.
	if inOutbox != len(msgs)+want {
		t.Errorf("outbox names the messages %d times, want %d", inOutbox, len(msgs)+want)
	}
	if again, err := s.RetryFailed(t.Context(), 10*time.Minute, 3, 100); err != nil || again != 0 {
		t.Errorf("a second round retried %d (%v), want 0", again, err)
	}
}
