package processor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// fakeClaimer answers claims with a verdict per message (send by default)
// and counts the claims.
type fakeClaimer struct {
	mu       sync.Mutex
	verdicts map[uuid.UUID]sms.Verdict
	claims   int
}

func (f *fakeClaimer) Dispatch(_ context.Context, claims []sms.Claim) ([]sms.ClaimResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]sms.ClaimResult, len(claims))
	for i, c := range claims {
		f.claims++
		v := f.verdicts[c.MessageID]
		if v == "" {
			v = sms.VerdictSend
		}
		out[i] = sms.ClaimResult{MessageID: c.MessageID, Verdict: v}
	}
	return out, nil
}

// TestProcessorClaims checks that only messages the API says to send reach
// the carrier: canceled, opted-out and expired ones are recorded (so a
// redelivery is not claimed again) and not reported.
func TestProcessorClaims(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 2)
	reqs := testRequests(8)
	claimer := &fakeClaimer{verdicts: map[uuid.UUID]sms.Verdict{
		reqs[1].MessageID: sms.VerdictSkip, reqs[2].MessageID: sms.VerdictOptedOut, reqs[3].MessageID: sms.VerdictExpired,
	}}
	cfg := testConfig(env)
	cfg.Claimer = claimer
	carrierCalls := newCountingCarrier(0)
	api := newFakeAPI()
	store := NewStore(db)
	reporter := runReporter(t, store, api, ReporterConfig{Batch: 10, StaleAfter: time.Hour})
	p, err := New(cfg, store, simple{carrierCalls}, reporter, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	env.produceRequests(t, reqs...)
	waitOutcomes(t, db, len(reqs))
	env.waitCommittedToEnd(t)
	outs := recordedOutcomes(t, db)
	for i, r := range reqs {
		called := carrierCalls.callsFor(r.MessageID)
		switch i {
		case 1, 2, 3:
			if called != 0 || outs[r.MessageID].Status != statusSkipped {
				t.Errorf("message %d (%s): carrier called %d times, recorded %s; want no call, SKIPPED", i, claimer.verdicts[r.MessageID], called, outs[r.MessageID].Status)
			}
		default:
			if called != 1 || outs[r.MessageID].Status != sms.StatusSent {
				t.Errorf("message %d: carrier called %d times, recorded %s; want one call, SENT", i, called, outs[r.MessageID].Status)
			}
		}
	}
	eventually(t, waitFor, "the sent ones reported", func() (bool, string) { return api.distinct() == 5, fmt.Sprint(api.distinct()) })
	for _, i := range []int{1, 2, 3} {
		if n := len(api.reports(reqs[i].MessageID)); n != 0 {
			t.Errorf("message %d was reported %d times; the API settled it itself", i, n)
		}
	}
}

// throttlingCarrier answers Throttled to the first calls for each message,
// then accepts.
type throttlingCarrier struct {
	times int
	mu    sync.Mutex
	calls map[uuid.UUID]int
}

func (c *throttlingCarrier) Submit(_ context.Context, req sms.SendRequest, _ int) (carrier.Accepted, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[req.MessageID]++
	if c.calls[req.MessageID] <= c.times {
		return carrier.Accepted{}, &carrier.Error{Transient: true, Throttled: true, RetryAfter: time.Millisecond, Reason: "throttled: ESME_RTHROTTLED"}
	}
	return carrier.Accepted{PartIDs: []string{req.MessageID.String()[:8]}}, nil
}

func (c *throttlingCarrier) Ready() error { return nil }

// TestProcessorThrottling checks that throttling answers are waited out
// without spending attempts: with MaxAttempts 2 and 5 throttled answers,
// every message is still SENT after its first attempt, and its history
// shows the throttling.
func TestProcessorThrottling(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 1)
	cfg := testConfig(env)
	cfg.MaxAttempts = 2
	car := &throttlingCarrier{times: 5, calls: map[uuid.UUID]int{}}
	p, err := New(cfg, NewStore(db), car, nil, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	reqs := testRequests(3)
	env.produceRequests(t, reqs...)
	waitOutcomes(t, db, len(reqs))
	var rows []struct {
		Status   sms.Status `db:"status"`
		Attempts int        `db:"attempts"`
		Log      attemptLog `db:"attempt_log"`
	}
	if err := db.Select(&rows, `SELECT status, attempts, attempt_log FROM processor.deliveries`); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		throttled := 0
		for _, a := range r.Log {
			if a.Result == "throttled" {
				throttled++
			}
		}
		if r.Status != sms.StatusSent || r.Attempts != 1 || throttled != 5 || len(r.Log) != 6 {
			t.Errorf("outcome %s after %d attempts with %d throttled of %d logged; want SENT after 1 attempt, 5 throttled", r.Status, r.Attempts, throttled, len(r.Log))
		}
	}
}

// TestProcessorAttemptLogFitsAReport: a message throttled past
// maxThrottled and then failing logs more carrier calls than a report
// may carry; the log keeps sms.MaxReportAttempts of them, ending with the
// call that decided the outcome, so the API accepts the report (one it
// refused would be retried forever and hold up the reports behind it).
func TestProcessorAttemptLogFitsAReport(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 1)
	cfg := testConfig(env)
	cfg.MaxAttempts = 2
	car := &throttlingCarrier{times: maxThrottled + 50, calls: map[uuid.UUID]int{}}
	p, err := New(cfg, NewStore(db), car, nil, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	req := testRequest(1)
	env.produceRequests(t, req)
	waitOutcomes(t, db, 1)
	o := recordedOutcomes(t, db)[req.MessageID]
	if err := db.Get(&o.AttemptLog, `SELECT attempt_log FROM processor.deliveries WHERE message_id = $1`, req.MessageID); err != nil {
		t.Fatal(err)
	}
	car.mu.Lock()
	calls := car.calls[req.MessageID]
	car.mu.Unlock()
	if o.Status != sms.StatusFailed || calls <= sms.MaxReportAttempts {
		t.Fatalf("%s after %d carrier calls; want FAILED after more than %d", o.Status, calls, sms.MaxReportAttempts)
	}
	if len(o.AttemptLog) != sms.MaxReportAttempts {
		t.Errorf("%d calls logged, want the log cut to %d", len(o.AttemptLog), sms.MaxReportAttempts)
	}
	if last := o.AttemptLog[len(o.AttemptLog)-1]; last.Attempt != cfg.MaxAttempts || last.Result != "transient" {
		t.Errorf("last logged call: attempt %d %s, want the deciding call, attempt %d transient", last.Attempt, last.Result, cfg.MaxAttempts)
	}
	if err := o.report().Validate(); err != nil {
		t.Errorf("the API would refuse the report: %v", err)
	}
}

// TestProcessorValidity checks that a message whose validity ended before
// the carrier took it ends EXPIRED without a carrier call.
func TestProcessorValidity(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 1)
	car := newCountingCarrier(0)
	startProcessor(t, testConfig(env), db, car)
	stale, fresh := testRequest(1), testRequest(2)
	past, future := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	stale.ValidUntil, fresh.ValidUntil = &past, &future
	env.produceRequests(t, stale, fresh)
	waitOutcomes(t, db, 2)
	outs := recordedOutcomes(t, db)
	if o := outs[stale.MessageID]; o.Status != sms.StatusExpired || car.callsFor(stale.MessageID) != 0 {
		t.Errorf("stale message: %s after %d carrier calls, want EXPIRED without one", o.Status, car.callsFor(stale.MessageID))
	}
	if o := outs[fresh.MessageID]; o.Status != sms.StatusSent {
		t.Errorf("fresh message: %s, want SENT", o.Status)
	}
}

// TestProcessorPriorityLanes checks that a high message overtakes a
// backlog of low ones: it is delivered while most of the backlog still
// waits, and the low lane is not starved (it all gets delivered too).
func TestProcessorPriorityLanes(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 2)
	topics := sms.PriorityTopics(env.topic)
	ctx := context.Background()
	if err := platform.EnsureTopics(ctx, env.cl, 2, 1, topics[sms.PriorityHigh], topics[sms.PriorityLow]); err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	doneAt := sync.Map{} // message id -> how many were delivered before it
	car := newCountingCarrier(20 * time.Millisecond)
	car.outcome = func(req sms.SendRequest, _ int) error {
		doneAt.Store(req.MessageID, delivered.Add(1))
		return nil
	}
	cfg := testConfig(env)
	cfg.MaxInFlight = 20
	cfg.Lanes = []string{topics[sms.PriorityHigh], topics[sms.PriorityNormal], topics[sms.PriorityLow]}
	low := testRequests(400)
	for i := range low {
		low[i].Priority = sms.PriorityLow
	}
	lowRecs := make([]*kgo.Record, len(low))
	for i, r := range low {
		lowRecs[i] = requestRecord(t, r)
		lowRecs[i].Topic = topics[sms.PriorityLow]
	}
	env.produce(t, lowRecs...)
	startProcessor(t, cfg, db, car)
	eventually(t, waitFor, "the low backlog under way", func() (bool, string) {
		return delivered.Load() >= 40, fmt.Sprint(delivered.Load())
	})
	high := testRequest(9999)
	high.Priority = sms.PriorityHigh
	hr := requestRecord(t, high)
	hr.Topic = topics[sms.PriorityHigh]
	env.produce(t, hr)
	eventually(t, waitFor, "the high message delivered", func() (bool, string) {
		_, ok := doneAt.Load(high.MessageID)
		return ok, fmt.Sprint(delivered.Load())
	})
	v, _ := doneAt.Load(high.MessageID)
	if pos := v.(int64); pos > 200 {
		t.Errorf("the high message was delivered %d-th, after half of the 400 low ones", pos)
	}
	waitOutcomes(t, db, len(low)+1) // the low lane is not starved
}

// limitedClaimer refuses a request of more claims than the API takes, as
// the API does (400), and keeps the size of each request.
type limitedClaimer struct {
	fakeClaimer
	sizes []int
}

func (l *limitedClaimer) Dispatch(ctx context.Context, claims []sms.Claim) ([]sms.ClaimResult, error) {
	l.mu.Lock()
	l.sizes = append(l.sizes, len(claims))
	l.mu.Unlock()
	if len(claims) > sms.MaxClaims {
		return nil, fmt.Errorf("API answered 400: claims must hold 1 to %d claims, got %d", sms.MaxClaims, len(claims))
	}
	return l.fakeClaimer.Dispatch(ctx, claims)
}

// knowsNothing is a store with no outcome recorded.
type knowsNothing struct{ Outcomes }

func (knowsNothing) Known(context.Context, []Try) (map[Try]bool, error) { return nil, nil }

// TestDecideClaimsInChunks: one fetch can hold more records than one
// dispatch request may claim (a backlog and a large in-flight window);
// they are claimed in requests the API takes. One request for all of them
// was refused every time, and the processor retried it forever.
func TestDecideClaimsInChunks(t *testing.T) {
	t.Parallel()
	claimer := &limitedClaimer{}
	p := &Processor{store: knowsNothing{}, claimer: claimer}
	todo := make([]work, 2*sms.MaxClaims+1)
	for i := range todo {
		todo[i].req = sms.SendRequest{MessageID: uuid.New()}
	}
	verdicts, err := p.decide(t.Context(), todo)
	if err != nil {
		t.Fatalf("decide: %v (requests of %v claims)", err, claimer.sizes)
	}
	if want := []int{sms.MaxClaims, sms.MaxClaims, 1}; !slices.Equal(claimer.sizes, want) {
		t.Errorf("claim requests of %v claims, want %v", claimer.sizes, want)
	}
	for _, w := range todo {
		if v := verdicts[w.req.MessageID]; v != sms.VerdictSend {
			t.Fatalf("message %s: verdict %q, want send", w.req.MessageID, v)
		}
	}
}
