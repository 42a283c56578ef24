package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	smsplatform "github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// The fault tests print one line per scenario, collected for the issue
// note: "FAULT scenario figure…". Each figure is one the test measured,
// made by loss, outcomes, carrierLedger.String, recovered, dur or the
// test's own fmt.Sprintf; a figure the test did not measure is not passed,
// so not printed.
func report(t testing.TB, scenario string, figures ...string) {
	t.Logf("FAULT %-28s %s", scenario, strings.Join(figures, " "))
}

// loss counts the accepted messages (202s) that are not stored:
// "accepted=… lost=…".
func loss(t testing.TB, db *sqlx.DB, accepted []uuid.UUID) string {
	t.Helper()
	stored := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE id = ANY($1::uuid[])`, pqArray(uuidStrings(accepted)))
	return fmt.Sprintf("accepted=%d lost=%d", len(accepted), len(accepted)-stored)
}

// outcomes formats messages by status as finalCounts read them:
// "settled=… failed=…" (settled: SENT or a receipt's final status).
func outcomes(counts map[string]int) string {
	return fmt.Sprintf("settled=%d failed=%d", counts["SENT"]+counts["DELIVERED"]+counts["UNDELIVERED"]+counts["EXPIRED"], counts["FAILED"])
}

// recovered formats the time from a fault's end until recovery was
// observed; take it as the wait for recovery returns, not after the
// checks that follow.
func recovered(d time.Duration) string { return "recover=" + d.Round(100*time.Millisecond).String() }

// 1. Kafka stopped while 1,000 messages are posted: all 202; broker back:
// all reach a final status.
func TestFaultKafkaDown(t *testing.T) {
	b := privateKafka(t)
	p := newPlatformOn(t, platformtest.NewDatabase(t), []string{b.addr})
	p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms", "SMS_SIM_LEDGER=true")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 4*time.Minute)

	b.stop()
	l := postLoad(ctx, sender, 1000, 16)
	if l.statuses[202] != 1000 {
		t.Fatalf("with Kafka down: want 1000 × 202, got %v (errors: %v)", l.statuses, firstErrs(l))
	}
	db := openDB(t, p)
	var backlog int
	if err := db.Get(&backlog, `SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint FROM sms.outbox`); err != nil {
		t.Fatal(err)
	}
	if backlog == 0 {
		t.Fatalf("outbox is empty while Kafka is down: the messages cannot have been published")
	}
	restarted := time.Now()
	b.start()
	waitAllFinal(t, db, 3*time.Minute)
	recoverIn := time.Since(restarted)
	checkNoLoss(t, db, l.accepted)
	report(t, "kafka stopped during posts", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		readLedger(t, db).String(), recovered(recoverIn))
}

// 2. API stopped (SIGKILL) while the processor reports: outcomes wait in
// the processor's store and are applied after the API is back.
func TestFaultAPIDownWhileReporting(t *testing.T) {
	p := newPlatform(t)
	api := p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=300ms", "SMS_SIM_MAX_DELAY=800ms", "SMS_SIM_LEDGER=true")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	l := postAll(ctx, t, sender, 300, 8)
	db := openDB(t, p)
	// Kill the API once the processor has claimed every message (it
	// needs the API for that), while the carrier calls and reports flow.
	eventually(t, time.Minute, "every message claimed", func() (bool, string) {
		n := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE dispatched_at IS NULL`)
		return n == 0, fmt.Sprintf("%d not claimed", n)
	})
	api.kill()
	// Outcomes recorded after the kill wait for the API. Not all of them:
	// a claim the API committed but whose answer the kill cut off is
	// claimed again once the API is back.
	eventually(t, time.Minute, "reports waiting while the API is down", func() (bool, string) {
		n := countWhere(t, db, `SELECT count(*) FROM processor.unreported`)
		return n > 0, fmt.Sprintf("%d waiting", n)
	})
	restarted := time.Now()
	p.startAPI()
	waitAllFinal(t, db, 2*time.Minute)
	recoverIn := time.Since(restarted)
	checkNoLoss(t, db, l.accepted)
	report(t, "api killed while reporting", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		readLedger(t, db).String(), recovered(recoverIn))
}

// 3. A processor killed with SIGKILL under load while a second replica
// runs: every message reaches exactly one final status. Carrier calls may
// repeat only for messages in the killed replica's crash window, which is
// bounded by its in-flight window.
func TestFaultProcessorKilled(t *testing.T) {
	const window = 200
	p := newPlatform(t)
	p.startAPI()
	knobs := []string{"SMS_SIM_MIN_DELAY=20ms", "SMS_SIM_MAX_DELAY=200ms", "SMS_SIM_LEDGER=true", fmt.Sprintf("SMS_MAX_IN_FLIGHT=%d", window)}
	victim := p.startProcessor("processor-a", knobs...)
	p.startProcessor("processor-b", knobs...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	var l *load
	done := make(chan struct{})
	go func() { defer close(done); l = postLoad(ctx, sender, 1500, 8) }()
	eventually(t, time.Minute, "some deliveries recorded", atLeastDeliveries(t, db, 300))
	killed := time.Now()
	victim.kill()
	<-done
	if l.statuses[202] != 1500 {
		t.Fatalf("want 1500 × 202, got %v", l.statuses)
	}
	waitAllFinal(t, db, 2*time.Minute)
	recoverIn := time.Since(killed)
	checkNoLoss(t, db, l.accepted)
	ledger := readLedger(t, db)
	if ledger.Repeated > window {
		t.Errorf("%d repeated carrier calls, more than the killed replica's in-flight window %d", ledger.Repeated, window)
	}
	if recorded := deliveries(t, db); recorded != 1500 {
		t.Errorf("processor recorded %d outcomes for 1500 messages", recorded)
	}
	report(t, "processor SIGKILL, 2 replicas", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		ledger.String(), recovered(recoverIn))
}

// 4. Rebalance: processors join and leave during load; nothing is lost or
// delivered twice, and with cooperative-sticky the first replica keeps
// the partitions that didn't move.
func TestFaultRebalance(t *testing.T) {
	p := newPlatform(t)
	p.startAPI()
	knobs := []string{"SMS_SIM_MIN_DELAY=10ms", "SMS_SIM_MAX_DELAY=100ms", "SMS_SIM_LEDGER=true"}
	a := p.startProcessor("processor-a", knobs...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	var l *load
	done := make(chan struct{})
	go func() { defer close(done); l = postLoad(ctx, sender, 2000, 8) }()
	eventually(t, time.Minute, "first deliveries", atLeastDeliveries(t, db, 200))
	b := p.startProcessor("processor-b", knobs...)
	eventually(t, time.Minute, "more deliveries", atLeastDeliveries(t, db, 800))
	p.startProcessor("processor-c", knobs...)
	b.stop(t)
	<-done
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	ledger := readLedger(t, db)
	if ledger.Repeated != 0 || ledger.Cancelled != 0 {
		t.Errorf("%d carrier calls repeated and %d cancelled (handed back) across graceful rebalances, want none", ledger.Repeated, ledger.Cancelled)
	}
	// When B joined, A must have given up only some of its partitions.
	revokes := logEvents(a.output(), "partitions revoked")
	if len(revokes) == 0 {
		t.Fatalf("processor-a never revoked a partition: no rebalance happened\n%s", tail(a.output(), 20))
	}
	// Partitions by topic: the three lanes.
	n := 0
	for _, parts := range revokes[0]["partitions"].(map[string]any) {
		n += len(parts.([]any))
	}
	if n >= 18 {
		t.Errorf("processor-a revoked all %d partitions when a replica joined; cooperative-sticky revokes only those that move", n)
	}
	report(t, "rebalance (join, leave, join)", loss(t, db, l.accepted), outcomes(finalCounts(t, db)), ledger.String())
}

func logEvents(output, message string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(output, "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil && ev["message"] == message {
			out = append(out, ev)
		}
	}
	return out
}

// 5. Poison records produced straight to the topic end in the DLQ with
// their error; the consumer goes on.
func TestFaultPoisonRecords(t *testing.T) {
	p := newPlatform(t)
	p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms")
	var brokers []string
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "SMS_KAFKA_BROKERS="); ok {
			brokers = strings.Split(v, ",")
		}
	}
	cl, err := smsplatform.NewKafkaClient(brokers, zerolog.Nop(), kgo.ConsumeTopics(p.topic+".dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxTimeout(t, 2*time.Minute)
	poison := []string{"not json", `{"message_id":"not-a-uuid"}`, `{}`, `{"message_id":"0b9c4a40-0000-4000-8000-000000000001","sender":"+14155550100"}`}
	for _, v := range poison {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: p.topic, Key: []byte("+14155550100"), Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce poison: %v", err)
		}
	}
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	l := postLoad(ctx, sender, 20, 4)
	db := openDB(t, p)
	waitAllFinal(t, db, time.Minute)
	checkNoLoss(t, db, l.accepted)

	got := map[string]map[string]string{}
	for len(got) < len(poison) && ctx.Err() == nil {
		fetches := cl.PollFetches(ctx)
		fetches.EachRecord(func(r *kgo.Record) {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			got[string(r.Value)] = h
		})
	}
	for _, v := range poison {
		h, ok := got[v]
		if !ok {
			t.Errorf("poison record %q not in the DLQ", v)
			continue
		}
		if h["error"] == "" || h["original_topic"] != p.topic || h["original_partition"] == "" || h["original_offset"] == "" {
			t.Errorf("DLQ record %q lacks its error or origin headers: %v", v, h)
		}
	}
	report(t, "poison records", loss(t, db, l.accepted), outcomes(finalCounts(t, db)), fmt.Sprintf("poison_in_dlq=%d/%d", len(got), len(poison)))
}

// 6. Duplicate and out-of-order delivery reports leave final statuses and
// counters unchanged.
func TestFaultDuplicateReports(t *testing.T) {
	p := newPlatform(t)
	p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms", "SMS_SIM_FAILURE_RATE=0.5", "SMS_SIM_TRANSIENT_SHARE=0")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, time.Minute)
	l := postLoad(ctx, sender, 50, 4)
	db := openDB(t, p)
	waitAllDone(t, db, time.Minute)
	before := finalCounts(t, db)
	var statsBefore sms.Stats
	getJSON(t, "http://"+p.apiAddr+"/v1/messages/stats", p.apiKey, &statsBefore)

	// Replay every report, then the opposite outcome, as a late report.
	var reports []sms.DeliveryReport
	for _, id := range l.accepted {
		m, err := sender.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		reason := "late: contradicting report"
		opposite := sms.DeliveryReport{MessageID: id, Status: sms.StatusSent, ProcessedAt: time.Now()}
		if m.Status == sms.StatusSent {
			opposite = sms.DeliveryReport{MessageID: id, Status: sms.StatusFailed, FailureReason: &reason, ProcessedAt: time.Now()}
		}
		reports = append(reports, sms.DeliveryReport{MessageID: id, Status: m.Status, FailureReason: m.FailureReason, ProcessedAt: m.UpdatedAt}, opposite)
	}
	for _, r := range reports {
		body, _ := json.Marshal(r)
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.apiAddr+"/v1/internal/delivery-report", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer e2e-internal-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var res sms.ReportResult
		decodeErr := json.NewDecoder(resp.Body).Decode(&res)
		resp.Body.Close()
		if decodeErr != nil {
			t.Fatalf("report %s %s: status %d, answer not a report result: %v", r.MessageID, r.Status, resp.StatusCode, decodeErr)
		}
		if resp.StatusCode != http.StatusOK || res.Applied {
			t.Errorf("report %s %s: status %d applied=%v, want 200 and not applied", r.MessageID, r.Status, resp.StatusCode, res.Applied)
		}
	}
	after := finalCounts(t, db)
	var statsAfter sms.Stats
	getJSON(t, "http://"+p.apiAddr+"/v1/messages/stats", p.apiKey, &statsAfter)
	if fmt.Sprint(before) != fmt.Sprint(after) || !reflect.DeepEqual(statsBefore, statsAfter) {
		t.Errorf("duplicate reports changed something: rows %v -> %v, stats %+v -> %+v", before, after, statsBefore, statsAfter)
	}
	checkNoLoss(t, db, l.accepted)
	report(t, "duplicate + late reports", loss(t, db, l.accepted), outcomes(after), fmt.Sprintf("reports_replayed=%d", len(reports)))
}

func getJSON(t testing.TB, url, key string, dst any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(dst); err != nil {
		t.Fatal(err)
	}
}

// 7. PostgreSQL restarted under load: the API answers 503 problem+json
// while it is down and recovers without a restart; no 202 is lost.
func TestFaultPostgresRestart(t *testing.T) {
	pg, url := privatePostgres(t)
	p := newPlatformOn(t, url, nil)
	// The load retries at once on a 503, faster than the default rate
	// limit allows; this test is about the outage, not the limit.
	p.startAPI("SMS_RATE_LIMIT=1000000", "SMS_RATE_BURST=1000000")
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=20ms")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)

	const concurrency = 4
	total := &load{statuses: map[int]int{}}
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			postLoadInto(ctx, total, sender, 40, concurrency)
		}
	})
	eventually(t, time.Minute, "messages accepted before the outage", func() (bool, string) {
		n, _ := total.snapshot()
		return n >= 100, fmt.Sprintf("%d accepted", n)
	})
	pg.stop()
	eventually(t, time.Minute, "the outage answered 503", func() (bool, string) {
		_, n := total.snapshot()
		return n >= 10, fmt.Sprintf("%d × 503", n)
	})
	restarted := time.Now()
	pg.start()
	// The API must recover by itself: wait for 202s again.
	eventually(t, time.Minute, "API accepting again", func() (bool, string) {
		_, err := sender.Send(ctx, sms.SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: "probe"}, "probe-"+time.Now().Format(time.RFC3339Nano))
		return err == nil, fmt.Sprint(err)
	})
	recoveredIn := time.Since(restarted)
	close(stopLoad)
	wg.Wait()

	for code, n := range total.statuses {
		if code != 202 && code != 503 {
			t.Errorf("%d answers with status %d (0 = transport error; errors: %v); want only 202 and 503", n, code, firstErrs(total))
		}
	}
	db := openDB(t, p)
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, total.accepted)
	// A 503 means not stored, but for a commit whose answer the outage cut
	// off: only requests in flight when PostgreSQL went down can be that.
	var stored503 int
	if err := db.Get(&stored503, `SELECT count(*) FROM sms.messages WHERE text = ANY($1::text[])`, pqArray(total.unavailable)); err != nil {
		t.Fatal(err)
	}
	if stored503 > concurrency {
		t.Errorf("%d requests answered 503 were stored; at most the %d in flight at the outage may be", stored503, concurrency)
	}
	report(t, "postgres restarted", loss(t, db, total.accepted), outcomes(finalCounts(t, db)), recovered(recoveredIn),
		fmt.Sprintf("unavailable=%d stored_after_503=%d", total.statuses[503], stored503))
}

// 8. SIGTERM to each role under load: no message lost, no request cut off
// mid-way (every request is either a stored 202 or refused unstored).
func TestFaultGracefulShutdown(t *testing.T) {
	p := newPlatform(t)
	api := p.startAPI()
	knobs := []string{"SMS_SIM_MIN_DELAY=50ms", "SMS_SIM_MAX_DELAY=300ms", "SMS_SIM_LEDGER=true"}
	proc := p.startProcessor("processor", knobs...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	var l *load
	done := make(chan struct{})
	l = &load{statuses: map[int]int{}}
	go func() { defer close(done); postLoadInto(ctx, l, sender, 3000, 16) }()
	eventually(t, time.Minute, "messages flowing before the shutdown", atLeastDeliveries(t, db, 200))
	proc.terminate()
	api.stop(t)
	proc.wait(t)
	<-done
	var stored int
	if err := db.Get(&stored, `SELECT count(*) FROM sms.messages`); err != nil {
		t.Fatal(err)
	}
	if stored != l.statuses[202] {
		t.Errorf("%d requests answered 202 but %d messages stored: a request was cut off mid-way", l.statuses[202], stored)
	}
	if l.statuses[202] == 0 {
		t.Fatal("no message was accepted before the shutdown")
	}
	for code := range l.statuses {
		if code != 202 && code != 0 {
			t.Errorf("status %d during shutdown: %v", code, l.statuses)
		}
	}
	// Refused connections, and keep-alive connections the server closed
	// before reading the request on them ("server closed idle connection",
	// EOF, reset), never reached a handler: stored == 202s above proves no
	// request was cut off once taken.
	for _, err := range l.errs {
		msg := err.Error()
		if !errors.Is(err, syscall.ECONNREFUSED) && !strings.Contains(msg, "EOF") && !strings.Contains(msg, "connection reset") &&
			!strings.Contains(msg, "server closed idle connection") {
			t.Errorf("unexpected client error during shutdown: %v", err)
		}
	}
	restarted := time.Now()
	p.startAPI()
	p.startProcessor("processor-2", knobs...)
	waitAllFinal(t, db, 2*time.Minute)
	recoverIn := time.Since(restarted)
	checkNoLoss(t, db, l.accepted)
	ledger := readLedger(t, db)
	if ledger.Repeated != 0 || ledger.Cancelled != 0 {
		t.Errorf("%d carrier calls repeated and %d cancelled (handed back) across a graceful processor shutdown, want none", ledger.Repeated, ledger.Cancelled)
	}
	report(t, "SIGTERM api and processor", loss(t, db, l.accepted), outcomes(finalCounts(t, db)), ledger.String(), recovered(recoverIn))
}

func firstErrs(l *load) []error {
	if len(l.errs) > 3 {
		return l.errs[:3]
	}
	return l.errs
}
