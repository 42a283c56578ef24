package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"

	smsplatform "github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// TestCluster runs the fault scenarios of issue 17 on one private
// three-node KRaft cluster (replication factor 3, min.insync.replicas 2,
// producers acks=all), each on its own database, topics and group, each
// leaving the cluster whole for the next. Every scenario prints one FAULT
// line with what it measured:
//
//   - stall: the longest time, from the fault to the end of the load, in
//     which the carrier got no call at all (processor.carrier_calls);
//   - recover: from the fault until the carrier was called for a message
//     accepted after it (API, relay, Kafka, processor and carrier all
//     carrying new messages again), or what the scenario names;
//   - lost: 202s whose message is not stored (must be 0);
//   - repeated_carrier_calls: calls the carrier got twice for the same
//     message and attempt, cancelled_carrier_calls: calls the processors
//     cancelled and handed back (carrier ledger).
func TestCluster(t *testing.T) {
	c := privateCluster(t)
	t.Run("LeaderKilled", func(t *testing.T) { clusterLeaderKilled(t, c) })
	t.Run("RollingRestart", func(t *testing.T) { clusterRollingRestart(t, c) })
	t.Run("Processors", func(t *testing.T) { clusterProcessors(t, c) })
	t.Run("APIReplicaKilled", func(t *testing.T) { clusterAPIReplicaKilled(t, c) })
}

// clusterRate is the offered load of every scenario, messages a second: a
// few thousand messages per scenario, which the race-built binaries carry
// on two cores beside three brokers.
const clusterRate = 100

// clusterWindow is each processor's in-flight window (SMS_MAX_IN_FLIGHT):
// the most carrier calls a killed processor can leave unrecorded.
const clusterWindow = 200

func clusterKnobs() []string {
	return []string{"SMS_SIM_MIN_DELAY=10ms", "SMS_SIM_MAX_DELAY=150ms", "SMS_SIM_LEDGER=true",
		fmt.Sprintf("SMS_MAX_IN_FLIGHT=%d", clusterWindow)}
}

// (a) kill -9 of the broker that leads most partitions of the normal
// request topic, under load: no 202 lost, nothing stuck, the API's
// producer and the processors' consumers carry on by themselves.
func clusterLeaderKilled(t *testing.T, c *kcluster) {
	c.heal(t)
	p := clusterPlatform(t, c)
	api := p.startAPI()
	topics := append(p.requestTopics(), p.topic+".dlq")
	c.waitTopics(t, topics...)
	c.checkReplicated(t, topics...)
	pa := p.startProcessor("processor-a", clusterKnobs()...)
	pb := p.startProcessor("processor-b", clusterKnobs()...)
	db := openDB(t, p)
	ctx := ctxTimeout(t, 4*time.Minute)

	ld := startSteadyLoad(ctx, p.apiKey, []string{"http://" + p.apiAddr}, clusterRate, 8, true)
	eventually(t, time.Minute, "messages flowing before the fault", atLeastDeliveries(t, db, 300))
	victim, led := c.busiestLeader(t, p.topic)
	c.kill(t, victim)
	fault := time.Now() // kafka.sh kill returns once the process is gone
	t.Logf("killed node %d, leader of %d of the %d partitions of %s", victim, led, 6, p.topic)
	// Leadership moves once the controller fences the dead broker.
	eventually(t, time.Minute, "partitions led by the survivors", func() (bool, string) {
		l, err := c.leaders(p.topic)
		if err != nil {
			return false, err.Error()
		}
		return l[victim] == 0 && l[-1] == 0, fmt.Sprint(l)
	})
	failover := time.Since(fault)
	before := deliveries(t, db)
	eventually(t, time.Minute, "new messages reach the carrier after the kill", func() (bool, string) {
		d := firstCallAfter(t, db, fault)
		return d > 0 && deliveries(t, db) >= before+300, fmt.Sprintf("first call after the kill %s, %d recorded since", d, deliveries(t, db)-before)
	})
	time.Sleep(2 * time.Second)
	l := ld.finish()
	loadEnd := time.Now()
	onlyAccepted(t, l)
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	receipts := awaitReceipts(t, db, 15*time.Second, 3*time.Minute)
	alive(t, api, pa, pb)
	ledger := readLedger(t, db)
	if ledger.Repeated > 2*clusterWindow {
		t.Errorf("%d repeated carrier calls, more than the processors' in-flight windows (%d)", ledger.Repeated, 2*clusterWindow)
	}
	recover, stall := firstCallAfter(t, db, fault), longestCarrierGap(t, db, fault, loadEnd)
	rejoin := c.heal(t, topics...)
	receipts.check(t, false)
	report(t, "broker leader kill -9", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		ledger.String(), dur("recover", recover), dur("stall", stall), dur("failover", failover), dur("rejoin", rejoin),
		fmt.Sprintf("node=%d led=%d/6", victim, led), receipts.String())
}

// (b) A rolling restart of all three brokers under load: each node killed
// and started again, the next one only once every replica is back in
// sync, so that min.insync.replicas 2 always holds.
func clusterRollingRestart(t *testing.T, c *kcluster) {
	c.heal(t)
	p := clusterPlatform(t, c)
	api := p.startAPI()
	topics := append(p.requestTopics(), p.topic+".dlq")
	c.waitTopics(t, topics...)
	pa := p.startProcessor("processor-a", clusterKnobs()...)
	pb := p.startProcessor("processor-b", clusterKnobs()...)
	db := openDB(t, p)
	ctx := ctxTimeout(t, 5*time.Minute)

	ld := startSteadyLoad(ctx, p.apiKey, []string{"http://" + p.apiAddr}, clusterRate, 8, false)
	eventually(t, time.Minute, "messages flowing before the restarts", atLeastDeliveries(t, db, 300))
	rollStart := time.Now()
	var longest time.Duration
	var perNode []string
	for node := int32(1); node <= clusterNodes; node++ {
		killed := time.Now()
		c.kill(t, node)
		c.revive(t)
		up := time.Since(killed)
		c.waitInSync(t, 2*time.Minute, topics...)
		back := time.Since(killed)
		longest = max(longest, back)
		perNode = append(perNode, fmt.Sprintf("%d:%s/%s", node, up.Round(100*time.Millisecond), back.Round(100*time.Millisecond)))
		// The pipeline carries on between restarts.
		before := deliveries(t, db)
		eventually(t, time.Minute, fmt.Sprintf("deliveries after restarting node %d", node), atLeastDeliveries(t, db, before+150))
	}
	roll := time.Since(rollStart)
	l := ld.finish()
	loadEnd := time.Now()
	onlyAccepted(t, l)
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	receipts := awaitReceipts(t, db, 15*time.Second, 3*time.Minute)
	alive(t, api, pa, pb)
	ledger := readLedger(t, db)
	if ledger.Repeated > 2*clusterWindow {
		t.Errorf("%d repeated carrier calls, more than the processors' in-flight windows (%d)", ledger.Repeated, 2*clusterWindow)
	}
	receipts.check(t, false)
	report(t, "rolling restart of 3 brokers", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		ledger.String(), dur("recover", longest), dur("stall", longestCarrierGap(t, db, rollStart, loadEnd)), dur("roll", roll),
		"node:up/in_sync="+strings.Join(perNode, ","), receipts.String())
}

// (c) Processors added and removed under load: three, then a fourth joins
// (cooperative-sticky: the others give up only the partitions that move
// and keep working on the rest), one leaves gracefully (no call
// repeated), one is killed (calls repeated only for what it had in
// flight: at most its window, and only calls started before the kill).
func clusterProcessors(t *testing.T, c *kcluster) {
	c.heal(t)
	p := clusterPlatform(t, c)
	api := p.startAPI()
	c.waitTopics(t, append(p.requestTopics(), p.topic+".dlq")...)
	knobs := clusterKnobs()
	pa := p.startProcessor("processor-a", knobs...)
	pb := p.startProcessor("processor-b", knobs...)
	pc := p.startProcessor("processor-c", knobs...)
	db := openDB(t, p)
	ctx := ctxTimeout(t, 5*time.Minute)

	ld := startSteadyLoad(ctx, p.apiKey, []string{"http://" + p.apiAddr}, clusterRate, 8, false)
	eventually(t, time.Minute, "messages flowing with three processors", atLeastDeliveries(t, db, 300))
	// What each held when the fourth joined: their log up to now.
	olds := []*proc{pa, pb, pc}
	cursor := make([]int, len(olds))
	for i, pr := range olds {
		cursor[i] = len(pr.output())
	}
	joined := time.Now()
	pd := p.startProcessor("processor-d", knobs...)
	eventually(t, time.Minute, "processor-d assigned partitions", func() (bool, string) {
		for _, ev := range partitionEvents(pd.output()) {
			if ev.kind == "assigned" && countParts(ev.parts) > 0 {
				return true, ""
			}
		}
		return false, "none yet"
	})
	assigned := time.Since(joined)
	eventually(t, time.Minute, "deliveries with four processors", atLeastDeliveries(t, db, deliveries(t, db)+300))
	joinStall := longestCarrierGap(t, db, joined, time.Now())
	moved := 0
	for i, pr := range olds {
		all := partitionEvents(pr.output())
		before := partitionEvents(pr.output()[:cursor[i]])
		held := heldAfter(before)
		var revoked int
		for _, ev := range all[len(before):] {
			switch ev.kind {
			case "revoked":
				revoked += countParts(ev.parts)
			case "lost":
				t.Errorf("%s lost partitions %v when a processor joined", pr.name, ev.parts)
			}
		}
		moved += revoked
		if held == 0 || revoked >= held {
			t.Errorf("%s held %d partitions and revoked %d when processor-d joined; cooperative-sticky revokes only those that move", pr.name, held, revoked)
		}
		t.Logf("%s: held %d, revoked %d when processor-d joined", pr.name, held, revoked)
	}
	if moved == 0 {
		t.Errorf("no partition moved to processor-d")
	}

	left := time.Now()
	pb.stop(t)
	eventually(t, time.Minute, "deliveries after processor-b left", atLeastDeliveries(t, db, deliveries(t, db)+300))
	leaveStall := longestCarrierGap(t, db, left, time.Now())
	if l := readLedger(t, db); l.Repeated != 0 || l.Cancelled != 0 {
		t.Errorf("%d carrier calls repeated and %d cancelled (handed back) after a join and a graceful leave, want none", l.Repeated, l.Cancelled)
	}

	killed := time.Now()
	pc.kill()
	// A call whose ledger row is dated after this was not the killed
	// processor's: kill returns once the process is gone, and an INSERT
	// it sent just before may still run a moment later (2 s is ample;
	// its partitions move only after the 10 s session timeout). Taken
	// before the signal instead, a call of its last milliseconds counted
	// as another processor's repeat (failed a make test run).
	dead := time.Now().Add(2 * time.Second)
	// Its partitions move after the group's session timeout (10 s).
	eventually(t, time.Minute, "deliveries after processor-c was killed", atLeastDeliveries(t, db, deliveries(t, db)+600))
	l := ld.finish()
	loadEnd := time.Now()
	onlyAccepted(t, l)
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	receipts := awaitReceipts(t, db, 15*time.Second, 3*time.Minute)
	alive(t, api, pa, pd)
	ledger := readLedger(t, db)
	inWindow, outside := repeatsBefore(t, db, dead)
	if ledger.Repeated > clusterWindow {
		t.Errorf("%d repeated carrier calls, more than the killed processor's in-flight window %d", ledger.Repeated, clusterWindow)
	}
	if outside != 0 {
		t.Errorf("%d repeated carrier calls whose first call started after the kill: outside the killed processor's in-flight work", outside)
	}
	receipts.check(t, true)
	report(t, "processors join/leave/kill", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		ledger.String(), dur("recover", firstCallAfter(t, db, killed)), dur("stall", longestCarrierGap(t, db, killed, loadEnd)),
		dur("join_assigned", assigned), dur("join_stall", joinStall), dur("leave_stall", leaveStall),
		fmt.Sprintf("moved_on_join=%d repeats_in_window=%d", moved, inWindow), receipts.String())
}

// (d) One of two API replicas killed while the other serves: the load
// client spreads requests over both; requests to the dead one fail at the
// transport level; no 202 is lost; the survivor's relay publishes the
// outbox rows the dead one left, and its scheduler releases the scheduled
// messages that fall due. The processors reach the APIs through a
// round-robin proxy, as behind a load balancer.
func clusterAPIReplicaKilled(t *testing.T, c *kcluster) {
	c.heal(t)
	p := clusterPlatform(t, c)
	api1 := p.startAPI()
	// The victim holds what it committed for 2 s before producing, so that
	// a kill always leaves outbox rows behind (the survivor's sweep takes
	// rows older than SMS_OUTBOX_STALE_AFTER, 5 s).
	addr2 := freeAddr(t)
	api2 := p.startAPIOn("api-2", addr2, "SMS_OUTBOX_LINGER=2s")
	c.waitTopics(t, append(p.requestTopics(), p.topic+".dlq")...)
	px := startAPIProxy(t, p.apiAddr, addr2)
	knobs := append(clusterKnobs(), "SMS_API_URL=http://"+px.addr)
	pa := p.startProcessor("processor-a", knobs...)
	pb := p.startProcessor("processor-b", knobs...)
	db := openDB(t, p)
	ctx := ctxTimeout(t, 4*time.Minute)

	bases := []string{"http://" + p.apiAddr, "http://" + addr2}
	ld := startSteadyLoad(ctx, p.apiKey, bases, clusterRate, 8, false)
	eventually(t, time.Minute, "messages flowing through both replicas", atLeastDeliveries(t, db, 300))

	// Scheduled messages, accepted by the victim, due after its death.
	const scheduled = 60
	due := time.Now().Add(15 * time.Second).UTC().Truncate(time.Millisecond)
	victim := client.New("http://"+addr2, p.apiKey)
	scheduledIDs := make([]string, scheduled)
	var sched sync.WaitGroup
	for w := range 6 {
		sched.Go(func() {
			for i := w; i < scheduled; i += 6 {
				m, err := victim.Send(ctx, sms.SendInput{Sender: "+14155550100", Recipient: fmt.Sprintf("+1415556%04d", i), Text: fmt.Sprintf("scheduled %d", i), SendAt: &due}, "")
				if err != nil {
					t.Errorf("schedule %d: %v", i, err)
					return
				}
				if m.Status != sms.StatusScheduled && time.Now().Before(due) {
					t.Errorf("message scheduled for %s has status %s", due, m.Status)
				}
				scheduledIDs[i] = m.ID.String()
			}
		})
	}
	sched.Wait()
	if t.Failed() {
		t.FailNow()
	}

	killed := time.Now()
	api2.kill()
	// The rows the dead replica left: those holding messages it accepted
	// (the survivor's own rows hold none of them). A message it committed
	// but never answered is not known here; its row goes unwatched.
	left, leftRecords := outboxHolding(t, db, ld.acceptedBy(bases[1]))
	if len(left) == 0 {
		t.Fatal("the killed replica left no outbox row: the scenario did not happen")
	}
	eventually(t, time.Minute, "the survivor published the outbox rows the dead replica left", func() (bool, string) {
		n := countWhere(t, db, `SELECT count(*) FROM sms.outbox WHERE batch_id::text = ANY($1::text[])`, pqArray(left))
		return n == 0, fmt.Sprintf("%d of %d rows left", n, len(left))
	})
	outboxRecovered := time.Since(killed)
	// The load goes on meeting the dead replica after that: its share of
	// clusterRate for about a second more (counted, not slept for).
	failedAtRecovery := ld.answers(bases[1], 0)
	eventually(t, time.Minute, "more requests to the dead replica failing", func() (bool, string) {
		n := ld.answers(bases[1], 0) - failedAtRecovery
		return n >= clusterRate/2, fmt.Sprintf("%d more failed", n)
	})
	l := ld.finish()

	// Every answer is a 202 or, from the dead replica only, a transport
	// error.
	for base, codes := range ld.byAPI {
		for code, n := range codes {
			switch {
			case code == 202:
			case code == 0 && base == bases[1]:
			default:
				t.Errorf("%s: %d answers with status %d (0 = transport error): %v", base, n, code, ld.errsAPI[base][:min(3, len(ld.errsAPI[base]))])
			}
		}
	}
	for _, err := range ld.errsAPI[bases[1]] {
		if !isTransportErr(err) {
			t.Errorf("request to the dead replica failed with %v, want a transport error", err)
		}
	}
	waitAllFinal(t, db, 2*time.Minute)
	checkNoLoss(t, db, l.accepted)
	receipts := awaitReceipts(t, db, 15*time.Second, 3*time.Minute)
	alive(t, api1, pa, pb)

	var late struct {
		Released int     `db:"released"`
		MaxLate  float64 `db:"max_late"`
	}
	if err := db.Get(&late, `
        SELECT count(*) AS released, COALESCE(max(extract(epoch FROM r.at - r.send_at)), 0)::float8 AS max_late FROM (
            -- The release is the message's first "queued" event (the
            -- processor's claim records another).
            SELECT m.send_at, min(e.occurred_at) AS at
            FROM sms.messages m JOIN sms.message_events e ON e.message_id = m.id AND e.type = 'message.queued'
            WHERE m.id = ANY($1::uuid[]) GROUP BY m.id, m.send_at) r`, pqArray(scheduledIDs)); err != nil {
		t.Fatal(err)
	}
	if late.Released != scheduled {
		t.Errorf("%d of the %d scheduled messages were released", late.Released, scheduled)
	}
	if !due.After(killed) {
		t.Errorf("the scheduled messages fell due before the kill: the scenario did not test the survivor's scheduler")
	}
	ledger := readLedger(t, db)
	if ledger.Repeated != 0 {
		t.Errorf("%d carrier calls repeated; no processor was harmed", ledger.Repeated)
	}
	receipts.check(t, false)
	report(t, "API replica kill -9 (1 of 2)", loss(t, db, l.accepted), outcomes(finalCounts(t, db)),
		ledger.String(), dur("recover", outboxRecovered),
		fmt.Sprintf("outbox_left=%d/%d refused_transport=%d stored_unanswered=%d scheduled_released=%d/%d release_late_max=%s",
			len(left), leftRecords, ld.byAPI[bases[1]][0], storedTexts(t, db, ld.cutOff), late.Released, scheduled,
			time.Duration(late.MaxLate*float64(time.Second)).Round(10*time.Millisecond)), receipts.String())
}

// Rate limits hold per key across API replicas: a client spreading its
// requests over two replicas on one database gets about its limit, not
// twice it (sms/http.SharedLimiter, SMS_RATE_LIMIT_SHARED). Runs in both
// lanes: it needs no broker fault.
func TestClusterRateLimitAcrossAPIs(t *testing.T) {
	const limit, burst = 40, 40
	const window = 5 * time.Second
	p := newPlatform(t)
	env := []string{fmt.Sprintf("SMS_RATE_LIMIT=%d", limit), fmt.Sprintf("SMS_RATE_BURST=%d", burst), "SMS_RATE_LIMIT_SHARED=true"}
	p.startAPI(env...)
	addr2 := freeAddr(t)
	p.startAPIOn("api-2", addr2, env...)
	bases := []string{"http://" + p.apiAddr, "http://" + addr2}

	var ok, limited, other atomic.Int64
	hc := &http.Client{Timeout: 10 * time.Second}
	start := time.Now()
	deadline := start.Add(window)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; time.Now().Before(deadline); i++ {
				req, _ := http.NewRequest(http.MethodGet, bases[i%len(bases)]+"/v1/messages/stats", nil)
				req.Header.Set("Authorization", "Bearer "+p.apiKey)
				resp, err := hc.Do(req)
				if err != nil {
					other.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
					time.Sleep(5 * time.Millisecond)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	hc.CloseIdleConnections()
	elapsed := time.Since(start).Seconds()
	allowed := burst + limit*elapsed // one bucket's worth over the run
	got := float64(ok.Load())
	t.Logf("RATELIMIT replicas=2 limit=%d/s burst=%d: accepted %d in %.1fs = %.1f/s after the burst (limit %d/s), %.2f× one bucket's %.0f; 429: %d, other: %d",
		limit, burst, ok.Load(), elapsed, (got-burst)/elapsed, limit, got/allowed, allowed, limited.Load(), other.Load())
	if other.Load() != 0 {
		t.Errorf("%d answers neither 200 nor 429", other.Load())
	}
	// SharedLimiter's bound: replicas × chunk (chunk 2 here) beyond one
	// bucket; the rest is slack for the run's own timing.
	if upper := allowed + 2*2 + 0.05*allowed; got > upper {
		t.Errorf("accepted %.0f requests, more than one bucket allows across replicas (%.0f)", got, upper)
	}
	if lower := 0.7 * allowed; got < lower {
		t.Errorf("accepted %.0f requests, under 70%% of the limit (%.0f)", got, lower)
	}
}

// TestClusterCapacityProbe measures what one message costs PostgreSQL on
// the whole path (accepted, published, claimed, sent, receipt, reported:
// DELIVERED), on a private server so that nothing else writes WAL: WAL
// bytes and full-page images, rows written, commits, and the bytes the
// message leaves in each table with its indexes. docs/capacity.md sizes
// PostgreSQL from it. Opt-in (SMS_CAPACITY_PROBE=1): it measures, it
// checks nothing beyond no loss.
func TestClusterCapacityProbe(t *testing.T) {
	if os.Getenv("SMS_CAPACITY_PROBE") == "" {
		t.Skip("measures PostgreSQL's work per message for docs/capacity.md: set SMS_CAPACITY_PROBE=1")
	}
	const n = 5000
	_, url := privatePostgres(t)
	// A private broker too, where the real-Kafka lane has one: Kafka's
	// bytes per record are measured on it.
	var brokers []string
	if os.Getenv("SMS_KAFKA_SCRIPT") != "" {
		brokers = []string{privateKafka(t).addr}
	}
	p := newPlatformOn(t, url, brokers)
	p.startAPI("SMS_RATE_LIMIT=1000000", "SMS_RATE_BURST=1000000")
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms", "SMS_SIM_FAILURE_RATE=0",
		"SMS_SIM_RECEIPT_MIN_DELAY=10ms", "SMS_SIM_RECEIPT_MAX_DELAY=100ms")
	db := openDBURL(t, url)
	ctx := ctxTimeout(t, 5*time.Minute)
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	// Warm up (first statements, plans, the first full-page images of
	// fresh tables), then measure from a checkpoint.
	warm := postLoad(ctx, sender, 500, 8)
	waitAllFinal(t, db, time.Minute)
	awaitReceipts(t, db, 5*time.Second, time.Minute)
	type stat struct {
		WAL     int64 `db:"wal"`
		FPI     int64 `db:"fpi"`
		Records int64 `db:"records"`
		Commits int64 `db:"commits"`
		Ins     int64 `db:"ins"`
		Upd     int64 `db:"upd"`
		HOT     int64 `db:"hot"`
		Del     int64 `db:"del"`
	}
	read := func() stat {
		var s stat
		if _, err := db.Exec(`SELECT pg_stat_force_next_flush()`); err != nil {
			t.Logf("pg_stat_force_next_flush: %v", err)
		}
		if err := db.Get(&s, `
            SELECT (SELECT wal_bytes::bigint FROM pg_stat_wal) AS wal, (SELECT wal_fpi FROM pg_stat_wal) AS fpi,
                   (SELECT wal_records FROM pg_stat_wal) AS records,
                   (SELECT sum(xact_commit)::bigint FROM pg_stat_database) AS commits,
                   (SELECT COALESCE(sum(n_tup_ins), 0)::bigint FROM pg_stat_all_tables WHERE schemaname IN ('sms', 'processor')) AS ins,
                   (SELECT COALESCE(sum(n_tup_upd), 0)::bigint FROM pg_stat_all_tables WHERE schemaname IN ('sms', 'processor')) AS upd,
                   (SELECT COALESCE(sum(n_tup_hot_upd), 0)::bigint FROM pg_stat_all_tables WHERE schemaname IN ('sms', 'processor')) AS hot,
                   (SELECT COALESCE(sum(n_tup_del), 0)::bigint FROM pg_stat_all_tables WHERE schemaname IN ('sms', 'processor')) AS del`); err != nil {
			t.Fatal(err)
		}
		return s
	}
	sizes := func() map[string]int64 {
		var rows []struct {
			Name  string `db:"name"`
			Bytes int64  `db:"bytes"`
		}
		if err := db.Select(&rows, `SELECT n.nspname || '.' || c.relname AS name, pg_total_relation_size(c.oid) AS bytes
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname IN ('sms', 'processor') AND c.relkind = 'r'`); err != nil {
			t.Fatal(err)
		}
		out := map[string]int64{}
		for _, r := range rows {
			out[r.Name] = r.Bytes
		}
		return out
	}
	if _, err := db.Exec(`CHECKPOINT`); err != nil {
		t.Logf("checkpoint: %v", err)
	}
	before, sizeBefore := read(), sizes()
	start := time.Now()
	l := postAll(ctx, t, sender, n, 16)
	waitAllFinal(t, db, 2*time.Minute)
	if left := awaitReceipts(t, db, 5*time.Second, time.Minute); left.Sent > 0 {
		t.Logf("%s", left)
	}
	took := time.Since(start)
	after, sizeAfter := read(), sizes()
	checkNoLoss(t, db, append(warm.accepted, l.accepted...))
	per := func(a, b int64) float64 { return float64(b-a) / n }
	t.Logf("CAPACITY %d messages to DELIVERED in %s: per message WAL %.0f bytes (%.2f full-page images, %.1f WAL records), %.2f commits, rows inserted %.1f, updated %.1f (HOT %.1f), deleted %.1f",
		n, took.Round(100*time.Millisecond), per(before.WAL, after.WAL), per(before.FPI, after.FPI), per(before.Records, after.Records),
		per(before.Commits, after.Commits), per(before.Ins, after.Ins), per(before.Upd, after.Upd), per(before.HOT, after.HOT), per(before.Del, after.Del))
	var names []string
	for name := range sizeAfter {
		names = append(names, name)
	}
	sort.Strings(names)
	var parts []string
	var total int64
	for _, name := range names {
		if d := sizeAfter[name] - sizeBefore[name]; d > 0 {
			parts = append(parts, fmt.Sprintf("%s %.0f", name, float64(d)/n))
			total += d
		}
	}
	t.Logf("CAPACITY bytes per message left in tables with their indexes (growth over the run): total %.0f: %s", float64(total)/n, strings.Join(parts, ", "))
	if brokers != nil {
		// What a record costs Kafka's disk, per replica: the log of the
		// normal lane (every message of the probe went there).
		cl, err := smsplatform.NewKafkaClient(brokers, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		dirs, err := kadm.NewClient(cl).DescribeAllLogDirs(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		var bytes int64
		dirs.Each(func(d kadm.DescribedLogDir) {
			d.Topics.Each(func(lp kadm.DescribedLogDirPartition) {
				if lp.Topic == p.topic {
					bytes += lp.Size
				}
			})
		})
		t.Logf("CAPACITY Kafka log bytes per record (one replica, batches as the relay produced them): %.0f", float64(bytes)/float64(n+len(warm.accepted)))
	}
}
