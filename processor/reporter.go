package processor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// ReporterConfig tunes how outcomes reach the API.
type ReporterConfig struct {
	// APIURL is the API's base URL.
	APIURL string
	// Token is the internal credential.
	Token string
	// Batch is the most reports per request.
	Batch int
	// Concurrency is how many report requests may be in flight at once;
	// each claims its own rows. Defaults to 1.
	Concurrency int
	// StaleAfter is how old an unreported outcome must be before the
	// sweep of the store picks it up; younger ones are on their way from
	// memory. Defaults to 5s.
	StaleAfter time.Duration
	// Timeout bounds one report request. Defaults to 10s.
	Timeout time.Duration
	// BreakerTimeout is how long the circuit breaker stays open after
	// three failures in a row before it lets one probe through. Defaults
	// to 2s.
	BreakerTimeout time.Duration
}

// Reporter sends recorded outcomes to the API's batch delivery-report
// endpoint until each is acknowledged. Outcomes just recorded are handed
// over in memory (Enqueue), so the usual path costs the store no query of
// its own (the next Record marks them reported); a sweep of the store,
// at least once a second, reports whatever memory lost: outcomes of a
// failed request, of a previous run, or dropped because the queue was full. A
// circuit breaker stops it from hammering an API that is down; the
// outcomes wait in the store meanwhile.
type Reporter struct {
	store   *Store
	cfg     ReporterConfig
	api     *client.Internal
	breaker *gobreaker.CircuitBreaker[struct{}]
	log     zerolog.Logger
	fresh   chan Outcome
	wake    chan struct{}
	lc      platform.Lifecycle

	reported     prometheus.Counter
	failures     prometheus.Counter
	breakerState prometheus.GaugeFunc
}

// NewReporter returns a reporter; its metrics are registered on reg.
func NewReporter(store *Store, cfg ReporterConfig, log zerolog.Logger, reg prometheus.Registerer) *Reporter {
	cfg.Batch = max(cfg.Batch, 1)
	cfg.Concurrency = max(cfg.Concurrency, 1)
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.BreakerTimeout <= 0 {
		cfg.BreakerTimeout = 2 * time.Second
	}
	r := &Reporter{
		fresh: make(chan Outcome, 4*cfg.Batch*cfg.Concurrency), wake: make(chan struct{}, 1),
		store: store, cfg: cfg, log: log.With().Str("component", "reporter").Logger(),
		api:      client.NewInternal(cfg.APIURL, cfg.Token, cfg.Timeout),
		reported: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_reports_sent_total", Help: "Delivery reports acknowledged by the API."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_report_errors_total", Help: "Report requests that failed."}),
	}
	// Read at scrape time: the breaker leaves open for half-open lazily, on
	// its next call, so a gauge set on state changes would say open for as
	// long as an idle replica makes none.
	r.breakerState = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sms_report_breaker_state",
		Help: "Circuit breaker on the API: 0 closed, 1 half-open, 2 open."}, func() float64 { return float64(r.breaker.State()) })
	r.breaker = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "api-reports",
		MaxRequests: 1,
		Timeout:     cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 3 },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			r.log.Warn().Str("from", from.String()).Str("to", to.String()).Msg("report circuit breaker changed state")
		},
	})
	reg.MustRegister(r.reported, r.failures, r.breakerState)
	return r
}

// Wake asks for a sweep of the store now: receipts were settled.
func (r *Reporter) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Enqueue hands over outcomes that were just recorded. It never blocks:
// what doesn't fit in the queue is left to the sweep.
func (r *Reporter) Enqueue(outs []Outcome) { platform.Offer(r.fresh, outs) }

// Start reports with Concurrency loops until Stop (or until ctx ends).
func (r *Reporter) Start(ctx context.Context) error { return r.lc.Start(ctx, r.run) }

// Stop makes one bounded last pass and returns once every loop has. Safe
// to call twice.
func (r *Reporter) Stop() { _ = r.lc.Stop() }

func (r *Reporter) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() { r.loop(ctx) })
	}
	// Acknowledgements that no Record took along, as when no messages arrive.
	wg.Go(func() {
		platform.Every(ctx, 100*time.Millisecond, func(ctx context.Context) {
			if err := r.store.FlushReported(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("marking reports acknowledged failed; retrying")
			}
		})
	})
	wg.Wait()
	if err := r.store.FlushReported(context.WithoutCancel(ctx)); err != nil {
		r.log.Warn().Err(err).Msg("marking reports acknowledged at shutdown failed; they will be reported again")
	}
	return nil
}

// reportLinger is how long a report request waits for more outcomes
// before it goes.
const reportLinger = 5 * time.Millisecond

func (r *Reporter) loop(ctx context.Context) {
	var backoff platform.Backoff
	batch := make([]Outcome, 0, r.cfg.Batch)
	var lastSweep time.Time
	for {
		var n int
		var err error
		// Sweep at least once a second, so that outcomes whose report
		// failed go out even while fresh ones keep coming.
		if len(batch) == 0 && time.Since(lastSweep) < time.Second {
			batch = platform.Gather(r.fresh, batch, 1, 0)
		}
		if len(batch) > 0 {
			// Linger a little: each request costs the API a statement and
			// a commit whatever its size.
			batch = platform.Gather(r.fresh, batch, r.cfg.Batch, reportLinger)
			n, err = r.reportFresh(ctx, batch)
			batch = batch[:0]
		} else {
			lastSweep = time.Now()
			n, err = r.sweep(ctx, r.cfg.StaleAfter)
		}
		wait := time.Second
		switch {
		case err != nil && ctx.Err() == nil:
			wait = backoff.Next()
			if !errors.Is(err, gobreaker.ErrOpenState) {
				r.log.Warn().Err(err).Dur("retry_in", wait).Msg("delivery reports not acknowledged; they stay queued")
			}
		case n == r.cfg.Batch || len(r.fresh) > 0:
			backoff = 0
			continue
		default:
			backoff = 0
		}
		select {
		case <-ctx.Done():
			r.flush(context.WithoutCancel(ctx))
			return
		case o := <-r.fresh:
			batch = append(batch, o)
			if backoff > 0 && !platform.Sleep(ctx, wait) { // fresh outcomes don't defeat the backoff
				r.flush(context.WithoutCancel(ctx))
				return
			}
		case <-r.wake:
			lastSweep = time.Time{} // sweep next round
			if backoff > 0 && !platform.Sleep(ctx, wait) {
				r.flush(context.WithoutCancel(ctx))
				return
			}
		case <-time.After(wait):
		}
	}
}

// reportFresh reports outcomes handed over in memory and marks them
// reported. On failure they stay unreported in the store for the sweep.
func (r *Reporter) reportFresh(ctx context.Context, outs []Outcome) (int, error) {
	_, err := r.breaker.Execute(func() (struct{}, error) { return struct{}{}, r.post(ctx, outs) })
	if err != nil {
		r.failures.Inc()
		return 0, err
	}
	keys := make([]reportKey, len(outs))
	for i, o := range outs {
		keys[i] = o.key()
	}
	r.store.Acknowledged(keys) // marked by the next Record, or flushed
	r.reported.Add(float64(len(outs)))
	return len(outs), nil
}

func (r *Reporter) flush(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		n, err := r.ReportOnce(ctx)
		if err != nil || n < r.cfg.Batch {
			return
		}
	}
}

// ReportOnce sends one batch of unreported outcomes from the store and
// returns its size.
func (r *Reporter) ReportOnce(ctx context.Context) (int, error) { return r.sweep(ctx, 0) }

// sweep reports one batch of the store's unreported outcomes older than
// olderThan.
func (r *Reporter) sweep(ctx context.Context, olderThan time.Duration) (int, error) {
	n, err := r.store.ReportBatch(ctx, r.cfg.Batch, olderThan, func(outs []Outcome) error {
		_, err := r.breaker.Execute(func() (struct{}, error) { return struct{}{}, r.post(ctx, outs) })
		return err
	})
	if err != nil {
		r.failures.Inc()
		return 0, err
	}
	r.reported.Add(float64(n))
	return n, nil
}

func (r *Reporter) post(ctx context.Context, outs []Outcome) error {
	reports := make([]sms.DeliveryReport, len(outs))
	for i, o := range outs {
		reports[i] = o.report()
	}
	results, err := r.api.PostReports(ctx, reports)
	if err != nil {
		return fmt.Errorf("post reports: %w", err)
	}
	for _, x := range results {
		if x.Outcome == sms.ReportNotFound {
			// The API never stored this message; retrying can't help.
			r.log.Error().Str("message_id", x.MessageID.String()).Msg("API does not know this message; report dropped")
		}
	}
	return nil
}

// report is what the API is told of o.
func (o Outcome) report() sms.DeliveryReport {
	r := sms.DeliveryReport{MessageID: o.MessageID, Status: o.Status, FailureReason: o.FailureReason, ProcessedAt: o.ProcessedAt,
		Traceparent: o.Traceparent, Retry: o.Retry}
	if o.Kind == kindReceipt {
		r.Parts = o.PartReceipts
		return r
	}
	if o.CarrierMessageID != nil {
		r.CarrierMessageID = *o.CarrierMessageID
	}
	r.Attempts = o.AttemptLog
	return r
}
