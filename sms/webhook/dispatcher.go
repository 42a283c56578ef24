package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
)

// Store is the delivery queue the dispatcher works from;
// *postgres.Webhooks is the implementation. Several dispatchers (one per
// API replica) share one store.
type Store interface {
	// Claim takes up to r.Limit due deliveries of enabled endpoints for
	// r.Lease, no more of an endpoint than make r.PerEndpoint held here,
	// and never an event while an earlier one of its message is pending
	// at the same endpoint. A delivery whose lease ends without a result
	// is due again.
	Claim(ctx context.Context, r ClaimRequest) ([]Delivery, error)
	// Record applies the results of attempts; a result whose delivery was
	// claimed again since (its lease ended) is logged but changes nothing.
	Record(ctx context.Context, results []Result) error
	// Expedite makes an endpoint's waiting retries due now, in the order
	// they were queued: it answers again.
	Expedite(ctx context.Context, endpointID uuid.UUID) error
	// QueueStats counts the pending deliveries.
	QueueStats(ctx context.Context) (QueueStats, error)
}

// Options tune a Dispatcher beyond config.Webhooks; the zero value is
// what serve api wants.
type Options struct {
	// PollInterval is how often an idle dispatcher looks for due
	// deliveries; Wake, or an attempt ending, makes it look at once.
	// Defaults to 100ms.
	PollInterval time.Duration
	// Lease is how long a claimed delivery stays with this dispatcher: if
	// it dies, another sends the delivery once the lease has passed. A
	// claimed delivery waits for at most one attempt before its own, so
	// it must exceed two attempt timeouts. Defaults to twice the attempt
	// timeout plus 10s.
	Lease time.Duration
	// DrainTimeout bounds how long Stop waits for attempts in flight
	// before it cuts them off (they are then due again elsewhere).
	// Defaults to the attempt timeout.
	DrainTimeout time.Duration
	// StatsInterval is how often the queue's depth and age are sampled.
	// Defaults to 5s.
	StatsInterval time.Duration
	// Batch is the most deliveries claimed in one statement. Defaults to
	// 100.
	Batch int
	// Lookup resolves endpoint hosts (see Guard). Defaults to the system
	// resolver.
	Lookup func(ctx context.Context, host string) ([]netip.Addr, error)
	// TLS is the client's TLS configuration. Defaults to the system's
	// roots.
	TLS *tls.Config
	// Recorded, when set, is called with each batch of results once it is
	// written: the signal tests wait on.
	Recorded func([]Result)
}

// MaxErrorBody is how much of a failed answer's body is kept in the
// attempt's error.
const MaxErrorBody = 4 << 10

// Dispatcher sends due deliveries to their endpoints, signed, and records
// each attempt: retried on the schedule, failed after it, the endpoint
// disabled on 410. It bounds the attempts in flight in total
// (config.Webhooks.Concurrency) and per endpoint (PerEndpoint).
type Dispatcher struct {
	store    Store
	cfg      config.Webhooks
	opts     Options
	schedule []time.Duration
	guard    Guard
	client   *http.Client
	log      zerolog.Logger
	metrics  metrics
	lc       platform.Lifecycle

	// wake makes the claim loop look now.
	wake chan struct{}
	// failing are the endpoints whose last attempt here failed: the next
	// success expedites their waiting retries.
	failing map[uuid.UUID]bool
}

type metrics struct {
	deliveries *prometheus.CounterVec
	depth      prometheus.Gauge
	oldest     prometheus.Gauge
	failures   *prometheus.CounterVec
	latency    prometheus.Histogram
	lag        prometheus.Histogram
}

// NewDispatcher returns a dispatcher on store, its metrics registered on
// reg. It fails when cfg's retry schedule does not parse.
func NewDispatcher(store Store, cfg config.Webhooks, log zerolog.Logger, reg prometheus.Registerer, opts Options) (*Dispatcher, error) {
	schedule, err := cfg.Schedule()
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 15 * time.Second
	}
	cfg.Concurrency = max(cfg.Concurrency, 1)
	cfg.PerEndpoint = max(cfg.PerEndpoint, 1)
	if opts.PollInterval <= 0 {
		opts.PollInterval = 100 * time.Millisecond
	}
	if opts.Lease <= 0 {
		opts.Lease = 2*cfg.Timeout + 10*time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = cfg.Timeout
	}
	if opts.StatsInterval <= 0 {
		opts.StatsInterval = 5 * time.Second
	}
	if opts.Batch <= 0 {
		opts.Batch = 100
	}
	guard := Guard{AllowPrivate: cfg.AllowPrivate, Lookup: opts.Lookup}
	transport := &http.Transport{
		// Never through a proxy: the guard checks the address dialed.
		Proxy:                 nil,
		DialContext:           guard.DialContext,
		TLSClientConfig:       opts.TLS,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          cfg.Concurrency * 2,
		MaxIdleConnsPerHost:   cfg.PerEndpoint * 2,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	d := &Dispatcher{
		store: store, cfg: cfg, opts: opts, schedule: schedule, guard: guard, log: log,
		client: &http.Client{
			Transport: transport,
			// A redirect is an answer like any other 3xx: a failure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		wake:    make(chan struct{}, 1),
		failing: map[uuid.UUID]bool{},
	}
	d.metrics = metrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: succeeded, retrying (failed, retried later), failed (for good)."}, []string{"result"}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_webhook_queue_depth",
			Help: "Webhook deliveries pending (due, in flight, or waiting for a retry), across replicas."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_webhook_oldest_pending_seconds",
			Help: "Age of the oldest pending webhook delivery; 0 when none is."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_webhook_endpoint_failures_total",
			Help: "Failed webhook delivery attempts per endpoint id."}, []string{"endpoint"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_webhook_attempt_duration_seconds",
			Help: "Duration of webhook delivery attempts, from the request to the end of the answer.", Buckets: prometheus.DefBuckets}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_webhook_delivery_lag_seconds",
			Help:    "Time from queuing a webhook delivery to its successful attempt.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 86400}}),
	}
	for _, r := range []Outcome{OutcomeSucceeded, OutcomeRetrying, OutcomeFailed} {
		d.metrics.deliveries.WithLabelValues(string(r))
	}
	reg.MustRegister(d.metrics.deliveries, d.metrics.depth, d.metrics.oldest, d.metrics.failures, d.metrics.latency, d.metrics.lag)
	return d, nil
}

// Start runs the dispatcher until Stop or ctx ends.
func (d *Dispatcher) Start(ctx context.Context) error { return d.lc.Start(ctx, d.run) }

// Stop stops claiming, waits up to Options.DrainTimeout for the attempts in
// flight, records them, and returns. Attempts cut off are due again at
// once. Safe to call twice.
func (d *Dispatcher) Stop() { _ = d.lc.Stop() }

// Wake makes the dispatcher look for due deliveries now (a test event or a
// replay was queued).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) run(ctx context.Context) error {
	// Attempts outlive ctx by up to DrainTimeout: Stop lets them finish.
	attemptCtx, cutOff := context.WithCancel(context.WithoutCancel(ctx))
	defer cutOff()
	results := make(chan attemptResult, d.cfg.Concurrency)
	recorded := make(chan struct{})
	go func() { defer close(recorded); d.recordLoop(ctx, results) }()
	statsDone := make(chan struct{})
	go func() { defer close(statsDone); d.statsLoop(ctx) }()

	// Each endpoint has up to PerEndpoint attempts in flight and as many
	// claimed deliveries queued here behind them: an attempt that ends
	// starts the next one itself, without waiting for a claim's round
	// trip. The claim loop keeps the queues filled.
	type endpointState struct {
		inflight int
		queue    []Delivery
	}
	var (
		mu        sync.Mutex
		endpoints = map[uuid.UUID]*endpointState{}
		inflight  int // attempts in flight
		held      int // deliveries claimed and not ended, queued ones too
		attempts  sync.WaitGroup
		stopping  bool
	)
	maxHeld := 2 * d.cfg.Concurrency
	// startQueued starts queued deliveries while slots allow; mu is held.
	var startQueued func()
	run := func(dl Delivery) {
		defer attempts.Done()
		results <- d.attempt(attemptCtx, dl)
		mu.Lock()
		inflight--
		held--
		endpoints[dl.EndpointID].inflight--
		startQueued()
		mu.Unlock()
		d.Wake() // room to claim more
	}
	startQueued = func() {
		for id, ep := range endpoints {
			for !stopping && len(ep.queue) > 0 && ep.inflight < d.cfg.PerEndpoint && inflight < d.cfg.Concurrency {
				dl := ep.queue[0]
				ep.queue = ep.queue[1:]
				ep.inflight++
				inflight++
				attempts.Add(1)
				go run(dl)
			}
			if ep.inflight == 0 && len(ep.queue) == 0 {
				delete(endpoints, id)
			}
		}
	}
	var backoff platform.Backoff
	poll := time.NewTimer(0)
	defer poll.Stop()
	for ctx.Err() == nil {
		mu.Lock()
		want := min(maxHeld-held, d.opts.Batch)
		counts := make(map[uuid.UUID]int, len(endpoints))
		for id, ep := range endpoints {
			counts[id] = ep.inflight + len(ep.queue)
		}
		mu.Unlock()
		more := false
		if want > 0 {
			claimed, err := d.store.Claim(ctx, ClaimRequest{Limit: want, PerEndpoint: 2 * d.cfg.PerEndpoint, Held: counts, Lease: d.opts.Lease})
			if err != nil {
				if ctx.Err() == nil {
					wait := backoff.Next()
					d.log.Warn().Err(err).Dur("retry_in", wait).Msg("webhook claim failed")
					platform.Sleep(ctx, wait)
				}
				continue
			}
			backoff = 0
			mu.Lock()
			for _, dl := range claimed {
				ep := endpoints[dl.EndpointID]
				if ep == nil {
					ep = &endpointState{}
					endpoints[dl.EndpointID] = ep
				}
				ep.queue = append(ep.queue, dl)
				held++
			}
			startQueued()
			more = len(claimed) == want && held < maxHeld
			mu.Unlock()
		}
		if more {
			continue
		}
		poll.Reset(d.opts.PollInterval)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-poll.C:
		}
	}

	// Deliveries claimed but not started go back at once.
	mu.Lock()
	stopping = true
	var unsent []Delivery
	for _, ep := range endpoints {
		unsent = append(unsent, ep.queue...)
		ep.queue = nil
	}
	mu.Unlock()
	for _, dl := range unsent {
		results <- attemptResult{Result: Result{DeliveryID: dl.ID, EndpointID: dl.EndpointID, Attempt: dl.Attempt,
			Outcome: OutcomeReleased, AttemptedAt: time.Now().UTC()}, queued: dl.CreatedAt}
	}

	// Drain: the attempts in flight finish within DrainTimeout, or are cut
	// off (released: due again at once).
	drained := make(chan struct{})
	go func() { attempts.Wait(); close(drained) }()
	t := time.NewTimer(d.opts.DrainTimeout)
	select {
	case <-drained:
	case <-t.C:
		cutOff()
		<-drained
	}
	t.Stop()
	close(results)
	<-recorded
	<-statsDone
	d.client.CloseIdleConnections()
	return nil
}

// attemptResult is a Result with what the recorder's metrics need.
type attemptResult struct {
	Result
	queued time.Time
}

// attempt sends one delivery and says what came of it.
func (d *Dispatcher) attempt(ctx context.Context, dl Delivery) attemptResult {
	start := time.Now()
	r := attemptResult{Result: Result{DeliveryID: dl.ID, EndpointID: dl.EndpointID, Attempt: dl.Attempt, AttemptedAt: start.UTC()},
		queued: dl.CreatedAt}
	status, body, retryAfter, err := d.send(ctx, dl, start)
	r.Latency = time.Since(start)
	r.StatusCode = status
	switch {
	case err != nil && ctx.Err() != nil:
		// Cut off by Stop: not the endpoint's fault, not an attempt.
		r.Outcome = OutcomeReleased
		return r
	case err != nil:
		r.Error = err.Error()
	case status >= 200 && status <= 299:
		r.Outcome = OutcomeSucceeded
		return r
	case status == http.StatusGone:
		r.Outcome = OutcomeFailed
		r.Error = answerError(status, body)
		r.Gone = true
		r.DisabledReason = fmt.Sprintf("the endpoint answered 410 Gone at %s", start.UTC().Format(time.RFC3339))
		return r
	default:
		r.Error = answerError(status, body)
	}
	if dl.Attempt > len(d.schedule) {
		r.Outcome = OutcomeFailed
		return r
	}
	wait := jitter(d.schedule[dl.Attempt-1])
	if retryAfter > wait {
		wait = min(retryAfter, 24*time.Hour)
	}
	r.Outcome = OutcomeRetrying
	r.NextAttemptAt = time.Now().Add(wait).UTC()
	return r
}

// send posts dl, signed at ts, and returns the answer's status, the start
// of its body and its Retry-After (on 429 and 503).
func (d *Dispatcher) send(ctx context.Context, dl Delivery, ts time.Time) (int, []byte, time.Duration, error) {
	// The endpoint may have been stored while the guard allowed more.
	if err := d.guard.checkScheme(dl.URL); err != nil {
		return 0, nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dl.URL, bytes.NewReader(dl.Payload))
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "smsctl-webhooks/1")
	if err := SetHeaders(req.Header, dl.Secrets, dl.WebhookID.String(), ts, dl.Payload); err != nil {
		return 0, nil, 0, err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, 0, d.cleanErr(err)
	}
	defer resp.Body.Close()
	var body []byte
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
	}
	// Read a little more so the connection can be reused, no more.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	var retryAfter time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if s, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && s > 0 {
			retryAfter = time.Duration(s) * time.Second
		}
	}
	return resp.StatusCode, body, retryAfter, nil
}

// checkScheme refuses http:// unless private addresses are allowed.
func (g Guard) checkScheme(raw string) error {
	if g.AllowPrivate || strings.HasPrefix(raw, "https://") {
		return nil
	}
	return errors.New("refused: webhook endpoints must use https")
}

// cleanErr is the transport's error without the "Post <url>:" prefix
// (the log names the endpoint), and a timeout said plainly.
func (d *Dispatcher) cleanErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s", d.cfg.Timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// answerError describes a non-2xx answer with the start of its body, as
// valid UTF-8 without NUL (PostgreSQL text holds neither).
func answerError(status int, body []byte) string {
	s := fmt.Sprintf("HTTP %d %s", status, http.StatusText(status))
	if status >= 300 && status <= 399 {
		s += ": redirects are not followed"
	}
	b := strings.ToValidUTF8(strings.ReplaceAll(string(body), "\x00", ""), "\uFFFD")
	if b = strings.TrimSpace(b); b != "" {
		s += ": " + b
	}
	return s
}

// jitter spreads a wait by ±10% so that deliveries that failed together
// don't all retry at once.
func jitter(d time.Duration) time.Duration {
	spread := int64(d) / 5
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread/2) + time.Duration(rand.Int64N(spread+1))
}

// recordLoop writes results as they come, in batches. It runs until
// results is closed.
func (d *Dispatcher) recordLoop(ctx context.Context, results <-chan attemptResult) {
	batch := make([]attemptResult, 0, 256)
	for r := range results {
		batch = append(batch[:0], r)
		// What else is waiting, without platform.Gather: results closes.
	more:
		for len(batch) < cap(batch) {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				batch = append(batch, r)
			default:
				break more
			}
		}
		d.record(ctx, batch)
		// A result may have made the next event of a message due.
		d.Wake()
	}
}

func (d *Dispatcher) record(ctx context.Context, batch []attemptResult) {
	out := make([]Result, len(batch))
	for i, r := range batch {
		out[i] = r.Result
	}
	// Results are written even while stopping: the attempts happened.
	rctx := context.WithoutCancel(ctx)
	var backoff platform.Backoff
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(rctx, 10*time.Second)
		err := d.store.Record(wctx, out)
		cancel()
		if err == nil {
			break
		}
		if try == 3 || ctx.Err() != nil {
			// The leases end and the deliveries are sent again: at least
			// once still holds.
			d.log.Error().Err(err).Int("results", len(out)).Msg("webhook results lost; their deliveries will be sent again")
			return
		}
		platform.Sleep(ctx, backoff.Next())
	}
	if d.opts.Recorded != nil {
		d.opts.Recorded(out)
	}
	var recovered []uuid.UUID
	for _, r := range batch {
		if r.Outcome == OutcomeReleased {
			continue
		}
		d.metrics.deliveries.WithLabelValues(string(r.Outcome)).Inc()
		d.metrics.latency.Observe(r.Latency.Seconds())
		switch r.Outcome {
		case OutcomeSucceeded:
			d.metrics.lag.Observe(time.Since(r.queued).Seconds())
			if d.failing[r.EndpointID] {
				delete(d.failing, r.EndpointID)
				recovered = append(recovered, r.EndpointID)
			}
		default:
			d.metrics.failures.WithLabelValues(r.EndpointID.String()).Inc()
			d.failing[r.EndpointID] = true
			d.log.Debug().Str("webhook_id", r.DeliveryID.String()).Str("endpoint_id", r.EndpointID.String()).
				Int("attempt", r.Attempt).Str("outcome", string(r.Outcome)).Str("error", r.Error).Msg("webhook attempt failed")
		}
		if r.Gone {
			d.log.Warn().Str("endpoint_id", r.EndpointID.String()).Msg("webhook endpoint answered 410 Gone: disabled")
		}
	}
	for _, id := range recovered {
		if err := d.store.Expedite(rctx, id); err != nil {
			d.log.Warn().Err(err).Str("endpoint_id", id.String()).Msg("could not expedite the retries of a recovered endpoint")
		}
	}
}

// statsLoop samples the queue's depth and age until ctx ends.
func (d *Dispatcher) statsLoop(ctx context.Context) {
	sample := func(ctx context.Context) {
		st, err := d.store.QueueStats(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn().Err(err).Msg("webhook queue stats failed")
			}
			return
		}
		d.metrics.depth.Set(float64(st.Pending))
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(time.Since(st.Oldest).Seconds(), 0)
		}
		d.metrics.oldest.Set(age)
	}
	sample(ctx)
	platform.Every(ctx, d.opts.StatsInterval, sample)
}
