package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	_ "github.com/lib/pq"
)

func openDB(url string) (*sql.DB, error) {
	if url == "" {
		return nil, errors.New("-db is required")
	}
	db, err := sql.Open("postgres", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return db, nil
}

// statuses are the API's counts of messages by status (wave 2: eight).
type statuses struct {
	Scheduled, Pending, Sent, Delivered, Undelivered, Failed, Expired, Canceled int64
}

// Final is every message past PENDING: SENT counts (final unless a receipt
// follows), so a receipt that moves SENT to DELIVERED leaves it unchanged.
func (s statuses) Final() int64 {
	return s.Sent + s.Delivered + s.Undelivered + s.Failed + s.Expired + s.Canceled
}

// Receipted is every message a carrier's receipt settled.
func (s statuses) Receipted() int64 { return s.Delivered + s.Undelivered + s.Expired }

// NotFinal is every message still to be sent.
func (s statuses) NotFinal() int64 { return s.Scheduled + s.Pending }

// counters reads the API's per-account counters: cheap at any table size,
// so they can be sampled every second while load runs.
func counters(ctx context.Context, db *sql.DB) (st statuses, err error) {
	err = db.QueryRowContext(ctx, `SELECT COALESCE(sum(scheduled),0)::bigint, COALESCE(sum(pending),0)::bigint,
        COALESCE(sum(sent),0)::bigint, COALESCE(sum(delivered),0)::bigint, COALESCE(sum(undelivered),0)::bigint,
        COALESCE(sum(failed),0)::bigint, COALESCE(sum(expired),0)::bigint, COALESCE(sum(canceled),0)::bigint
        FROM sms.account_counters`).
		Scan(&st.Scheduled, &st.Pending, &st.Sent, &st.Delivered, &st.Undelivered, &st.Failed, &st.Expired, &st.Canceled)
	return
}

// realPending counts PENDING and SCHEDULED rows (partial indexes hold
// exactly those).
func realPending(ctx context.Context, db *sql.DB) (int64, error) {
	var n, m int64
	err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM sms.messages WHERE status = 'PENDING'),
        (SELECT count(*) FROM sms.messages WHERE status = 'SCHEDULED')`).Scan(&n, &m)
	return n + m, err
}

// cmdDrain waits until no message is PENDING or SCHEDULED (every accepted
// message has left for the carrier and has an outcome) and prints how
// long that took; with -receipts, also until no message is SENT (every
// receipt has come back), for at most -receipt-timeout more.
func cmdDrain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ExitOnError)
	dbURL := fs.String("db", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL URL of the benchmark database")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after")
	interval := fs.Duration("interval", 250*time.Millisecond, "poll interval")
	receipts := fs.Bool("receipts", false, "also wait until no message is SENT (its receipt came)")
	receiptTimeout := fs.Duration("receipt-timeout", time.Minute, "with -receipts: give up on receipts after this much longer")
	_ = fs.Parse(args)
	db, err := openDB(*dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	start := time.Now()
	deadline := start.Add(*timeout)
	lastLog := start
	var pending int64 = -1
	drained := false
	for !drained {
		st, err := counters(ctx, db)
		if err == nil && st.NotFinal() <= 0 {
			// The counters say done; the rows have the last word.
			if pending, err = realPending(ctx, db); err == nil && pending == 0 {
				drained = true
				break
			}
		} else if err == nil {
			pending = st.NotFinal()
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(os.Stderr, "loadgen drain: %d pending after %.0fs\n", pending, time.Since(start).Seconds())
		}
		if time.Now().After(deadline) {
			if p, err := realPending(ctx, db); err == nil {
				pending = p
			}
			break
		}
		time.Sleep(*interval)
	}
	kv("drained", drained)
	kv("drain_s", time.Since(start).Seconds())
	kv("pending", max(pending, 0))
	if !*receipts || !drained {
		return nil
	}
	rdeadline := time.Now().Add(*receiptTimeout)
	var sent int64 = -1
	for {
		st, err := counters(ctx, db)
		if err == nil {
			sent = st.Sent
			if sent <= 0 {
				break
			}
		}
		if time.Now().After(rdeadline) {
			break
		}
		time.Sleep(*interval)
	}
	kv("receipts_drained", sent == 0)
	kv("receipts_drain_s", time.Since(start).Seconds())
	kv("sent_left", sent)
	return nil
}

// cmdCounts prints what the database holds: messages per sender (the
// benchmark gives each phase its own sender) and by status, the outbox,
// the API's counters and the processor's recorded outcomes.
func cmdCounts(args []string) error {
	fs := flag.NewFlagSet("counts", flag.ExitOnError)
	dbURL := fs.String("db", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL URL of the benchmark database")
	_ = fs.Parse(args)
	db, err := openDB(*dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rows, err := db.QueryContext(ctx, `
        SELECT sender, status, count(*) FROM sms.messages GROUP BY sender, status`)
	if err != nil {
		return fmt.Errorf("count messages: %w", err)
	}
	defer rows.Close()
	bySender := map[string]map[string]int64{}
	byStatus := map[string]int64{}
	var tot int64
	for rows.Next() {
		var sender, status string
		var n int64
		if err := rows.Scan(&sender, &status, &n); err != nil {
			return err
		}
		key := strings.NewReplacer("+", "", " ", "_").Replace(sender)
		if bySender[key] == nil {
			bySender[key] = map[string]int64{}
		}
		bySender[key][status] += n
		byStatus[status] += n
		tot += n
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var lines []string
	for key, m := range bySender {
		var n int64
		for _, c := range m {
			n += c
		}
		lines = append(lines, fmt.Sprintf("sender_%s=%d", key, n),
			fmt.Sprintf("sender_%s_pending=%d", key, m["PENDING"]+m["SCHEDULED"]))
		for st, c := range m {
			lines = append(lines, fmt.Sprintf("sender_%s_%s=%d", key, strings.ToLower(st), c))
		}
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	kv("stored", tot)
	c, err := counters(ctx, db)
	if err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	for _, s := range []struct {
		name    string
		counter int64
	}{{"SCHEDULED", c.Scheduled}, {"PENDING", c.Pending}, {"SENT", c.Sent}, {"DELIVERED", c.Delivered},
		{"UNDELIVERED", c.Undelivered}, {"FAILED", c.Failed}, {"EXPIRED", c.Expired}, {"CANCELED", c.Canceled}} {
		kv(strings.ToLower(s.name), byStatus[s.name])
		kv("counters_"+strings.ToLower(s.name), s.counter)
	}
	var outbox int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint FROM sms.outbox`).Scan(&outbox); err != nil {
		return fmt.Errorf("count outbox: %w", err)
	}
	kv("outbox", outbox)
	var deliveries, unreported, dispatched int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM processor.deliveries), (SELECT count(*) FROM processor.unreported)`).Scan(&deliveries, &unreported); err != nil {
		return fmt.Errorf("count deliveries: %w", err)
	}
	kv("deliveries", deliveries)
	kv("deliveries_unreported", unreported)
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sms.messages WHERE dispatched_at IS NOT NULL`).Scan(&dispatched); err != nil {
		return fmt.Errorf("count dispatched: %w", err)
	}
	kv("dispatched", dispatched)
	// Tries sent with receipts expected but without a carrier part on
	// record: their receipts cannot be matched (a carrier id used before).
	var noPart int64
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM processor.deliveries d WHERE d.receipts_expected
        AND NOT EXISTS (SELECT 1 FROM processor.carrier_parts p WHERE p.message_id = d.message_id AND p.retry = d.retry)`).Scan(&noPart); err != nil {
		return fmt.Errorf("count tries without parts: %w", err)
	}
	kv("receipts_unmatchable", noPart)
	return nil
}

// cmdWaitSQL polls a query that answers one number until the number is at
// most -max, and prints how long that took and the last value: the
// benchmark's generic "wait until drained" (outbox, SENT awaiting
// receipts, webhook queue).
func cmdWaitSQL(args []string) error {
	fs := flag.NewFlagSet("waitsql", flag.ExitOnError)
	dbURL := fs.String("db", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL URL of the benchmark database")
	query := fs.String("sql", "", "a query answering one number")
	most := fs.Int64("max", 0, "wait until the number is at most this")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after")
	interval := fs.Duration("interval", 200*time.Millisecond, "poll interval")
	_ = fs.Parse(args)
	if *query == "" {
		return errors.New("waitsql: -sql is required")
	}
	db, err := openDB(*dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx := context.Background()
	start := time.Now()
	var v int64 = -1
	for {
		qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := db.QueryRowContext(qctx, *query).Scan(&v)
		cancel()
		if err != nil {
			return fmt.Errorf("waitsql: %w", err)
		}
		if v <= *most || time.Since(start) > *timeout {
			break
		}
		time.Sleep(*interval)
	}
	kv("reached", v <= *most)
	kv("waited_s", time.Since(start).Seconds())
	kv("value", v)
	return nil
}
