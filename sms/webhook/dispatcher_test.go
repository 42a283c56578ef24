package webhook_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
	"github.com/smsctl/smsctl/sms/webhook"
)

// waitFor is how long a test waits for a signal before it fails.
const waitFor = 20 * time.Second

// hit is one request a receiver took.
type hit struct {
	ID        string
	Body      string
	Type      string
	MessageID string
	Sequence  int
	Status    int // what the receiver answered
}

// receiver is a webhook endpoint: it verifies every request with the
// Standard Webhooks library and answers what answer says.
type receiver struct {
	srv    *httptest.Server
	secret atomic.Pointer[string]
	// answer decides the status of a verified request; nil answers 204.
	answer atomic.Pointer[func(h hit, r *http.Request) int]
	mu     sync.Mutex
	hits   []hit
	// bad counts requests whose signature did not verify.
	bad atomic.Int64
	// signal gets every hit, answered.
	signal chan hit
}

func newReceiver(t *testing.T, tlsServer bool) *receiver {
	t.Helper()
	rc := &receiver{signal: make(chan hit, 10000)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		wh, err := standardwebhooks.NewWebhook(*rc.secret.Load())
		if err != nil {
			panic(err)
		}
		if err := wh.Verify(body, r.Header); err != nil {
			rc.bad.Add(1)
			w.WriteHeader(http.StatusUnauthorized)
			rc.signal <- hit{ID: r.Header.Get("webhook-id"), Status: http.StatusUnauthorized}
			return
		}
		var p struct {
			Type string `json:"type"`
			Data struct {
				ID       string `json:"id"`
				Sequence int    `json:"sequence"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &p)
		ht := hit{ID: r.Header.Get("webhook-id"), Body: string(body), Type: p.Type, MessageID: p.Data.ID, Sequence: p.Data.Sequence, Status: 204}
		if f := rc.answer.Load(); f != nil {
			ht.Status = (*f)(ht, r)
		}
		rc.mu.Lock()
		rc.hits = append(rc.hits, ht)
		rc.mu.Unlock()
		w.WriteHeader(ht.Status)
		rc.signal <- ht
	})
	if tlsServer {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

// answerWith sets how the receiver answers.
func (rc *receiver) answerWith(f func(h hit, r *http.Request) int) { rc.answer.Store(&f) }

func (rc *receiver) all() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.hits)
}

// next waits for the next hit.
func (rc *receiver) next(t *testing.T) hit {
	t.Helper()
	select {
	case h := <-rc.signal:
		return h
	case <-time.After(waitFor):
		t.Fatalf("no webhook within %s (had %d)", waitFor, len(rc.all()))
		return hit{}
	}
}

// env is a database with the webhook store and the message store.
type env struct {
	db       *sqlx.DB
	store    *postgres.Webhooks
	messages *postgres.Store
}

func newEnv(t *testing.T) *env {
	db := platformtest.NewDB(t)
	return &env{db: db, store: postgres.NewWebhooks(db), messages: postgres.NewStore(db)}
}

// endpoint registers rc for account 1 and gives rc its secret.
func (e *env) endpoint(t *testing.T, rc *receiver, url string, types ...string) webhook.Endpoint {
	t.Helper()
	in := webhook.EndpointInput{URL: &url}
	if len(types) > 0 {
		in.EventTypes = &types
	}
	ep, err := e.store.CreateEndpoint(context.Background(), 1, in)
	if err != nil {
		t.Fatal(err)
	}
	rc.secret.Store(&ep.Secret)
	return ep
}

// send stores n messages of account 1.
func (e *env) send(t *testing.T, n int) []sms.Message {
	t.Helper()
	msgs, err := e.messages.Insert(context.Background(), slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "hi")}}, n))
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// recorder collects the results a dispatcher recorded.
type recorder struct {
	mu  sync.Mutex
	all []webhook.Result
	ch  chan webhook.Result
	// bogus counts results of no delivery or without an outcome.
	bogus int
}

func newRecorder() *recorder { return &recorder{ch: make(chan webhook.Result, 10000)} }

func (r *recorder) hook(rs []webhook.Result) {
	r.mu.Lock()
	r.all = append(r.all, rs...)
	for _, x := range rs {
		if x.DeliveryID == uuid.Nil || x.Outcome == "" {
			r.bogus++
		}
	}
	r.mu.Unlock()
	for _, x := range rs {
		r.ch <- x
	}
}

func (r *recorder) next(t *testing.T) webhook.Result {
	t.Helper()
	select {
	case x := <-r.ch:
		return x
	case <-time.After(waitFor):
		t.Fatalf("no result recorded within %s", waitFor)
		return webhook.Result{}
	}
}

type dispatcherOpts struct {
	cfg  config.Webhooks
	opts webhook.Options
	reg  *prometheus.Registry
}

// start runs a dispatcher on e's store until the test ends.
func (e *env) start(t *testing.T, edit func(*dispatcherOpts)) (*webhook.Dispatcher, *recorder, *prometheus.Registry) {
	t.Helper()
	rec := newRecorder()
	o := dispatcherOpts{
		cfg:  config.Webhooks{AllowPrivate: true, Timeout: 5 * time.Second, RetrySchedule: "10ms,10ms,10ms,10ms,10ms", Concurrency: 8, PerEndpoint: 4},
		opts: webhook.Options{PollInterval: 10 * time.Millisecond, Recorded: rec.hook},
		reg:  prometheus.NewRegistry(),
	}
	if edit != nil {
		edit(&o)
	}
	d, err := webhook.NewDispatcher(e.store, o.cfg, zerolog.Nop(), o.reg, o.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // after Stop
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.bogus > 0 {
			t.Errorf("%d results recorded for no delivery or without an outcome", rec.bogus)
		}
	})
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return d, rec, o.reg
}

// TestSignatureVerifiedByTheLibrary: every request verifies with the
// Standard Webhooks library, and during a rotation with either secret.
func TestSignatureVerifiedByTheLibrary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	ep := e.endpoint(t, rc, rc.srv.URL+"/hook", "message.accepted", "webhook.test")
	msgs := e.send(t, 3)
	e.start(t, nil)
	ids := map[string]bool{}
	for range msgs {
		h := rc.next(t)
		if h.Type != "message.accepted" || h.Sequence != 1 || ids[h.ID] {
			t.Errorf("hit %+v: want a new message.accepted, sequence 1", h)
		}
		ids[h.ID] = true
	}
	if n := rc.bad.Load(); n != 0 {
		t.Fatalf("%d requests did not verify with the official library", n)
	}

	old := *rc.secret.Load()
	rot, err := e.store.RotateSecret(context.Background(), 1, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sigs []string
	rc.answerWith(func(_ hit, r *http.Request) int {
		sigs = strings.Fields(r.Header.Get("webhook-signature"))
		return 204
	})
	for _, secret := range []string{old, rot.Secret} {
		rc.secret.Store(&secret)
		if _, err := e.store.QueueTest(context.Background(), 1, ep.ID); err != nil {
			t.Fatal(err)
		}
		if h := rc.next(t); h.Type != webhook.TypeTest {
			t.Errorf("got %s, want the test event", h.Type)
		}
		if len(sigs) != 2 {
			t.Errorf("signature header during a rotation has %d signatures, want 2", len(sigs))
		}
	}
	if n := rc.bad.Load(); n != 0 {
		t.Errorf("%d requests did not verify during the rotation", n)
	}
}

// TestDispatchRetrySameBodyAndID: a failed delivery is retried with the
// same webhook-id and the same bytes, and the log has each attempt.
func TestDispatchRetrySameBodyAndID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	var calls atomic.Int64
	rc.answerWith(func(hit, *http.Request) int {
		if calls.Add(1) <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	ep := e.endpoint(t, rc, rc.srv.URL, "message.accepted")
	e.send(t, 1)
	_, rec, reg := e.start(t, nil)
	hits := []hit{rc.next(t), rc.next(t), rc.next(t)}
	for _, h := range hits[1:] {
		if h.ID != hits[0].ID || h.Body != hits[0].Body {
			t.Errorf("retry sent id %s body %s; first attempt id %s body %s", h.ID, h.Body, hits[0].ID, hits[0].Body)
		}
	}
	var outcomes []webhook.Outcome
	for range 3 {
		outcomes = append(outcomes, rec.next(t).Outcome)
	}
	if want := []webhook.Outcome{webhook.OutcomeRetrying, webhook.OutcomeRetrying, webhook.OutcomeSucceeded}; !slices.Equal(outcomes, want) {
		t.Errorf("outcomes %v, want %v", outcomes, want)
	}
	page, err := e.store.Attempts(context.Background(), 1, ep.ID, webhook.AttemptFilter{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, a := range page.Attempts {
		code := 0
		if a.StatusCode != nil {
			code = *a.StatusCode
		}
		log = append(log, fmt.Sprintf("%d:%s:%d", a.Attempt, a.State, code))
		if a.WebhookID.String() != hits[0].ID {
			t.Errorf("log entry webhook_id %s, header %s", a.WebhookID, hits[0].ID)
		}
	}
	if want := []string{"3:succeeded:200", "2:retrying:500", "1:retrying:500"}; !slices.Equal(log, want) {
		t.Errorf("log %v, want %v", log, want)
	}
	if got := counter(t, reg, "sms_webhook_deliveries_total", "retrying"); got != 2 {
		t.Errorf("sms_webhook_deliveries_total{result=retrying} = %v, want 2", got)
	}
}

// counter reads a counter series by name and result label.
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

// TestDispatchScheduleRunsOut: after the last retry the delivery fails
// for good, and the endpoint stays enabled.
func TestDispatchScheduleRunsOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	rc.answerWith(func(hit, *http.Request) int { return http.StatusBadGateway })
	ep := e.endpoint(t, rc, rc.srv.URL, "message.accepted")
	e.send(t, 1)
	_, rec, _ := e.start(t, func(o *dispatcherOpts) { o.cfg.RetrySchedule = "5ms,5ms" })
	var last webhook.Result
	for range 3 {
		last = rec.next(t)
	}
	if last.Outcome != webhook.OutcomeFailed || last.Attempt != 3 || !strings.Contains(last.Error, "502") {
		t.Errorf("third attempt %+v, want failed for good with the 502", last)
	}
	if got, _ := e.store.Endpoint(context.Background(), 1, ep.ID); !got.Enabled {
		t.Errorf("the endpoint was disabled after a schedule ran out")
	}
}

// TestDispatchGoneDisables: a 410 disables the endpoint with a reason,
// and nothing more is sent to it.
func TestDispatchGoneDisables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	rc.answerWith(func(hit, *http.Request) int { return http.StatusGone })
	ep := e.endpoint(t, rc, rc.srv.URL)
	e.send(t, 1)
	_, rec, _ := e.start(t, nil)
	if r := rec.next(t); r.Outcome != webhook.OutcomeFailed || !r.Gone {
		t.Fatalf("result %+v, want failed and gone", r)
	}
	got, err := e.store.Endpoint(context.Background(), 1, ep.ID)
	if err != nil || got.Enabled || got.DisabledReason == nil || !strings.Contains(*got.DisabledReason, "410") {
		t.Fatalf("after a 410 the endpoint is %+v (%v), want disabled with the reason", got, err)
	}
	e.send(t, 2)
	if n := smstest.Count(t, e.db, "webhook_deliveries"); n != 1 {
		t.Errorf("%d deliveries queued for a disabled endpoint, want none after the first", n)
	}
	if n := len(rc.all()); n != 1 {
		t.Errorf("the endpoint got %d requests, want 1", n)
	}
}

// TestDispatchOutageInOrder: an endpoint down for a while gets every
// event once it answers again, each message's in sequence order, with the
// webhook-id of each event the same on every attempt.
func TestDispatchOutageInOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	var up atomic.Bool
	rc.answerWith(func(hit, *http.Request) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	e.endpoint(t, rc, rc.srv.URL)
	_, rec, _ := e.start(t, func(o *dispatcherOpts) {
		o.cfg.RetrySchedule = strings.Repeat("20ms,", 1000) + "20ms"
	})
	msgs := e.send(t, 20)
	// The story of each message goes on while the endpoint is down.
	var reports []sms.DeliveryReport
	for _, m := range msgs {
		reports = append(reports, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: time.Now(),
			Attempts: []sms.Attempt{{Attempt: 1, At: time.Now(), Result: "accepted"}}})
	}
	if _, err := e.messages.ApplyReports(context.Background(), reports); err != nil {
		t.Fatal(err)
	}
	for i := range reports {
		reports[i] = sms.DeliveryReport{MessageID: msgs[i].ID, Status: sms.StatusDelivered, ProcessedAt: time.Now()}
	}
	if _, err := e.messages.ApplyReports(context.Background(), reports); err != nil {
		t.Fatal(err)
	}
	// Down for at least 60 failed attempts.
	for failed := 0; failed < 60; {
		if r := rec.next(t); r.Outcome == webhook.OutcomeRetrying {
			failed++
		}
	}
	up.Store(true)
	const events = 4 // accepted, attempt, sent, delivered
	delivered := map[string][]int{}
	for n := 0; n < len(msgs)*events; {
		h := rc.next(t)
		if h.Status == http.StatusOK {
			delivered[h.MessageID] = append(delivered[h.MessageID], h.Sequence)
			n++
		}
	}
	for _, m := range msgs {
		if got := delivered[m.ID.String()]; !slices.Equal(got, []int{1, 2, 3, 4}) {
			t.Errorf("message %s: sequences delivered %v, want 1 2 3 4 once each, in order", m.ID, got)
		}
	}
	// Every attempt of one event carried the same id: one id per
	// (message, sequence), one (message, sequence) per id.
	idOf, eventOf := map[string]string{}, map[string]string{}
	for _, h := range rc.all() {
		ev := fmt.Sprintf("%s/%d", h.MessageID, h.Sequence)
		if id, ok := idOf[ev]; ok && id != h.ID {
			t.Errorf("event %s sent with ids %s and %s", ev, id, h.ID)
		}
		if other, ok := eventOf[h.ID]; ok && other != ev {
			t.Errorf("id %s used for %s and %s", h.ID, other, ev)
		}
		idOf[ev], eventOf[h.ID] = h.ID, ev
	}
	if rc.bad.Load() != 0 {
		t.Errorf("%d requests did not verify", rc.bad.Load())
	}
}

// TestDispatchTwoDispatchersShare: two dispatchers on one database share
// the queue, and no delivery goes out twice.
func TestDispatchTwoDispatchersShare(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	rc.answerWith(func(hit, *http.Request) int { time.Sleep(time.Millisecond); return http.StatusOK }) // a receiver with work to do
	e.endpoint(t, rc, rc.srv.URL, "message.accepted")
	const n = 300
	e.send(t, n)
	var a, b atomic.Int64
	count := func(c *atomic.Int64) func(*dispatcherOpts) {
		return func(o *dispatcherOpts) {
			o.cfg.Concurrency, o.cfg.PerEndpoint = 4, 16
			prev := o.opts.Recorded
			o.opts.Recorded = func(rs []webhook.Result) { c.Add(int64(len(rs))); prev(rs) }
		}
	}
	e.start(t, count(&a))
	e.start(t, count(&b))
	seen := map[string]int{}
	for range n {
		seen[rc.next(t).ID]++
	}
	if len(seen) != n {
		t.Errorf("%d distinct deliveries, want %d", len(seen), n)
	}
	for id, c := range seen {
		if c > 1 {
			t.Errorf("delivery %s sent %d times", id, c)
		}
	}
	t.Logf("dispatcher A recorded %d, B %d", a.Load(), b.Load())
	if a.Load() == 0 || b.Load() == 0 {
		t.Errorf("one dispatcher did all the work (A %d, B %d)", a.Load(), b.Load())
	}
}

// TestDispatchPerEndpointBound: a slow endpoint has at most PerEndpoint
// deliveries in flight, and the others are served meanwhile.
func TestDispatchPerEndpointBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	slow, fast := newReceiver(t, false), newReceiver(t, false)
	release := make(chan struct{})
	var inflight, peak atomic.Int64
	arrived := make(chan struct{}, 100)
	slow.answerWith(func(hit, *http.Request) int {
		n := inflight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		arrived <- struct{}{}
		<-release
		inflight.Add(-1)
		return http.StatusOK
	})
	e.endpoint(t, slow, slow.srv.URL, "message.accepted")
	e.endpoint(t, fast, fast.srv.URL, "message.accepted")
	const n = 8
	e.send(t, n)
	e.start(t, func(o *dispatcherOpts) { o.cfg.Concurrency, o.cfg.PerEndpoint = 8, 2 })
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(waitFor):
			t.Fatal("the slow endpoint got no request")
		}
	}
	// The fast endpoint gets all of its deliveries while the slow one
	// holds its two.
	for range n {
		fast.next(t)
	}
	if got := inflight.Load(); got != 2 {
		t.Errorf("slow endpoint has %d in flight while the fast one is served, want 2", got)
	}
	close(release)
	for range n {
		slow.next(t)
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("slow endpoint peaked at %d deliveries in flight, want 2 (PerEndpoint)", p)
	}
}

// TestSSRFRefusedAtDial: a name that resolved to a public address when the
// endpoint was created but resolves to 127.0.0.1 now is refused when the
// dispatcher connects, unless private addresses are allowed.
func TestSSRFRefusedAtDial(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allow_private=%v", allow), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, true)
			port := rc.srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
			// The test server's certificate is for example.com.
			e.endpoint(t, rc, fmt.Sprintf("https://example.com:%d/hook", port), "message.accepted")
			e.send(t, 1)
			pool := x509.NewCertPool()
			pool.AddCert(rc.srv.Certificate())
			_, rec, _ := e.start(t, func(o *dispatcherOpts) {
				o.cfg.AllowPrivate = allow
				o.cfg.RetrySchedule = "1h"
				o.opts.TLS = &tls.Config{RootCAs: pool}
				o.opts.Lookup = func(context.Context, string) ([]netip.Addr, error) {
					return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
				}
			})
			r := rec.next(t)
			if allow {
				if r.Outcome != webhook.OutcomeSucceeded {
					t.Fatalf("with private addresses allowed: %+v", r)
				}
				return
			}
			if r.Outcome != webhook.OutcomeRetrying || !strings.Contains(r.Error, "refused to connect to 127.0.0.1: a loopback address") {
				t.Errorf("result %+v, want the connection refused", r)
			}
			if n := len(rc.all()); n != 0 {
				t.Errorf("the internal server got %d requests", n)
			}
		})
	}
}

// TestDispatchNoRedirects: a 3xx is a failure; its Location is not
// followed.
func TestDispatchNoRedirects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	var followed atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { followed.Add(1) }))
	t.Cleanup(target.Close)
	rc.answerWith(func(_ hit, _ *http.Request) int { return http.StatusTemporaryRedirect })
	e.endpoint(t, rc, rc.srv.URL, "message.accepted")
	e.send(t, 1)
	_, rec, _ := e.start(t, func(o *dispatcherOpts) { o.cfg.RetrySchedule = "1h" })
	r := rec.next(t)
	if r.Outcome != webhook.OutcomeRetrying || r.StatusCode != http.StatusTemporaryRedirect || !strings.Contains(r.Error, "redirects are not followed") {
		t.Errorf("result %+v, want a failure of the 307", r)
	}
	if followed.Load() != 0 {
		t.Errorf("the redirect was followed")
	}
}

// TestDispatchStopReleases: Stop cuts off an attempt that outlives the
// drain bound; the delivery is due again, the attempt not counted.
func TestDispatchStopReleases(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, false)
	arrived := make(chan struct{})
	rc.answerWith(func(_ hit, r *http.Request) int {
		close(arrived)
		<-r.Context().Done() // never answers
		return http.StatusOK
	})
	e.endpoint(t, rc, rc.srv.URL, "message.accepted")
	e.send(t, 1)
	d, rec, _ := e.start(t, func(o *dispatcherOpts) { o.opts.DrainTimeout = 50 * time.Millisecond })
	select {
	case <-arrived:
	case <-time.After(waitFor):
		t.Fatal("no request")
	}
	d.Stop()
	if r := rec.next(t); r.Outcome != webhook.OutcomeReleased {
		t.Errorf("cut-off attempt recorded as %+v, want released", r)
	}
	var st struct {
		State    string `db:"state"`
		Attempts int    `db:"attempts"`
		Leased   bool   `db:"leased"`
	}
	if err := e.db.Get(&st, `SELECT state, attempts, leased_until IS NOT NULL AS leased FROM sms.webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	if st.State != "pending" || st.Attempts != 0 || st.Leased {
		t.Errorf("after Stop the delivery is %+v, want pending, 0 attempts, no lease", st)
	}
	if n := smstest.Count(t, e.db, "webhook_attempts"); n != 0 {
		t.Errorf("a cut-off attempt was logged (%d rows)", n)
	}
}

// BenchmarkDispatch measures deliveries per second from a queue of b.N
// message.accepted events to one local endpoint that verifies each
// signature, at the default concurrency (32 in flight, 4 per endpoint) and
// with more per endpoint. One op is one delivery: `-benchtime 5000x` is a
// queue of 5,000.
func BenchmarkDispatch(b *testing.B) {
	for _, per := range []int{4, 16} {
		b.Run(fmt.Sprintf("per_endpoint=%d", per), func(b *testing.B) {
			n := int64(b.N)
			db := platformtest.NewDB(b)
			e := &env{db: db, store: postgres.NewWebhooks(db), messages: postgres.NewStore(db)}
			done := make(chan struct{})
			var got atomic.Int64
			var secret atomic.Pointer[standardwebhooks.Webhook]
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				if secret.Load().Verify(body, r.Header) != nil {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				if got.Add(1) == n {
					close(done)
				}
			}))
			defer srv.Close()
			url := srv.URL
			ep, err := e.store.CreateEndpoint(context.Background(), 1, webhook.EndpointInput{URL: &url, EventTypes: &[]string{"message.accepted"}})
			if err != nil {
				b.Fatal(err)
			}
			wh, _ := standardwebhooks.NewWebhook(ep.Secret)
			secret.Store(wh)
			for i := 0; i < b.N; i += 500 {
				batch := slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "hi")}}, min(500, b.N-i))
				if _, err := e.messages.Insert(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
			d, err := webhook.NewDispatcher(e.store, config.Webhooks{AllowPrivate: true, Timeout: 5 * time.Second, RetrySchedule: "1s",
				Concurrency: 32, PerEndpoint: per}, zerolog.Nop(), prometheus.NewRegistry(), webhook.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			if err := d.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			<-done
			elapsed := time.Since(start)
			b.StopTimer()
			d.Stop()
			b.ReportMetric(float64(n)/elapsed.Seconds(), "deliveries/s")
		})
	}
}
