package smpp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/linxGnu/gosmpp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"golang.org/x/time/rate"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
)

// tracerName names the tracer of submit_sm spans.
const tracerName = "github.com/smsctl/smsctl/processor/carrier/smpp"

// Carrier is the SMPP carrier: Config.Binds transceiver binds kept up in
// the background, Submit over any bound one with window room.
type Carrier struct {
	cfg    Config
	sink   carrier.Sink
	log    zerolog.Logger
	tracer trace.Tracer
	m      *metrics
	binds  []*bind
	parts  *reassembler
	lc     platform.Lifecycle

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a bind goes up or down or frees room
	started bool
}

// bind is one transceiver bind slot: whichever session is up on it now,
// its window and its rate.
type bind struct {
	name    string
	log     zerolog.Logger
	limiter *rate.Limiter

	// Guarded by Carrier.mu.
	sess        *session // nil while not bound
	inFlight    int
	pausedUntil time.Time
	lastErr     error
}

var (
	_ carrier.Carrier  = (*Carrier)(nil)
	_ platform.Service = (*Carrier)(nil)
)

// New returns a carrier for cfg; Start binds it. Received receipts and
// inbound messages go to sink; metrics are registered on reg, spans made
// with tp (nil: none).
func New(cfg Config, sink carrier.Sink, log zerolog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (*Carrier, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("smpp: a sink is required")
	}
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("smpp metrics: %w", err)
	}
	c := &Carrier{
		cfg: cfg, sink: sink, m: m,
		log:     log.With().Str("component", "smpp").Str("smsc", cfg.Addr).Logger(),
		tracer:  tp.Tracer(tracerName),
		parts:   newReassembler(cfg.InboundPartTimeout),
		changed: make(chan struct{}),
	}
	limit := rate.Inf
	if cfg.TPS > 0 {
		limit = rate.Limit(cfg.TPS)
	}
	for i := range cfg.Binds {
		name := strconv.Itoa(i + 1)
		c.binds = append(c.binds, &bind{
			name: name, log: c.log.With().Str("bind", name).Logger(),
			// A burst of 1: TPS is a ceiling in every second, not an average.
			limiter: rate.NewLimiter(limit, 1),
			lastErr: errors.New("connecting"),
		})
		m.bindUp.WithLabelValues(name).Set(0)
		m.window.WithLabelValues(name).Set(0)
	}
	return c, nil
}

// Start binds in the background and returns at once; Ready says when a
// bind is up.
func (c *Carrier) Start(ctx context.Context) error {
	if err := c.lc.Start(ctx, c.run); err != nil {
		return err
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	return nil
}

// Stop unbinds every bind, letting the submit_sm in flight get their
// answers first (for up to SubmitTimeout), and waits for it all. Safe to
// call twice. Submit calls still waiting for a bind keep waiting until
// their context ends.
func (c *Carrier) Stop() {
	_ = c.lc.Stop()
}

func (c *Carrier) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, b := range c.binds {
		wg.Go(func() { c.keepBound(ctx, b) })
	}
	wg.Wait()
	return nil
}

// Ready is nil while at least one bind is up, else why none is: the last
// error of each bind, such as "bind refused: ESME_RINVPASWD (0x0000000E)
// invalid password".
func (c *Carrier) Ready() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return errors.New("smpp: not started")
	}
	var why []string
	for _, b := range c.binds {
		if b.sess != nil {
			return nil
		}
		why = append(why, fmt.Sprintf("bind %s: %v", b.name, b.lastErr))
	}
	return fmt.Errorf("smpp: no bind up to %s (%s)", c.cfg.Addr, strings.Join(why, "; "))
}

// keepBound keeps bind b up until ctx ends: bind, serve, and after a loss
// bind again with exponential backoff and jitter.
func (c *Carrier) keepBound(ctx context.Context, b *bind) {
	var failures int
	for ctx.Err() == nil {
		s := newSession(b.log)
		err := s.dial(ctx, c.cfg)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			wait := c.backoff(failures)
			level, msg := zerolog.WarnLevel, "smpp bind failed"
			var be gosmpp.BindError
			if errors.As(err, &be) {
				c.m.errors.WithLabelValues(b.name, statusName(be.CommandStatus)).Inc()
				err = fmt.Errorf("bind refused: %s", statusText(be.CommandStatus))
				if credentialsRefused(be.CommandStatus) {
					// Retrying soon will not fix credentials; retry slowly
					// so that fixing them at the SMSC is still picked up.
					wait = jitter(c.cfg.ReconnectMax)
					level, msg = zerolog.ErrorLevel, "the SMSC refused our credentials: check SMS_SMPP_SYSTEM_ID and SMS_SMPP_PASSWORD"
				}
			}
			b.log.WithLevel(level).Err(err).Str("system_id", c.cfg.SystemID).Dur("retry_in", wait).Msg(msg)
			c.setDown(b, err)
			platform.Sleep(ctx, wait)
			continue
		}
		boundAt := time.Now()
		b.log.Info().Str("smsc_system_id", s.sess.Transceiver().SystemID()).Msg("smpp bound")
		worker := make(chan struct{})
		go func() {
			defer close(worker)
			c.deliverLoop(ctx, b, s)
		}()
		c.setUp(b, s)
		select {
		case <-s.closed:
			err := s.lostBecause()
			b.log.Warn().Err(err).Msg("smpp bind lost; binding again")
			c.setDown(b, err)
		case <-ctx.Done():
			c.setDown(b, errors.New("stopped"))
			c.drain(b)
			if !s.unbind() {
				b.log.Debug().Msg("no unbind_resp; closing anyway")
			}
		}
		s.close()
		<-worker
		if time.Since(boundAt) > c.cfg.ReconnectMax {
			// It held for a while: reconnect quickly. A bind that drops as
			// soon as it is up keeps backing off.
			failures = 0
		}
		failures++
		platform.Sleep(ctx, c.backoff(failures))
	}
}

// backoff is the wait after the nth failure in a row: ReconnectMin doubled
// n-1 times, at most ReconnectMax, with jitter.
func (c *Carrier) backoff(n int) time.Duration {
	d := c.cfg.ReconnectMin
	for i := 1; i < n && d < c.cfg.ReconnectMax; i++ {
		d *= 2
	}
	return jitter(min(d, c.cfg.ReconnectMax))
}

// jitter spreads d over [d/2, d], so that binds and replicas don't
// reconnect in step.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// drain waits until no submit_sm of b awaits its response, for up to
// SubmitTimeout: b is down already, so no new one starts.
func (c *Carrier) drain(b *bind) {
	deadline := time.NewTimer(c.cfg.SubmitTimeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		n, changed := b.inFlight, c.changed
		c.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			b.log.Warn().Int("in_flight", n).Msg("unbinding with submit_sm still awaiting their response")
			return
		}
	}
}

func (c *Carrier) setUp(b *bind, s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.sess, b.lastErr = s, nil
	c.m.bindUp.WithLabelValues(b.name).Set(1)
	c.broadcastLocked()
}

func (c *Carrier) setDown(b *bind, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.sess, b.lastErr = nil, err
	c.m.bindUp.WithLabelValues(b.name).Set(0)
	c.broadcastLocked()
}

func (c *Carrier) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// acquire takes a window slot on the bound bind with the most room,
// waiting while none has any (no bind up, windows full, binds paused by
// throttling) until ctx ends.
func (c *Carrier) acquire(ctx context.Context) (*bind, *session, error) {
	for {
		c.mu.Lock()
		var best *bind
		var wake time.Time
		now := time.Now()
		for _, b := range c.binds {
			switch {
			case b.sess == nil || b.inFlight >= c.cfg.Window:
			case now.Before(b.pausedUntil):
				if wake.IsZero() || b.pausedUntil.Before(wake) {
					wake = b.pausedUntil
				}
			case best == nil || b.inFlight < best.inFlight:
				best = b
			}
		}
		if best != nil {
			best.inFlight++
			c.m.window.WithLabelValues(best.name).Set(float64(best.inFlight))
			s := best.sess
			c.mu.Unlock()
			return best, s, nil
		}
		changed := c.changed
		c.mu.Unlock()
		if err := waitChange(ctx, changed, wake); err != nil {
			return nil, nil, err
		}
	}
}

// waitChange waits for changed to close, for wake to pass (when set) or
// for ctx to end.
func waitChange(ctx context.Context, changed <-chan struct{}, wake time.Time) error {
	var timeout <-chan time.Time
	if !wake.IsZero() {
		t := time.NewTimer(time.Until(wake))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-changed:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

func (c *Carrier) release(b *bind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b.inFlight--
	c.m.window.WithLabelValues(b.name).Set(float64(b.inFlight))
	c.broadcastLocked()
}

// pause keeps new submit_sm off b for ThrottleDelay: the SMSC asked it to
// slow down.
func (c *Carrier) pause(b *bind) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if until := time.Now().Add(c.cfg.ThrottleDelay); until.After(b.pausedUntil) {
		b.pausedUntil = until
	}
}
