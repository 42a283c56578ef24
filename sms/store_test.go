package sms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
)

// counters reads an account's counters row.
func counters(tb testing.TB, db *sqlx.DB, account int64) (pending, sent, failed int64) {
	tb.Helper()
	err := db.QueryRow(`SELECT COALESCE(sum(pending),0), COALESCE(sum(sent),0), COALESCE(sum(failed),0) FROM sms.account_counters WHERE account_id = $1`, account).Scan(&pending, &sent, &failed)
	if err != nil {
		tb.Fatalf("counters of account %d: %v", account, err)
	}
	return pending, sent, failed
}

// outboxed lists the message ids in the outbox, in id order.
func outboxed(tb testing.TB, db *sqlx.DB) []uuid.UUID {
	tb.Helper()
	var ids []uuid.UUID
	if err := db.Select(&ids, `SELECT unnest(message_ids) AS id FROM sms.outbox ORDER BY id`); err != nil {
		tb.Fatal(err)
	}
	return ids
}

func draft(sender, recipient, text string) Draft {
	enc, n := Segments(text)
	return Draft{Sender: sender, Recipient: recipient, Text: text, Encoding: enc, Segments: n}
}

func TestStoreInsertBatch(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	in := []NewMessage{
		{AccountID: 1, Draft: draft("Acme", "+14155552671", "one")},
		{AccountID: 2, Draft: draft("+442071838750", "+14155552671", "два")},
		{AccountID: 1, Draft: draft("Acme", "+442071838750", "three")},
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
		if got.Text != in[i].Text || got.Sender != in[i].Sender || got.Status != StatusPending || got.Encoding != in[i].Encoding ||
			got.Segments != in[i].Segments || !got.CreatedAt.Equal(m.CreatedAt) {
			t.Errorf("stored %+v, inserted %+v", got, m)
		}
	}
	if got := outboxed(t, db); !slices.Equal(got, ids(msgs)) {
		t.Errorf("outbox holds %v, want %v", got, ids(msgs))
	}
	if n := count(t, db, "outbox"); n != 1 {
		t.Errorf("%d outbox rows for one batch, want 1", n)
	}
	if p, _, _ := counters(t, db, 1); p != 2 {
		t.Errorf("account 1 pending %d, want 2", p)
	}
	if p, _, _ := counters(t, db, 2); p != 1 {
		t.Errorf("account 2 pending %d, want 1", p)
	}
	// The counters add up across batches.
	if _, err := s.Insert(ctx, in[:1]); err != nil {
		t.Fatal(err)
	}
	if p, _, _ := counters(t, db, 1); p != 3 {
		t.Errorf("account 1 pending %d after another batch, want 3", p)
	}
	if _, err := s.Get(ctx, 2, msgs[0].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("another account's message: %v, want ErrNotFound", err)
	}
}

func TestStoreInsertIsAtomic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		msgs func() []Message
	}{
		{"a duplicate id", func() []Message {
			ms := newMessages([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "a")}, {AccountID: 1, Draft: draft("Acme", "+14155552671", "b")}})
			ms[1].ID = ms[0].ID
			return ms
		}},
		{"a text PostgreSQL refuses", func() []Message {
			return newMessages([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "fine")}, {AccountID: 1, Draft: draft("Acme", "+14155552671", "nul \x00")}})
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
			} else if errors.Is(err, ErrUnavailable) {
				t.Errorf("a refused row is reported as an outage: %v", err)
			}
			if m, o, c := count(t, db, "messages"), count(t, db, "outbox"), count(t, db, "account_counters"); m+o+c != 0 {
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
	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 7, Draft: draft("Acme", "+14155552671", "x")}}, 4))
	if err != nil {
		t.Fatal(err)
	}
	reason := "permanent: unknown subscriber"
	late := "exhausted: too late"
	unknown := uuid.New()
	at := time.Now()
	res, err := s.ApplyReports(ctx, []DeliveryReport{
		{MessageID: msgs[0].ID, Status: StatusSent, ProcessedAt: at},
		{MessageID: msgs[1].ID, Status: StatusFailed, FailureReason: &reason, ProcessedAt: at},
		{MessageID: msgs[0].ID, Status: StatusFailed, FailureReason: &late, ProcessedAt: at}, // again in the same batch
		{MessageID: unknown, Status: StatusSent, ProcessedAt: at},
		{MessageID: msgs[2].ID, Status: StatusSent, FailureReason: &reason, ProcessedAt: at}, // a reason on SENT is dropped
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]AppliedReport{}
	for _, r := range res {
		if _, dup := got[r.MessageID]; dup {
			t.Errorf("two outcomes for %s", r.MessageID)
		}
		got[r.MessageID] = r
	}
	wantOutcome := map[uuid.UUID]struct {
		outcome ReportOutcome
		status  Status
	}{
		msgs[0].ID: {ReportApplied, StatusSent}, // the first report of the batch wins
		msgs[1].ID: {ReportApplied, StatusFailed},
		msgs[2].ID: {ReportApplied, StatusSent},
		unknown:    {ReportNotFound, ""},
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
	if p, sent, failed := counters(t, db, 7); p != 1 || sent != 2 || failed != 1 {
		t.Errorf("counters %d/%d/%d, want 1 pending, 2 sent, 1 failed", p, sent, failed)
	}

	// A later batch: a late report for a final message, and the last one.
	res, err = s.ApplyReports(ctx, []DeliveryReport{
		{MessageID: msgs[1].ID, Status: StatusSent, ProcessedAt: at},
		{MessageID: msgs[3].ID, Status: StatusFailed, FailureReason: &late, ProcessedAt: at},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		want := ReportApplied
		if r.MessageID == msgs[1].ID {
			want = ReportDuplicate
			if r.Status != StatusFailed || r.FailureReason != nil {
				t.Errorf("duplicate report: %+v, want the final FAILED status and no change", r)
			}
		}
		if r.Outcome != want {
			t.Errorf("%s: %s, want %s", r.MessageID, r.Outcome, want)
		}
	}
	if p, sent, failed := counters(t, db, 7); p != 0 || sent != 2 || failed != 2 {
		t.Errorf("counters %d/%d/%d, want 0 pending, 2 sent, 2 failed", p, sent, failed)
	}
	if st, err := s.Stats(ctx, 7); err != nil || st != (Stats{TotalMessages: 4, SentMessages: 2, FailedMessages: 2, SuccessRate: 50}) {
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
	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 40))
	if err != nil {
		t.Fatal(err)
	}
	reason := "exhausted: later report"
	var reports []DeliveryReport
	for _, m := range msgs {
		reports = append(reports, DeliveryReport{MessageID: m.ID, Status: StatusSent, ProcessedAt: time.Now()})
	}
	for _, m := range slices.Backward(msgs) {
		reports = append(reports, DeliveryReport{MessageID: m.ID, Status: StatusFailed, FailureReason: &reason, ProcessedAt: time.Now()})
	}
	res, err := s.ApplyReports(ctx, reports)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Outcome != ReportApplied || r.Status != StatusSent {
			t.Errorf("%s: %s %s, want the first report (SENT) applied", r.MessageID, r.Outcome, r.Status)
		}
	}
	if p, sent, failed := counters(t, db, 1); p != 0 || sent != 40 || failed != 0 {
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
	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 60))
	if err != nil {
		t.Fatal(err)
	}
	reason := "permanent: x"
	reports := make([]DeliveryReport, len(msgs))
	for i, m := range msgs {
		reports[i] = DeliveryReport{MessageID: m.ID, Status: StatusSent, ProcessedAt: time.Now()}
		if i%4 == 0 {
			reports[i].Status, reports[i].FailureReason = StatusFailed, &reason
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
				if r.Outcome == ReportApplied {
					applied.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if applied.Load() != int64(len(msgs)) {
		t.Errorf("%d reports applied, want %d, once per message", applied.Load(), len(msgs))
	}
	if p, sent, failed := counters(t, db, 1); p != 0 || sent != 45 || failed != 15 {
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
	var all []Message
	rng := rand.New(rand.NewPCG(3, 4))
	for batch := range 4 {
		var in []NewMessage
		for i := range 10 {
			sender := phones[rng.IntN(len(phones))]
			recipient := phones[rng.IntN(len(phones)-1)] // never "Acme"
			in = append(in, NewMessage{AccountID: 1, Draft: draft(sender, recipient, fmt.Sprintf("%d.%d", batch, i))})
		}
		ms, err := s.Insert(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ms...)
	}
	if _, err := s.Insert(ctx, []NewMessage{{AccountID: 2, Draft: draft(a, b, "other account")}}); err != nil {
		t.Fatal(err)
	}
	var reports []DeliveryReport
	for i, m := range all {
		if i%3 == 0 {
			reports = append(reports, DeliveryReport{MessageID: m.ID, Status: StatusSent, ProcessedAt: time.Now()})
			all[i].Status = StatusSent
		}
	}
	if _, err := s.ApplyReports(ctx, reports); err != nil {
		t.Fatal(err)
	}
	// The reference: newest first by (created_at, id).
	slices.SortFunc(all, func(x, y Message) int {
		if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
			return c
		}
		return slices.Compare(y.ID[:], x.ID[:])
	})
	for _, phone := range []string{"", a, b, "Acme", "+15005550006"} {
		for _, status := range []Status{"", StatusSent, StatusPending, StatusFailed} {
			var want []Message
			for _, m := range all {
				if (phone == "" || m.Sender == phone || m.Recipient == phone) && (status == "" || m.Status == status) {
					want = append(want, m)
				}
			}
			for _, size := range []int{1, 3, 10, 100} {
				name := fmt.Sprintf("phone=%q status=%q size=%d", phone, status, size)
				var paged, walked []Message
				for page := 0; page <= len(want)/size; page++ {
					p, err := s.List(ctx, 1, Filter{Phone: phone, Status: status, Page: page, Size: size})
					if err != nil {
						t.Fatalf("%s page %d: %v", name, page, err)
					}
					if p.TotalCount != int64(len(want)) {
						t.Errorf("%s page %d: total %d, want %d", name, page, p.TotalCount, len(want))
					}
					paged = append(paged, p.Messages...)
				}
				f := Filter{Phone: phone, Status: status, Size: size}
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
				if !slices.Equal(ids(paged), ids(want)) {
					t.Errorf("%s: pages give %d messages, want %d in order", name, len(paged), len(want))
				}
				if !slices.Equal(ids(walked), ids(want)) {
					t.Errorf("%s: the cursor walk gives %d messages, want %d in order", name, len(walked), len(want))
				}
			}
		}
	}
}

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	c := Cursor{CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 123456000, time.UTC), ID: uuid.New()}
	got, err := ParseCursor(c.String())
	if err != nil || !got.CreatedAt.Equal(c.CreatedAt) || got.ID != c.ID {
		t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", c.String(), got, err, c)
	}
	for _, bad := range []string{"", "!!!", "bm90LWEtY3Vyc29y", "MTIzLm5vdC1hLXV1aWQ", c.String() + "="} {
		if _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}

func TestRequeue(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 4))
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
	if _, err := s.ApplyReports(ctx, []DeliveryReport{{MessageID: msgs[1].ID, Status: StatusSent, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, nil, RelayConfig{Topic: "unused", Batch: 10, Interval: time.Second, RequeueAfter: 10 * time.Minute}, zerolog.Nop(), prometheus.NewRegistry())
	n, err := r.Requeue(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Requeue = %d, %v; want 1", n, err)
	}
	if queued := outboxed(t, db); !slices.Equal(queued, []uuid.UUID{msgs[0].ID, msgs[2].ID}) { // in id order
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
	if n, err := r.Requeue(ctx); err != nil || n != 0 {
		t.Errorf("second Requeue = %d, %v; want 0", n, err)
	}
}

// newTopic creates a topic of its own for the test, with partitions, and
// returns it with the brokers and a producer. Not seeded in kfake, which
// would give it six partitions whatever the test asks.
func newTopic(t *testing.T, partitions int32) (topic string, brokers []string, producer *kgo.Client) {
	t.Helper()
	topic = platformtest.UniqueTopic("sms.requests")
	brokers = platformtest.KafkaBrokers(t)
	producer = newProducer(t, brokers)
	if err := platform.EnsureTopics(context.Background(), producer, partitions, 1, topic); err != nil {
		t.Fatal(err)
	}
	return topic, brokers, producer
}

// newProducer returns a Kafka producer for brokers, closed with the test.
func newProducer(tb testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	cl, err := platform.NewKafkaClient(brokers, zerolog.Nop(), append([]kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	return cl
}

// consume reads n records of topic from the start.
func consume(tb testing.TB, brokers []string, topic string, n int) []*kgo.Record {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %d of %d records from %s: %v", len(out), n, topic, ctx.Err())
		}
		fs.EachError(func(t string, p int32, err error) { tb.Logf("fetch %s/%d: %v", t, p, err) })
		out = append(out, fs.Records()...)
	}
	return out
}

func TestRelayPublishBatch(t *testing.T) {
	t.Parallel()
	topic, brokers, producer := newTopic(t, 3)
	ctx := context.Background()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	in := []NewMessage{
		{AccountID: 1, Draft: draft("Acme", "+14155552671", "one")},
		{AccountID: 1, Draft: draft("+442071838750", "+33123456789", "deux 😀")},
		{AccountID: 2, Draft: draft("Acme", "+14155552671", strings200())},
	}
	// One batch (outbox row) per insert.
	var msgs []Message
	for _, n := range in {
		m, err := s.Insert(ctx, []NewMessage{n})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m...)
	}
	r := NewRelay(db, producer, RelayConfig{Topic: topic, Batch: 2, Interval: time.Second, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	// Batch 2: two rounds publish everything, a third finds nothing.
	for i, want := range []int{2, 1, 0} {
		if n, err := r.PublishBatch(ctx); err != nil || n != want {
			t.Fatalf("round %d: PublishBatch = %d, %v; want %d", i, n, err, want)
		}
	}
	if n := count(t, db, "outbox"); n != 0 {
		t.Errorf("%d outbox rows left after publishing", n)
	}
	byID := map[uuid.UUID]Message{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	for _, rec := range consume(t, brokers, topic, len(msgs)) {
		var req SendRequest
		if err := json.Unmarshal(rec.Value, &req); err != nil {
			t.Fatalf("record value: %v", err)
		}
		m, ok := byID[req.MessageID]
		if !ok {
			t.Errorf("record for unknown message %s", req.MessageID)
			continue
		}
		delete(byID, req.MessageID)
		if string(rec.Key) != m.Recipient {
			t.Errorf("record key %q, want the recipient %q", rec.Key, m.Recipient)
		}
		if req.Sender != m.Sender || req.Recipient != m.Recipient || req.Text != m.Text || req.Encoding != m.Encoding ||
			req.Segments != m.Segments || !req.CreatedAt.Equal(m.CreatedAt) || req.Validate() != nil {
			t.Errorf("record %+v for message %+v", req, m)
		}
		if len(rec.Headers) == 0 || rec.Headers[0].Key != "message_id" || string(rec.Headers[0].Value) != m.ID.String() {
			t.Errorf("record headers %v, want message_id %s", rec.Headers, m.ID)
		}
	}
	if len(byID) != 0 {
		t.Errorf("%d messages never reached Kafka", len(byID))
	}
}

func strings200() string {
	b := make([]byte, 200)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

func TestRelayKeepsRowsWhenKafkaFails(t *testing.T) {
	t.Parallel()
	// These need a broker the test can break, so they run on kfake even
	// when a real broker is configured.
	ctx := context.Background()
	setup := func(t *testing.T) (*sqlx.DB, []Message) {
		db := platformtest.NewDB(t)
		msgs, err := NewStore(db).Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 3))
		if err != nil {
			t.Fatal(err)
		}
		return db, msgs
	}
	newCluster := func(t *testing.T, topic string) *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	relay := func(db *sqlx.DB, p Producer, topic string) *Relay {
		return NewRelay(db, p, RelayConfig{Topic: topic, Batch: 100, Interval: time.Second, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	}

	t.Run("Kafka refuses the records", func(t *testing.T) {
		t.Parallel()
		db, msgs := setup(t)
		c := newCluster(t, "requests")
		var refuse atomic.Bool
		refuse.Store(true)
		c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			if !refuse.Load() {
				return nil, nil, false
			}
			pr := req.(*kmsg.ProduceRequest)
			resp := pr.ResponseKind().(*kmsg.ProduceResponse)
			resp.Version = pr.Version
			for _, rt := range pr.Topics {
				topic := kmsg.NewProduceResponseTopic()
				topic.Topic, topic.TopicID = rt.Topic, rt.TopicID
				for _, rp := range rt.Partitions {
					part := kmsg.NewProduceResponseTopicPartition()
					part.Partition, part.ErrorCode = rp.Partition, kerr.InvalidRecord.Code // not retriable
					topic.Partitions = append(topic.Partitions, part)
				}
				resp.Topics = append(resp.Topics, topic)
			}
			return resp, nil, true
		})
		r := relay(db, newProducer(t, c.ListenAddrs(), kgo.RecordDeliveryTimeout(2*time.Second)), "requests")
		if n, err := r.PublishBatch(ctx); err == nil || n != 0 {
			t.Fatalf("PublishBatch = %d, %v; want an error", n, err)
		}
		if n := len(outboxed(t, db)); n != len(msgs) {
			t.Fatalf("%d outbox entries after a refused produce, want %d", n, len(msgs))
		}
		refuse.Store(false)
		if n, err := r.PublishBatch(ctx); err != nil || n != len(msgs) {
			t.Fatalf("PublishBatch once Kafka accepts = %d, %v; want %d", n, err, len(msgs))
		}
		if n := count(t, db, "outbox"); n != 0 {
			t.Errorf("%d outbox rows left", n)
		}
	})
	t.Run("Kafka is down", func(t *testing.T) {
		t.Parallel()
		db, msgs := setup(t)
		down := newCluster(t, "requests")
		p := newProducer(t, down.ListenAddrs(), kgo.RecordDeliveryTimeout(2*time.Second))
		down.Close()
		r := relay(db, p, "requests")
		if n, err := r.PublishBatch(ctx); err == nil || n != 0 {
			t.Fatalf("PublishBatch with Kafka down = %d, %v; want an error", n, err)
		}
		if n := len(outboxed(t, db)); n != len(msgs) {
			t.Fatalf("%d outbox entries after a failed produce, want %d", n, len(msgs))
		}
		// Kafka is back: the rows go out.
		up := newCluster(t, "requests")
		r = relay(db, newProducer(t, up.ListenAddrs()), "requests")
		if n, err := r.PublishBatch(ctx); err != nil || n != len(msgs) {
			t.Fatalf("PublishBatch with Kafka back = %d, %v; want %d", n, err, len(msgs))
		}
		if got := consume(t, up.ListenAddrs(), "requests", len(msgs)); len(got) != len(msgs) {
			t.Errorf("%d records, want %d", len(got), len(msgs))
		}
	})
}

// TestRelayHandOver checks the usual path: what the store commits reaches
// Kafka from memory and leaves the outbox, while the sweep, told to wait
// an hour, publishes nothing.
func TestRelayHandOver(t *testing.T) {
	t.Parallel()
	topic, brokers, producer := newTopic(t, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	reg := prometheus.NewRegistry()
	r := NewRelay(db, producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour, StaleAfter: time.Hour}, zerolog.Nop(), reg)
	s.OnCommit(r.Enqueue)
	r.DeleteThrough(s) // as the server does: deleted by the next insert, or by the flusher
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 25))
	if err != nil {
		t.Fatal(err)
	}
	got := consume(t, brokers, topic, len(msgs))
	if len(got) != len(msgs) {
		t.Fatalf("%d records, want %d", len(got), len(msgs))
	}
	platformtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "outbox emptied by the hand-over", func() (bool, string) {
		n := count(t, db, "outbox")
		return n == 0, fmt.Sprintf("%d rows left", n)
	})
}

// TestRelaySweepWaitsForStaleEntries checks that the sweep leaves young
// entries to the hand-over and publishes those older than StaleAfter.
func TestRelaySweepWaitsForStaleEntries(t *testing.T) {
	t.Parallel()
	topic, _, producer := newTopic(t, 1)
	ctx := context.Background()
	db := platformtest.NewDB(t)
	if _, err := NewStore(db).Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 3)); err != nil {
		t.Fatal(err)
	}
	var later atomic.Bool // the relay's clock is StaleAfter ahead
	now := func() time.Time {
		if later.Load() {
			return time.Now().Add(time.Minute + time.Millisecond)
		}
		return time.Now()
	}
	r := NewRelay(db, producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour, StaleAfter: time.Minute, Now: now}, zerolog.Nop(), prometheus.NewRegistry())
	if n, err := r.sweep(ctx, r.cfg.StaleAfter); err != nil || n != 0 {
		t.Fatalf("sweep of young entries = %d, %v; want 0", n, err)
	}
	later.Store(true)
	if n, err := r.sweep(ctx, r.cfg.StaleAfter); err != nil || n != 3 {
		t.Fatalf("sweep of stale entries = %d, %v; want 3", n, err)
	}
}

func TestUUIDV7Floor(t *testing.T) {
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	var ms int64 // the id's own millisecond: its first 48 bits
	for _, b := range id[:6] {
		ms = ms<<8 | int64(b)
	}
	at := time.UnixMilli(ms)
	if floor := UUIDv7Floor(at); floor > id.String() {
		t.Errorf("floor of %s's own millisecond is %s, want it not larger", id, floor)
	}
	if floor := UUIDv7Floor(at.Add(-time.Millisecond)); floor >= id.String() {
		t.Errorf("floor of a millisecond before %s is %s, want it smaller", id, floor)
	}
	if floor := UUIDv7Floor(at.Add(time.Millisecond)); floor <= id.String() {
		t.Errorf("floor of a millisecond after %s is %s, want it larger", id, floor)
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
	first, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 3))
	if err != nil {
		t.Fatal(err)
	}
	s.Published([]string{first[0].ID.String()}) // the batch is named after its first message
	// A batch the database refuses (a text of NUL) deletes nothing.
	if _, err := s.Insert(ctx, []NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "\x00")}}); err == nil {
		t.Fatal("a text with NUL was stored")
	}
	if got := outboxed(t, db); !slices.Equal(got, ids(first)) {
		t.Fatalf("outbox holds %v after a failed insert, want %v", got, ids(first))
	}
	second, err := s.Insert(ctx, []NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "y")}})
	if err != nil {
		t.Fatal(err)
	}
	if got := outboxed(t, db); !slices.Equal(got, ids(second)) {
		t.Errorf("outbox holds %v, want %v", got, ids(second))
	}
	s.Published([]string{second[0].ID.String()})
	if err := s.FlushPublished(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(t, db, "outbox"); n != 0 {
		t.Errorf("%d outbox rows after FlushPublished, want 0", n)
	}
}

// TestRelayEnqueueBound checks the hand-over's bound: a batch that would
// make more than 4 × Batch entries wait is left to the sweep, and taking a
// batch makes room again.
func TestRelayEnqueueBound(t *testing.T) {
	t.Parallel()
	r := NewRelay(nil, nil, RelayConfig{Topic: "unused", Batch: 2, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	batch := func() OutboxBatch { return OutboxBatch{ID: uuid.New(), Entries: make([]OutboxEntry, 3)} }
	a, b, c := batch(), batch(), batch()
	r.Enqueue(a)
	r.Enqueue(b) // 6 entries of 8
	r.Enqueue(c) // would be 9: left to the sweep
	ctx := context.Background()
	for _, want := range []OutboxBatch{a, b} {
		if got, ok := r.take(ctx); !ok || got.ID != want.ID {
			t.Fatalf("took %v (%v), want %v", got.ID, ok, want.ID)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if got, ok := r.take(short); ok {
		t.Fatalf("took %v: a batch over the bound was queued", got.ID)
	}
	r.Enqueue(c) // room again
	if got, ok := r.take(ctx); !ok || got.ID != c.ID {
		t.Fatalf("took %v (%v) after making room, want %v", got.ID, ok, c.ID)
	}
}

// TestRelaySweepSkipsFinalMessages checks that the sweep publishes only the
// messages of a batch still PENDING, and deletes the whole batch.
func TestRelaySweepSkipsFinalMessages(t *testing.T) {
	t.Parallel()
	topic, brokers, producer := newTopic(t, 1)
	ctx := context.Background()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	msgs, err := s.Insert(ctx, slices.Repeat([]NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyReports(ctx, []DeliveryReport{{MessageID: msgs[0].ID, Status: StatusSent, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	if n, err := r.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("PublishBatch = %d, %v; want the batch's 2 entries", n, err)
	}
	if n := count(t, db, "outbox"); n != 0 {
		t.Errorf("%d outbox rows left", n)
	}
	// One partition keeps order: after the sweep's records, a sentinel.
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("sentinel")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, brokers, topic, 2)
	if recs[0].Partition != 0 || recs[1].Partition != 0 {
		t.Fatalf("records on partitions %d and %d: the topic must have one partition for the sentinel to prove order", recs[0].Partition, recs[1].Partition)
	}
	var req SendRequest
	if err := json.Unmarshal(recs[0].Value, &req); err != nil || req.MessageID != msgs[1].ID {
		t.Errorf("published %+v (%v), want only the PENDING message %s", req, err, msgs[1].ID)
	}
	if string(recs[1].Value) != "sentinel" {
		t.Errorf("second record %q, want the sentinel: the SENT message was published too", recs[1].Value)
	}
}

// TestRequeueWaitsForBacklog checks that the re-queue round does nothing
// while the outbox backlog is over requeueMaxBacklog, and re-queues once it
// is not.
func TestRequeueWaitsForBacklog(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, []NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	// Published long ago, never final: stuck.
	if _, err := db.Exec(`DELETE FROM sms.outbox`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE sms.messages SET created_at = now() - interval '1 hour', updated_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, nil, RelayConfig{Topic: "unused", Batch: 10, Interval: time.Hour, RequeueAfter: 10 * time.Minute}, zerolog.Nop(), prometheus.NewRegistry())
	r.backlog.Store(requeueMaxBacklog + 1)
	r.requeueRound(ctx)
	if got := outboxed(t, db); len(got) != 0 {
		t.Fatalf("re-queued %v while the backlog was over the limit", got)
	}
	r.backlog.Store(0)
	r.requeueRound(ctx)
	if got := outboxed(t, db); !slices.Equal(got, ids(msgs)) {
		t.Errorf("outbox %v after the backlog drained, want %v", got, ids(msgs))
	}
}

// TestRelayRecoversFromRecreatedTopic: after the topic is deleted and
// created again (a new topic id), publishing works again without a restart.
func TestRelayRecoversFromRecreatedTopic(t *testing.T) {
	t.Parallel()
	topic, _, producer := newTopic(t, 1)
	ctx := context.Background()
	db := platformtest.NewDB(t)
	s := NewStore(db)
	r := NewRelay(db, producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	insert := func() {
		if _, err := s.Insert(ctx, []NewMessage{{AccountID: 1, Draft: draft("Acme", "+14155552671", "x")}}); err != nil {
			t.Fatal(err)
		}
	}
	insert()
	if n, err := r.PublishBatch(ctx); err != nil || n != 1 {
		t.Fatalf("before: PublishBatch = %d, %v", n, err)
	}
	adm := kadm.NewClient(producer)
	if _, err := adm.DeleteTopics(ctx, topic); err != nil {
		t.Fatal(err)
	}
	platformtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "topic re-created", func() (bool, string) {
		err := platform.EnsureTopics(ctx, producer, 1, 1, topic)
		if err != nil {
			return false, err.Error()
		}
		td, err := adm.ListTopics(ctx, topic)
		return err == nil && td.Has(topic) && td[topic].Err == nil, fmt.Sprint(err)
	})
	insert()
	var errs []string
	platformtest.Eventually(t, 60*time.Second, 500*time.Millisecond, "publish after the topic was re-created", func() (bool, string) {
		n, err := r.PublishBatch(ctx)
		if err != nil {
			errs = append(errs, err.Error())
		}
		return err == nil && n == 1, fmt.Sprintf("%d published, errors so far %v", n, errs)
	})
	t.Logf("errors before recovery: %v", errs)
}
