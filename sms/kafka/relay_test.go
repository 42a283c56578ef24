package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
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
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
)

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
	cl, err := platform.NewKafkaClient(brokers, zerolog.Nop(), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
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
	s := postgres.NewStore(db)
	in := []sms.NewMessage{
		{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "one")},
		{AccountID: 1, Draft: smstest.Draft("+442071838750", "+33123456789", "deux 😀")},
		{AccountID: 2, Draft: smstest.Draft("Acme", "+14155552671", strings200())},
	}
	// One batch (outbox row) per insert.
	var msgs []sms.Message
	for _, n := range in {
		m, err := s.Insert(ctx, []sms.NewMessage{n})
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m...)
	}
	r := NewRelay(postgres.NewOutbox(db), producer, RelayConfig{Topic: topic, Batch: 2, Interval: time.Second, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	// Batch 2: two rounds publish everything, a third finds nothing.
	for i, want := range []int{2, 1, 0} {
		if n, err := r.PublishBatch(ctx); err != nil || n != want {
			t.Fatalf("round %d: PublishBatch = %d, %v; want %d", i, n, err, want)
		}
	}
	if n := smstest.Count(t, db, "outbox"); n != 0 {
		t.Errorf("%d outbox rows left after publishing", n)
	}
	byID := map[uuid.UUID]sms.Message{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	for _, rec := range consume(t, brokers, topic, len(msgs)) {
		var req sms.SendRequest
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
	setup := func(t *testing.T) (*sqlx.DB, []sms.Message) {
		db := platformtest.NewDB(t)
		msgs, err := postgres.NewStore(db).Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 3))
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
		return NewRelay(postgres.NewOutbox(db), p, RelayConfig{Topic: topic, Batch: 100, Interval: time.Second, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
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
		if n := len(smstest.Outboxed(t, db)); n != len(msgs) {
			t.Fatalf("%d outbox entries after a refused produce, want %d", n, len(msgs))
		}
		refuse.Store(false)
		if n, err := r.PublishBatch(ctx); err != nil || n != len(msgs) {
			t.Fatalf("PublishBatch once Kafka accepts = %d, %v; want %d", n, err, len(msgs))
		}
		if n := smstest.Count(t, db, "outbox"); n != 0 {
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
		if n := len(smstest.Outboxed(t, db)); n != len(msgs) {
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
	s := postgres.NewStore(db)
	reg := prometheus.NewRegistry()
	r := NewRelay(postgres.NewOutbox(db), producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour, StaleAfter: time.Hour}, zerolog.Nop(), reg)
	s.OnCommit(r.Enqueue)
	r.DeleteThrough(s) // as the server does: deleted by the next insert, or by the flusher
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 25))
	if err != nil {
		t.Fatal(err)
	}
	got := consume(t, brokers, topic, len(msgs))
	if len(got) != len(msgs) {
		t.Fatalf("%d records, want %d", len(got), len(msgs))
	}
	platformtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "outbox emptied by the hand-over", func() (bool, string) {
		n := smstest.Count(t, db, "outbox")
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
	if _, err := postgres.NewStore(db).Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 3)); err != nil {
		t.Fatal(err)
	}
	var later atomic.Bool // the relay's clock is StaleAfter ahead
	now := func() time.Time {
		if later.Load() {
			return time.Now().Add(time.Minute + time.Millisecond)
		}
		return time.Now()
	}
	r := NewRelay(postgres.NewOutbox(db), producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour, StaleAfter: time.Minute, Now: now}, zerolog.Nop(), prometheus.NewRegistry())
	if n, err := r.sweep(ctx, r.cfg.StaleAfter); err != nil || n != 0 {
		t.Fatalf("sweep of young entries = %d, %v; want 0", n, err)
	}
	later.Store(true)
	if n, err := r.sweep(ctx, r.cfg.StaleAfter); err != nil || n != 3 {
		t.Fatalf("sweep of stale entries = %d, %v; want 3", n, err)
	}
}

// TestRelayEnqueueBound checks the hand-over's bound: a batch that would
// make more than 4 × Batch entries wait is left to the sweep, and taking a
// batch makes room again.
func TestRelayEnqueueBound(t *testing.T) {
	t.Parallel()
	r := NewRelay(nil, nil, RelayConfig{Topic: "unused", Batch: 2, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	batch := func() sms.OutboxBatch { return sms.OutboxBatch{ID: uuid.New(), Records: make([]sms.OutboxRecord, 3)} }
	a, b, c := batch(), batch(), batch()
	r.Enqueue(a)
	r.Enqueue(b) // 6 entries of 8
	r.Enqueue(c) // would be 9: left to the sweep
	ctx := context.Background()
	for _, want := range []sms.OutboxBatch{a, b} {
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
	s := postgres.NewStore(db)
	msgs, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyReports(ctx, []sms.DeliveryReport{{MessageID: msgs[0].ID, Status: sms.StatusSent, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(postgres.NewOutbox(db), producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	if n, err := r.PublishBatch(ctx); err != nil || n != 2 {
		t.Fatalf("PublishBatch = %d, %v; want the batch's 2 entries", n, err)
	}
	if n := smstest.Count(t, db, "outbox"); n != 0 {
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
	var req sms.SendRequest
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
	s := postgres.NewStore(db)
	ctx := context.Background()
	msgs, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}})
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
	r := NewRelay(postgres.NewOutbox(db), nil, RelayConfig{Topic: "unused", Batch: 10, Interval: time.Hour, RequeueAfter: 10 * time.Minute}, zerolog.Nop(), prometheus.NewRegistry())
	r.backlog.Store(r.cfg.RequeueMaxBacklog + 1)
	r.requeueRound(ctx)
	if got := smstest.Outboxed(t, db); len(got) != 0 {
		t.Fatalf("re-queued %v while the backlog was over the limit", got)
	}
	r.backlog.Store(0)
	r.requeueRound(ctx)
	if got := smstest.Outboxed(t, db); !slices.Equal(got, smstest.IDs(msgs)) {
		t.Errorf("outbox %v after the backlog drained, want %v", got, smstest.IDs(msgs))
	}
}

// TestRelayRecoversFromRecreatedTopic: after the topic is deleted and
// created again (a new topic id), publishing works again without a restart.
func TestRelayRecoversFromRecreatedTopic(t *testing.T) {
	t.Parallel()
	topic, _, producer := newTopic(t, 1)
	ctx := context.Background()
	db := platformtest.NewDB(t)
	s := postgres.NewStore(db)
	r := NewRelay(postgres.NewOutbox(db), producer, RelayConfig{Topic: topic, Batch: 10, Interval: time.Hour, RequeueAfter: time.Hour}, zerolog.Nop(), prometheus.NewRegistry())
	insert := func() {
		if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}); err != nil {
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
