package smpp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// Every test stops what it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recordingSink keeps what the carrier hands over; fail, when set, makes
// it refuse.
type recordingSink struct {
	mu       sync.Mutex
	fail     error
	receipts chan carrier.Receipt
	inbound  chan carrier.Inbound
}

func newSink() *recordingSink {
	return &recordingSink{receipts: make(chan carrier.Receipt, 100), inbound: make(chan carrier.Inbound, 100)}
}

func (s *recordingSink) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *recordingSink) Receipt(_ context.Context, r carrier.Receipt) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.receipts <- r
	return nil
}

func (s *recordingSink) Inbound(_ context.Context, m carrier.Inbound) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.inbound <- m
	return nil
}

// testConfig is a config with short timers for addr.
func testConfig(addr string) Config {
	return Config{
		Addr: addr, SystemID: "smsctl", Password: "secret", SystemType: "test",
		EnquireLink: 5 * time.Second, SubmitTimeout: 10 * time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
		BindTimeout: 5 * time.Second, ThrottleDelay: 50 * time.Millisecond,
	}
}

type testCarrier struct {
	*Carrier
	sink *recordingSink
	reg  *prometheus.Registry
}

// startCarrier starts a carrier with cfg, stopped at cleanup.
func startCarrier(t testing.TB, cfg Config, tp trace.TracerProvider) *testCarrier {
	t.Helper()
	sink := newSink()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, sink, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), reg, tp)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return &testCarrier{Carrier: c, sink: sink, reg: reg}
}

// waitFor waits until cond holds, re-checking whenever a bind goes up or
// down or frees window room.
func (c *Carrier) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s (ready: %v)", what, c.Ready())
		}
	}
}

func (c *Carrier) waitReady(t testing.TB) {
	t.Helper()
	c.waitFor(t, "a bind", func() bool { return c.Ready() == nil })
}

func request(to, text string) sms.SendRequest {
	enc, n := sms.Segments(text)
	return sms.SendRequest{MessageID: uuid.New(), Sender: "ACME", Recipient: to, Text: text, Encoding: enc, Segments: n}
}

// carrierError is err as a *carrier.Error, failing the test if it is not one.
func carrierError(t testing.TB, err error) *carrier.Error {
	t.Helper()
	var cerr *carrier.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("error %v (%T) is not a *carrier.Error", err, err)
	}
	return cerr
}
