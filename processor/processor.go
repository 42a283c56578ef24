package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// Outcomes is where the processor records what each message came to, and
// asks whether a message already has an outcome. *Store is the
// implementation.
type Outcomes interface {
	Known(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error)
	// Record stores outcomes and returns those it stored: an outcome
	// recorded earlier for the same message is kept.
	Record(ctx context.Context, outs []Outcome) ([]Outcome, error)
}

// Config tunes the processor.
type Config struct {
	// Brokers, Topic, DLQTopic and Group locate the work.
	Brokers  []string
	Topic    string
	DLQTopic string
	Group    string
	// MaxInFlight bounds records being processed at once, across partitions.
	MaxInFlight int
	// MaxAttempts is how many carrier calls a message gets.
	MaxAttempts int
	// RetryBackoff is the first retry delay; it doubles per attempt, with jitter.
	RetryBackoff time.Duration
	// DrainTimeout bounds how long revoked partitions and shutdown wait for
	// messages in flight before they are handed back uncommitted.
	DrainTimeout time.Duration
	// Tracer records spans; nil records nothing.
	Tracer trace.TracerProvider
}

// Processor consumes send requests with at-least-once semantics: a record's
// offset is committed only once its outcome is recorded in the store, and
// a message whose outcome is recorded is never given to the carrier again.
type Processor struct {
	cfg      Config
	cl       *kgo.Client
	store    Outcomes
	carrier  carrier.Carrier
	reporter *Reporter
	log      zerolog.Logger

	mu       sync.Mutex
	parts    map[int32]*partition
	inFlight map[uuid.UUID]*flight // messages being processed; redelivered copies wait on them

	lc       platform.Lifecycle
	work     sync.WaitGroup // goroutines working on records
	slots    chan struct{}  // one token per record in flight
	outcomes chan finished
	joined   atomic.Bool
	metrics  procMetrics
	tracer   trace.Tracer
}

type finished struct {
	out       Outcome
	partition int32
	offset    int64
}

type procMetrics struct {
	calls    *prometheus.CounterVec
	retries  prometheus.Counter
	dlq      prometheus.Counter
	skipped  prometheus.Counter
	attempt  prometheus.Histogram
	inFlight prometheus.GaugeFunc
}

// New returns a processor with its own consumer-group client. extra options
// are appended to the client's (tests use them to shorten timeouts).
func New(cfg Config, store Outcomes, carrier carrier.Carrier, reporter *Reporter, log zerolog.Logger, reg prometheus.Registerer, extra ...kgo.Opt) (*Processor, error) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	p := &Processor{
		cfg: cfg, store: store, carrier: carrier, reporter: reporter,
		tracer:   cfg.Tracer.Tracer("github.com/smsctl/smsctl/processor"),
		log:      log.With().Str("component", "processor").Logger(),
		parts:    make(map[int32]*partition),
		inFlight: make(map[uuid.UUID]*flight),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		outcomes: make(chan finished, 4096),
	}
	p.metrics = procMetrics{
		calls:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_carrier_calls_total", Help: "Calls to the carrier by result."}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_carrier_retries_total", Help: "Carrier calls retried after a transient failure."}),
		dlq:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_dlq_total", Help: "Records sent to the dead-letter topic."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_redelivered_skipped_total", Help: "Redelivered records whose outcome was already known (carrier not called)."}),
		attempt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_carrier_attempt_duration_seconds", Help: "Duration of one carrier call.",
			Buckets: []float64{.001, .01, .1, .5, 1, 1.5, 2, 2.5, 3, 5, 10}}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sms_processor_in_flight", Help: "Messages being processed."},
			func() float64 { return float64(len(p.slots)) }),
	}
	reg.MustRegister(p.metrics.calls, p.metrics.retries, p.metrics.dlq, p.metrics.skipped, p.metrics.attempt, p.metrics.inFlight)

	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(p.assigned),
		kgo.OnPartitionsRevoked(p.revoked),
		kgo.OnPartitionsLost(p.lost),
		// A replica that dies is noticed after the session timeout; Kafka's
		// 45s default would leave its partitions idle that long.
		kgo.SessionTimeout(10 * time.Second),
		kgo.HeartbeatInterval(time.Second),
		// The dead-letter producer shares the client.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30 * time.Second),
		// Receive and dead-letter publish spans, continuing the trace the
		// API put in the record headers.
		kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(
			kotel.TracerProvider(cfg.Tracer), kotel.TracerPropagator(platform.Propagator)))).Hooks()...),
	}
	cl, err := platform.NewKafkaClient(cfg.Brokers, p.log, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	p.cl = cl
	return p, nil
}

// Client is the processor's Kafka client, for readiness checks.
func (p *Processor) Client() *kgo.Client { return p.cl }

// Joined reports whether the processor has joined its group.
func (p *Processor) Joined() bool { return p.joined.Load() }

// Start consumes until Stop (or until ctx ends).
func (p *Processor) Start(ctx context.Context) error { return p.lc.Start(ctx, p.run) }

// Stop stops fetching, lets messages in flight finish within DrainTimeout
// (or hands them back), commits, leaves the group, and returns once every
// goroutine it started has. Safe to call twice.
func (p *Processor) Stop() {
	if p.lc.Stopped() == nil {
		p.cl.Close() // never started: only the client to close
		return
	}
	_ = p.lc.Stop()
}

// Stopped is closed once the processor has stopped.
func (p *Processor) Stopped() <-chan struct{} { return p.lc.Stopped() }

func (p *Processor) run(ctx context.Context) error {
	recCtx, stopRecorder := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	loops.Go(func() { p.record(recCtx) })
	commitCtx, stopCommitter := context.WithCancel(ctx)
	loops.Go(func() { p.commitLoop(commitCtx) })

	for ctx.Err() == nil {
		free := cap(p.slots) - len(p.slots)
		if free == 0 {
			platform.Sleep(ctx, 5*time.Millisecond)
			continue
		}
		fetches := p.cl.PollRecords(ctx, free)
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) {
				p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch failed")
			}
		})
		p.dispatch(ctx, fetches.Records())
		p.cl.AllowRebalance()
	}
	stopCommitter()
	// Leaving the group revokes every partition; revoked() drains and
	// commits, and cancels what did not finish. The recorder keeps taking
	// outcomes until the last piece of work has returned.
	p.cl.CloseAllowingRebalance()
	p.work.Wait()
	stopRecorder()
	loops.Wait()
	return nil
}

func (p *Processor) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range assigned[p.cfg.Topic] {
		if p.parts[part] == nil {
			p.parts[part] = newPartition(context.Background())
		}
	}
	p.joined.Store(true)
	p.log.Info().Interface("partitions", assigned[p.cfg.Topic]).Msg("partitions assigned")
}

// revoked lets the revoked partitions' messages in flight finish (so the
// next owner doesn't call the carrier for them too), hands back the ones
// that don't finish in time, and commits what is done.
func (p *Processor) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := revoked[p.cfg.Topic]
	if len(parts) == 0 {
		return
	}
	p.waitIdle(parts, p.cfg.DrainTimeout)
	p.mu.Lock()
	for _, part := range parts {
		if st := p.parts[part]; st != nil {
			st.cancel()
		}
	}
	p.mu.Unlock()
	// Cancelled work stops before calling the carrier; what already called
	// it gets recorded within a recorder round.
	p.waitIdle(parts, 5*time.Second)
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	p.commit(commitCtx, parts)
	p.mu.Lock()
	for _, part := range parts {
		delete(p.parts, part)
	}
	p.mu.Unlock()
	p.log.Info().Interface("partitions", parts).Msg("partitions revoked")
}

// lost drops the partitions' work without committing: they already belong
// to someone else.
func (p *Processor) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, part := range lost[p.cfg.Topic] {
		if st := p.parts[part]; st != nil {
			st.cancel()
			delete(p.parts, part)
		}
	}
	p.log.Warn().Interface("partitions", lost[p.cfg.Topic]).Msg("partitions lost; their work is dropped uncommitted")
}

func (p *Processor) waitIdle(parts []int32, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		busy := 0
		p.mu.Lock()
		for _, part := range parts {
			if st := p.parts[part]; st != nil {
				busy += st.inFlight
			}
		}
		p.mu.Unlock()
		if busy == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// work is a fetched record on its way to the carrier.
type work struct {
	rec *kgo.Record
	req sms.SendRequest
	st  *partition
}

// dispatch starts work on fetched records. Poison records go to the
// dead-letter topic; messages whose outcome is known are skipped. The
// store is asked beside the poll loop, not in it: the loop holds every
// rebalance until it polls again, so a store that is down must not keep it.
func (p *Processor) dispatch(ctx context.Context, records []*kgo.Record) {
	if len(records) == 0 {
		return
	}
	var todo []work
	p.mu.Lock()
	for _, rec := range records {
		st := p.parts[rec.Partition]
		if st == nil {
			continue // not ours any more; the owner will read it
		}
		p.slots <- struct{}{}
		st.add(rec.Offset, rec.LeaderEpoch)
		var req sms.SendRequest
		err := json.Unmarshal(rec.Value, &req)
		if err == nil {
			err = req.Validate()
		}
		if err != nil {
			p.work.Go(func() { p.deadLetter(st, rec, fmt.Errorf("poison record: %w", err)) })
			continue
		}
		if f := p.inFlight[req.MessageID]; f != nil {
			// The earlier copy is in flight: this one finishes when it is
			// recorded, or takes over if it is handed back. Finishing it now
			// could commit past it before any outcome is durable (the
			// earlier copy may belong to a partition state since lost).
			f.waiting = append(f.waiting, waiter{st: st, rec: rec, req: req})
			p.metrics.skipped.Inc()
			continue
		}
		p.inFlight[req.MessageID] = &flight{}
		todo = append(todo, work{rec: rec, req: req, st: st})
	}
	p.mu.Unlock()
	if len(todo) > 0 {
		p.work.Go(func() { p.check(ctx, todo) })
	}
}

// flight is a message being processed, with the redelivered copies of it
// that wait for its outcome instead of calling the carrier alongside it.
// Waiting copies keep their slot and their offset pending.
type flight struct {
	waiting []waiter
}

type waiter struct {
	st  *partition
	rec *kgo.Record
	req sms.SendRequest
}

// finishFlightLocked ends id's flight once its outcome is recorded: the
// copies waiting on it are done too.
func (p *Processor) finishFlightLocked(id uuid.UUID) {
	f := p.inFlight[id]
	delete(p.inFlight, id)
	if f == nil {
		return
	}
	for _, w := range f.waiting {
		p.finishLocked(w.st, w.rec.Offset)
	}
}

// handOverLocked ends id's flight after its copy was handed back. The
// first waiting copy whose partition is still ours takes over (the caller
// starts it with redeliver); the others wait on it. Copies of partitions no
// longer ours are handed back too.
func (p *Processor) handOverLocked(id uuid.UUID) *waiter {
	f := p.inFlight[id]
	delete(p.inFlight, id)
	if f == nil {
		return nil
	}
	var next *waiter
	var rest []waiter
	for i, w := range f.waiting {
		switch {
		case w.st.ctx.Err() != nil:
			w.st.abandon()
			<-p.slots
		case next == nil:
			next = &f.waiting[i]
		default:
			rest = append(rest, w)
		}
	}
	if next != nil {
		p.inFlight[id] = &flight{waiting: rest}
	}
	return next
}

// redeliver processes a copy that took over from one handed back: checked
// against the store first, like any fetched record.
func (p *Processor) redeliver(w waiter) {
	p.check(w.st.ctx, []work{{rec: w.rec, req: w.req, st: w.st}})
}

// lookupTimeout bounds one outcome lookup, and lookupMaxBackoff the wait
// between two: together well within the 5 s a revoke waits for cancelled
// work, so records of a revoked partition are handed back in time.
const (
	lookupTimeout    = 2 * time.Second
	lookupMaxBackoff = time.Second
)

// check asks the store which of the records' messages already have an
// outcome, finishes those and starts the others. While the store is down it
// retries: nothing may reach the carrier unchecked. Records whose partition
// is revoked or lost meanwhile, or all of them once ctx ends, are handed
// back uncommitted for the next owner.
func (p *Processor) check(ctx context.Context, todo []work) {
	backoff := 50 * time.Millisecond
	for {
		live := todo[:0]
		for _, w := range todo {
			if ctx.Err() != nil || w.st.ctx.Err() != nil {
				p.abandon(w.st, w.req.MessageID)
				continue
			}
			live = append(live, w)
		}
		if todo = live; len(todo) == 0 {
			return
		}
		ids := make([]uuid.UUID, len(todo))
		for i, w := range todo {
			ids[i] = w.req.MessageID
		}
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		known, err := p.store.Known(lctx, ids)
		cancel()
		if err == nil {
			for _, w := range todo {
				if !known[w.req.MessageID] {
					p.work.Go(func() { p.deliver(w.st, w.rec, w.req) })
					continue
				}
				p.metrics.skipped.Inc()
				p.mu.Lock()
				p.finishFlightLocked(w.req.MessageID)
				p.finishLocked(w.st, w.rec.Offset)
				p.mu.Unlock()
			}
			return
		}
		p.log.Warn().Err(err).Int("records", len(todo)).Msg("outcome lookup failed; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, lookupMaxBackoff)
	}
}

func (p *Processor) finishLocked(st *partition, offset int64) {
	st.done(offset)
	<-p.slots
}

func (p *Processor) abandon(st *partition, id uuid.UUID) {
	p.mu.Lock()
	st.abandon()
	<-p.slots
	next := p.handOverLocked(id)
	p.mu.Unlock()
	if next != nil {
		p.work.Go(func() { p.redeliver(*next) })
	}
}

// retryDelay is first doubled once per attempt after the first, at most
// config.MaxRetryDelay: doubling without a cap would hold a message (and
// its in-flight slot) for hours after a dozen attempts, and overflow.
func retryDelay(first time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < config.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, config.MaxRetryDelay)
}

// deliver calls the carrier, retrying transient failures with exponential
// backoff and jitter in this goroutine, so the partition keeps flowing.
func (p *Processor) deliver(st *partition, rec *kgo.Record, req sms.SendRequest) {
	ctx := st.ctx
	parent := rec.Context
	if parent == nil {
		parent = context.Background()
	}
	spanCtx, span := p.tracer.Start(parent, "sms.deliver", trace.WithAttributes(attribute.String("message_id", req.MessageID.String())))
	defer span.End()
	log := p.log.With().Str("message_id", req.MessageID.String()).Str("trace_id", span.SpanContext().TraceID().String()).Logger()
	var out Outcome
	for attempt := 1; ; attempt++ {
		start := time.Now()
		_, attemptSpan := p.tracer.Start(spanCtx, "carrier.attempt", trace.WithAttributes(attribute.Int("attempt", attempt)))
		err := p.carrier.Deliver(ctx, req, attempt)
		if err != nil {
			attemptSpan.SetStatus(codes.Error, err.Error())
		}
		attemptSpan.End()
		var cerr *carrier.Error
		if err != nil && ctx.Err() != nil && !errors.As(err, &cerr) {
			// Revoked, lost or shutting down before the carrier answered:
			// the next owner redoes it. A call the carrier did answer is
			// recorded below even now, or the next owner would repeat it.
			p.abandon(st, req.MessageID)
			return
		}
		p.metrics.attempt.Observe(time.Since(start).Seconds())
		transient := err != nil && (!errors.As(err, &cerr) || cerr.Transient)
		switch {
		case err == nil:
			p.metrics.calls.WithLabelValues("delivered").Inc()
			out = Outcome{Status: sms.StatusSent}
		case transient && attempt < p.cfg.MaxAttempts:
			p.metrics.calls.WithLabelValues("transient").Inc()
			p.metrics.retries.Inc()
			delay := retryDelay(p.cfg.RetryBackoff, attempt)
			delay = delay/2 + rand.N(delay/2+1)
			log.Debug().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("transient carrier failure")
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
				p.abandon(st, req.MessageID)
				return
			}
		case transient:
			p.metrics.calls.WithLabelValues("transient").Inc()
			reason := failureReason(fmt.Sprintf("exhausted: %d attempts, last error: %v", attempt, err))
			out = Outcome{Status: sms.StatusFailed, FailureReason: &reason}
			if !p.sendDLQ(ctx, rec, errors.New(reason)) {
				// Revoked or shutting down before the dead letter was
				// acknowledged: recording now would lose it. Hand it back.
				p.abandon(st, req.MessageID)
				return
			}
		default:
			p.metrics.calls.WithLabelValues("permanent").Inc()
			reason := cerr.Reason
			if strings.TrimSpace(reason) == "" {
				reason = "permanent: the carrier gave no reason"
			}
			reason = failureReason(reason)
			out = Outcome{Status: sms.StatusFailed, FailureReason: &reason}
		}
		out.MessageID, out.Attempts, out.ProcessedAt = req.MessageID, attempt, time.Now().UTC()
		out.Traceparent = platform.Traceparent(spanCtx)
		span.SetAttributes(attribute.String("status", string(out.Status)))
		break
	}
	p.outcomes <- finished{out: out, partition: rec.Partition, offset: rec.Offset}
}

// failureReason cuts reason to what the API accepts (sms.MaxFailureReason
// characters): a report it rejects would be retried forever and hold up
// every report behind it.
func failureReason(reason string) string {
	if utf8.RuneCountInString(reason) <= sms.MaxFailureReason {
		return reason
	}
	const ellipsis = "…"
	runes := []rune(reason)
	return string(runes[:sms.MaxFailureReason-1]) + ellipsis
}

// record writes outcomes in batches; only then are their offsets done.
func (p *Processor) record(ctx context.Context) {
	batch := make([]finished, 0, 1000)
	for {
		batch = batch[:0]
		select {
		case f := <-p.outcomes:
			batch = append(batch, f)
		case <-ctx.Done():
			return
		}
		batch = platform.Gather(p.outcomes, batch, cap(batch), 0)
		outs := make([]Outcome, len(batch))
		for i, f := range batch {
			outs[i] = f.out
		}
		var backoff platform.Backoff
		var stored []Outcome
		for {
			var err error
			if stored, err = p.store.Record(ctx, outs); err == nil {
				break
			}
			p.log.Warn().Err(err).Int("outcomes", len(outs)).Msg("recording outcomes failed; retrying")
			if !platform.Sleep(ctx, backoff.Next()) {
				return
			}
		}
		p.mu.Lock()
		for _, f := range batch {
			p.finishFlightLocked(f.out.MessageID)
			if st := p.parts[f.partition]; st != nil {
				st.done(f.offset)
			}
			<-p.slots
		}
		p.mu.Unlock()
		// Only what was stored is reported: an outcome another replica
		// recorded first is that replica's to report, and reporting ours
		// would tell the API something processor.deliveries does not say.
		if p.reporter != nil {
			p.reporter.Enqueue(stored)
		}
	}
}

func (p *Processor) commitLoop(ctx context.Context) {
	platform.Every(ctx, 500*time.Millisecond, func(ctx context.Context) { p.commit(ctx, nil) })
}

// commit commits the finished prefix of the given partitions (all when nil).
func (p *Processor) commit(ctx context.Context, only []int32) {
	offsets := make(map[int32]kgo.EpochOffset)
	p.mu.Lock()
	for part, st := range p.parts {
		if only != nil && !contains(only, part) {
			continue
		}
		if off, epoch, ok := st.toCommit(); ok {
			offsets[part] = kgo.EpochOffset{Epoch: epoch, Offset: off}
		}
	}
	p.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	p.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{p.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				p.log.Warn().Err(err).Msg("offset commit failed; will retry")
				return
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, t := range resp.Topics {
				for _, rp := range t.Partitions {
					if rp.ErrorCode != 0 {
						continue
					}
					if st := p.parts[rp.Partition]; st != nil {
						st.committed = max(st.committed, offsets[rp.Partition].Offset)
					}
				}
			}
		})
}

func contains(xs []int32, x int32) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// deadLetter sends a poison record to the dead-letter topic, then lets its
// offset be committed.
func (p *Processor) deadLetter(st *partition, rec *kgo.Record, cause error) {
	p.log.Warn().Err(cause).Int32("partition", rec.Partition).Int64("offset", rec.Offset).Msg("poison record sent to dead-letter topic")
	if !p.sendDLQ(st.ctx, rec, cause) {
		p.mu.Lock()
		st.abandon()
		p.mu.Unlock()
		<-p.slots
		return
	}
	p.mu.Lock()
	p.finishLocked(st, rec.Offset)
	p.mu.Unlock()
}

// sendDLQ produces rec's copy to the dead-letter topic with the error and
// its origin in headers, retrying until it is acknowledged or ctx ends.
func (p *Processor) sendDLQ(ctx context.Context, rec *kgo.Record, cause error) bool {
	dl := &kgo.Record{Topic: p.cfg.DLQTopic, Key: rec.Key, Value: rec.Value, Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
		kgo.RecordHeader{Key: "error", Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: "original_topic", Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: "original_partition", Value: []byte(strconv.Itoa(int(rec.Partition)))},
		kgo.RecordHeader{Key: "original_offset", Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	)}
	backoff := 100 * time.Millisecond
	for {
		err := p.cl.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			p.metrics.dlq.Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.log.Warn().Err(err).Msg("dead-letter produce failed; retrying")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
