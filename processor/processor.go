package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// Outcomes is where the processor records what each message came to, and
// asks whether a message already has an outcome. *Store is the
// implementation.
type Outcomes interface {
	Known(ctx context.Context, tries []Try) (map[Try]bool, error)
	// Record stores outcomes and returns those it stored: an outcome
	// recorded earlier for the same message is kept.
	Record(ctx context.Context, outs []Outcome) ([]Outcome, error)
}

// Claimer asks the API whether messages may still go to the carrier, and
// claims those that may; *client.Internal is the implementation.
type Claimer interface {
	Dispatch(ctx context.Context, claims []sms.Claim) ([]sms.ClaimResult, error)
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
	// Claimer, when set, is asked before a message goes to the carrier
	// (canceled, opted-out and expired messages don't); nil sends all.
	Claimer Claimer
	// Lanes are the request topics by priority, highest first; empty means
	// Topic alone. See lanes.go.
	Lanes []string
}

// Processor consumes send requests with at-least-once semantics: a record's
// offset is committed only once its outcome is recorded in the store, and
// a message whose outcome is recorded is never given to the carrier again.
type Processor struct {
	cfg      Config
	cl       *kgo.Client
	store    Outcomes
	claimer  Claimer
	carrier  carrier.Carrier
	reporter *Reporter
	log      zerolog.Logger

	mu       sync.Mutex
	parts    map[topicPartition]*partition
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
	out    Outcome
	tp     topicPartition
	offset int64
}

type procMetrics struct {
	calls   *prometheus.CounterVec
	retries prometheus.Counter
	// claimSkipped counts messages the API said not to send, by verdict.
	claimSkipped *prometheus.CounterVec
	dlq          prometheus.Counter
	skipped      prometheus.Counter
	attempt      prometheus.Histogram
	inFlight     prometheus.GaugeFunc
}

// New returns a processor with its own consumer-group client. extra options
// are appended to the client's (tests use them to shorten timeouts).
func New(cfg Config, store Outcomes, carrier carrier.Carrier, reporter *Reporter, log zerolog.Logger, reg prometheus.Registerer, extra ...kgo.Opt) (*Processor, error) {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	p := &Processor{
		cfg: cfg, store: store, claimer: cfg.Claimer, carrier: carrier, reporter: reporter,
		tracer:   cfg.Tracer.Tracer("github.com/smsctl/smsctl/processor"),
		log:      log.With().Str("component", "processor").Logger(),
		parts:    make(map[topicPartition]*partition),
		inFlight: make(map[uuid.UUID]*flight),
		slots:    make(chan struct{}, cfg.MaxInFlight),
		outcomes: make(chan finished, 4096),
	}
	p.metrics = procMetrics{
		calls:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_carrier_calls_total", Help: "Calls to the carrier by result."}, []string{"result"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_carrier_retries_total", Help: "Carrier calls retried after a transient failure."}),
		claimSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_claims_skipped_total",
			Help: "Messages the API said not to send (canceled, opted out, expired), by verdict."}, []string{"verdict"}),
		dlq:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_dlq_total", Help: "Records sent to the dead-letter topic."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_redelivered_skipped_total", Help: "Redelivered records whose outcome was already known (carrier not called)."}),
		attempt: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_carrier_attempt_duration_seconds", Help: "Duration of one carrier call.",
			Buckets: []float64{.001, .01, .1, .5, 1, 1.5, 2, 2.5, 3, 5, 10}}),
		inFlight: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sms_processor_in_flight", Help: "Messages being processed."},
			func() float64 { return float64(len(p.slots)) }),
	}
	reg.MustRegister(p.metrics.calls, p.metrics.retries, p.metrics.claimSkipped, p.metrics.dlq, p.metrics.skipped, p.metrics.attempt, p.metrics.inFlight)

	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(lanes(cfg)...),
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

	ls := newLaneState(lanes(p.cfg))
	for ctx.Err() == nil {
		free := cap(p.slots) - len(p.slots)
		if free == 0 {
			p.adjustLanes(ls, nil)
			platform.Sleep(ctx, 5*time.Millisecond)
			continue
		}
		// While a lane is held back, polls return in time to let it
		// through before it starves.
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if slices.Contains(ls.paused, true) {
			pollCtx, cancel = context.WithTimeout(ctx, laneStarveAfter/4)
		}
		fetches := p.cl.PollRecords(pollCtx, free)
		cancel()
		if fetches.IsClientClosed() {
			break
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				p.log.Warn().Err(err).Str("topic", t).Int32("partition", part).Msg("fetch failed")
			}
		})
		records := fetches.Records()
		p.dispatch(ctx, records)
		polled := make(map[string]int, len(ls.topics))
		for _, r := range records {
			polled[r.Topic]++
		}
		p.adjustLanes(ls, polled)
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

// topicPartition names an assigned partition of one of the lanes.
type topicPartition struct {
	topic string
	part  int32
}

func flatten(m map[string][]int32) []topicPartition {
	var out []topicPartition
	for t, parts := range m {
		for _, part := range parts {
			out = append(out, topicPartition{t, part})
		}
	}
	return out
}

func (p *Processor) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range flatten(assigned) {
		if p.parts[tp] == nil {
			p.parts[tp] = newPartition(context.Background())
		}
	}
	p.joined.Store(true)
	p.log.Info().Interface("partitions", assigned).Msg("partitions assigned")
}

// revoked lets the revoked partitions' messages in flight finish (so the
// next owner doesn't call the carrier for them too), hands back the ones
// that don't finish in time, and commits what is done.
func (p *Processor) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	parts := flatten(revoked)
	if len(parts) == 0 {
		return
	}
	p.waitIdle(parts, p.cfg.DrainTimeout)
	p.mu.Lock()
	for _, tp := range parts {
		if st := p.parts[tp]; st != nil {
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
	for _, tp := range parts {
		delete(p.parts, tp)
	}
	p.mu.Unlock()
	p.log.Info().Interface("partitions", revoked).Msg("partitions revoked")
}

// lost drops the partitions' work without committing: they already belong
// to someone else.
func (p *Processor) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, tp := range flatten(lost) {
		if st := p.parts[tp]; st != nil {
			st.cancel()
			delete(p.parts, tp)
		}
	}
	p.log.Warn().Interface("partitions", lost).Msg("partitions lost; their work is dropped uncommitted")
}

func (p *Processor) waitIdle(parts []topicPartition, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		busy := 0
		p.mu.Lock()
		for _, tp := range parts {
			if st := p.parts[tp]; st != nil {
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

func (p *Processor) commitLoop(ctx context.Context) {
	platform.Every(ctx, 500*time.Millisecond, func(ctx context.Context) { p.commit(ctx, nil) })
}

// commit commits the finished prefix of the given partitions (all when nil).
func (p *Processor) commit(ctx context.Context, only []topicPartition) {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	p.mu.Lock()
	for tp, st := range p.parts {
		if only != nil && !slices.Contains(only, tp) {
			continue
		}
		if off, epoch, ok := st.toCommit(); ok {
			if offsets[tp.topic] == nil {
				offsets[tp.topic] = make(map[int32]kgo.EpochOffset)
			}
			offsets[tp.topic][tp.part] = kgo.EpochOffset{Epoch: epoch, Offset: off}
		}
	}
	p.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	p.cl.CommitOffsetsSync(ctx, offsets,
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
					tp := topicPartition{t.Topic, rp.Partition}
					if st := p.parts[tp]; st != nil {
						st.committed = max(st.committed, offsets[t.Topic][rp.Partition].Offset)
					}
				}
			}
		})
}
