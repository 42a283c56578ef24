package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// broker is a real Kafka broker of this test's own, so that stopping it
// disturbs no other test.
type broker struct {
	t      testing.TB
	script string
	env    []string
	addr   string
}

// privateKafka starts a dedicated real broker through scripts/kafka.sh.
// Stopping and restarting a broker needs a real one; in the kfake lane the
// test is skipped and runs in the real-Kafka lane (scripts/test.sh kafka).
func privateKafka(t testing.TB) *broker {
	t.Helper()
	script := os.Getenv("SMS_KAFKA_SCRIPT")
	if script == "" {
		t.Skip("stops and restarts a broker: runs in the real-Kafka lane (scripts/test.sh kafka sets SMS_KAFKA_SCRIPT)")
	}
	port := strconv.Itoa(freePorts(t, 2)) // PLAINTEXT, and the controller on PORT+1
	b := &broker{t: t, script: script, env: []string{"SMS_KAFKA_PORT=" + port, "SMS_KAFKA_STATE=" + t.TempDir()}}
	b.addr = strings.TrimSpace(b.run("start"))
	t.Cleanup(func() { b.run("clean") })
	return b
}

func (b *broker) run(action string) string {
	b.t.Helper()
	cmd := exec.Command(b.script, action)
	cmd.Env = append(os.Environ(), b.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("kafka.sh %s: %v\n%s", action, err, stderr.String())
	}
	return string(out)
}

func (b *broker) stop()  { b.run("stop") }
func (b *broker) start() { b.run("start") }

// pgServer is a PostgreSQL cluster of this test's own, so that restarting
// it disturbs no other test.
type pgServer struct {
	t    testing.TB
	bin  string
	data string
	port string
}

// privatePostgres initializes and starts a throwaway cluster with the
// server binaries of the local installation (as user postgres when root).
func privatePostgres(t testing.TB) (*pgServer, string) {
	t.Helper()
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(versions) == 0 {
		t.Fatal("no PostgreSQL server binaries under /usr/lib/postgresql: run scripts/postgres.sh")
	}
	sort.Strings(versions)
	dir, err := os.MkdirTemp("", "smsctl-pg")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o777)
	s := &pgServer{t: t, bin: filepath.Dir(versions[len(versions)-1]), data: filepath.Join(dir, "data"), port: strings.Split(freeAddr(t), ":")[1]}
	s.pg("initdb", "-D", s.data, "-A", "trust", "-U", "smsctl", "--no-sync")
	s.start()
	t.Cleanup(func() {
		s.pg("pg_ctl", "-D", s.data, "-m", "immediate", "stop")
		os.RemoveAll(dir)
	})
	url := "postgres://smsctl@127.0.0.1:" + s.port + "/postgres?sslmode=disable"
	return s, url
}

func (s *pgServer) pg(tool string, args ...string) {
	s.t.Helper()
	cmdline := append([]string{filepath.Join(s.bin, tool)}, args...)
	if os.Geteuid() == 0 {
		cmdline = append([]string{"runuser", "-u", "postgres", "--"}, cmdline...)
	}
	out, err := exec.Command(cmdline[0], cmdline[1:]...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("%s: %v\n%s", strings.Join(cmdline, " "), err, out)
	}
}

func (s *pgServer) start() {
	s.pg("pg_ctl", "-D", s.data, "-w", "-l", s.data+"/../log", "-o", "-p "+s.port+" -k /tmp -c listen_addresses=127.0.0.1", "start")
}

func (s *pgServer) stop() { s.pg("pg_ctl", "-D", s.data, "-m", "fast", "-w", "stop") }

// load posts messages from several goroutines and keeps every answer.
type load struct {
	mu       sync.Mutex
	accepted []uuid.UUID
	statuses map[int]int // HTTP status (0: transport error) -> count
	errs     []error
	// unavailable holds the texts (each unique) of the requests answered
	// 503, to check that they left nothing stored.
	unavailable []string
}

// snapshot returns how many requests were accepted and answered 503 so far.
func (l *load) snapshot() (accepted, unavailable int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted), l.statuses[503]
}

// postLoad sends n messages with the given concurrency and waits for all.
// postAll posts n messages, as postLoad does, and fails the test unless
// every one was accepted.
func postAll(ctx context.Context, t testing.TB, sender *client.Client, n, concurrency int) *load {
	t.Helper()
	l := postLoad(ctx, sender, n, concurrency)
	if l.statuses[202] != n {
		t.Fatalf("want %d × 202, got %v", n, l.statuses)
	}
	return l
}

func postLoad(ctx context.Context, sender *client.Client, n, concurrency int) *load {
	return postLoadInto(ctx, &load{statuses: map[int]int{}}, sender, n, concurrency)
}

// postLoadInto is postLoad adding its answers to l.
func postLoadInto(ctx context.Context, l *load, sender *client.Client, n, concurrency int) *load {
	nonce := uuid.NewString()[:8]
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for i := range jobs {
				text := "load " + nonce + " " + strconv.Itoa(i)
				m, err := sender.Send(ctx, sms.SendInput{Sender: "+14155550100", Recipient: fmt.Sprintf("+1415555%04d", i%10000), Text: text}, "")
				l.mu.Lock()
				var apiErr *client.APIError
				switch {
				case err == nil:
					l.accepted = append(l.accepted, m.ID)
					l.statuses[202]++
				case errors.As(err, &apiErr):
					l.statuses[apiErr.Problem.Status]++
					if apiErr.Problem.Status == 503 {
						l.unavailable = append(l.unavailable, text)
					}
				default:
					l.statuses[0]++
					l.errs = append(l.errs, err)
				}
				l.mu.Unlock()
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return l
}

// finalCounts returns messages by status.
func finalCounts(t testing.TB, db *sqlx.DB) map[string]int {
	t.Helper()
	rows, err := db.Query(`SELECT status, count(*) FROM sms.messages GROUP BY status`)
	if err != nil {
		t.Fatalf("count messages: %v", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			t.Fatal(err)
		}
		counts[s] = n
	}
	return counts
}

// waitAllFinal waits until every message is settled (no message PENDING
// or SCHEDULED: SENT ones may still wait for their receipts) and returns
// the time it took.
func waitAllFinal(t testing.TB, db *sqlx.DB, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	eventually(t, within, "every message final", func() (bool, string) {
		c := finalCounts(t, db)
		return c["PENDING"] == 0 && c["SCHEDULED"] == 0, fmt.Sprint(c)
	})
	return time.Since(start)
}

// checkNoLoss asserts every accepted id is stored, final, exactly once, and
// that the account counters agree with the rows.
func checkNoLoss(t testing.TB, db *sqlx.DB, accepted []uuid.UUID) {
	t.Helper()
	ids := make([]string, len(accepted))
	for i, id := range accepted {
		ids[i] = id.String()
	}
	var stored int
	if err := db.Get(&stored, `SELECT count(*) FROM sms.messages WHERE id = ANY($1::uuid[])`, pqArray(ids)); err != nil {
		t.Fatal(err)
	}
	if stored != len(accepted) {
		t.Errorf("lost messages: %d accepted (202), %d stored", len(accepted), stored)
	}
	// Counters and rows read in one statement: one snapshot, while
	// receipts may still be moving messages.
	var pairs []struct {
		Status  string `db:"status"`
		Rows    int64  `db:"rows"`
		Counter int64  `db:"counter"`
	}
	err := db.Select(&pairs, `
        WITH c AS (SELECT COALESCE(sum(scheduled),0) AS scheduled, COALESCE(sum(pending),0) AS pending, COALESCE(sum(sent),0) AS sent,
                COALESCE(sum(delivered),0) AS delivered, COALESCE(sum(undelivered),0) AS undelivered, COALESCE(sum(failed),0) AS failed,
                COALESCE(sum(expired),0) AS expired, COALESCE(sum(canceled),0) AS canceled FROM sms.account_counters),
        r AS (SELECT status, count(*) AS n FROM sms.messages GROUP BY status)
        SELECT s.status, COALESCE(r.n, 0) AS rows, s.counter FROM c CROSS JOIN LATERAL (VALUES
            ('SCHEDULED', c.scheduled), ('PENDING', c.pending), ('SENT', c.sent), ('DELIVERED', c.delivered),
            ('UNDELIVERED', c.undelivered), ('FAILED', c.failed), ('EXPIRED', c.expired), ('CANCELED', c.canceled)) AS s(status, counter)
        LEFT JOIN r ON r.status = s.status`)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		if p.Rows != p.Counter {
			t.Errorf("counters disagree with rows: %+v", pairs)
			break
		}
	}
}

// waitAllDone waits until every message is final: receipts in too.
func waitAllDone(t testing.TB, db *sqlx.DB, within time.Duration) {
	t.Helper()
	eventually(t, within, "every message final, receipts in", func() (bool, string) {
		c := finalCounts(t, db)
		return c["PENDING"] == 0 && c["SCHEDULED"] == 0 && c["SENT"] == 0, fmt.Sprint(c)
	})
}
