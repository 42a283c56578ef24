package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
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
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// waitFor is how long tests wait for a condition before failing.
const waitFor = 60 * time.Second

// eventually polls cond until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() (ok bool, detail string)) {
	tb.Helper()
	platformtest.Eventually(tb, timeout, 25*time.Millisecond, what, cond)
}

// testLogger logs to stderr when SMS_TEST_LOG is set, else nowhere. It
// doesn't write through tb, because work handed back at shutdown may log
// after the test ended.
func testLogger() zerolog.Logger {
	if os.Getenv("SMS_TEST_LOG") != "" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	}
	return zerolog.Nop()
}

func testRequestWithID(id uuid.UUID) sms.SendRequest {
	return sms.SendRequest{
		MessageID: id,
		Sender:    "+4915112345678",
		Recipient: "+4915187654321",
		Text:      "hello",
		Encoding:  sms.EncodingGSM7,
		Segments:  1,
		CreatedAt: time.Now().UTC(),
	}
}

// testRequest returns a valid send request; i varies the recipient so that
// records spread over partitions.
func testRequest(i int) sms.SendRequest {
	r := testRequestWithID(uuid.New())
	r.Recipient = fmt.Sprintf("+49151%08d", i)
	return r
}

func testRequests(n int) []sms.SendRequest {
	reqs := make([]sms.SendRequest, n)
	for i := range reqs {
		reqs[i] = testRequest(i)
	}
	return reqs
}

// countingCarrier stands in for the carrier. It counts completed calls per
// message (a call cancelled before its delay ended never reached the
// carrier, as with the Simulator), the calls cancelled during their delay
// (work handed back and done again: a graceful drain must leave none, and
// the completed calls alone would not show them), and the most calls in
// progress at once.
type countingCarrier struct {
	delay time.Duration
	// delayFor, when set, overrides delay per message.
	delayFor func(req sms.SendRequest) time.Duration
	// ignoreCancel makes a call that started finish anyway, like a request
	// already on the wire to a real carrier.
	ignoreCancel bool
	// outcome decides each call's result; nil delivers.
	outcome func(req sms.SendRequest, attempt int) error

	mu    sync.Mutex
	calls map[uuid.UUID]int // completed calls
	total atomic.Int64
	// cancelled counts calls that started and were cancelled before the
	// carrier answered.
	cancelled atomic.Int64
	cur       atomic.Int64
	peak      atomic.Int64
}

func newCountingCarrier(delay time.Duration) *countingCarrier {
	return &countingCarrier{delay: delay, calls: make(map[uuid.UUID]int)}
}

func (c *countingCarrier) Deliver(ctx context.Context, req sms.SendRequest, attempt int) error {
	if err := ctx.Err(); err != nil && !c.ignoreCancel {
		return err // never started
	}
	n := c.cur.Add(1)
	defer c.cur.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	delay := c.delay
	if c.delayFor != nil {
		delay = c.delayFor(req)
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		if c.ignoreCancel {
			<-t.C
		} else {
			select {
			case <-ctx.Done():
				c.cancelled.Add(1)
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	c.mu.Lock()
	c.calls[req.MessageID]++
	c.mu.Unlock()
	c.total.Add(1)
	if c.outcome != nil {
		return c.outcome(req, attempt)
	}
	return nil
}

func (c *countingCarrier) callsFor(id uuid.UUID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[id]
}

// repeated returns the messages the carrier was called for more than once.
func (c *countingCarrier) repeated() map[uuid.UUID]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uuid.UUID]int)
	for id, n := range c.calls {
		if n > 1 {
			out[id] = n
		}
	}
	return out
}

// carrierShare is one processor's view of a shared counting carrier, so a
// test can tell which replica did the work.
type carrierShare struct {
	*countingCarrier
	completed atomic.Int64
}

func (s *carrierShare) Deliver(ctx context.Context, req sms.SendRequest, attempt int) error {
	err := s.countingCarrier.Deliver(ctx, req, attempt)
	if !errors.Is(err, context.Canceled) {
		s.completed.Add(1)
	}
	return err
}

// kafkaEnv is a request topic with its dead-letter topic and group, on
// kfake or the broker in SMS_TEST_KAFKA_BROKERS.
type kafkaEnv struct {
	brokers    []string
	topic, dlq string
	group      string
	cl         *kgo.Client // producer and admin connection
	adm        *kadm.Client
}

func newKafkaEnv(tb testing.TB, partitions int32) *kafkaEnv {
	tb.Helper()
	topic := platformtest.UniqueTopic("sms.requests")
	e := &kafkaEnv{
		topic: topic, dlq: topic + ".dlq", group: platformtest.UniqueTopic("processor-test"),
	}
	e.brokers = platformtest.KafkaBrokers(tb)
	cl, err := platform.NewKafkaClient(e.brokers, zerolog.Nop(), kgo.ProducerLinger(0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cl.Close)
	e.cl, e.adm = cl, kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := platform.EnsureTopics(ctx, cl, partitions, 1, e.topic); err != nil {
		tb.Fatal(err)
	}
	if err := platform.EnsureTopics(ctx, cl, 1, 1, e.dlq); err != nil {
		tb.Fatal(err)
	}
	return e
}

// produce writes records synchronously; they come back with their offsets.
func (e *kafkaEnv) produce(tb testing.TB, recs ...*kgo.Record) []*kgo.Record {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, r := range recs {
		if r.Topic == "" {
			r.Topic = e.topic
		}
	}
	if err := e.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		tb.Fatalf("produce: %v", err)
	}
	return recs
}

func requestRecord(tb testing.TB, req sms.SendRequest) *kgo.Record {
	tb.Helper()
	v, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return &kgo.Record{Key: []byte(req.Recipient), Value: v}
}

func (e *kafkaEnv) produceRequests(tb testing.TB, reqs ...sms.SendRequest) []*kgo.Record {
	tb.Helper()
	recs := make([]*kgo.Record, len(reqs))
	for i, r := range reqs {
		recs[i] = requestRecord(tb, r)
	}
	return e.produce(tb, recs...)
}

// endOffsets returns topic's end offsets by partition.
func (e *kafkaEnv) endOffsets(tb testing.TB, topic string) map[int32]int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		tb.Fatalf("list end offsets: %v", err)
	}
	out := make(map[int32]int64)
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			tb.Fatalf("end offset %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		out[o.Partition] = o.Offset
	})
	return out
}

// committed returns the group's committed offsets on the request topic.
func (e *kafkaEnv) committed(tb testing.TB) map[int32]int64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs, err := e.adm.FetchOffsets(ctx, e.group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return map[int32]int64{} // nothing committed yet
	}
	if err != nil {
		tb.Fatalf("fetch committed offsets: %v", err)
	}
	out := make(map[int32]int64)
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.topic && o.Err == nil && o.At >= 0 {
			out[o.Partition] = o.At
		}
	})
	return out
}

// waitCommittedToEnd waits until the group's commits reach the end of every
// partition of the request topic.
func (e *kafkaEnv) waitCommittedToEnd(tb testing.TB) {
	tb.Helper()
	ends := e.endOffsets(tb, e.topic)
	eventually(tb, waitFor, "committed offsets reach the end offsets", func() (bool, string) {
		got := e.committed(tb)
		for p, end := range ends {
			if end > 0 && got[p] != end {
				return false, fmt.Sprintf("committed %v, end %v", got, ends)
			}
		}
		return true, ""
	})
}

// readAll reads topic from the start to its current end offsets.
func (e *kafkaEnv) readAll(tb testing.TB, topic string) []*kgo.Record {
	tb.Helper()
	ends := e.endOffsets(tb, topic)
	want := 0
	offsets := make(map[int32]kgo.Offset)
	for p, end := range ends {
		want += int(end)
		offsets[p] = kgo.NewOffset().AtStart()
	}
	if want == 0 {
		return nil
	}
	cl, err := platform.NewKafkaClient(e.brokers, zerolog.Nop(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var recs []*kgo.Record
	for len(recs) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %s: %d of %d records within %v", topic, len(recs), want, waitFor)
		}
		fs.EachError(func(t string, p int32, err error) { tb.Logf("read %s/%d: %v", t, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				recs = append(recs, r)
			}
		})
	}
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
	return recs
}

// testKafkaOpts shorten the group timeouts so that rebalances in tests take
// seconds, not the production defaults.
func testKafkaOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.SessionTimeout(6 * time.Second),
		kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.RebalanceTimeout(30 * time.Second),
	}
}

// testConfig is a processor configuration for env with test-sized knobs.
func testConfig(env *kafkaEnv) Config {
	return Config{
		Brokers: env.brokers, Topic: env.topic, DLQTopic: env.dlq, Group: env.group,
		MaxInFlight:  200,
		MaxAttempts:  3,
		RetryBackoff: 10 * time.Millisecond,
		DrainTimeout: 10 * time.Second,
	}
}

// deliverer is a test carrier that only says whether a call succeeded.
type deliverer interface {
	Deliver(ctx context.Context, req sms.SendRequest, attempt int) error
}

// simple makes a deliverer a carrier.Carrier that gives no carrier ids.
type simple struct{ deliverer }

func (s simple) Submit(ctx context.Context, req sms.SendRequest, attempt int) (carrier.Accepted, error) {
	return carrier.Accepted{}, s.Deliver(ctx, req, attempt)
}

func (simple) Ready() error { return nil }

// runningProcessor is a started Processor.
type runningProcessor struct {
	*Processor
}

// startProcessor builds a processor on db and runs it until the test ends
// or stop is called.
func startProcessor(tb testing.TB, cfg Config, db *sqlx.DB, d deliverer) *runningProcessor {
	tb.Helper()
	p, err := New(cfg, NewStore(db), simple{d}, nil, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		tb.Fatalf("processor.New: %v", err)
	}
	runProcessor(tb, p)
	return &runningProcessor{p}
}

// runProcessor starts p and stops it when the test ends.
func runProcessor(tb testing.TB, p *Processor) {
	tb.Helper()
	if err := p.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() { stopWithin(tb, p) })
}

// stop stops the processor and waits for it; calling it again is a no-op.
func (r *runningProcessor) stop(tb testing.TB) {
	tb.Helper()
	stopWithin(tb, r.Processor)
}

// stopWithin stops p, failing the test if Stop does not return in time.
func stopWithin(tb testing.TB, p *Processor) {
	tb.Helper()
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * waitFor):
		tb.Errorf("Stop did not return within %v", 2*waitFor)
	}
}

// recordedOutcomes returns every row of processor.deliveries by message.
func recordedOutcomes(tb testing.TB, db *sqlx.DB) map[uuid.UUID]Outcome {
	tb.Helper()
	var outs []Outcome
	if err := db.Select(&outs, `SELECT message_id, status, failure_reason, attempts, processed_at FROM processor.deliveries`); err != nil {
		tb.Fatalf("read deliveries: %v", err)
	}
	m := make(map[uuid.UUID]Outcome, len(outs))
	for _, o := range outs {
		m[o.MessageID] = o
	}
	return m
}

func countOutcomes(tb testing.TB, db *sqlx.DB) int {
	tb.Helper()
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM processor.deliveries`); err != nil {
		tb.Fatalf("count deliveries: %v", err)
	}
	return n
}

// waitOutcomes waits until processor.deliveries holds n rows.
func waitOutcomes(tb testing.TB, db *sqlx.DB, n int) {
	tb.Helper()
	eventually(tb, waitFor, fmt.Sprintf("%d outcomes recorded", n), func() (bool, string) {
		got := countOutcomes(tb, db)
		return got >= n, fmt.Sprintf("%d recorded", got)
	})
}

func header(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}
