package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// checkOnceEach fails unless every request has exactly one outcome row, the
// carrier was asked once for it, and no other outcome exists.
func checkOnceEach(tb testing.TB, db *sqlx.DB, carrier *countingCarrier, reqs []sms.SendRequest) {
	tb.Helper()
	outs := recordedOutcomes(tb, db)
	if len(outs) != len(reqs) {
		tb.Errorf("%d outcome rows, want %d", len(outs), len(reqs))
	}
	for _, r := range reqs {
		if _, ok := outs[r.MessageID]; !ok {
			tb.Errorf("no outcome for %s", r.MessageID)
		}
		if n := carrier.callsFor(r.MessageID); n != 1 {
			tb.Errorf("carrier called %d times for %s, want once", n, r.MessageID)
		}
	}
}

// TestProcessorDeliversEachMessageOnce checks the happy path: every request
// on the topic gets one carrier call and one SENT outcome, and the group's
// commits reach the end of every partition.
func TestProcessorDeliversEachMessageOnce(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 3)
	carrier := newCountingCarrier(5 * time.Millisecond)
	reqs := testRequests(300)
	env.produceRequests(t, reqs[:150]...)
	p := startProcessor(t, testConfig(env), db, carrier)
	env.produceRequests(t, reqs[150:]...) // some arrive while it runs

	waitOutcomes(t, db, len(reqs))
	env.waitCommittedToEnd(t)
	if !p.Joined() {
		t.Error("Joined() is false for a processor that consumed")
	}
	checkOnceEach(t, db, carrier, reqs)
	for id, o := range recordedOutcomes(t, db) {
		if o.Status != sms.StatusSent || o.Attempts != 1 || o.FailureReason != nil || o.ProcessedAt.IsZero() {
			t.Errorf("outcome %s = %+v, want SENT after 1 attempt", id, o)
		}
	}
}

// TestProcessorRedelivery checks that a message delivered again by Kafka
// (at-least-once) never reaches the carrier a second time.
func TestProcessorRedelivery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		run  func(t *testing.T, db *sqlx.DB, env *kafkaEnv, carrier *countingCarrier, dup sms.SendRequest)
		// wantCalls is how often the carrier sees the duplicated message.
		wantCalls int
	}{
		{
			name: "same message twice in one fetch",
			run: func(t *testing.T, db *sqlx.DB, env *kafkaEnv, carrier *countingCarrier, dup sms.SendRequest) {
				env.produceRequests(t, dup, dup, testRequest(1), dup)
				startProcessor(t, testConfig(env), db, carrier)
				env.waitCommittedToEnd(t)
			},
			wantCalls: 1,
		},
		{
			name: "same message again after its outcome is recorded",
			run: func(t *testing.T, db *sqlx.DB, env *kafkaEnv, carrier *countingCarrier, dup sms.SendRequest) {
				env.produceRequests(t, dup)
				startProcessor(t, testConfig(env), db, carrier)
				waitOutcomes(t, db, 1)
				env.produceRequests(t, dup, testRequest(1))
				env.waitCommittedToEnd(t)
			},
			wantCalls: 1,
		},
		{
			name: "outcome recorded before the processor starts",
			run: func(t *testing.T, db *sqlx.DB, env *kafkaEnv, carrier *countingCarrier, dup sms.SendRequest) {
				reason := "permanent: recorded by an earlier owner"
				if _, err := NewStore(db).Record(context.Background(), []Outcome{failedOutcome(dup.MessageID, reason, time.Now().UTC())}); err != nil {
					t.Fatal(err)
				}
				env.produceRequests(t, dup, testRequest(1))
				startProcessor(t, testConfig(env), db, carrier)
				env.waitCommittedToEnd(t)
				if o := recordedOutcomes(t, db)[dup.MessageID]; o.Status != sms.StatusFailed || deref(o.FailureReason) != reason {
					t.Errorf("recorded outcome changed to %s/%s", o.Status, deref(o.FailureReason))
				}
			},
			wantCalls: 0,
		},
		{
			name: "whole topic replayed after the group's offsets are reset",
			run: func(t *testing.T, db *sqlx.DB, env *kafkaEnv, carrier *countingCarrier, dup sms.SendRequest) {
				env.produceRequests(t, dup, testRequest(1), testRequest(2))
				p := startProcessor(t, testConfig(env), db, carrier)
				env.waitCommittedToEnd(t)
				waitOutcomes(t, db, 3)
				p.stop(t)
				resetGroup(t, env)
				before := carrier.total.Load()
				startProcessor(t, testConfig(env), db, carrier)
				env.waitCommittedToEnd(t)
				if after := carrier.total.Load(); after != before {
					t.Errorf("replay made %d carrier calls, want 0", after-before)
				}
			},
			wantCalls: 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			env := newKafkaEnv(t, 1)
			carrier := newCountingCarrier(20 * time.Millisecond)
			dup := testRequest(0)
			tc.run(t, db, env, carrier, dup)
			if got := carrier.callsFor(dup.MessageID); got != tc.wantCalls {
				t.Errorf("carrier called %d times for the redelivered message, want %d", got, tc.wantCalls)
			}
			if rep := carrier.repeated(); len(rep) > 0 {
				t.Errorf("carrier called repeatedly: %v", rep)
			}
			if _, ok := recordedOutcomes(t, db)[dup.MessageID]; !ok {
				t.Error("the redelivered message has no outcome")
			}
		})
	}
}

// resetGroup commits offset 0 for every partition of env's topic, as an
// operator replaying the topic would.
func resetGroup(tb testing.TB, env *kafkaEnv) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	offs := make(kadm.Offsets)
	for p := range env.endOffsets(tb, env.topic) {
		offs.Add(kadm.Offset{Topic: env.topic, Partition: p, At: 0, LeaderEpoch: -1})
	}
	// The group must be empty: retry while the last member is still leaving.
	eventually(tb, waitFor, "reset group offsets", func() (bool, string) {
		resp, err := env.adm.CommitOffsets(ctx, env.group, offs)
		if err == nil {
			err = resp.Error()
		}
		return err == nil, fmt.Sprint(err)
	})
}

// TestProcessorCarrierFailures checks how carrier failures end: transient
// ones are retried up to MaxAttempts and then FAILED as exhausted with a
// dead letter; permanent ones FAILED at once; and every outcome is a report
// the API accepts.
func TestProcessorCarrierFailures(t *testing.T) {
	t.Parallel()
	const maxAttempts = 3
	long := strings.Repeat("carrier said no. ", 200)
	cases := []struct {
		name          string
		outcome       func(attempt int) error
		wantCalls     int
		wantStatus    sms.Status
		wantReason    func(string) bool
		wantReasonDoc string
		wantDLQ       bool
	}{
		{
			name:       "delivered at once",
			outcome:    func(int) error { return nil },
			wantCalls:  1,
			wantStatus: sms.StatusSent,
			wantReason: func(r string) bool { return r == "" }, wantReasonDoc: "none",
		},
		{
			name: "transient failures then delivered",
			outcome: func(attempt int) error {
				if attempt < maxAttempts {
					return &carrier.Error{Transient: true, Reason: "carrier throttled the request"}
				}
				return nil
			},
			wantCalls:  maxAttempts,
			wantStatus: sms.StatusSent,
			wantReason: func(r string) bool { return r == "" }, wantReasonDoc: "none",
		},
		{
			name:       "transient failures until attempts are exhausted",
			outcome:    func(int) error { return &carrier.Error{Transient: true, Reason: "carrier timeout"} },
			wantCalls:  maxAttempts,
			wantStatus: sms.StatusFailed,
			wantReason: func(r string) bool {
				return strings.HasPrefix(r, fmt.Sprintf("exhausted: %d attempts", maxAttempts)) && strings.Contains(r, "carrier timeout")
			},
			wantReasonDoc: `"exhausted: 3 attempts ..." naming the last error`,
			wantDLQ:       true,
		},
		{
			name:       "unclassified errors count as transient",
			outcome:    func(int) error { return errors.New("connection reset by carrier") },
			wantCalls:  maxAttempts,
			wantStatus: sms.StatusFailed,
			wantReason: func(r string) bool {
				return strings.HasPrefix(r, "exhausted: ") && strings.Contains(r, "connection reset by carrier")
			},
			wantReasonDoc: `"exhausted: ..."`,
			wantDLQ:       true,
		},
		{
			name:          "permanent failure fails at once",
			outcome:       func(int) error { return &carrier.Error{Reason: "permanent: recipient number is not in service"} },
			wantCalls:     1,
			wantStatus:    sms.StatusFailed,
			wantReason:    func(r string) bool { return r == "permanent: recipient number is not in service" },
			wantReasonDoc: "the carrier's reason",
		},
		{
			name:          "permanent failure without a reason still says why",
			outcome:       func(int) error { return &carrier.Error{} },
			wantCalls:     1,
			wantStatus:    sms.StatusFailed,
			wantReason:    func(r string) bool { return strings.HasPrefix(r, "permanent: ") },
			wantReasonDoc: `a non-empty "permanent: ..." reason`,
		},
		{
			name:       "a very long carrier error is cut to what the API accepts",
			outcome:    func(int) error { return &carrier.Error{Transient: true, Reason: long} },
			wantCalls:  maxAttempts,
			wantStatus: sms.StatusFailed,
			wantReason: func(r string) bool {
				return strings.HasPrefix(r, "exhausted: ") && utf8.RuneCountInString(r) <= sms.MaxFailureReason
			},
			wantReasonDoc: `"exhausted: ..." of at most 1000 characters`,
			wantDLQ:       true,
		},
	}

	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 2)
	byID := make(map[uuid.UUID]int) // message -> case
	var reqs []sms.SendRequest
	for i := range cases {
		for j := range 3 { // a few messages per case
			r := testRequest(i*10 + j)
			byID[r.MessageID] = i
			reqs = append(reqs, r)
		}
	}
	carrier := newCountingCarrier(0)
	carrier.outcome = func(req sms.SendRequest, attempt int) error { return cases[byID[req.MessageID]].outcome(attempt) }
	recs := env.produceRequests(t, reqs...)
	cfg := testConfig(env)
	cfg.MaxAttempts = maxAttempts
	startProcessor(t, cfg, db, carrier)
	waitOutcomes(t, db, len(reqs))
	env.waitCommittedToEnd(t)

	outs := recordedOutcomes(t, db)
	dlq := make(map[uuid.UUID][]*kgo.Record)
	for _, r := range env.readAll(t, env.dlq) {
		var req sms.SendRequest
		if err := json.Unmarshal(r.Value, &req); err != nil {
			t.Fatalf("dead letter with an unexpected value %q", r.Value)
		}
		dlq[req.MessageID] = append(dlq[req.MessageID], r)
	}
	origin := make(map[uuid.UUID]*kgo.Record)
	for i, r := range recs {
		origin[reqs[i].MessageID] = r
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, req := range reqs {
				if byID[req.MessageID] != i {
					continue
				}
				o, ok := outs[req.MessageID]
				if !ok {
					t.Fatalf("no outcome for %s", req.MessageID)
				}
				if got := carrier.callsFor(req.MessageID); got != tc.wantCalls {
					t.Errorf("carrier called %d times, want %d", got, tc.wantCalls)
				}
				if o.Status != tc.wantStatus || o.Attempts != tc.wantCalls {
					t.Errorf("outcome %s after %d attempts, want %s after %d", o.Status, o.Attempts, tc.wantStatus, tc.wantCalls)
				}
				reason := deref(o.FailureReason)
				if o.FailureReason == nil {
					reason = ""
				}
				if !tc.wantReason(reason) {
					t.Errorf("failure reason %.120q (%d bytes), want %s", reason, len(reason), tc.wantReasonDoc)
				}
				// The outcome becomes a delivery report; the API must accept it.
				rep := sms.DeliveryReport{MessageID: o.MessageID, Status: o.Status, FailureReason: o.FailureReason, ProcessedAt: o.ProcessedAt}
				if err := rep.Validate(); err != nil {
					t.Errorf("outcome is not a valid delivery report: %v", err)
				}
				letters := dlq[req.MessageID]
				if !tc.wantDLQ {
					if len(letters) != 0 {
						t.Errorf("%d dead letters, want none", len(letters))
					}
					continue
				}
				if len(letters) != 1 {
					t.Fatalf("%d dead letters, want 1", len(letters))
				}
				checkDeadLetter(t, letters[0], origin[req.MessageID], env.topic, func(e string) bool { return tc.wantReason(e) || strings.HasPrefix(e, "exhausted: ") })
			}
		})
	}
}

// checkDeadLetter checks that dl carries orig's key and value, and the
// error and origin in headers.
func checkDeadLetter(tb testing.TB, dl, orig *kgo.Record, topic string, errOK func(string) bool) {
	tb.Helper()
	if string(dl.Value) != string(orig.Value) || string(dl.Key) != string(orig.Key) {
		tb.Errorf("dead letter key/value %q/%q, want the original %q/%q", dl.Key, dl.Value, orig.Key, orig.Value)
	}
	want := map[string]string{
		"original_topic":     topic,
		"original_partition": strconv.Itoa(int(orig.Partition)),
		"original_offset":    strconv.FormatInt(orig.Offset, 10),
	}
	for k, v := range want {
		if got, ok := header(dl, k); !ok || got != v {
			tb.Errorf("dead letter header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	if e, ok := header(dl, "error"); !ok || !errOK(e) {
		tb.Errorf("dead letter error header = %q (present %v)", e, ok)
	}
}

// TestProcessorPoisonRecords checks that records that aren't valid send
// requests go to the dead-letter topic with the error and their origin, and
// that the valid records behind them in the same partition are processed.
func TestProcessorPoisonRecords(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 1) // one partition: the poison sits in front of the valid records
	poison := []struct {
		name    string
		value   string
		wantErr string // the error header contains it
	}{
		{"not JSON", "this is not JSON {", "poison record"},
		{"empty value", "", "poison record"},
		{"JSON missing required fields", `{"sender":"+4915112345678"}`, "message_id: required"},
		{"JSON with a wrong type", `{"message_id":"not-a-uuid","sender":"+4915112345678","recipient":"+4915187654321","text":"hi"}`, "poison record"},
		{"JSON null", `null`, "text: required"},
		{"JSON array", `[1,2,3]`, "poison record"},
	}
	before := testRequests(2)
	after := testRequests(20)
	var recs []*kgo.Record
	for _, r := range before {
		recs = append(recs, requestRecord(t, r))
	}
	for _, p := range poison {
		recs = append(recs, &kgo.Record{Key: []byte("+4915187654321"), Value: []byte(p.value),
			Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}})
	}
	for _, r := range after {
		recs = append(recs, requestRecord(t, r))
	}
	recs = env.produce(t, recs...)
	poisonRecs := recs[len(before) : len(before)+len(poison)]

	carrier := newCountingCarrier(0)
	startProcessor(t, testConfig(env), db, carrier)
	valid := append(append([]sms.SendRequest(nil), before...), after...)
	waitOutcomes(t, db, len(valid))
	env.waitCommittedToEnd(t)
	checkOnceEach(t, db, carrier, valid)

	letters := env.readAll(t, env.dlq)
	byOffset := make(map[string]*kgo.Record)
	for _, dl := range letters {
		off, _ := header(dl, "original_offset")
		byOffset[off] = dl
	}
	if len(letters) != len(poison) {
		t.Errorf("%d dead letters, want %d", len(letters), len(poison))
	}
	for i, p := range poison {
		t.Run(p.name, func(t *testing.T) {
			orig := poisonRecs[i]
			dl := byOffset[strconv.FormatInt(orig.Offset, 10)]
			if dl == nil {
				t.Fatalf("no dead letter for offset %d", orig.Offset)
			}
			checkDeadLetter(t, dl, orig, env.topic, func(e string) bool {
				return strings.Contains(e, "poison record") && strings.Contains(e, p.wantErr)
			})
			if tp, _ := header(dl, "traceparent"); tp == "" {
				t.Error("dead letter lost the original headers (traceparent)")
			}
		})
	}
}

// TestProcessorConcurrencyBeyondPartitions checks that one partition is not
// one message at a time: messages are processed concurrently up to the
// MaxInFlight window, and never beyond it.
func TestProcessorConcurrencyBeyondPartitions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name        string
		messages    int
		window      int
		wantPeakMin int64
	}{
		// 500 messages at 200ms each would take 100s one at a time.
		{name: "wide window, one partition", messages: 500, window: 500, wantPeakMin: 100},
		{name: "narrow window bounds concurrency", messages: 120, window: 20, wantPeakMin: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			env := newKafkaEnv(t, 1)
			reqs := testRequests(tc.messages)
			env.produceRequests(t, reqs...)
			carrier := newCountingCarrier(200 * time.Millisecond)
			cfg := testConfig(env)
			cfg.MaxInFlight = tc.window
			startProcessor(t, cfg, db, carrier)
			waitOutcomes(t, db, len(reqs))
			env.waitCommittedToEnd(t)
			checkOnceEach(t, db, carrier, reqs)
			peak := carrier.peak.Load()
			t.Logf("peak carrier concurrency %d on 1 partition (window %d)", peak, tc.window)
			if peak < tc.wantPeakMin {
				t.Errorf("at most %d carrier calls at once on 1 partition, want at least %d", peak, tc.wantPeakMin)
			}
			if peak > int64(tc.window) {
				t.Errorf("%d carrier calls at once, beyond the window of %d", peak, tc.window)
			}
		})
	}
}

// TestProcessorRebalance checks that a second replica joining the group
// mid-stream (cooperative-sticky) loses nothing and makes no message reach
// the carrier twice: revoked partitions are drained and committed before
// they move.
func TestProcessorRebalance(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 6)
	// Every fifth call is slower than a rebalance, so a revoked partition
	// has messages at the carrier when the new owner could fetch them.
	reqs := testRequests(240)
	slow := make(map[uuid.UUID]bool)
	for i, r := range reqs {
		slow[r.MessageID] = i%5 == 0
	}
	shared := newCountingCarrier(0)
	shared.delayFor = func(r sms.SendRequest) time.Duration {
		if slow[r.MessageID] {
			return 4 * time.Second
		}
		return 50 * time.Millisecond
	}
	first, second := &carrierShare{countingCarrier: shared}, &carrierShare{countingCarrier: shared}
	env.produceRequests(t, reqs...)
	cfg := testConfig(env)
	cfg.MaxInFlight = 30 // slow enough that the second replica joins mid-stream
	// A graceful drain waits for calls of up to 4 s: a wide margin under
	// -race on a loaded machine (it ends when they do), within the 30 s
	// rebalance timeout.
	cfg.DrainTimeout = 25 * time.Second

	startProcessor(t, cfg, db, first)
	waitOutcomes(t, db, 30)
	startProcessor(t, cfg, db, second)
	eventually(t, waitFor, "second replica gets work", func() (bool, string) {
		return second.completed.Load() > 0, fmt.Sprintf("%d outcomes recorded", countOutcomes(t, db))
	})
	if n := countOutcomes(t, db); n >= len(reqs) {
		t.Fatalf("all %d messages were done before the second replica joined; the test proves nothing", n)
	}
	waitOutcomes(t, db, len(reqs))
	env.waitCommittedToEnd(t)
	t.Logf("carrier calls: first replica %d, second %d", first.completed.Load(), second.completed.Load())
	checkOnceEach(t, db, shared, reqs)
	if first.completed.Load()+second.completed.Load() != int64(len(reqs)) {
		t.Errorf("%d + %d carrier calls for %d messages", first.completed.Load(), second.completed.Load(), len(reqs))
	}
	// A drain that cancelled calls at the carrier, for the next owner to
	// redo, would still show one completed call a message.
	if n := shared.cancelled.Load(); n != 0 {
		t.Errorf("%d carrier calls cancelled during a graceful rebalance, want 0", n)
	}
}

// TestProcessorGracefulShutdown stops a processor while messages are in
// flight. After Run returns no committed offset may pass a record whose
// outcome isn't recorded (that message would be lost), and a new processor
// must finish the rest without calling the carrier twice for any message.
func TestProcessorGracefulShutdown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		drain   time.Duration
		carrier func() *countingCarrier
	}{
		{
			name:    "in-flight messages finish within the drain timeout",
			drain:   30 * time.Second,
			carrier: func() *countingCarrier { return newCountingCarrier(0) },
		},
		{
			name:    "drain timeout hands in-flight messages back",
			drain:   time.Millisecond,
			carrier: func() *countingCarrier { return newCountingCarrier(0) },
		},
		{
			name:  "a call the carrier completes after cancellation is recorded, not repeated",
			drain: time.Millisecond,
			carrier: func() *countingCarrier {
				c := newCountingCarrier(0)
				c.ignoreCancel = true
				return c
			},
		},
	}
	// Calls take 50ms to 1s by message, so they finish out of offset order
	// and shutdown finds unfinished records below finished ones.
	spread := func(r sms.SendRequest) time.Duration {
		return 50*time.Millisecond + time.Duration(r.MessageID[0]%20)*50*time.Millisecond
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			env := newKafkaEnv(t, 3)
			carrier := tc.carrier()
			carrier.delayFor = spread
			reqs := testRequests(400)
			env.produceRequests(t, reqs...)
			cfg := testConfig(env)
			cfg.MaxInFlight = 40
			cfg.DrainTimeout = tc.drain

			p := startProcessor(t, cfg, db, carrier)
			// Stop once something is committed, so that the check below
			// covers committed records, with messages still at the carrier.
			eventually(t, waitFor, "first commit with messages in flight", func() (bool, string) {
				n := 0
				for _, off := range env.committed(t) {
					n += int(off)
				}
				return n > 0 && carrier.cur.Load() > 0, fmt.Sprintf("%d committed, %d at the carrier", n, carrier.cur.Load())
			})
			p.stop(t)
			done := countOutcomes(t, db)
			if done >= len(reqs) {
				t.Fatalf("all messages were done before shutdown; the test proves nothing")
			}
			committed := checkCommitsRecorded(t, env, db)
			t.Logf("at shutdown: %d outcomes recorded, %d offsets committed", done, committed)
			if committed == 0 {
				t.Errorf("nothing committed although %d outcomes were recorded", done)
			}

			startProcessor(t, cfg, db, carrier)
			waitOutcomes(t, db, len(reqs))
			env.waitCommittedToEnd(t)
			checkOnceEach(t, db, carrier, reqs)
		})
	}
}

// checkCommitsRecorded fails for every record below its partition's
// committed offset whose message has no recorded outcome, and returns how
// many records the commits cover.
func checkCommitsRecorded(tb testing.TB, env *kafkaEnv, db *sqlx.DB) int {
	tb.Helper()
	committed := env.committed(tb)
	outs := recordedOutcomes(tb, db)
	covered := 0
	for _, rec := range env.readAll(tb, env.topic) {
		if rec.Offset >= committed[rec.Partition] {
			continue
		}
		covered++
		var req sms.SendRequest
		if err := json.Unmarshal(rec.Value, &req); err != nil {
			tb.Fatalf("record %d/%d: %v", rec.Partition, rec.Offset, err)
		}
		if _, ok := outs[req.MessageID]; !ok {
			tb.Errorf("offset %d/%d committed (commit at %d) but message %s has no outcome: it is lost",
				rec.Partition, rec.Offset, committed[rec.Partition], req.MessageID)
		}
	}
	return covered
}

// TestFailureReason checks that reasons are cut to the API's limit, in
// characters as the API counts them, and left alone below it.
func TestFailureReason(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		in   string
	}{
		{"short", "permanent: blocked"},
		{"exactly the limit", strings.Repeat("a", sms.MaxFailureReason)},
		{"one character over", strings.Repeat("a", sms.MaxFailureReason+1)},
		// 1,000 characters but 3,000 bytes: within the limit.
		{"multi-byte characters at the limit", strings.Repeat("ü€😀", sms.MaxFailureReason/3) + "a"},
		{"multi-byte characters across the cut", strings.Repeat("ü€😀", 400)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := failureReason(tc.in)
			if utf8.RuneCountInString(tc.in) <= sms.MaxFailureReason {
				if got != tc.in {
					t.Fatalf("a reason within the limit was changed to %q", got)
				}
				return
			}
			if n := utf8.RuneCountInString(got); n != sms.MaxFailureReason || !strings.HasSuffix(got, "…") {
				t.Fatalf("cut reason is %d characters, ends %q; want %d ending in …", n, got[max(0, len(got)-8):], sms.MaxFailureReason)
			}
			if !strings.HasPrefix(tc.in, strings.TrimSuffix(got, "…")) {
				t.Fatal("cut reason is not a prefix of the original")
			}
			r := sms.DeliveryReport{MessageID: uuid.New(), Status: sms.StatusFailed, FailureReason: &got, ProcessedAt: time.Now()}
			if err := r.Validate(); err != nil {
				t.Fatalf("the API would refuse the cut reason: %v", err)
			}
		})
	}
}
