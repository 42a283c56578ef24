package sms

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
)

// Producer is the part of a Kafka client the relay needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	// PurgeTopicsFromProducing drops what the client knows of a topic,
	// after the topic was re-created.
	PurgeTopicsFromProducing(topics ...string)
}

// RelayConfig tunes the outbox relay.
type RelayConfig struct {
	// Topic receives the send requests.
	Topic string
	// Batch is the most entries published per round.
	Batch int
	// Interval is how often the relay sweeps the outbox for entries that
	// memory lost.
	Interval time.Duration
	// RequeueAfter re-queues messages PENDING for longer than this.
	RequeueAfter time.Duration
	// StaleAfter is how old an entry must be before the sweep publishes
	// it; younger ones are on their way from memory. Defaults to 5s.
	StaleAfter time.Duration
	// Publishers is how many batches handed over in memory may be in
	// flight to Kafka at once. Defaults to 2.
	Publishers int
	// Now tells the time for the sweep's cut-off. Defaults to time.Now;
	// tests move it instead of waiting.
	Now func() time.Time
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
	db       *sqlx.DB
	deletes  DeleteQueue
	producer Producer
	cfg      RelayConfig
	log      zerolog.Logger
	wake     chan struct{}
	fresh    chan OutboxBatch
	queued   atomic.Int64 // entries in fresh
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
func NewRelay(db *sqlx.DB, producer Producer, cfg RelayConfig, log zerolog.Logger, reg prometheus.Registerer) *Relay {
	cfg.Batch = max(cfg.Batch, 1)
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Second
	}
	if cfg.Publishers <= 0 {
		cfg.Publishers = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relay{db: db, producer: producer, cfg: cfg, log: log.With().Str("component", "outbox").Logger(),
		wake: make(chan struct{}, 1), fresh: make(chan OutboxBatch, 4*cfg.Batch)}
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

// DeleteQueue deletes published outbox batches (by id) later, sharing a
// commit with other work (the store does it in its next insert).
type DeleteQueue interface {
	Published(ids []string)
	FlushPublished(ctx context.Context) error
}

// DeleteThrough makes the relay hand the batches it published from memory
// to q for deletion instead of deleting them with a commit of their own.
// Call it before Run.
func (r *Relay) DeleteThrough(q DeleteQueue) { r.deletes = q }

// Wake tells the relay to sweep the outbox now.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Enqueue hands over a committed batch. It never blocks: while 4 × Batch
// entries wait already, the batch is left to the sweep.
func (r *Relay) Enqueue(b OutboxBatch) {
	n := int64(len(b.Entries))
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
func (r *Relay) take(ctx context.Context) (OutboxBatch, bool) {
	select {
	case b := <-r.fresh:
		r.queued.Add(-int64(len(b.Entries)))
		return b, true
	case <-ctx.Done():
		return OutboxBatch{}, false
	}
}

// Backlog is the last sampled number of entries waiting.
func (r *Relay) Backlog() int64 { return r.backlog.Load() }

// Run publishes until ctx ends, then makes one last pass so that what was
// accepted before shutdown is handed to Kafka.
func (r *Relay) Run(ctx context.Context) {
	go r.sample(ctx)
	go r.requeueLoop(ctx)
	var workers sync.WaitGroup
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
}

// publishLinger is how long a publisher waits for more entries before it
// produces what it has. The broker's cost is per produce request more than
// per record: on a 2-core box a real broker took 35 µs of CPU per record in
// batches of 30 and 5 µs in batches of 200. 20 ms more on the way to the
// carrier is nothing next to the carrier's own latency.
const publishLinger = 20 * time.Millisecond

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
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		backoff = 0
	}
}

// gather adds the batches handed over within publishLinger to first, up to
// Batch entries.
func (r *Relay) gather(ctx context.Context, first OutboxBatch) []OutboxBatch {
	batches, n := []OutboxBatch{first}, len(first.Entries)
	linger, cancel := context.WithTimeout(ctx, publishLinger)
	defer cancel()
	for n < r.cfg.Batch {
		b, ok := r.take(linger)
		if !ok {
			break
		}
		batches, n = append(batches, b), n+len(b.Entries)
	}
	return batches
}

// publish produces the batches' records and deletes the batches from the
// outbox. If the delete fails they stay and are published again later.
func (r *Relay) publish(ctx context.Context, batches []OutboxBatch) error {
	var entries []OutboxEntry
	ids := make([]string, len(batches))
	for i, b := range batches {
		entries = append(entries, b.Entries...)
		ids[i] = b.ID.String()
	}
	if err := r.produce(ctx, entries); err != nil {
		return err
	}
	r.metrics.published.Add(float64(len(entries)))
	if r.deletes != nil {
		r.deletes.Published(ids)
		return nil
	}
	return deleteBatches(ctx, r.db, ids)
}

func deleteBatches(ctx context.Context, db sqlx.ExecerContext, ids []string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM sms.outbox WHERE batch_id = ANY($1::uuid[])`, pq.Array(ids)); err != nil {
		return storeErr("delete outbox batches", err)
	}
	return nil
}

func (r *Relay) produce(ctx context.Context, entries []OutboxEntry) error {
	if len(entries) == 0 {
		return nil
	}
	records := make([]*kgo.Record, len(entries))
	for i, e := range entries {
		// The record continues the trace of the POST that accepted it; the
		// client's kotel hook puts the context in the record's headers.
		records[i] = &kgo.Record{Topic: r.cfg.Topic, Key: []byte(e.Key), Value: []byte(e.Payload),
			Context: platform.WithTraceparent(ctx, e.Traceparent),
			Headers: []kgo.RecordHeader{{Key: "message_id", Value: []byte(e.MessageID.String())}}}
	}
	produceCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := r.producer.ProduceSync(produceCtx, records...).FirstErr(); err != nil {
		if errors.Is(err, kerr.UnknownTopicID) {
			// The topic was deleted and created again under a new id. The
			// client never drops the old id by itself (franz-go leaves
			// this to the application), so every publish would fail until
			// a restart. Forget the topic; the next publish looks it up.
			r.log.Warn().Str("topic", r.cfg.Topic).Msg("topic was re-created; dropping the client's old topic id")
			r.producer.PurgeTopicsFromProducing(r.cfg.Topic)
		}
		return fmt.Errorf("produce to %s: %w", r.cfg.Topic, err)
	}
	return nil
}

// sweepLoop publishes stale entries until ctx ends.
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
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			if backoff > 0 {
				time.Sleep(wait) // don't let wake-ups defeat the backoff
			}
		case <-time.After(wait):
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
// Batch entries (at least one row), and returns how many entries.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) { return r.sweep(ctx, 0) }

// sweep publishes the oldest outbox rows created at least olderThan ago, up
// to Batch entries (at least one row), and returns how many entries they
// held. The claim, the produce and the delete share one transaction: if
// Kafka doesn't acknowledge, the rows are released and published later.
// Records are built from the messages; those already final are skipped.
func (r *Relay) sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	tx, err := r.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	// Batch ids are UUIDv7, ordered by creation time: the smallest id of
	// the cut-off's millisecond bounds the range, so the scan stops at the
	// first young row instead of reading every row in flight.
	var rows []struct {
		ID           uuid.UUID      `db:"batch_id"`
		MessageIDs   pq.StringArray `db:"message_ids"`
		Traceparents pq.StringArray `db:"traceparents"`
	}
	err = tx.SelectContext(ctx, &rows, `
        SELECT batch_id, message_ids, traceparents FROM sms.outbox
        WHERE batch_id < $2 ORDER BY batch_id LIMIT $1 FOR UPDATE SKIP LOCKED`, r.cfg.Batch, UUIDv7Floor(r.cfg.Now().Add(-olderThan)))
	if err != nil {
		return 0, storeErr("claim outbox", err)
	}
	var ids, messageIDs []string
	traces := map[string]string{}
	for _, row := range rows {
		if len(messageIDs) >= r.cfg.Batch {
			break // the rest stay for the next round
		}
		ids = append(ids, row.ID.String())
		for i, id := range row.MessageIDs {
			messageIDs = append(messageIDs, id)
			if i < len(row.Traceparents) {
				traces[id] = row.Traceparents[i]
			}
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	var pending []Message
	if err := tx.SelectContext(ctx, &pending, `SELECT `+messageColumns+` FROM sms.messages WHERE id = ANY($1::uuid[]) AND status = 'PENDING'`,
		pq.Array(messageIDs)); err != nil {
		return 0, storeErr("read outbox messages", err)
	}
	entries := make([]OutboxEntry, len(pending))
	for i, m := range pending {
		if entries[i], err = outboxEntry(m, traces[m.ID.String()]); err != nil {
			return 0, err
		}
	}
	if err := r.produce(ctx, entries); err != nil {
		return 0, err
	}
	if err := deleteBatches(ctx, tx, ids); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, storeErr("commit outbox", err)
	}
	r.metrics.published.Add(float64(len(entries)))
	return len(messageIDs), nil
}

// UUIDv7Floor is the smallest UUIDv7 of t's millisecond (RFC 9562: the
// first 48 bits are the Unix time in milliseconds). Message ids are UUIDv7,
// so "id < UUIDv7Floor(t)" selects messages created before t through the
// primary key.
func UUIDv7Floor(t time.Time) string {
	ms := fmt.Sprintf("%012x", max(t.UnixMilli(), 0)) // 48 bits until the year 10889
	return ms[:8] + "-" + ms[8:12] + "-0000-0000-000000000000"
}

// sampleEvery is how often the backlog is counted. Counting reads every
// entry and the dead rows the relay's deletes left (26 ms a count under
// load), and a limit of a million entries doesn't need a fresher figure.
const sampleEvery = 5 * time.Second

// sample refreshes the backlog figures every sampleEvery; the API refuses
// new messages while the backlog is over its limit.
func (r *Relay) sample(ctx context.Context) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		var s struct {
			N      int64   `db:"n"`
			Oldest float64 `db:"oldest"`
		}
		err := r.db.GetContext(ctx, &s, `SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint AS n,
            COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest FROM sms.outbox`)
		if err == nil {
			r.backlog.Store(s.N)
			r.metrics.oldestEntry.Set(s.Oldest)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// requeueMaxBacklog is the backlog above which the re-queue waits: while
// Kafka is behind, the stuck messages are in the outbox anyway, and telling
// them apart from the lost ones would compare each with the whole outbox.
const requeueMaxBacklog = 100_000

// requeueLoop finds messages PENDING for longer than RequeueAfter and puts
// them back in the outbox. The processor recognizes a message it already
// handled, so a re-queue never delivers twice.
func (r *Relay) requeueLoop(ctx context.Context) {
	platform.Every(ctx, min(r.cfg.RequeueAfter/2, time.Minute), r.requeueRound)
}

// requeueRound re-queues stuck messages once, unless the outbox backlog is
// over requeueMaxBacklog.
func (r *Relay) requeueRound(ctx context.Context) {
	if n := r.backlog.Load(); n > requeueMaxBacklog {
		r.log.Debug().Int64("backlog", n).Msg("re-queue waits for the outbox backlog to drain")
		return
	}
	n, err := r.Requeue(ctx)
	if err != nil {
		r.log.Warn().Err(err).Msg("requeue of stuck messages failed")
		return
	}
	if n > 0 {
		r.metrics.requeued.Add(float64(n))
		r.log.Warn().Int64("messages", n).Dur("pending_for", r.cfg.RequeueAfter).Msg("re-queued messages stuck in PENDING")
		r.Wake()
	}
}

// Requeue puts messages PENDING for longer than RequeueAfter, and not in
// the outbox, back in the outbox as one batch and returns how many.
func (r *Relay) Requeue(ctx context.Context) (int64, error) {
	var n int64
	err := r.db.GetContext(ctx, &n, `
        WITH queued AS MATERIALIZED (
            SELECT unnest(message_ids) AS id FROM sms.outbox
        ), stuck AS (
            UPDATE sms.messages m SET updated_at = now()
            WHERE id IN (
                -- Per account through messages_account_status_created:
                -- updated_at is never before created_at, so the range on
                -- created_at holds every candidate.
                SELECT c.id FROM (SELECT DISTINCT account_id AS id FROM sms.account_counters) a CROSS JOIN LATERAL (
                    SELECT id FROM sms.messages
                    WHERE account_id = a.id AND status = 'PENDING'
                        AND created_at < now() - $1::interval AND updated_at < now() - $1::interval
                        AND NOT EXISTS (SELECT 1 FROM queued q WHERE q.id = sms.messages.id)
                    ORDER BY created_at LIMIT 1000) c
                LIMIT 1000)
            -- Checked again on the locked row: once a concurrent re-queue
            -- of another replica has moved updated_at, this one skips it.
            AND status = 'PENDING' AND updated_at < now() - $1::interval
            RETURNING m.id
        ), batch AS (
            -- Its id is its oldest message's: no other row holds that
            -- message, and the sweep sees the row as stale at once.
            INSERT INTO sms.outbox (batch_id, message_ids, traceparents)
            SELECT (array_agg(id ORDER BY id))[1], array_agg(id ORDER BY id), array_agg(''::text) FROM stuck HAVING count(*) > 0
            RETURNING cardinality(message_ids) AS n
        )
        SELECT COALESCE(sum(n), 0)::bigint FROM batch`,
		fmt.Sprintf("%d milliseconds", r.cfg.RequeueAfter.Milliseconds()))
	if err != nil {
		return 0, storeErr("requeue", err)
	}
	return n, nil
}
