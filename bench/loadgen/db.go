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

// counters reads the API's per-account counters: cheap at any table size,
// so they can be sampled every second while load runs.
func counters(ctx context.Context, db *sql.DB) (pending, sent, failed int64, err error) {
	err = db.QueryRowContext(ctx, `SELECT COALESCE(sum(pending),0)::bigint, COALESCE(sum(sent),0)::bigint, COALESCE(sum(failed),0)::bigint FROM sms.account_counters`).
		Scan(&pending, &sent, &failed)
	return
}

// realPending counts PENDING rows (a partial index holds exactly those).
func realPending(ctx context.Context, db *sql.DB) (int64, error) {
	var n int64
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM sms.messages WHERE status = 'PENDING'`).Scan(&n)
	return n, err
}

// cmdDrain waits until no message is PENDING (every accepted message has a
// final status) and prints how long that took.
func cmdDrain(args []string) error {
	fs := flag.NewFlagSet("drain", flag.ExitOnError)
	dbURL := fs.String("db", os.Getenv("BENCH_DATABASE_URL"), "PostgreSQL URL of the benchmark database")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after")
	interval := fs.Duration("interval", 250*time.Millisecond, "poll interval")
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
	for {
		p, _, _, err := counters(ctx, db)
		if err == nil && p <= 0 {
			// The counters say done; the rows have the last word.
			if pending, err = realPending(ctx, db); err == nil && pending == 0 {
				kv("drained", true)
				kv("drain_s", time.Since(start).Seconds())
				kv("pending", 0)
				return nil
			}
		} else if err == nil {
			pending = p
		}
		if time.Since(lastLog) >= 10*time.Second {
			lastLog = time.Now()
			fmt.Fprintf(os.Stderr, "loadgen drain: %d pending after %.0fs\n", pending, time.Since(start).Seconds())
		}
		if time.Now().After(deadline) {
			if p, err := realPending(ctx, db); err == nil {
				pending = p
			}
			kv("drained", false)
			kv("drain_s", time.Since(start).Seconds())
			kv("pending", pending)
			return nil
		}
		time.Sleep(*interval)
	}
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
        SELECT sender, count(*),
               count(*) FILTER (WHERE status = 'PENDING'),
               count(*) FILTER (WHERE status = 'SENT'),
               count(*) FILTER (WHERE status = 'FAILED')
        FROM sms.messages GROUP BY sender`)
	if err != nil {
		return fmt.Errorf("count messages: %w", err)
	}
	defer rows.Close()
	var tot, tp, ts, tf int64
	var lines []string
	for rows.Next() {
		var sender string
		var n, p, s, f int64
		if err := rows.Scan(&sender, &n, &p, &s, &f); err != nil {
			return err
		}
		tot, tp, ts, tf = tot+n, tp+p, ts+s, tf+f
		key := strings.NewReplacer("+", "", " ", "_").Replace(sender)
		lines = append(lines, fmt.Sprintf("sender_%s=%d", key, n), fmt.Sprintf("sender_%s_pending=%d", key, p))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	sort.Strings(lines)
	for _, l := range lines {
		fmt.Println(l)
	}
	kv("stored", tot)
	kv("pending", tp)
	kv("sent", ts)
	kv("failed", tf)
	var outbox int64
	if err := db.QueryRowContext(ctx, `SELECT COALESCE(sum(cardinality(message_ids)), 0)::bigint FROM sms.outbox`).Scan(&outbox); err != nil {
		return fmt.Errorf("count outbox: %w", err)
	}
	kv("outbox", outbox)
	cp, cs, cf, err := counters(ctx, db)
	if err != nil {
		return fmt.Errorf("read counters: %w", err)
	}
	kv("counters_pending", cp)
	kv("counters_sent", cs)
	kv("counters_failed", cf)
	var deliveries, unreported int64
	if err := db.QueryRowContext(ctx, `SELECT (SELECT count(*) FROM processor.deliveries), (SELECT count(*) FROM processor.unreported)`).Scan(&deliveries, &unreported); err != nil {
		return fmt.Errorf("count deliveries: %w", err)
	}
	kv("deliveries", deliveries)
	kv("deliveries_unreported", unreported)
	return nil
}
