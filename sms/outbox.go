package sms

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
)

// Producer is the part of a Kafka client the relay needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// RelayConfig tunes the outbox relay.
type RelayConfig struct {
	// Topic receives the send requests.
	Topic string
	// Batch is the most entries published per round.
	Batch int
	// Interval is how often the relay looks for work when nobody wakes it.
	Interval time.Duration
	// RequeueAfter re-queues messages PENDING for longer than this.
	RequeueAfter time.Duration
}

// Relay publishes outbox entries to Kafka and deletes them once Kafka has
// acknowledged them. Several API replicas can run relays at once: each
// claims its rows with FOR UPDATE SKIP LOCKED.
type Relay struct {
	db       *sqlx.DB
	producer Producer
	cfg      RelayConfig
	log      zerolog.Logger
	wake     chan struct{}
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
	r := &Relay{db: db, producer: producer, cfg: cfg, log: log.With().Str("component", "outbox").Logger(), wake: make(chan struct{}, 1)}
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

// Wake tells the relay that new entries are waiting.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Backlog is the last sampled number of entries waiting.
func (r *Relay) Backlog() int64 { return r.backlog.Load() }

// Run publishes until ctx ends, then makes one last pass so that what was
// accepted before shutdown is handed to Kafka.
func (r *Relay) Run(ctx context.Context) {
	go r.sample(ctx)
	go r.requeueLoop(ctx)
	backoff := time.Duration(0)
	for {
		n, err := r.PublishBatch(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.metrics.errors.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.log.Warn().Err(err).Dur("retry_in", backoff).Msg("outbox publish failed; entries stay queued")
		case n == r.cfg.Batch:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		wait := r.cfg.Interval
		if backoff > 0 {
			wait = backoff + rand.N(backoff/4+1)
		}
		select {
		case <-ctx.Done():
			r.flush(context.WithoutCancel(ctx))
			return
		case <-r.wake:
			if backoff > 0 {
				time.Sleep(backoff) // don't let wake-ups defeat the backoff
			}
		case <-time.After(wait):
		}
	}
}

// flush publishes what is left, for a bounded time, at shutdown.
func (r *Relay) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
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

type outboxRow struct {
	OutboxID    int64     `db:"id"`
	MessageID   uuid.UUID `db:"message_id"`
	Traceparent string    `db:"traceparent"`
	Key         string    `db:"record_key"`
	Payload     string    `db:"payload"`
}

// PublishBatch publishes up to one batch of entries and returns how many.
// The claim, the produce and the delete share one transaction: if Kafka
// doesn't acknowledge, the rows are released and published later.
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	tx, err := r.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, storeErr("begin", err)
	}
	defer func() { _ = tx.Rollback() }()
	var rows []outboxRow
	err = tx.SelectContext(ctx, &rows, `
        SELECT id, message_id, traceparent, record_key, payload FROM sms.outbox
        ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, r.cfg.Batch)
	if err != nil {
		return 0, storeErr("claim outbox", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	records := make([]*kgo.Record, len(rows))
	ids := make([]int64, len(rows))
	for i, row := range rows {
		// The record continues the trace of the POST that accepted it; the
		// client's kotel hook puts the context in the record's headers.
		rec := &kgo.Record{Topic: r.cfg.Topic, Key: []byte(row.Key), Value: []byte(row.Payload),
			Context: platform.WithTraceparent(ctx, row.Traceparent),
			Headers: []kgo.RecordHeader{{Key: "message_id", Value: []byte(row.MessageID.String())}}}
		records[i], ids[i] = rec, row.OutboxID
	}
	produceCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := r.producer.ProduceSync(produceCtx, records...).FirstErr(); err != nil {
		return 0, fmt.Errorf("produce to %s: %w", r.cfg.Topic, err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM sms.outbox WHERE id = ANY($1)`, pq.Array(ids)); err != nil {
		return 0, storeErr("delete outbox entries", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, storeErr("commit outbox", err)
	}
	r.metrics.published.Add(float64(len(rows)))
	return len(rows), nil
}

// sample refreshes the backlog figures once a second; the API refuses new
// messages while the backlog is over its limit.
func (r *Relay) sample(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var s struct {
			N      int64   `db:"n"`
			Oldest float64 `db:"oldest"`
		}
		err := r.db.GetContext(ctx, &s, `SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8 AS oldest FROM sms.outbox`)
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

// requeueLoop finds messages PENDING for longer than RequeueAfter and puts
// them back in the outbox. The processor recognizes a message it already
// handled, so a re-queue never delivers twice.
func (r *Relay) requeueLoop(ctx context.Context) {
	every := min(r.cfg.RequeueAfter/2, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := r.Requeue(ctx)
		if err != nil {
			r.log.Warn().Err(err).Msg("requeue of stuck messages failed")
			continue
		}
		if n > 0 {
			r.metrics.requeued.Add(float64(n))
			r.log.Warn().Int64("messages", n).Dur("pending_for", r.cfg.RequeueAfter).Msg("re-queued messages stuck in PENDING")
			r.Wake()
		}
	}
}

// Requeue puts messages PENDING for longer than RequeueAfter back in the
// outbox and returns how many.
func (r *Relay) Requeue(ctx context.Context) (int64, error) {
	res, err := r.db.ExecContext(ctx, `
        WITH stuck AS (
            UPDATE sms.messages m SET updated_at = now()
            WHERE id IN (
                SELECT id FROM sms.messages
                WHERE status = 'PENDING' AND updated_at < now() - $1::interval
                    AND NOT EXISTS (SELECT 1 FROM sms.outbox o WHERE o.message_id = sms.messages.id)
                ORDER BY updated_at LIMIT 1000 FOR UPDATE SKIP LOCKED)
            AND status = 'PENDING'
            RETURNING m.id, m.sender, m.recipient, m.text, m.encoding, m.segments, m.created_at
        )
        INSERT INTO sms.outbox (message_id, record_key, payload)
        SELECT id, recipient, json_build_object('message_id', id, 'sender', sender, 'recipient', recipient, 'text', text,
            'encoding', encoding, 'segments', segments, 'created_at', created_at)::text
        FROM stuck`,
		fmt.Sprintf("%d milliseconds", r.cfg.RequeueAfter.Milliseconds()))
	if err != nil {
		return 0, storeErr("requeue", err)
	}
	return res.RowsAffected()
}
