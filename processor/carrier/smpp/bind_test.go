package smpp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"ok", func(*Config) {}, ""},
		{"no port", func(c *Config) { c.Addr = "localhost" }, "SMS_SMPP_ADDR"},
		{"no system id", func(c *Config) { c.SystemID = "" }, "SMS_SMPP_SYSTEM_ID"},
		{"long password", func(c *Config) { c.Password = "123456789" }, "SMS_SMPP_PASSWORD"},
		{"negative tps", func(c *Config) { c.TPS = -1 }, "SMS_SMPP_TPS"},
		{"backoff upside down", func(c *Config) { c.ReconnectMin, c.ReconnectMax = time.Minute, time.Second }, "backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("127.0.0.1:2775")
			tc.change(&cfg)
			_, err := New(cfg, newSink(), zerolog.Nop(), prometheus.NewRegistry(), nil)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("New: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	d := Config{}.withDefaults()
	if d.Binds != 1 || d.Window != 10 || d.TPS != 0 || d.EnquireLink != 30*time.Second || d.SubmitTimeout != 30*time.Second {
		t.Errorf("defaults: %+v", d)
	}
}

func TestBind(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	b := recv(t, f.binds, "bind")
	if b.BindingType != pdu.Transceiver || b.SystemID != "smsctl" || b.Password != "secret" || b.SystemType != "test" {
		t.Errorf("bind %+v: want a transceiver bind as smsctl/secret, system type test", b)
	}
	c.waitReady(t)
	if got := testutil.ToFloat64(c.m.bindUp.WithLabelValues("1")); got != 1 {
		t.Errorf("sms_smpp_bind_up = %v, want 1", got)
	}
}

func TestReadyBeforeStart(t *testing.T) {
	c, err := New(testConfig("127.0.0.1:1"), newSink(), zerolog.Nop(), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "not started") {
		t.Errorf("Ready before Start = %v", err)
	}
	c.Stop() // before Start: returns at once
}

// TestBadPassword checks that a refused bind says why in Ready, and that
// Submit waits for a bind instead of failing, so no attempt is spent.
func TestBadPassword(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	f.setPassword("other")
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitFor(t, "the refusal", func() bool {
		err := c.Ready()
		return err != nil && strings.Contains(err.Error(), "bind refused: ESME_RINVPASWD (0x0000000E) invalid password")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Submit(ctx, request("+447700900001", "hi"), 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Submit without a bind = %v, want the context's error", err)
	}
	if len(f.submits) != 0 {
		t.Errorf("%d submit_sm reached the SMSC", len(f.submits))
	}
	if got := testutil.ToFloat64(c.m.errors.WithLabelValues("1", "ESME_RINVPASWD")); got < 1 {
		t.Errorf("sms_smpp_errors_total{status=ESME_RINVPASWD} = %v", got)
	}
}

// TestSubmitWaitsForBind checks that a Submit made while no bind is up
// goes out once one is.
func TestSubmitWaitsForBind(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	f.setPassword("other")
	c := startCarrier(t, testConfig(f.addr()), nil)
	recv(t, f.binds, "refused bind")
	done := make(chan error, 1)
	go func() {
		_, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
		done <- err
	}()
	f.setPassword("secret")
	if err := recv(t, done, "submit"); err != nil {
		t.Errorf("Submit after the bind came up: %v", err)
	}
}

// TestConnectionDropped checks that submits outstanding when the
// connection drops fail as transient, and that the bind comes back.
func TestConnectionDropped(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	f.setHandler(func(*pdu.SubmitSM) reply { return reply{hold: true} })
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	recv(t, f.binds, "bind")
	errs := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
			errs <- err
		}()
	}
	for range 3 {
		recv(t, f.submits, "submit_sm")
	}
	f.setHandler(nil)
	f.dropAll()
	for range 3 {
		cerr := carrierError(t, recv(t, errs, "Submit"))
		if !cerr.Transient || cerr.Throttled || !strings.Contains(cerr.Reason, "connection lost") {
			t.Errorf("error %+v, want transient, connection lost", cerr)
		}
	}
	recv(t, f.binds, "rebind")
	if _, err := c.Submit(context.Background(), request("+447700900001", "again"), 1); err != nil {
		t.Errorf("Submit after the rebind: %v", err)
	}
}

// TestDeadConnection checks that a peer that stops answering (enquire_link
// included) is taken for dead and replaced.
func TestDeadConnection(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	cfg := testConfig(f.addr())
	cfg.EnquireLink = 100 * time.Millisecond
	c := startCarrier(t, cfg, nil)
	c.waitReady(t)
	recv(t, f.binds, "bind")
	recv(t, f.enquireLinks, "enquire_link")
	f.setSilent(true)
	c.waitFor(t, "the dead bind to go down", func() bool {
		err := c.Ready()
		return err != nil && strings.Contains(err.Error(), "nothing heard from the SMSC")
	})
	f.setSilent(false)
	recv(t, f.binds, "rebind")
	c.waitReady(t)
}

// TestEnquireLink checks both directions: ours are sent on the period, and
// the SMSC's are answered.
func TestEnquireLink(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	cfg := testConfig(f.addr())
	cfg.EnquireLink = 50 * time.Millisecond
	c := startCarrier(t, cfg, nil)
	c.waitReady(t)
	for range 3 {
		recv(t, f.enquireLinks, "enquire_link")
	}
	el := pdu.NewEnquireLink()
	f.deliver(el)
	for {
		p := recv(t, f.responses, "enquire_link_resp")
		if r, ok := p.(*pdu.EnquireLinkResp); ok {
			if r.SequenceNumber != el.GetSequenceNumber() || r.CommandStatus != data.ESME_ROK {
				t.Errorf("enquire_link_resp %+v for sequence %d", r.Header, el.GetSequenceNumber())
			}
			return
		}
	}
}

// TestStopUnbinds checks that Stop unbinds cleanly, and is safe twice.
func TestStopUnbinds(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	cfg := testConfig(f.addr())
	cfg.Binds = 2
	c := startCarrier(t, cfg, nil)
	c.waitFor(t, "both binds", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.binds[0].sess != nil && c.binds[1].sess != nil
	})
	c.Stop()
	for range 2 {
		recv(t, f.unbinds, "unbind")
	}
	if err := c.Ready(); err == nil {
		t.Error("Ready after Stop is nil")
	}
	if got := testutil.ToFloat64(c.m.bindUp.WithLabelValues("2")); got != 0 {
		t.Errorf("sms_smpp_bind_up{bind=2} = %v after Stop", got)
	}
	c.Stop()
}

func TestTLS(t *testing.T) {
	t.Parallel()
	f, tlsConfig := newTLSFakeSMSC(t)
	cfg := testConfig(f.addr())
	cfg.TLS, cfg.TLSConfig = true, tlsConfig
	c := startCarrier(t, cfg, nil)
	c.waitReady(t)
	if _, err := c.Submit(context.Background(), request("+447700900001", "over TLS"), 1); err != nil {
		t.Fatal(err)
	}
	// Without trusting the certificate, no bind.
	cfg.TLSConfig = nil
	c = startCarrier(t, cfg, nil)
	c.waitFor(t, "the refused handshake", func() bool {
		err := c.Ready()
		return err != nil && strings.Contains(err.Error(), "certificate")
	})
}

// TestSMSCUnbinds checks that an unbind from the SMSC is answered and the
// carrier binds again.
func TestSMSCUnbinds(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	recv(t, f.binds, "bind")
	u := pdu.NewUnbind()
	f.deliver(u)
	for {
		if r, ok := recv(t, f.responses, "unbind_resp").(*pdu.UnbindResp); ok {
			if r.SequenceNumber != u.GetSequenceNumber() {
				t.Errorf("unbind_resp for sequence %d, want %d", r.SequenceNumber, u.GetSequenceNumber())
			}
			break
		}
	}
	recv(t, f.binds, "rebind")
	c.waitReady(t)
}

// TestUnsupportedPDU checks that a request the carrier does not handle
// (data_sm) gets a generic_nack rather than silence.
func TestUnsupportedPDU(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	d := pdu.NewDataSM()
	f.deliver(d)
	for {
		if r, ok := recv(t, f.responses, "generic_nack").(*pdu.GenericNack); ok {
			if r.SequenceNumber != d.GetSequenceNumber() || r.CommandStatus != data.ESME_RINVCMDID {
				t.Errorf("generic_nack %+v, want ESME_RINVCMDID for sequence %d", r.Header, d.GetSequenceNumber())
			}
			return
		}
	}
}
