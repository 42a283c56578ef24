package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sony/gobreaker/v2"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

const testToken = "internal-test-token"

// fakeAPI implements the API's batch delivery-report endpoint: it checks
// the internal credential, decodes sms.ReportBatch and answers
// sms.ReportResults, or fails while down.
type fakeAPI struct {
	down  atomic.Bool // answer 503
	calls atomic.Int64
	// received, when set, is told each report the API took.
	onReport func(sms.DeliveryReport)
	mu       sync.Mutex
	received map[uuid.UUID][]sms.DeliveryReport
	unknown  map[uuid.UUID]bool // answered not_found
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{received: make(map[uuid.UUID][]sms.DeliveryReport), unknown: make(map[uuid.UUID]bool)}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/internal/delivery-reports" {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if f.down.Load() {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	var body sms.ReportBatch
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var res sms.ReportResults
	f.mu.Lock()
	for _, rep := range body.Reports {
		if err := rep.Validate(); err != nil {
			f.mu.Unlock()
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	for _, rep := range body.Reports {
		outcome := sms.ReportApplied
		if f.unknown[rep.MessageID] {
			outcome = sms.ReportNotFound
		} else if len(f.received[rep.MessageID]) > 0 {
			outcome = sms.ReportDuplicate
		}
		f.received[rep.MessageID] = append(f.received[rep.MessageID], rep)
		if f.onReport != nil {
			f.onReport(rep)
		}
		res.Results = append(res.Results, sms.AppliedReport{MessageID: rep.MessageID, Outcome: outcome})
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

func (f *fakeAPI) reports(id uuid.UUID) []sms.DeliveryReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received[id]
}

func (f *fakeAPI) distinct() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.received)
}

func newTestReporter(tb testing.TB, store *Store, url, token string, batch int) *Reporter {
	tb.Helper()
	return NewReporter(store, ReporterConfig{APIURL: url, Token: token, Batch: batch}, testLogger(), prometheus.NewRegistry())
}

// recordMixed records n outcomes, every third one FAILED, and returns them.
func recordMixed(tb testing.TB, store *Store, n int) []Outcome {
	tb.Helper()
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Microsecond)
	outs := make([]Outcome, n)
	for i := range outs {
		outs[i] = sentOutcome(uuid.New(), base.Add(time.Duration(i)*time.Millisecond))
		if i%3 == 0 {
			outs[i] = failedOutcome(outs[i].MessageID, fmt.Sprintf("permanent: reason %d", i), outs[i].ProcessedAt)
		}
	}
	if _, err := store.Record(context.Background(), outs); err != nil {
		tb.Fatalf("Record: %v", err)
	}
	return outs
}

// TestReporterDelivers checks that recorded outcomes reach the API once
// each, with their facts, and are then marked reported; and that a wrong
// credential or an unknown message leaves nothing stuck or lost.
func TestReporterDelivers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		token        string
		unknown      int // of the outcomes, how many the API doesn't know
		wantReported bool
	}{
		{name: "reports delivered and marked", token: testToken, wantReported: true},
		{name: "not_found answers are final, not retried", token: testToken, unknown: 4, wantReported: true},
		{name: "wrong credential: rejected, nothing marked", token: "wrong", wantReported: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			store := NewStore(db)
			api := newFakeAPI()
			srv := httptest.NewServer(api)
			defer srv.Close()
			const n, batch = 25, 10
			outs := recordMixed(t, store, n)
			for _, o := range outs[:tc.unknown] {
				api.unknown[o.MessageID] = true
			}
			r := newTestReporter(t, store, srv.URL+"/", tc.token, batch) // trailing slash is tolerated

			var sizes []int
			for range 5 {
				got, err := r.ReportOnce(context.Background())
				if !tc.wantReported {
					if err == nil {
						t.Fatalf("ReportOnce with a wrong credential succeeded")
					}
					continue
				}
				if err != nil {
					t.Fatalf("ReportOnce: %v", err)
				}
				sizes = append(sizes, got)
			}
			left, err := store.Unreported(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !tc.wantReported {
				if left != n {
					t.Fatalf("Unreported = %d after rejected reports, want all %d", left, n)
				}
				if api.distinct() != 0 {
					t.Fatalf("API accepted %d reports with a wrong credential", api.distinct())
				}
				return
			}
			if want := []int{10, 10, 5, 0, 0}; fmt.Sprint(sizes) != fmt.Sprint(want) {
				t.Errorf("batch sizes = %v, want %v", sizes, want)
			}
			if left != 0 {
				t.Errorf("Unreported = %d, want 0", left)
			}
			for _, o := range outs {
				got := api.reports(o.MessageID)
				if len(got) != 1 {
					t.Errorf("%s reported %d times, want once", o.MessageID, len(got))
					continue
				}
				rep := got[0]
				if rep.Status != o.Status || !equalReason(rep.FailureReason, o.FailureReason) || !rep.ProcessedAt.Equal(o.ProcessedAt) {
					t.Errorf("report %+v does not match outcome %+v", rep, o)
				}
				if !isReported(t, db, o.MessageID) {
					t.Errorf("%s acknowledged but not marked reported", o.MessageID)
				}
			}
		})
	}
}

// TestReporterKeepsReportsWhileAPIDown checks that reports the API can't
// take stay in the store and all arrive, once each, when it is back.
func TestReporterKeepsReportsWhileAPIDown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// down makes the API unavailable and returns how to bring it back.
		down func(t *testing.T, api *fakeAPI) (url string, up func())
	}{
		{
			name: "API answers 503",
			down: func(t *testing.T, api *fakeAPI) (string, func()) {
				srv := httptest.NewServer(api)
				t.Cleanup(srv.Close)
				api.down.Store(true)
				return srv.URL, func() { api.down.Store(false) }
			},
		},
		{
			name: "API refuses connections",
			down: func(t *testing.T, api *fakeAPI) (string, func()) {
				// Take a free port, then leave it closed until the API comes back on it.
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := ln.Addr().String()
				ln.Close()
				return "http://" + addr, func() {
					var ln net.Listener
					eventually(t, waitFor, "listen again on "+addr, func() (bool, string) {
						var err error
						ln, err = net.Listen("tcp", addr)
						return err == nil, fmt.Sprint(err)
					})
					srv := httptest.NewUnstartedServer(api)
					srv.Listener.Close()
					srv.Listener = ln
					srv.Start()
					t.Cleanup(srv.Close)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			store := NewStore(db)
			api := newFakeAPI()
			url, up := tc.down(t, api)
			const n = 30
			outs := recordMixed(t, store, n)
			r := newTestReporter(t, store, url, testToken, 10)

			for i := range 3 {
				if _, err := r.ReportOnce(context.Background()); err == nil {
					t.Fatalf("ReportOnce %d succeeded while the API is down", i)
				}
			}
			if left, _ := store.Unreported(context.Background()); left != n {
				t.Fatalf("Unreported = %d while the API is down, want all %d kept", left, n)
			}

			if err := r.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			up() // the sweep runs at least once a second
			eventually(t, waitFor, "every report acknowledged", func() (bool, string) {
				left, err := store.Unreported(context.Background())
				return err == nil && left == 0, fmt.Sprintf("%d unreported (%v)", left, err)
			})
			for _, o := range outs {
				if got := len(api.reports(o.MessageID)); got != 1 {
					t.Errorf("%s reached the API %d times, want once", o.MessageID, got)
				}
			}
		})
	}
}

// TestReporterCircuitBreaker checks that after repeated failures the
// reporter stops calling the API while the breaker is open, probes it once
// when the breaker half-opens, and closes again once the API answers.
func TestReporterCircuitBreaker(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	store := NewStore(db)
	api := newFakeAPI()
	srv := httptest.NewServer(api)
	defer srv.Close()
	api.down.Store(true)
	recordMixed(t, store, 5)
	// The test watches the breaker's state (the metric) instead of
	// sleeping through the timeout. gobreaker takes no clock, so the
	// checks made while it is open must finish within the timeout: 3 s
	// is a hundred times what its six store transactions take under
	// -race on a loaded machine.
	r := NewReporter(store, ReporterConfig{APIURL: srv.URL, Token: testToken, Batch: 10, BreakerTimeout: 3 * time.Second}, testLogger(), prometheus.NewRegistry())
	ctx := context.Background()

	// Three consecutive failures trip it (ReadyToTrip).
	for i := range 3 {
		if _, err := r.ReportOnce(ctx); err == nil || errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("failure %d: err = %v, want the API's error", i, err)
		}
	}
	if got := api.calls.Load(); got != 3 {
		t.Fatalf("API called %d times for 3 failures, want 3", got)
	}
	if st := r.breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("breaker %v after 3 failures, want open", st)
	}

	// While open, reports fail fast and the API sees nothing.
	for i := range 5 {
		if _, err := r.ReportOnce(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
			t.Fatalf("call %d while open: err = %v, want ErrOpenState", i, err)
		}
	}
	if got := api.calls.Load(); got != 3 {
		t.Fatalf("API called %d times while the breaker was open, want still 3", got)
	}

	// Half-open lets one probe through; it fails and the breaker opens again.
	// Watched through the metric alone: gobreaker leaves open lazily, on
	// its next call, so a metric set only on state changes would say open
	// for as long as an idle replica makes no call.
	if got := testutil.ToFloat64(r.breakerState); got != float64(gobreaker.StateOpen) {
		t.Fatalf("sms_report_breaker_state %v while open, want %d", got, gobreaker.StateOpen)
	}
	eventually(t, waitFor, "sms_report_breaker_state says half-open", func() (bool, string) {
		got := testutil.ToFloat64(r.breakerState)
		return got == float64(gobreaker.StateHalfOpen), fmt.Sprint(got)
	})
	if _, err := r.ReportOnce(ctx); err == nil || errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("half-open probe: err = %v, want the API's error", err)
	}
	if got := api.calls.Load(); got != 4 {
		t.Fatalf("API called %d times after the probe, want 4", got)
	}
	if st := r.breaker.State(); st != gobreaker.StateOpen {
		t.Fatalf("breaker %v after a failed probe, want open", st)
	}
	if _, err := r.ReportOnce(ctx); !errors.Is(err, gobreaker.ErrOpenState) {
		t.Fatalf("after failed probe: err = %v, want ErrOpenState", err)
	}
	if left, _ := store.Unreported(ctx); left != 5 {
		t.Fatalf("Unreported = %d, want 5 kept", left)
	}

	// The API is back: the next probe succeeds and the breaker closes.
	api.down.Store(false)
	eventually(t, waitFor, "breaker half-opens again", func() (bool, string) {
		st := r.breaker.State()
		return st == gobreaker.StateHalfOpen, st.String()
	})
	n, err := r.ReportOnce(ctx)
	if err != nil || n != 5 {
		t.Fatalf("probe with the API back = %d, %v; want 5 reported", n, err)
	}
	if st := r.breaker.State(); st != gobreaker.StateClosed {
		t.Fatalf("breaker %v after a successful probe, want closed", st)
	}
	if got := api.calls.Load(); got != 5 {
		t.Fatalf("API called %d times, want 5", got)
	}
	// Closed: every report goes straight through.
	recordMixed(t, store, 3)
	if n, err := r.ReportOnce(ctx); err != nil || n != 3 {
		t.Fatalf("ReportOnce after closing = %d, %v; want 3", n, err)
	}
	if got := api.calls.Load(); got != 6 {
		t.Fatalf("API called %d times, want 6", got)
	}
}

// TestReporterHandOver checks the usual path: outcomes handed over in
// memory reach the API and are marked reported, while the sweep, told to
// wait an hour, reports nothing; and that an outcome whose report failed
// is left unreported for the sweep.
func TestReporterHandOver(t *testing.T) {
	t.Parallel()
	store := NewStore(platformtest.NewDB(t))
	api := newFakeAPI()
	r := runReporter(t, store, api, ReporterConfig{Batch: 10, Concurrency: 2, StaleAfter: time.Hour})

	outs := recordMixed(t, store, 25)
	r.Enqueue(outs)
	platformtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "hand-over reported and marked", func() (bool, string) {
		left, err := store.Unreported(context.Background())
		return err == nil && left == 0 && api.distinct() == len(outs), fmt.Sprintf("API has %d, unreported %d (%v)", api.distinct(), left, err)
	})

	api.down.Store(true)
	before := api.calls.Load()
	failed := recordMixed(t, store, 3)
	r.Enqueue(failed)
	platformtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "a failed report tried", func() (bool, string) {
		return api.calls.Load() > before, fmt.Sprintf("%d calls", api.calls.Load())
	})
	if left, err := store.Unreported(context.Background()); err != nil || left != 3 {
		t.Errorf("Unreported after a failed hand-over = %d, %v; want 3 left for the sweep", left, err)
	}
}

// TestReporterSweepsUnderSteadyLoad checks that outcomes left to the sweep
// (here: recorded but never handed over) are reported even while fresh
// outcomes keep the loop busy: a new one is handed over as soon as the API
// has taken the last, so the in-memory queue never runs dry.
func TestReporterSweepsUnderSteadyLoad(t *testing.T) {
	t.Parallel()
	store := NewStore(platformtest.NewDB(t))
	api := newFakeAPI()
	fresh := make(map[uuid.UUID]bool)
	var freshMu sync.Mutex
	taken := make(chan struct{}, 1)
	var freshReported atomic.Int64
	api.onReport = func(rep sms.DeliveryReport) {
		freshMu.Lock()
		isFresh := fresh[rep.MessageID]
		freshMu.Unlock()
		if isFresh {
			freshReported.Add(1)
			select {
			case taken <- struct{}{}:
			default:
			}
		}
	}
	r := runReporter(t, store, api, ReporterConfig{Batch: 10, Concurrency: 1, StaleAfter: time.Millisecond})
	feed := func() {
		o := sentOutcome(uuid.New(), time.Now().UTC())
		freshMu.Lock()
		fresh[o.MessageID] = true
		freshMu.Unlock()
		r.Enqueue([]Outcome{o})
	}
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for {
			feed()
			select {
			case <-taken:
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-fed }()
	eventually(t, waitFor, "the loop busy with fresh outcomes", func() (bool, string) {
		return freshReported.Load() >= 20, fmt.Sprintf("%d fresh reported", freshReported.Load())
	})

	stale := recordMixed(t, store, 7)
	before := freshReported.Load()
	platformtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "stale outcomes reported under load", func() (bool, string) {
		missing := 0
		for _, o := range stale {
			if len(api.reports(o.MessageID)) == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d not reported", missing, len(stale))
	})
	if during := freshReported.Load() - before; during < 2 {
		t.Errorf("only %d fresh outcomes reported while the stale ones waited: the loop was not busy", during)
	}
}

// runReporter runs a reporter with cfg against api until the test ends.
func runReporter(t *testing.T, store *Store, api *fakeAPI, cfg ReporterConfig) *Reporter {
	t.Helper()
	srv := httptest.NewServer(api)
	cfg.APIURL, cfg.Token = srv.URL, testToken
	r := NewReporter(store, cfg, testLogger(), prometheus.NewRegistry())
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(); srv.Close() })
	return r
}
