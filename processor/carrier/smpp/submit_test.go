package smpp

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestSubmit(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	valid := time.Date(2031, 2, 3, 4, 5, 6, 700_000_000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name             string
		sender, text     string
		validUntil       *time.Time
		srcTON, srcNPI   byte
		src              string
		coding           byte
		validityPeriod   string
		wantPartsAtLeast int
	}{
		{name: "alphanumeric sender", sender: "ACME", text: "Hello €", srcTON: 5, srcNPI: 0, src: "ACME", coding: 0},
		{name: "international sender", sender: "+447700900999", text: "Hi", srcTON: 1, srcNPI: 1, src: "447700900999", coding: 0},
		{name: "validity", sender: "ACME", text: "Hi", validUntil: &valid, srcTON: 5, src: "ACME", validityPeriod: "310203030506700+"},
		{name: "gsm escape at the part boundary", sender: "ACME", text: strings.Repeat("a", 152) + "€" + strings.Repeat("b", 200), srcTON: 5, src: "ACME", wantPartsAtLeast: 3},
		{name: "ucs-2 emoji at the part boundary", sender: "ACME", text: strings.Repeat("ж", 66) + "😀" + strings.Repeat("ы", 70), srcTON: 5, src: "ACME", coding: 8, wantPartsAtLeast: 3},
		{name: "ucs-2 single", sender: "ACME", text: "Привет 😀", srcTON: 5, src: "ACME", coding: 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := request("+447700900001", tc.text)
			req.Sender, req.ValidUntil = tc.sender, tc.validUntil
			acc, err := c.Submit(context.Background(), req, 1)
			if err != nil {
				t.Fatal(err)
			}
			if len(acc.PartIDs) != req.Segments || !acc.Receipts {
				t.Fatalf("accepted %+v, want %d part ids and receipts", acc, req.Segments)
			}
			if req.Segments < tc.wantPartsAtLeast {
				t.Fatalf("the case meant %d parts at least, got %d", tc.wantPartsAtLeast, req.Segments)
			}
			var joined []byte
			var ref byte
			for i := range req.Segments {
				sm := recv(t, f.submits, "submit_sm")
				if sm.SourceAddr.Ton() != tc.srcTON || sm.SourceAddr.Npi() != tc.srcNPI || sm.SourceAddr.Address() != tc.src {
					t.Errorf("part %d source %d/%d %q, want %d/%d %q", i+1, sm.SourceAddr.Ton(), sm.SourceAddr.Npi(), sm.SourceAddr.Address(), tc.srcTON, tc.srcNPI, tc.src)
				}
				if sm.DestAddr.Ton() != 1 || sm.DestAddr.Npi() != 1 || sm.DestAddr.Address() != "447700900001" {
					t.Errorf("part %d destination %d/%d %q", i+1, sm.DestAddr.Ton(), sm.DestAddr.Npi(), sm.DestAddr.Address())
				}
				if sm.RegisteredDelivery != 1 {
					t.Errorf("part %d registered_delivery %d, want 1", i+1, sm.RegisteredDelivery)
				}
				if got := sm.Message.Encoding().DataCoding(); got != tc.coding {
					t.Errorf("part %d data_coding %d, want %d", i+1, got, tc.coding)
				}
				if sm.ValidityPeriod != tc.validityPeriod {
					t.Errorf("part %d validity_period %q, want %q", i+1, sm.ValidityPeriod, tc.validityPeriod)
				}
				octets, _ := sm.Message.GetMessageData()
				joined = append(joined, octets...)
				udh := sm.Message.UDH()
				if req.Segments == 1 {
					if sm.EsmClass != 0 || len(udh) != 0 {
						t.Errorf("single part with esm_class %#x, UDH %v", sm.EsmClass, udh)
					}
					continue
				}
				total, part, r, ok := udh.GetConcatInfo()
				if sm.EsmClass != 0x40 || !ok || len(udh) != 1 || int(total) != req.Segments || int(part) != i+1 {
					t.Fatalf("part %d: esm_class %#x, UDH %v: want 0x40 and IEI 0x00 %d of %d", i+1, sm.EsmClass, udh, i+1, req.Segments)
				}
				if i == 0 {
					ref = r
				} else if r != ref {
					t.Errorf("part %d reference %d, part 1 had %d", i+1, r, ref)
				}
			}
			back := decodeGSM(joined)
			if tc.coding == 8 {
				back = decodeUCS2(joined)
			}
			if back != tc.text {
				t.Errorf("the parts read %q", back)
			}
		})
	}
}

func TestSubmitPartIDs(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	ids := []string{"0000abc1", "ABC2", "0003"}
	var mu sync.Mutex
	f.setHandler(func(*pdu.SubmitSM) reply {
		mu.Lock()
		defer mu.Unlock()
		id := ids[0]
		ids = ids[1:]
		return reply{id: id}
	})
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	acc, err := c.Submit(context.Background(), request("+447700900001", strings.Repeat("x", 400)), 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ABC1", "ABC2", "3"}; strings.Join(acc.PartIDs, ",") != strings.Join(want, ",") {
		t.Errorf("PartIDs %v, want %v", acc.PartIDs, want)
	}
	if got := testutil.ToFloat64(c.m.submits.WithLabelValues("1", "accepted")); got != 3 {
		t.Errorf("sms_smpp_submits_total{result=accepted} = %v, want 3", got)
	}
}

// TestSubmitErrors checks how command_status values become carrier errors.
func TestSubmitErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		rep       reply
		transient bool
		throttled bool
		reason    string
		result    string
	}{
		{"throttled", reply{status: data.ESME_RTHROTTLED}, true, true, "throttled: ESME_RTHROTTLED (0x00000058) throttling error", "throttled"},
		{"queue full", reply{status: data.ESME_RMSGQFUL}, true, true, "throttled: ESME_RMSGQFUL (0x00000014) message queue full", "throttled"},
		{"system error", reply{status: data.ESME_RSYSERR}, true, false, "transient: ESME_RSYSERR (0x00000008) system error", "transient"},
		{"submit failed", reply{status: data.ESME_RSUBMITFAIL}, true, false, "transient: ESME_RSUBMITFAIL (0x00000045) submit failed", "transient"},
		{"vendor code", reply{status: 0x401}, true, false, "transient: 0x00000401 vendor-specific error", "transient"},
		{"bad destination", reply{status: data.ESME_RINVDSTADR}, false, false, "permanent: ESME_RINVDSTADR (0x0000000B) invalid destination address", "permanent"},
		{"bad source", reply{status: data.ESME_RINVSRCADR}, false, false, "permanent: ESME_RINVSRCADR (0x0000000A) invalid source address", "permanent"},
		{"bad length", reply{status: data.ESME_RINVMSGLEN}, false, false, "permanent: ESME_RINVMSGLEN (0x00000001) invalid message length", "permanent"},
		{"generic_nack", reply{status: data.ESME_RINVCMDID, nack: true}, false, false, "permanent: ESME_RINVCMDID (0x00000003) invalid command id", "permanent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeSMSC(t)
			f.setHandler(func(*pdu.SubmitSM) reply { return tc.rep })
			c := startCarrier(t, testConfig(f.addr()), nil)
			c.waitReady(t)
			_, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
			cerr := carrierError(t, err)
			if cerr.Transient != tc.transient || cerr.Throttled != tc.throttled || cerr.Reason != tc.reason {
				t.Errorf("error %+v, want transient %v throttled %v reason %q", cerr, tc.transient, tc.throttled, tc.reason)
			}
			if tc.throttled && cerr.RetryAfter != c.cfg.ThrottleDelay {
				t.Errorf("RetryAfter %v, want %v", cerr.RetryAfter, c.cfg.ThrottleDelay)
			}
			if got := testutil.ToFloat64(c.m.submits.WithLabelValues("1", tc.result)); got != 1 {
				t.Errorf("sms_smpp_submits_total{result=%s} = %v, want 1", tc.result, got)
			}
			if got := testutil.ToFloat64(c.m.errors.WithLabelValues("1", statusName(tc.rep.status))); got != 1 {
				t.Errorf("sms_smpp_errors_total{status=%s} = %v, want 1", statusName(tc.rep.status), got)
			}
			c.mu.Lock()
			paused := time.Now().Before(c.binds[0].pausedUntil)
			c.mu.Unlock()
			if tc.throttled && !paused {
				t.Error("the throttled bind was not slowed down")
			}
		})
	}
}

// TestLaterPartFails checks that a message whose later part is refused
// fails as a whole, naming the part, and that a throttled later part is
// sent again in place.
func TestLaterPartFails(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	var mu sync.Mutex
	n := 0
	f.setHandler(func(*pdu.SubmitSM) reply {
		mu.Lock()
		defer mu.Unlock()
		n++
		switch n {
		case 2:
			return reply{status: data.ESME_RTHROTTLED} // part 2, first try
		case 4:
			return reply{status: data.ESME_RINVDSTADR} // part 3
		}
		return reply{}
	})
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	_, err := c.Submit(context.Background(), request("+447700900001", strings.Repeat("x", 400)), 1)
	cerr := carrierError(t, err)
	if cerr.Transient || cerr.Reason != "permanent: ESME_RINVDSTADR (0x0000000B) invalid destination address (part 3 of 3)" {
		t.Errorf("error %+v", cerr)
	}
	var parts []byte
	for range 4 {
		sm := recv(t, f.submits, "submit_sm")
		_, part, _, _ := sm.Message.UDH().GetConcatInfo()
		parts = append(parts, part)
	}
	if !bytes.Equal(parts, []byte{1, 2, 2, 3}) {
		t.Errorf("parts sent in the order %v, want 1 2 2 3", parts)
	}
}

// TestBadRequest checks that what no SMSC could take fails at once, as
// permanent, without reaching the SMSC.
func TestBadRequest(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	c := startCarrier(t, testConfig(f.addr()), nil)
	c.waitReady(t)
	for _, tc := range []struct {
		name, sender, to, text string
	}{
		{"recipient not a number", "ACME", "hello", "hi"},
		{"sender too long", "ACME Limited Co", "+447700900001", "hi"},
		{"not GSM-7 sent as GSM-7", "ACME", "+447700900001", "it's `quoted`"},
	} {
		req := request(tc.to, tc.text)
		req.Sender, req.Encoding = tc.sender, "GSM-7"
		_, err := c.Submit(context.Background(), req, 1)
		if cerr := carrierError(t, err); cerr.Transient || !strings.HasPrefix(cerr.Reason, "permanent: ") {
			t.Errorf("%s: error %+v, want permanent", tc.name, cerr)
		}
	}
	if len(f.submits) != 0 {
		t.Errorf("%d submit_sm reached the SMSC", len(f.submits))
	}
}

// TestWindow checks that a bind never has more than Window submit_sm
// awaiting their response.
func TestWindow(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	f.setHandler(func(*pdu.SubmitSM) reply { return reply{hold: true} })
	cfg := testConfig(f.addr())
	cfg.Window = 3
	c := startCarrier(t, cfg, nil)
	c.waitReady(t)
	const messages = 8
	errs := make(chan error, messages)
	for range messages {
		go func() {
			_, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1)
			errs <- err
		}()
	}
	received := 0
	for released := 0; released < messages; released++ {
		// Once the window is full again, exactly a window's worth are held.
		want := min(cfg.Window, messages-released)
		for ; received < released+want; received++ {
			recv(t, f.submits, "submit_sm")
		}
		if got := f.heldCount(); got != want {
			t.Fatalf("%d submit_sm held, want %d", got, want)
		}
		f.release()
	}
	for range messages {
		if err := recv(t, errs, "Submit"); err != nil {
			t.Error(err)
		}
	}
	if got := f.maxOutstanding(); got != cfg.Window {
		t.Errorf("at most %d submit_sm outstanding, want exactly the window, %d", got, cfg.Window)
	}
}

// TestTPS checks the rate limit loosely: ten submit_sm at 20 a second on
// one bind take at least eight of the nine intervals (without the limit
// they take a few milliseconds).
func TestTPS(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	cfg := testConfig(f.addr())
	cfg.TPS = 20
	c := startCarrier(t, cfg, nil)
	c.waitReady(t)
	const messages = 10
	start := time.Now()
	var wg sync.WaitGroup
	for range messages {
		wg.Go(func() {
			if _, err := c.Submit(context.Background(), request("+447700900001", "hi"), 1); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if elapsed, least := time.Since(start), (messages-2)*time.Second/20; elapsed < least {
		t.Errorf("%d submits at 20/s took %v, less than %v", messages, elapsed, least)
	}
	if got := len(f.submits); got != messages {
		t.Errorf("%d submit_sm arrived, want %d", got, messages)
	}
}

// TestSubmitSpan checks the submit_sm span: its name, its attributes, and
// its parent, the caller's span.
func TestSubmitSpan(t *testing.T) {
	t.Parallel()
	f := newFakeSMSC(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer tp.Shutdown(context.Background())
	c := startCarrier(t, testConfig(f.addr()), tp)
	c.waitReady(t)
	ctx, parent := tp.Tracer("test").Start(context.Background(), "parent")
	req := request("+447700900001", "hi")
	if _, err := c.Submit(ctx, req, 1); err != nil {
		t.Fatal(err)
	}
	parent.End()
	sm := recv(t, f.submits, "submit_sm")
	var found bool
	for _, s := range rec.Ended() {
		if s.Name() != "smpp.submit_sm" {
			continue
		}
		found = true
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			t.Error("the submit_sm span is not a child of the caller's")
		}
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.Emit()
		}
		want := map[string]string{"message_id": req.MessageID.String(), "part": "1",
			"sequence": strconv.Itoa(int(sm.SequenceNumber)), "command_status": "ESME_ROK"}
		for k, v := range want {
			if attrs[k] != v {
				t.Errorf("attribute %s = %q, want %q", k, attrs[k], v)
			}
		}
	}
	if !found {
		t.Error("no smpp.submit_sm span")
	}
}
