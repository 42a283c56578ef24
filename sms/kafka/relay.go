// Package kafka is the API's side of Kafka: the outbox relay that publishes
// every committed message to the requests topic.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// Producer is the part of a Kafka client the relay needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	// PurgeTopicsFromProducing drops what the client knows of a topic,
	// after the topic was re-created.
	PurgeTopicsFromProducing(topics ...string)
}

// Outbox is the outbox table; *postgres.Outbox is the implementation.
type Outbox interface {
	// PublishStale claims rows created before cutoff, up to limit records,
	// calls publish with their records, and deletes the rows if it
	// succeeds; it returns how many records the rows held.
	PublishStale(ctx context.Context, cutoff time.Time, limit int, publish func([]sms.OutboxRecord) error) (int, error)
	// Delete deletes rows by batch id.
	Delete(ctx context.Context, ids []uuid.UUID) error
	// Backlog counts the records waiting and the age of the oldest row.
	Backlog(ctx context.Context) (records int64, oldest time.Duration, err error)
	// Requeue puts messages PENDING for longer than after back in the
	// outbox and returns how many.
	Requeue(ctx context.Context, after time.Duration) (int64, error)
}

// DeleteQueue deletes published outbox batches later, sharing a commit
// with other work (the store does it in its next insert).
type DeleteQueue interface {
	Published(ids []uuid.UUID)
	FlushPublished(ctx context.Context) error
}

// RelayConfig tunes the outbox relay.
type RelayConfig struct {
	// Topic receives the send requests of normal priority; high and low
	// ones go to Topic.high and Topic.low (sms.PriorityTopics).
	Topic string
	// Batch is the most records published per round.
	Batch int
	// Interval is how often the relay sweeps the outbox for rows that
	// memory lost.
	Interval time.Duration
	// RequeueAfter re-queues messages PENDING for longer than this.
	RequeueAfter time.Duration
	// StaleAfter is how old a row must be before the sweep publishes it;
	// younger ones are on their way from memory. Defaults to 5s.
	StaleAfter time.Duration
	// Publishers is how many batches handed over in memory may be in
	// flight to Kafka at once. Defaults to 2.
	Publishers int
	// Linger is how long a publisher waits for more batches before it
	// produces what it has. The broker's cost is per produce request more
	// than per record (see the README's performance notes); a little
	// latency here is nothing next to the carrier's. Defaults to 20ms.
	Linger time.Duration
	// ProduceTimeout bounds one produce. Defaults to 15s.
	ProduceTimeout time.Duration
	// SampleEvery is how often the backlog is counted; the count reads the
	// whole outbox, and the backlog limit doesn't need a fresher figure.
	// Defaults to 5s.
	SampleEvery time.Duration
	// RequeueMaxBacklog is the backlog above which the re-queue waits:
	// while Kafka is behind, the stuck messages are in the outbox anyway,
	// and telling them apart from lost ones would compare each with the
	// whole outbox. Defaults to 100,000.
	RequeueMaxBacklog int64
	// Now tells the time for the sweep's cut-off. Defaults to time.Now;
	// tests move it instead of waiting.
	Now func() time.Time
}

func (c RelayConfig) withDefaults() RelayConfig {
	c.Batch = max(c.Batch, 1)
	if c.StaleAfter <= 0 {
		c.StaleAfter = 5 * time.Second
	}
	if c.Publishers <= 0 {
		c.Publishers = 2
	}
	if c.Linger <= 0 {
		c.Linger = 20 * time.Millisecond
	}
	if c.ProduceTimeout <= 0 {
		c.ProduceTimeout = 15 * time.Second
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = 5 * time.Second
	}
	if c.RequeueMaxBacklog <= 0 {
		c.RequeueMaxBacklog = 100_000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Relay publishes the outbox to Kafka and deletes each batch once Kafka has
// acknowledged all its records. The store hands over what it just
// committed (Enqueue), so the usual path costs the database one DELETE per
// batch; a sweep of the table publishes whatever memory lost: batches of a
// failed produce, of a previous run, dropped because the queue was full,
// or re-queued. Several API replicas can run relays at once: the sweep
// claims its rows with FOR UPDATE SKIP LOCKED. A message may be published
// twice (a crash between produce and delete, a slow hand-over overtaken by
// the sweep); the processor recognizes a message it already handled.
type Relay struct {
	outbox   Outbox
	deletes  DeleteQueue
	producer Producer
	cfg      RelayConfig
	topics   map[sms.Priority]string // by priority lane
	log      zerolog.Logger
	lc       platform.Lifecycle
	wake     chan struct{}
	fresh    chan sms.OutboxBatch
	queued   atomic.Int64 // records in fresh
	backlog  atomic.Int64
	metrics  relayMetrics
}

type relayMetrics struct {
	published   prometheus.Counter
	errors      prometheus.Counter
	requeued    prometheus.Counter
	backlog     prometheus.GaugeFunc
	oldestEntry prometheus.Gauge
}

// NewRelay returns a relay; its metrics are registered on reg.
func NewRelay(outbox Outbox, producer Producer, cfg RelayConfig, log zerolog.Logger, reg prometheus.Registerer) *Relay {
	cfg = cfg.withDefaults()
	r := &Relay{outbox: outbox, producer: producer, cfg: cfg, topics: sms.PriorityTopics(cfg.Topic), log: log.With().Str("component", "outbox").Logger(),
		wake: make(chan struct{}, 1), fresh: make(chan sms.OutboxBatch, 4*cfg.Batch)}
	r.metrics = relayMetrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_queued_total", Help: "Messages published to Kafka by the outbox relay."}),
		errors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_outbox_publish_errors_total", Help: "Outbox rounds that failed to publish."}),
		requeued:  prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_requeued_total", Help: "Messages re-queued because they stayed PENDING too long."}),
		backlog: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sms_outbox_backlog", Help: "Outbox entries waiting to be published (sampled)."},
			func() float64 { return float64(r.backlog.Load()) }),
		oldestEntry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_outbox_oldest_age_seconds", Help: "Age of the oldest outbox entry (sampled)."}),
	}
	reg.MustRegister(r.metrics.published, r.metrics.errors, r.metrics.requeued, r.metrics.backlog, r.metrics.oldestEntry)
	return r
}

// DeleteThrough makes the relay hand the batches it published from memory
// to q for deletion instead of deleting them with a commit of their own.
// Call it before Start.
func (r *Relay) DeleteThrough(q DeleteQueue) { r.deletes = q }

// Wake tells the relay to sweep the outbox now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Enqueue hands over a committed batch. It never blocks: while 4 × Batch
// records wait already, the batch is left to the sweep.
func (r *Relay) Enqueue(b sms.OutboxBatch) {
	n := int64(len(b.Records))
	if r.queued.Add(n) > int64(4*r.cfg.Batch) {
		r.queued.Add(-n)
		return
	}
	select {
	case r.fresh <- b:
	default:
		r.queued.Add(-n)
	}
}

// take receives a batch handed over, or reports false once ctx ends.
func (r *Relay) take(ctx context.Context) (sms.OutboxBatch, bool) {
	select {
	case b := <-r.fresh:
		r.queued.Add(-int64(len(b.Records)))
		return b, true
	case <-ctx.Done():
		return sms.OutboxBatch{}, false
	}
}

// Backlog is the last sampled number of records waiting.
func (r *Relay) Backlog() int64 { return r.backlog.Load() }

// Start publishes until Stop; Stop makes one last bounded pass, so that
// what was accepted before shutdown is handed to Kafka.
func (r *Relay) Start(ctx context.Context) error { return r.lc.Start(ctx, r.run) }

// Stop ends the relay and waits for its goroutines. Safe to call twice.
func (r *Relay) Stop() { _ = r.lc.Stop() }

func (r *Relay) run(ctx context.Context) error {
	var workers sync.WaitGroup
	workers.Go(func() { r.sampleLoop(ctx) })
	workers.Go(func() { platform.Every(ctx, min(r.cfg.RequeueAfter/2, time.Minute), r.requeueRound) })
	for range r.cfg.Publishers {
		workers.Go(func() { r.publishLoop(ctx) })
	}
	if r.deletes != nil {
		// Deletes that no insert took along, as when no messages arrive.
		workers.Go(func() {
			platform.Every(ctx, 100*time.Millisecond, func(ctx context.Context) {
				if err := r.deletes.FlushPublished(ctx); err != nil && ctx.Err() == nil {
					r.log.Warn().Err(err).Msg("deleting published outbox entries failed; retrying")
				}
			})
		})
	}
	r.sweepLoop(ctx)
	workers.Wait()
	r.flush(context.WithoutCancel(ctx))
	return nil
}

// publishLoop publishes batches handed over in memory.
func (r *Relay) publishLoop(ctx context.Context) {
	var backoff platform.Backoff
	for {
		first, ok := r.take(ctx)
		if !ok {
			return
		}
		batches := r.gather(ctx, first)
		if err := r.publish(ctx, batches); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.metrics.errors.Inc()
			wait := backoff.Next()
			r.log.Warn().Err(err).Int("batches", len(batches)).Dur("retry_in", wait).Msg("outbox publish failed; entries stay queued")
			if !platform.Sleep(ctx, wait) {
				return
			}
			continue
		}
		backoff = 0
	}
}

// gather adds the batches handed over within Linger to first, up to Batch
// records.
func (r *Relay) gather(ctx context.Context, first sms.OutboxBatch) []sms.OutboxBatch {
	batches, n := []sms.OutboxBatch{first}, len(first.Records)
	linger, cancel := context.WithTimeout(ctx, r.cfg.Linger)
	defer cancel()
	for n < r.cfg.Batch {
		b, ok := r.take(linger)
		if !ok {
			break
		}
		batches, n = append(batches, b), n+len(b.Records)
	}
	return batches
}

// publish produces the batches' records and has the batches deleted from
// the outbox. If the delete fails they stay and are published again later.
func (r *Relay) publish(ctx context.Context, batches []sms.OutboxBatch) error {
	var records []sms.OutboxRecord
	ids := make([]uuid.UUID, len(batches))
	for i, b := range batches {
		records = append(records, b.Records...)
		ids[i] = b.ID
	}
	if err := r.produce(ctx, records); err != nil {
		return err
	}
	r.metrics.published.Add(float64(len(records)))
	if r.deletes != nil {
		r.deletes.Published(ids)
		return nil
	}
	return r.outbox.Delete(ctx, ids)
}

func (r *Relay) produce(ctx context.Context, records []sms.OutboxRecord) error {
	if len(records) == 0 {
		return nil
	}
	krs := make([]*kgo.Record, len(records))
	for i, e := range records {
		// The record continues the trace of the POST that accepted it; the
		// client's kotel hook puts the context in the record's headers.
		topic := r.topics[e.Priority]
		if topic == "" {
			topic = r.cfg.Topic
		}
		krs[i] = &kgo.Record{Topic: topic, Key: []byte(e.Key), Value: e.Payload,
			Context: platform.WithTraceparent(ctx, e.Traceparent),
			Headers: []kgo.RecordHeader{{Key: "message_id", Value: []byte(e.MessageID.String())}}}
	}
	produceCtx, cancel := context.WithTimeout(ctx, r.cfg.ProduceTimeout)
	defer cancel()
	if err := r.producer.ProduceSync(produceCtx, krs...).FirstErr(); err != nil {
		if errors.Is(err, kerr.UnknownTopicID) {
			// The topic was deleted and created again under a new id. The
			// client never drops the old id by itself (franz-go leaves
			// this to the application), so every publish would fail until
			// a restart. Forget the topic; the next publish looks it up.
			r.log.Warn().Str("topic", r.cfg.Topic).Msg("a request topic was re-created; dropping the client's old topic ids")
			r.producer.PurgeTopicsFromProducing(slices.Collect(maps.Values(r.topics))...)
		}
		return fmt.Errorf("produce to %s: %w", r.cfg.Topic, err)
	}
	return nil
}

// sweepLoop publishes stale rows until ctx ends.
func (r *Relay) sweepLoop(ctx context.Context) {
	var backoff platform.Backoff
	for {
		n, err := r.sweep(ctx, r.cfg.StaleAfter)
		wait := r.cfg.Interval
		switch {
		case err != nil && ctx.Err() == nil:
			r.metrics.errors.Inc()
			wait = backoff.Next()
			r.log.Warn().Err(err).Dur("retry_in", wait).Msg("outbox publish failed; entries stay queued")
		case n >= r.cfg.Batch:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			t.Stop()
			if backoff > 0 && !platform.Sleep(ctx, wait) { // wake-ups don't defeat the backoff
				return
			}
		case <-t.C:
		}
	}
}

// flush publishes what is left, for a bounded time, at shutdown.
func (r *Relay) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if r.deletes != nil {
		if err := r.deletes.FlushPublished(ctx); err != nil {
			r.log.Warn().Err(err).Msg("deleting published outbox entries at shutdown failed; they will be published again")
		}
	}
	for ctx.Err() == nil {
		n, err := r.PublishBatch(ctx)
		if err != nil {
			r.log.Warn().Err(err).Msg("outbox flush at shutdown failed; entries stay queued for the next start")
			return
		}
		if n < r.cfg.Batch {
			return
		}
	}
}

// PublishBatch publishes the oldest outbox rows, however young, up to
// Batch records (at least one row), and returns how many records.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) { return r.sweep(ctx, 0) }

// sweep publishes the oldest outbox rows created at least olderThan ago.
func (r *Relay) sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	published := 0
	n, err := r.outbox.PublishStale(ctx, r.cfg.Now().Add(-olderThan), r.cfg.Batch, func(records []sms.OutboxRecord) error {
		published = len(records)
		return r.produce(ctx, records)
	})
	if err != nil {
		return 0, err
	}
	r.metrics.published.Add(float64(published))
	return n, nil
}

// sampleLoop refreshes the backlog figures every SampleEvery; the API
// refuses new messages while the backlog is over its limit.
func (r *Relay) sampleLoop(ctx context.Context) {
	r.sample(ctx)
	platform.Every(ctx, r.cfg.SampleEvery, r.sample)
}

func (r *Relay) sample(ctx context.Context) {
	n, oldest, err := r.outbox.Backlog(ctx)
	if err != nil {
		return
	}
	r.backlog.Store(n)
	r.metrics.oldestEntry.Set(oldest.Seconds())
}

// requeueRound re-queues stuck messages once, unless the outbox backlog is
// over RequeueMaxBacklog.
func (r *Relay) requeueRound(ctx context.Context) {
	if n := r.backlog.Load(); n > r.cfg.RequeueMaxBacklog {
		r.log.Debug().Int64("backlog", n).Msg("re-queue waits for the outbox backlog to drain")
		return
	}
	n, err := r.outbox.Requeue(ctx, r.cfg.RequeueAfter)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("requeue of stuck messages failed")
		}
		return
	}
	if n > 0 {
		r.metrics.requeued.Add(float64(n))
		r.log.Warn().Int64("messages", n).Dur("pending_for", r.cfg.RequeueAfter).Msg("re-queued messages stuck in PENDING")
		r.Wake()
	}
}
