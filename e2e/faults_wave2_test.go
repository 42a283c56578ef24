package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// Wave-2 fault tests (issues 13 to 16): the real smsctl binary as
// processes, with the SMSC (OpenSMPP's simulator, or the test's own SMSC
// where the simulator cannot do what the fault needs), the scheduler, the
// webhook dispatcher and the inbound path broken on purpose. Each prints
// one FAULT line (see report) with what it measured. Those where the
// broker plays no part run in the kfake lane only (kfakeLaneOnly); the
// others run in both lanes.

// ---------------------------------------------------------------- SMPP (issue 13)

// a. The SMSC killed (SIGKILL) under load and started again: nothing lost,
// nothing left PENDING, nothing FAILED; submit_sm repeated only for
// messages whose submit_sm_resp the kill cut off, so no more than the
// binds' windows. Messages the new SMSC accepted get their receipts
// (DELIVERED); those accepted before the kill may have lost theirs with
// the SMSC (EXPIRED by the receipt timeout), and none is DELIVERED by a
// receipt that was never sent for it.
func TestFaultSMSCKilledUnderLoad(t *testing.T) {
	const n, binds, window = 120, 4, 5
	kfakeLaneOnly(t)
	sim := startOpenSMSC(t, "SMS_SMSC_RECEIPT_RULES=")
	p := newPlatform(t)
	p.startAPI()
	p.startProcessorAt("processor", true, smppEnv(sim.addr, "smsctl",
		fmt.Sprintf("SMS_SMPP_BINDS=%d", binds), fmt.Sprintf("SMS_SMPP_WINDOW=%d", window), "SMS_SMPP_RECEIPT_TIMEOUT=20s")...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 4*time.Minute)
	db := openDB(t, p)

	l := postLoad(ctx, sender, n, 8)
	if l.statuses[202] != n {
		t.Fatalf("want %d × 202, got %v (errors: %v)", n, l.statuses, firstErrs(l))
	}
	eventually(t, time.Minute, "a quarter of the messages accepted by the SMSC", atLeastDeliveries(t, db, n/4))
	sim.run("kill")
	killed := time.Now()
	before := deliveries(t, db)
	if before >= n {
		t.Fatalf("every message was accepted before the kill: no load to break")
	}
	sim.run("start")
	waitAllDone(t, db, 3*time.Minute)
	recoverIn := time.Since(killed)
	checkNoLoss(t, db, l.accepted)
	counts := finalCounts(t, db)
	if counts["FAILED"] != 0 || counts["UNDELIVERED"] != 0 {
		t.Errorf("messages failed because the SMSC restarted: %v", counts)
	}

	// Repeats: every submit_sm the simulator logged, by destination (one
	// recipient per message).
	subs := sim.submitsByDestination()
	dups, missing := 0, 0
	for i := range n {
		c := subs[fmt.Sprintf("1415555%04d", i)]
		if c == 0 {
			missing++
		}
		dups += max(c-1, 0)
	}
	if missing > 0 {
		t.Errorf("%d messages never reached the SMSC according to its log", missing)
	}
	if dups > binds*window {
		t.Errorf("%d submit_sm repeated, more than the %d the binds' windows (%d × %d) had outstanding at the kill", dups, binds*window, binds, window)
	}

	// Receipts. The simulator numbers its message ids from Smsc2001 again
	// when it starts, so an id both runs gave names two messages: which
	// one its receipt is for cannot be told (the processor trusts the
	// SMSC's ids to be unique; a real SMSC's are). Those are counted, not
	// judged. A message whose id no other message has ends DELIVERED
	// exactly when the simulator sent a receipt for that id: always for
	// the restarted one; the killed one may have logged a receipt it did
	// not get to send.
	runs := sim.receiptsByRun()
	if len(runs) != 2 {
		t.Fatalf("the simulator log shows %d runs, want 2", len(runs))
	}
	var rows []struct {
		ID        string  `db:"id"`
		Status    string  `db:"status"`
		CarrierID *string `db:"carrier_message_id"`
	}
	if err := db.Select(&rows, `
        SELECT m.id, m.status, d.carrier_message_id FROM processor.deliveries d JOIN sms.messages m ON m.id = d.message_id
        WHERE d.status = 'SENT'`); err != nil {
		t.Fatal(err)
	}
	holders := map[string]int{}
	for _, m := range rows {
		if m.CarrierID != nil {
			holders[strings.ToUpper(*m.CarrierID)]++
		}
	}
	var reused, deliveredByNew int
	var wrong []string
	for _, m := range rows {
		if m.CarrierID == nil {
			wrong = append(wrong, fmt.Sprintf("%s %s without a carrier id", m.ID, m.Status))
			continue
		}
		id := strings.ToUpper(*m.CarrierID)
		if holders[id] > 1 {
			reused++
			continue
		}
		delivered := m.Status == string(sms.StatusDelivered)
		switch {
		case delivered && !runs[0][id] && !runs[1][id]:
			wrong = append(wrong, fmt.Sprintf("%s DELIVERED, yet no receipt was sent for its id %s", m.ID, id))
		case !delivered && runs[1][id]:
			wrong = append(wrong, fmt.Sprintf("%s %s, yet the restarted SMSC sent the receipt for its id %s", m.ID, m.Status, id))
		case delivered && runs[1][id]:
			deliveredByNew++
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d messages whose end disagrees with the receipts the SMSC sent, e.g. %v", len(wrong), wrong[:min(3, len(wrong))])
	}
	if deliveredByNew == 0 {
		t.Errorf("no message (with an id of its own) DELIVERED by a receipt of the restarted SMSC")
	}
	retried := countWhere(t, db, `SELECT count(*) FROM processor.deliveries WHERE attempts > 1`)
	report(t, "smsc killed under load", loss(t, db, l.accepted), outcomes(counts),
		fmt.Sprintf("recorded_before_kill=%d receipts_run1=%d receipts_run2=%d delivered_by_run2=%d ids_reused=%d wrong_end=%d repeated_submit_sm=%d (bound %d) retried=%d delivered=%d expired=%d",
			before, len(runs[0]), len(runs[1]), deliveredByNew, reused, len(wrong), dups, binds*window, retried, counts["DELIVERED"], counts["EXPIRED"]),
		recovered(recoverIn))
}

// b. A bind refused for a wrong password: the processor says so in its
// log and on /readyz, claims what it reads but spends no attempt on it
// (the messages stay PENDING, nothing recorded, no submit_sm); with the
// password fixed and the processor restarted, they go out, each on its
// first attempt.
func TestFaultSMPPBindRefused(t *testing.T) {
	const n = 20
	sim := startOpenSMSC(t, "SMS_SMSC_RECEIPT_RULES=")
	p := newPlatform(t)
	p.startAPI()
	bad, addr := p.startProcessorAt("processor-bad-password", false, smppEnv(sim.addr, "wrongpw")...)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	var why string
	eventually(t, time.Minute, "the refusal in the log and on /readyz", func() (bool, string) {
		logged := false
		for _, ev := range logEvents(bad.output(), "the SMSC refused our credentials: check SMS_SMPP_SYSTEM_ID and SMS_SMPP_PASSWORD") {
			if e, _ := ev["error"].(string); strings.Contains(e, "ESME_RINVPASWD") {
				logged = true
			}
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Checks map[string]string `json:"checks"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		why = body.Checks["carrier"]
		return logged && resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(why, "ESME_RINVPASWD"),
			fmt.Sprintf("logged=%v readyz=%d carrier=%q", logged, resp.StatusCode, why)
	})

	sender := client.New("http://"+p.apiAddr, p.apiKey)
	l := postAll(ctx, t, sender, n, 4)
	// The processor has read and claimed every message and holds them,
	// waiting for a bind, with no carrier call made.
	eventually(t, time.Minute, "every message claimed and held by the processor", func() (bool, string) {
		claimed := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE dispatched_at IS NOT NULL`)
		held := metric(t, addr, "sms_processor_in_flight")
		return claimed == n && held == n, fmt.Sprintf("claimed=%d in_flight=%v", claimed, held)
	})
	m := scrape(t, "http://"+addr+"/metrics")
	if m["sms_carrier_calls_total"] != 0 || m["sms_smpp_submits_total"] != 0 {
		t.Errorf("carrier calls while no bind is up: calls=%v submits=%v", m["sms_carrier_calls_total"], m["sms_smpp_submits_total"])
	}
	if got := deliveries(t, db); got != 0 {
		t.Errorf("%d outcomes recorded while the bind was refused, want 0", got)
	}
	if c := finalCounts(t, db); c["PENDING"] != n {
		t.Errorf("statuses while the bind was refused: %v, want %d PENDING", c, n)
	}
	if got := countWhere(t, db, `SELECT count(*) FROM sms.message_events WHERE type NOT IN ('message.accepted', 'message.queued')`); got != 0 {
		t.Errorf("%d attempt or outcome events while the bind was refused, want 0", got)
	}
	if subs := sim.submitsByDestination(); len(subs) != 0 {
		t.Errorf("the SMSC got submit_sm from a refused bind: %v", subs)
	}
	refusals := metric(t, addr, `sms_smpp_errors_total{bind="1",status="ESME_RINVPASWD"}`)

	bad.stop(t)
	fixed := time.Now()
	p.startProcessorAt("processor", true, smppEnv(sim.addr, "smsctl")...)
	waitAllDone(t, db, 2*time.Minute)
	recoverIn := time.Since(fixed)
	checkNoLoss(t, db, l.accepted)
	counts := finalCounts(t, db)
	if counts["DELIVERED"] != n {
		t.Errorf("after the fix: %v, want %d DELIVERED", counts, n)
	}
	if got := countWhere(t, db, `SELECT count(*) FROM processor.deliveries WHERE attempts <> 1`); got != 0 {
		t.Errorf("%d messages needed more than one attempt: the refused bind spent attempts", got)
	}
	report(t, "smpp bind refused (password)", loss(t, db, l.accepted), outcomes(counts),
		fmt.Sprintf("bind_refusals=%v held_without_attempt=%d", refusals, n), recovered(recoverIn))
}

// c. Throttling: an SMSC that answers ESME_RTHROTTLED above its rate.
// OpenSMPP's simulator never throttles, so this runs
// against the test's SMSC (without receipts: this is about submits).
// Throttled messages wait and go again without spending attempts
// (SMS_MAX_ATTEMPTS=2 would fail a message after one transient error):
// none fails, each is accepted once, on its first attempt.
func TestFaultSMPPThrottled(t *testing.T) {
	const n, rate = 60, 25.0
	kfakeLaneOnly(t)
	smsc := startTestSMSC(t)
	tokens, last := 5.0, time.Now()
	smsc.configure(func(s *testSMSC) {
		s.noReceipts = true
		s.throttle = func(now time.Time) bool {
			tokens = min(5, tokens+now.Sub(last).Seconds()*rate)
			last = now
			if tokens < 1 {
				return true
			}
			tokens--
			return false
		}
	})
	p := newPlatform(t)
	p.startAPI()
	_, addr := p.startProcessorAt("processor", true, smppEnv(smsc.addr(), "smsctl",
		"SMS_SMPP_BINDS=2", "SMS_SMPP_WINDOW=10", "SMS_MAX_ATTEMPTS=2", "SMS_RETRY_BACKOFF=100ms")...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	start := time.Now()
	l := postAll(ctx, t, sender, n, 8)
	waitAllFinal(t, db, 2*time.Minute)
	took := time.Since(start)
	checkNoLoss(t, db, l.accepted)
	counts := finalCounts(t, db)
	if counts["SENT"] != n {
		t.Errorf("statuses %v, want %d SENT: throttling must not fail messages", counts, n)
	}
	throttled, accepted := 0, map[string]int{}
	for _, s := range smsc.submitLedger() {
		if s.messageID == "" {
			throttled++
		} else {
			accepted[s.dest]++
		}
	}
	if throttled == 0 {
		t.Fatal("the SMSC never throttled: the fault did not happen")
	}
	dups := 0
	for _, c := range accepted {
		dups += c - 1
	}
	if len(accepted) != n || dups != 0 {
		t.Errorf("the SMSC accepted %d messages (%d twice), want each of %d once", len(accepted), dups, n)
	}
	if got := countWhere(t, db, `SELECT count(*) FROM processor.deliveries WHERE attempts <> 1 OR status <> 'SENT'`); got != 0 {
		t.Errorf("%d messages spent more than one attempt or were not SENT", got)
	}
	waited := countWhere(t, db, `SELECT count(*) FROM processor.deliveries WHERE attempt_log @> '[{"result": "throttled"}]'`)
	if waited == 0 {
		t.Error("no attempt log records a throttled call, yet the SMSC throttled")
	}
	m := scrape(t, "http://"+addr+"/metrics")
	report(t, "smpp throttled", loss(t, db, l.accepted), outcomes(counts),
		fmt.Sprintf("throttled_answers=%d messages_throttled=%d processor_throttled_submits=%v smsc_rate=%.0f/s took=%s",
			throttled, waited, m[`sms_smpp_submits_total{bind="1",result="throttled"}`]+m[`sms_smpp_submits_total{bind="2",result="throttled"}`],
			rate, took.Round(100*time.Millisecond)))
}

// d. Receipts arriving on another replica: two processors bound to the
// same SMSC as the same system_id; once every outcome is recorded, the
// processor that submitted some of the messages stops (SIGTERM, unbinding)
// and only then does the SMSC send the receipts, all on the other
// processor's session. OpenSMPP's simulator sends a receipt only on the
// submitting session and drops it when that session is gone, so this
// runs against the test's SMSC, which sends
// receipts on any bound session of the system_id. Every message still
// ends DELIVERED.
func TestFaultReceiptOnOtherReplica(t *testing.T) {
	const n = 100
	smsc := startTestSMSC(t)
	smsc.configure(func(s *testSMSC) { s.holdReceipts = true })
	p := newPlatform(t)
	p.startAPI()
	env := smppEnv(smsc.addr(), "smsctl", "SMS_SMPP_BINDS=1", "SMS_SMPP_RECEIPT_TIMEOUT=60s")
	a, _ := p.startProcessorAt("processor-a", true, env...)
	b, addrB := p.startProcessorAt("processor-b", true, env...)
	if got := smsc.boundSessions(); got != 2 {
		t.Fatalf("%d sessions bound, want 2 (one per processor)", got)
	}
	// Both in the group with partitions of their own, so that both submit.
	eventually(t, time.Minute, "partitions assigned to both processors", func() (bool, string) {
		ha, hb := heldAfter(partitionEvents(a.output())), heldAfter(partitionEvents(b.output()))
		return ha > 0 && hb > 0, fmt.Sprintf("processor-a holds %d, processor-b %d", ha, hb)
	})
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	l := postAll(ctx, t, sender, n, 8)
	waitAllFinal(t, db, 2*time.Minute)
	bySession := map[int]int{}
	for _, s := range smsc.submitLedger() {
		bySession[s.session]++
	}
	if len(bySession) != 2 {
		t.Fatalf("messages submitted on %d sessions (%v), want both processors'", len(bySession), bySession)
	}
	a.stop(t)
	eventually(t, 30*time.Second, "processor-a's session gone", func() (bool, string) {
		got := smsc.boundSessions()
		return got == 1, fmt.Sprintf("%d bound", got)
	})
	released := time.Now()
	smsc.configure(func(s *testSMSC) { s.holdReceipts = false })
	waitAllDone(t, db, 2*time.Minute)
	recoverIn := time.Since(released)
	checkNoLoss(t, db, l.accepted)
	counts := finalCounts(t, db)
	if counts["DELIVERED"] != n {
		t.Errorf("statuses %v, want %d DELIVERED", counts, n)
	}
	elsewhere := 0
	for _, r := range smsc.receiptLedger() {
		if r.ackedOn != 0 && r.ackedOn != r.submitter {
			elsewhere++
		}
	}
	if elsewhere == 0 {
		t.Fatal("no receipt went to another session than its submitter's: the fault did not happen")
	}
	if rb := metric(t, addrB, "sms_receipts_total"); int(rb) != n {
		t.Errorf("processor-b recorded %v receipts, want all %d", rb, n)
	}
	report(t, "receipts on the other replica", loss(t, db, l.accepted), outcomes(counts),
		fmt.Sprintf("receipts_for_the_stopped_replica=%d receipts_own=%d", elsewhere, n-elsewhere), recovered(recoverIn))
}

// d2. Receipts racing their outcome: an SMSC that sends each receipt right
// after its submit_sm_resp, or for every other message just before it
// (OpenSMPP's simulator sends them 0-5 s late, so rarely inside the
// window). The receipt is then recorded while (or before) the outcome
// that records the message's part is being recorded. Every message must still end DELIVERED; a
// receipt left unmatched leaves its message SENT until the receipt
// timeout (30 s here) makes it EXPIRED.
func TestFaultReceiptRacesOutcome(t *testing.T) {
	const n = 150
	kfakeLaneOnly(t)
	smsc := startTestSMSC(t)
	smsc.configure(func(s *testSMSC) { s.receiptFirst = true })
	p := newPlatform(t)
	p.startAPI()
	p.startProcessorAt("processor", true, smppEnv(smsc.addr(), "smsctl", "SMS_SMPP_BINDS=2", "SMS_SMPP_RECEIPT_TIMEOUT=30s")...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	l := postAll(ctx, t, sender, n, 8)
	waitAllDone(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	counts := finalCounts(t, db)
	acked, early := 0, 0
	for _, r := range smsc.receiptLedger() {
		if r.ackedOn != 0 {
			acked++
		}
		if r.beforeResp {
			early++
		}
	}
	if early == 0 {
		t.Error("no receipt went ahead of its submit_sm_resp: half of the race did not happen")
	}
	unmatched := countWhere(t, db, `SELECT count(*) FROM processor.receipts r WHERE r.message_id IS NULL
        AND EXISTS (SELECT 1 FROM processor.carrier_parts p WHERE p.carrier_id = r.carrier_id)`)
	if counts["DELIVERED"] != n || unmatched != 0 {
		t.Errorf("statuses %v, want %d DELIVERED; %d receipts acknowledged to the SMSC are stored unmatched though their part is recorded",
			counts, n, unmatched)
	}
	report(t, "receipts racing the outcome", loss(t, db, l.accepted), outcomes(counts),
		fmt.Sprintf("receipts_acked=%d receipts_before_resp=%d receipts_unmatched=%d", acked, early, unmatched))
}

// ---------------------------------------------------------------- scheduling (issue 15)

// releaseEvents counts, per message of ids, the message.queued events
// that released it from SCHEDULED (the event before it says SCHEDULED),
// and returns how many messages had none and how many more than one.
func releaseEvents(t testing.TB, db *sqlx.DB, ids []uuid.UUID) (none, twice int) {
	t.Helper()
	var rows []struct {
		N int `db:"n"`
	}
	if err := db.Select(&rows, `
        SELECT count(e.message_id) AS n FROM unnest($1::uuid[]) AS m(id)
        LEFT JOIN sms.message_events e ON e.message_id = m.id AND e.type = 'message.queued'
            AND EXISTS (SELECT 1 FROM sms.message_events b WHERE b.message_id = e.message_id AND b.sequence = e.sequence - 1 AND b.status = 'SCHEDULED')
        GROUP BY m.id`, pqArray(uuidStrings(ids))); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		switch {
		case r.N == 0:
			none++
		case r.N > 1:
			twice++
		}
	}
	return none, twice
}

// fallDue brings the scheduled messages forward so that those due at
// base fall due now, the others as far after it as they were. Posting
// thousands takes longer than any fixed lead on a busy machine, so the
// tests schedule them an hour ahead and, once all are stored, do this.
func fallDue(t testing.TB, db *sqlx.DB, base time.Time) {
	t.Helper()
	if _, err := db.Exec(`UPDATE sms.messages SET send_at = now() + (send_at - $1::timestamptz) WHERE status = 'SCHEDULED'`, base); err != nil {
		t.Fatal(err)
	}
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// e. The API killed (SIGKILL) while its scheduler releases a due batch of
// thousands (1,000 per statement): after the restart every message is
// released exactly once (one release event each), reaches the carrier
// once, and ends final.
func TestFaultAPIKilledDuringRelease(t *testing.T) {
	const n = 2500
	p := newPlatform(t)
	limits := []string{"SMS_RATE_LIMIT=1000000", "SMS_RATE_BURST=1000000"}
	api := p.startAPI(limits...)
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms", "SMS_SIM_FAILURE_RATE=0", "SMS_SIM_LEDGER=true",
		"SMS_SIM_RECEIPT_MIN_DELAY=10ms", "SMS_SIM_RECEIPT_MAX_DELAY=200ms")
	ctx := ctxTimeout(t, 4*time.Minute)
	db := openDB(t, p)

	due := time.Now().Add(time.Hour)
	ids := scheduleBatches(ctx, t, p.apiAddr, p.apiKey, n, 1_000_000, "due "+uuid.NewString()[:8], func(int) time.Time { return due })
	if got := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE status = 'SCHEDULED'`); got != n {
		t.Fatalf("%d of %d messages SCHEDULED after posting", got, n)
	}
	fallDue(t, db, due)
	// Kill as soon as a first release statement has committed, while the
	// others are still to run: polled tightly, the window is a few
	// hundred milliseconds.
	var released int
	for {
		if err := db.Get(&released, `SELECT count(*) FROM sms.messages WHERE status <> 'SCHEDULED'`); err != nil {
			t.Fatal(err)
		}
		if released > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the scheduler never released the due messages")
		}
		time.Sleep(5 * time.Millisecond)
	}
	api.kill()
	killed := time.Now()
	atKill := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE status <> 'SCHEDULED'`)
	if atKill >= n {
		t.Fatalf("all %d messages were released before the kill: the fault missed the release", n)
	}
	p.startAPI(limits...)
	eventually(t, time.Minute, "every message released after the restart", func() (bool, string) {
		got := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE status = 'SCHEDULED'`)
		return got == 0, fmt.Sprintf("%d still SCHEDULED", got)
	})
	releasedIn := time.Since(killed)
	waitAllDone(t, db, 3*time.Minute)
	recoverIn := time.Since(killed)
	checkNoLoss(t, db, ids)
	none, twice := releaseEvents(t, db, ids)
	if none != 0 || twice != 0 {
		t.Errorf("release events: %d messages without one, %d with more than one; want exactly one each", none, twice)
	}
	ledger := readLedger(t, db)
	if ledger.Repeated != 0 {
		t.Errorf("%d carrier calls repeated: a message released twice reached the carrier twice", ledger.Repeated)
	}
	missing := countWhere(t, db, `SELECT count(*) FROM unnest($1::uuid[]) AS m(id) WHERE NOT EXISTS (
        SELECT 1 FROM processor.carrier_calls c WHERE c.message_id = m.id AND c.outcome <> 'cancelled')`, pqArray(uuidStrings(ids)))
	if missing != 0 {
		t.Errorf("%d released messages never reached the carrier", missing)
	}
	report(t, "api killed during release", loss(t, db, ids), outcomes(finalCounts(t, db)), ledger.String(),
		fmt.Sprintf("released_at_kill=%d/%d released_twice=%d", atKill, n, twice),
		"release_done="+releasedIn.Round(100*time.Millisecond).String(), recovered(recoverIn))
}

// f. Cancels racing the release and the processor's claim: cancels for
// every message, in random order, from the moment the first falls due
// while the rest fall due over two seconds. Each message ends CANCELED
// (and never reached the carrier) or was sent (and its cancel answered
// 409), never both. The fault happened when cancels met released
// messages (how many came before their claim and how many after it
// depends on the machine's speed: both are reported, not required).
func TestFaultCancelRacesRelease(t *testing.T) {
	const n = 1500
	kfakeLaneOnly(t) // the race is between two statements in PostgreSQL
	p := newPlatform(t)
	p.startAPI("SMS_RATE_LIMIT=1000000", "SMS_RATE_BURST=1000000")
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms", "SMS_SIM_FAILURE_RATE=0", "SMS_SIM_LEDGER=true",
		"SMS_SIM_RECEIPT_MIN_DELAY=10ms", "SMS_SIM_RECEIPT_MAX_DELAY=200ms")
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	sender := client.New("http://"+p.apiAddr, p.apiKey)

	due := time.Now().Add(time.Hour)
	ids := scheduleBatches(ctx, t, p.apiAddr, p.apiKey, n, 2_000_000, "cancel "+uuid.NewString()[:8],
		func(i int) time.Time { return due.Add(time.Duration(i%40) * 50 * time.Millisecond) })
	if got := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE status = 'SCHEDULED'`); got != n {
		t.Fatalf("%d of %d messages SCHEDULED after posting", got, n)
	}
	fallDue(t, db, due)
	eventually(t, time.Minute, "the first messages released", func() (bool, string) {
		got := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE status <> 'SCHEDULED'`)
		return got > 0, fmt.Sprintf("%d released", got)
	})
	order := rand.Perm(n)
	answers := make([]int, n) // HTTP status per message (0: transport error)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for i := range jobs {
				_, err := sender.Cancel(ctx, ids[i])
				var apiErr *client.APIError
				switch {
				case err == nil:
					answers[i] = 200
				case errors.As(err, &apiErr):
					answers[i] = apiErr.Problem.Status
				}
			}
		})
	}
	for _, i := range order {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	waitAllDone(t, db, 2*time.Minute)
	checkNoLoss(t, db, ids)
	var rows []struct {
		ID       string `db:"id"`
		Status   string `db:"status"`
		Calls    int    `db:"calls"`
		Sent     bool   `db:"sent"`
		Released bool   `db:"released"`
	}
	if err := db.Select(&rows, `
        SELECT m.id, m.status,
            (SELECT count(*) FROM processor.carrier_calls c WHERE c.message_id = m.id AND c.outcome <> 'cancelled') AS calls,
            EXISTS (SELECT 1 FROM processor.deliveries d WHERE d.message_id = m.id AND d.status = 'SENT') AS sent,
            EXISTS (SELECT 1 FROM sms.message_events e WHERE e.message_id = m.id AND e.type = 'message.queued') AS released
        FROM sms.messages m WHERE m.id = ANY($1::uuid[])`, pqArray(uuidStrings(ids))); err != nil {
		t.Fatal(err)
	}
	answer := map[string]int{}
	for i, id := range ids {
		answer[id.String()] = answers[i]
	}
	var canceledScheduled, canceledPending, tooLate int
	var both, wrong []string
	for _, r := range rows {
		a := answer[r.ID]
		switch {
		case r.Status == string(sms.StatusCanceled):
			if r.Calls > 0 || r.Sent {
				both = append(both, fmt.Sprintf("%s: CANCELED with %d carrier calls", r.ID, r.Calls))
			}
			if a != 200 {
				wrong = append(wrong, fmt.Sprintf("%s: CANCELED but its cancel answered %d", r.ID, a))
			}
			if r.Released {
				canceledPending++
			} else {
				canceledScheduled++
			}
		default:
			tooLate++
			if a != http.StatusConflict {
				wrong = append(wrong, fmt.Sprintf("%s: %s but its cancel answered %d", r.ID, r.Status, a))
			}
			if r.Calls != 1 {
				wrong = append(wrong, fmt.Sprintf("%s: %s after %d carrier calls", r.ID, r.Status, r.Calls))
			}
		}
	}
	if len(both) > 0 {
		t.Errorf("%d messages both CANCELED and sent to the carrier, e.g. %v", len(both), both[:min(3, len(both))])
	}
	if len(wrong) > 0 {
		t.Errorf("%d messages whose cancel answer disagrees with their end, e.g. %v", len(wrong), wrong[:min(5, len(wrong))])
	}
	skipped := countWhere(t, db, `SELECT count(*) FROM processor.deliveries WHERE status = 'SKIPPED'`)
	// The race: cancels met released messages, before their claim (a
	// cancel of a PENDING message; if it was already published, the claim
	// is refused, SKIPPED) or after it (409).
	if canceledPending+tooLate == 0 {
		t.Fatalf("no race: all %d cancels came while their messages were SCHEDULED", canceledScheduled)
	}
	report(t, "cancel racing the release", loss(t, db, ids), outcomes(finalCounts(t, db)),
		fmt.Sprintf("canceled_while_scheduled=%d canceled_after_release=%d too_late_409=%d claims_refused_as_canceled=%d canceled_and_sent=%d",
			canceledScheduled, canceledPending, tooLate, skipped, len(both)))
}

// ---------------------------------------------------------------- webhooks (issue 14)

// webhookEnv makes the dispatcher quick for tests: retries within 0.1-2 s
// (over about 40 s in all), an attempt timing out after 1 s.
var webhookEnv = []string{
	"SMS_WEBHOOK_ALLOW_PRIVATE=true", "SMS_WEBHOOK_TIMEOUT=1s",
	"SMS_WEBHOOK_RETRY_SCHEDULE=100ms,200ms,400ms,800ms" + strings.Repeat(",2s", 20),
}

// fastSim is a simulated carrier that delivers and sends receipts quickly,
// so that each message makes its events (accepted, queued, attempt, sent,
// delivered or undelivered or expired) within a second.
var fastSim = []string{"SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=20ms", "SMS_SIM_FAILURE_RATE=0",
	"SMS_SIM_RECEIPT_MIN_DELAY=10ms", "SMS_SIM_RECEIPT_MAX_DELAY=300ms"}

// checkWebhooks compares what the receiver accepted with the deliveries
// the API queued for endpoint: every queued delivery arrived (its
// webhook-id accepted), none failed, each webhook-id always with the same
// body, events of a message in sequence order, and every event of the
// messages had a delivery. It returns the receiver's tally.
func checkWebhooks(t testing.TB, db *sqlx.DB, sink *hookSink, endpoint string, ids []uuid.UUID) hookTally {
	t.Helper()
	var queued []struct {
		WebhookID string `db:"webhook_id"`
		State     string `db:"state"`
	}
	if err := db.Select(&queued, `SELECT webhook_id, state FROM sms.webhook_deliveries WHERE endpoint_id = $1`, endpoint); err != nil {
		t.Fatal(err)
	}
	tally := sink.tally()
	var lost, failed int
	for _, q := range queued {
		if !tally.ids[q.WebhookID] {
			lost++
		}
		if q.State == "failed" {
			failed++
		}
	}
	if lost > 0 || failed > 0 {
		t.Errorf("%d of %d queued deliveries never accepted by the receiver, %d failed for good", lost, len(queued), failed)
	}
	if tally.distinct != len(queued) {
		t.Errorf("receiver accepted %d distinct webhook-ids, the API queued %d deliveries", tally.distinct, len(queued))
	}
	if tally.changed != 0 || tally.bad != 0 {
		t.Errorf("%d posts changed their body under the same webhook-id, %d failed verification", tally.changed, tally.bad)
	}
	if tally.outOfOrder != 0 {
		t.Errorf("%d events accepted after a later event of the same message", tally.outOfOrder)
	}
	// Every event of every message made a delivery, and arrived: the
	// sequences accepted per message are 1..last_seq.
	var seqs []struct {
		ID      string `db:"id"`
		LastSeq int    `db:"last_seq"`
	}
	if err := db.Select(&seqs, `SELECT id, last_seq FROM sms.messages WHERE id = ANY($1::uuid[])`, pqArray(uuidStrings(ids))); err != nil {
		t.Fatal(err)
	}
	var gaps []string
	for _, m := range seqs {
		got := append([]int(nil), tally.seqs[m.ID]...)
		sort.Ints(got)
		ok := len(got) == m.LastSeq
		for i := 0; ok && i < len(got); i++ {
			ok = got[i] == i+1
		}
		if !ok {
			gaps = append(gaps, fmt.Sprintf("%s: got %v of 1..%d", m.ID, got, m.LastSeq))
		}
	}
	if len(gaps) > 0 {
		t.Errorf("%d messages whose events did not all arrive, e.g. %v", len(gaps), gaps[:min(3, len(gaps))])
	}
	return tally
}

// webhookPlatform is a platform whose account has one endpoint at a
// receiver of the test's.
func webhookPlatform(t *testing.T, apiEnv ...string) (*platform, *proc, *hookSink, string) {
	p := newPlatform(t)
	api := p.startAPI(append(append([]string{}, webhookEnv...), apiEnv...)...)
	sink := startHookSink(t)
	id, secret := createEndpoint(t, p.apiAddr, p.apiKey, sink.url())
	sink.setSecret(secret)
	return p, api, sink, id
}

func pendingDeliveries(t testing.TB, db *sqlx.DB) int {
	return countWhere(t, db, `SELECT count(*) FROM sms.webhook_deliveries WHERE state = 'pending'`)
}

// waitDelivered waits until no delivery is pending and every message is
// final (so that no event is still to come).
func waitDelivered(t testing.TB, db *sqlx.DB, within time.Duration) {
	t.Helper()
	eventually(t, within, "every webhook delivered", func() (bool, string) {
		c := finalCounts(t, db)
		n := pendingDeliveries(t, db)
		return n == 0 && c["PENDING"] == 0 && c["SENT"] == 0 && c["SCHEDULED"] == 0, fmt.Sprintf("%d pending, messages %v", n, c)
	})
}

// g. The receiver down (port closed) for a while under load: every event
// arrives once it is back, each under its one webhook-id with the same
// body, in sequence order per message; duplicates only where a post was
// taken but its answer lost (at most the posts in flight at the outage).
func TestFaultWebhookReceiverDown(t *testing.T) {
	const n, perEndpoint = 200, 4
	kfakeLaneOnly(t)
	p, _, sink, endpoint := webhookPlatform(t)
	p.startProcessor("processor", fastSim...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	var l *load
	done := make(chan struct{})
	go func() { defer close(done); l = postLoad(ctx, sender, n, 4) }()
	eventually(t, time.Minute, "webhooks arriving", func() (bool, string) {
		got := sink.tally().accepted
		return got >= 20, fmt.Sprintf("%d accepted", got)
	})
	sink.down()
	downAt := time.Now()
	// Down while the load goes on and until a delivery was refused six
	// times (past the schedule's short waits, 3.5 s at least), so that
	// events pile up and retries are spread over the outage.
	eventually(t, time.Minute, "the load done and a delivery refused six times", func() (bool, string) {
		most := countWhere(t, db, `SELECT COALESCE(max(attempts), 0) FROM sms.webhook_deliveries`)
		select {
		case <-done:
			return most >= 6, fmt.Sprintf("at most %d attempts", most)
		default:
			return false, "load running"
		}
	})
	backlog := pendingDeliveries(t, db)
	outage := time.Since(downAt)
	sink.up()
	back := time.Now()
	if l.statuses[202] != n {
		t.Fatalf("want %d × 202, got %v", n, l.statuses)
	}
	waitDelivered(t, db, 2*time.Minute)
	recoverIn := time.Since(back)
	tally := checkWebhooks(t, db, sink, endpoint, l.accepted)
	if tally.duplicates > perEndpoint {
		t.Errorf("%d duplicates, more than the %d posts in flight at the outage", tally.duplicates, perEndpoint)
	}
	retries := countWhere(t, db, `SELECT count(*) FROM sms.webhook_attempts WHERE state = 'retrying'`)
	report(t, "webhook receiver down", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		fmt.Sprintf("outage=%s backlog_at_return=%d retried_attempts=%d %s", outage.Round(100*time.Millisecond), backlog, retries, tally),
		recovered(recoverIn))
}

// h. The API killed (SIGKILL) with deliveries queued and some in flight
// to a slow receiver: after the restart every event arrives; those the
// dead replica held come back once their lease ends.
func TestFaultWebhookAPIKilled(t *testing.T) {
	const n, perEndpoint = 150, 4
	kfakeLaneOnly(t)
	p, api, sink, endpoint := webhookPlatform(t)
	p.startProcessor("processor", fastSim...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	sink.set(300*time.Millisecond, 0) // a slow receiver: a queue builds, posts are in flight
	l := postAll(ctx, t, sender, n, 4)
	eventually(t, time.Minute, "deliveries queued and in flight", func() (bool, string) {
		leased := countWhere(t, db, `SELECT count(*) FROM sms.webhook_deliveries WHERE state = 'pending' AND leased_until > now()`)
		pending := pendingDeliveries(t, db)
		return leased > 0 && pending >= 200, fmt.Sprintf("%d pending, %d in flight", pending, leased)
	})
	api.kill()
	killed := time.Now()
	backlog := pendingDeliveries(t, db)
	leased := countWhere(t, db, `SELECT count(*) FROM sms.webhook_deliveries WHERE state = 'pending' AND leased_until > now()`)
	sink.set(0, 0)
	p.startAPI(webhookEnv...)
	waitDelivered(t, db, 2*time.Minute)
	recoverIn := time.Since(killed)
	tally := checkWebhooks(t, db, sink, endpoint, l.accepted)
	if tally.duplicates > perEndpoint {
		t.Errorf("%d duplicates, more than the %d posts in flight at the kill", tally.duplicates, perEndpoint)
	}
	report(t, "webhook api killed", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		fmt.Sprintf("pending_at_kill=%d in_flight_at_kill=%d %s", backlog, leased, tally), recovered(recoverIn))
}

// i. A receiver slower than SMS_WEBHOOK_TIMEOUT (1 s here; it answers
// after 3 s): every attempt times out and is retried with the same
// webhook-id and body; once it is fast again everything arrives.
func TestFaultWebhookSlowReceiver(t *testing.T) {
	const n = 60
	kfakeLaneOnly(t)
	p, _, sink, endpoint := webhookPlatform(t)
	p.startProcessor("processor", fastSim...)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	sink.set(3*time.Second, 0)
	l := postAll(ctx, t, sender, n, 4)
	eventually(t, time.Minute, "attempts timed out and retried", func() (bool, string) {
		got := countWhere(t, db, `SELECT count(*) FROM sms.webhook_attempts WHERE state = 'retrying' AND status_code IS NULL`)
		return got >= 10, fmt.Sprintf("%d timed out", got)
	})
	var timeoutErr string
	if err := db.Get(&timeoutErr, `SELECT COALESCE(error, '') FROM sms.webhook_attempts WHERE state = 'retrying' AND status_code IS NULL LIMIT 1`); err != nil {
		t.Fatalf("a timed-out attempt's error: %v", err)
	}
	if accepted := sink.tally().accepted; accepted != 0 {
		t.Errorf("the receiver took %d posts while slower than the timeout: the dispatcher waited past SMS_WEBHOOK_TIMEOUT", accepted)
	}
	sink.set(0, 0)
	fast := time.Now()
	waitDelivered(t, db, 2*time.Minute)
	recoverIn := time.Since(fast)
	tally := checkWebhooks(t, db, sink, endpoint, l.accepted)
	if tally.abandoned == 0 {
		t.Error("the receiver saw no post abandoned by the dispatcher")
	}
	// A post abandoned by the dispatcher was sent again under the same id.
	sink.mu.Lock()
	abandonedIDs := map[string]bool{}
	for _, post := range sink.posts {
		if post.outcome == "abandoned" {
			abandonedIDs[post.id] = true
		}
	}
	sink.mu.Unlock()
	for id := range abandonedIDs {
		if !tally.ids[id] {
			t.Errorf("webhook-id %s timed out and was never accepted under the same id", id)
			break
		}
	}
	timedOut := countWhere(t, db, `SELECT count(*) FROM sms.webhook_attempts WHERE state = 'retrying' AND status_code IS NULL`)
	report(t, "webhook receiver too slow", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		fmt.Sprintf("timed_out_attempts=%d ids_timed_out=%d error=%q %s", timedOut, len(abandonedIDs), cut(timeoutErr, 60), tally),
		recovered(recoverIn))
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// j. Two API replicas sharing the delivery queue: both dispatch, every
// event arrives once (duplicates counted: a lease that ran out would show
// here), in order per message.
func TestFaultWebhookTwoReplicas(t *testing.T) {
	const n = 300
	kfakeLaneOnly(t)
	p, _, sink, endpoint := webhookPlatform(t)
	second := freeAddr(t)
	p.startAPIOn("api-2", second, webhookEnv...)
	p.startProcessor("processor", fastSim...)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)
	sink.set(20*time.Millisecond, 0) // each replica's 4 posts to the endpoint take a while: the other finds work
	// The load goes to both replicas; the processor reports to the first.
	var ls []*load
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, addr := range []string{p.apiAddr, second} {
		wg.Go(func() {
			l := postLoad(ctx, client.New("http://"+addr, p.apiKey), n/2, 4)
			mu.Lock()
			ls = append(ls, l)
			mu.Unlock()
		})
	}
	wg.Wait()
	var ids []uuid.UUID
	for _, l := range ls {
		if l.statuses[202] != n/2 {
			t.Fatalf("want %d × 202, got %v", n/2, l.statuses)
		}
		ids = append(ids, l.accepted...)
	}
	waitDelivered(t, db, 2*time.Minute)
	tally := checkWebhooks(t, db, sink, endpoint, ids)
	if tally.duplicates != 0 {
		t.Errorf("%d events delivered twice by two replicas sharing the queue", tally.duplicates)
	}
	a := metric(t, p.apiAddr, `sms_webhook_deliveries_total{result="succeeded"}`)
	b := metric(t, second, `sms_webhook_deliveries_total{result="succeeded"}`)
	if a == 0 || b == 0 {
		t.Errorf("deliveries by replica: %v and %v; want both to take part", a, b)
	}
	report(t, "webhooks, two api replicas", loss(t, db, ids), outcomes(finalCounts(t, db)),
		fmt.Sprintf("delivered_by_api1=%v delivered_by_api2=%v %s", a, b, tally))
}

// ---------------------------------------------------------------- inbound (issue 16)

// postInbound hands an inbound message to the API as the processor does.
func postInbound(t testing.TB, apiAddr string, r sms.InboundReport) int {
	t.Helper()
	return postJSON(t, "http://"+apiAddr+"/v1/internal/inbound", "e2e-internal-token-0123456789", map[string]any{
		"from": r.From, "to": r.To, "text": r.Text, "received_at": r.ReceivedAt.Format(time.RFC3339Nano), "carrier_message_id": r.CarrierMessageID,
	}, nil)
}

// k. STOP arriving while hundreds of messages to its sender are queued: no
// message is claimed for the carrier once the STOP is recorded; only those
// already in flight then (at most the processor's in-flight window) still
// reach the carrier; the rest end FAILED opted_out; the STOP's
// confirmation goes out; a new message to the recipient is refused.
func TestFaultStopWhileQueued(t *testing.T) {
	const n, window = 300, 8
	const number, handset = "+14155550100", "+14155559876"
	p := newPlatform(t)
	p.run("number", "add", "--account", "e2e", number)
	p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=300ms", "SMS_SIM_MAX_DELAY=500ms", "SMS_SIM_FAILURE_RATE=0", "SMS_SIM_LEDGER=true",
		fmt.Sprintf("SMS_MAX_IN_FLIGHT=%d", window))
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 3*time.Minute)
	db := openDB(t, p)

	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	var failed sync.Map
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				// High: the top lane is never paused, so that the small
				// in-flight window is refilled at once (a paused lower
				// lane resumes only after the broker's fetch wait).
				m, err := sender.Send(ctx, sms.SendInput{Sender: number, Recipient: handset, Text: fmt.Sprintf("offer %d", i),
					Priority: sms.PriorityHigh}, "")
				if err != nil {
					failed.Store(i, err)
					continue
				}
				ids[i] = m.ID
			}
		})
	}
	wg.Wait()
	failed.Range(func(k, v any) bool { t.Fatalf("send %v: %v", k, v); return false })
	eventually(t, time.Minute, "the first messages at the carrier", func() (bool, string) {
		got := countWhere(t, db, `SELECT count(*) FROM processor.carrier_calls WHERE outcome <> 'cancelled'`)
		return got >= 20, fmt.Sprintf("%d carrier calls", got)
	})
	if code := postInbound(t, p.apiAddr, sms.InboundReport{From: handset, To: number, Text: "STOP", ReceivedAt: time.Now().UTC(),
		CarrierMessageID: "MO-STOP-" + uuid.NewString()}); code >= 300 {
		t.Fatalf("inbound STOP: status %d", code)
	}
	stopped := time.Now()
	queuedAtStop := countWhere(t, db, `SELECT count(*) FROM sms.messages WHERE id = ANY($1::uuid[]) AND dispatched_at IS NULL`, pqArray(uuidStrings(ids)))
	if queuedAtStop == 0 {
		t.Fatal("nothing was left queued when the STOP came: the fault missed the queue")
	}
	settledIn := waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, ids)

	var suppressedAt time.Time
	if err := db.Get(&suppressedAt, `SELECT created_at FROM sms.suppressions WHERE phone = $1`, handset); err != nil {
		t.Fatalf("no suppression recorded for %s: %v", handset, err)
	}
	var rows []struct {
		Status       string     `db:"status"`
		Reason       *string    `db:"failure_reason"`
		DispatchedAt *time.Time `db:"dispatched_at"`
		Calls        int        `db:"calls"`
		LastCall     *time.Time `db:"last_call"`
	}
	if err := db.Select(&rows, `
        SELECT m.status, m.failure_reason, m.dispatched_at,
            (SELECT count(*) FROM processor.carrier_calls c WHERE c.message_id = m.id AND c.outcome <> 'cancelled') AS calls,
            (SELECT max(called_at) FROM processor.carrier_calls c WHERE c.message_id = m.id AND c.outcome <> 'cancelled') AS last_call
        FROM sms.messages m WHERE m.id = ANY($1::uuid[])`, pqArray(uuidStrings(ids))); err != nil {
		t.Fatal(err)
	}
	var sent, optedOut, callsAfterStop, claimedAfterStop int
	var other []string
	for _, r := range rows {
		switch {
		case r.Calls > 0:
			sent++
			if r.LastCall.After(suppressedAt) {
				callsAfterStop++
				if r.DispatchedAt.After(stopped) {
					claimedAfterStop++
				}
			}
		case r.Status == string(sms.StatusFailed) && r.Reason != nil && *r.Reason == "opted_out":
			optedOut++
		default:
			other = append(other, fmt.Sprintf("%s %v", r.Status, r.Reason))
		}
	}
	if claimedAfterStop > 0 {
		t.Errorf("%d messages claimed for the carrier after the STOP was recorded, and sent", claimedAfterStop)
	}
	if callsAfterStop > window {
		t.Errorf("%d carrier calls to %s after the STOP, more than the %d in flight when it came", callsAfterStop, handset, window)
	}
	if len(other) > 0 {
		t.Errorf("%d messages neither sent nor FAILED opted_out, e.g. %v", len(other), other[:min(3, len(other))])
	}
	if optedOut == 0 {
		t.Error("no message FAILED opted_out: the STOP stopped nothing")
	}
	// The confirmation passes the suppression it confirms.
	var reply struct {
		Status string `db:"status"`
		Calls  int    `db:"calls"`
	}
	if err := db.Get(&reply, `SELECT m.status, (SELECT count(*) FROM processor.carrier_calls c WHERE c.message_id = m.id AND c.outcome <> 'cancelled') AS calls
        FROM sms.messages m WHERE m.keyword_reply AND m.recipient = $1`, handset); err != nil {
		t.Errorf("no STOP confirmation to %s: %v", handset, err)
	} else if reply.Calls != 1 {
		t.Errorf("STOP confirmation %s with %d carrier calls, want 1", reply.Status, reply.Calls)
	}
	_, err := sender.Send(ctx, sms.SendInput{Sender: number, Recipient: handset, Text: "after stop"}, "")
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Problem.Status != http.StatusUnprocessableEntity || !strings.HasSuffix(apiErr.Problem.Type, "/opted-out") {
		t.Errorf("a message to %s after its STOP: %v, want 422 opted-out", handset, err)
	}
	report(t, "stop while queued", loss(t, db, ids), outcomes(finalCounts(t, db)), readLedger(t, db).String(),
		fmt.Sprintf("queued_at_stop=%d sent=%d calls_after_stop=%d (in flight, bound %d) claimed_after_stop=%d opted_out=%d confirmation_calls=%d",
			queuedAtStop, sent, callsAfterStop, window, claimedAfterStop, optedOut, reply.Calls), "settled_after_stop="+settledIn.Round(100*time.Millisecond).String())
}

// l. The API down (SIGKILL) while handsets' messages arrive from the SMSC
// through the processor: the processor answers each deliver_sm with a
// temporary error, the SMSC sends it again (backing off, as SMSCs do), and
// once the API is back every message is stored, once. OpenSMPP's simulator
// never sends a deliver_sm again, so this runs against the test's SMSC.
func TestFaultInboundAPIDown(t *testing.T) {
	const n = 30
	const number = "+14155550100"
	kfakeLaneOnly(t)
	smsc := startTestSMSC(t)
	smsc.configure(func(s *testSMSC) { s.noReceipts = true })
	p := newPlatform(t)
	p.run("number", "add", "--account", "e2e", number)
	api := p.startAPI()
	_, addr := p.startProcessorAt("processor", true, smppEnv(smsc.addr(), "smsctl")...)
	db := openDB(t, p)

	api.kill()
	texts := map[string]bool{}
	for i := range n {
		text := fmt.Sprintf("reply %d %s", i, uuid.NewString()[:8])
		texts[text] = true
		smsc.mo(fmt.Sprintf("+1415666%04d", i), number, text)
	}
	// Every message offered and refused at least once while the API is
	// down: the processor said "not now", the SMSC keeps them.
	eventually(t, time.Minute, "every inbound message refused while the API is down", func() (bool, string) {
		refused := 0
		for _, m := range smsc.moLedger() {
			if m.ackedOn != 0 {
				t.Fatalf("an inbound message was acknowledged to the SMSC while the API was down")
			}
			if m.tries >= 2 {
				refused++
			}
		}
		return refused == n, fmt.Sprintf("%d of %d refused", refused, n)
	})
	restarted := time.Now()
	p.startAPI()
	eventually(t, time.Minute, "every inbound message acknowledged to the SMSC", func() (bool, string) {
		acked := 0
		for _, m := range smsc.moLedger() {
			if m.ackedOn != 0 {
				acked++
			}
		}
		return acked == n, fmt.Sprintf("%d of %d", acked, n)
	})
	recoveredIn := time.Since(restarted)
	var stored []struct {
		Text    string `db:"text"`
		Account *int64 `db:"account_id"`
	}
	if err := db.Select(&stored, `SELECT text, account_id FROM sms.inbound_messages`); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range stored {
		seen[m.Text]++
		if m.Account == nil {
			t.Errorf("inbound %q stored unrouted, want the account owning %s", m.Text, number)
		}
	}
	lost, dups := 0, 0
	for text := range texts {
		if seen[text] == 0 {
			lost++
		}
		dups += max(seen[text]-1, 0)
	}
	if lost != 0 || dups != 0 || len(stored) != n {
		t.Errorf("%d inbound messages stored for %d sent: %d lost, %d stored twice", len(stored), n, lost, dups)
	}
	var page struct {
		TotalCount int `json:"total_count"`
	}
	getJSON(t, "http://"+p.apiAddr+"/v1/inbound-messages", p.apiKey, &page)
	if page.TotalCount != n {
		t.Errorf("GET /v1/inbound-messages: total_count %d, want %d", page.TotalCount, n)
	}
	offers := 0
	for _, m := range smsc.moLedger() {
		offers += m.tries
	}
	report(t, "api down during inbound",
		fmt.Sprintf("inbound=%d stored=%d lost=%d duplicates=%d deliver_sm_sent=%d taken_metric=%v", n, len(stored), lost, dups, offers,
			metric(t, addr, `sms_inbound_total{result="taken"}`)), recovered(recoveredIn))
}
