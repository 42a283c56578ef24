package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// cmdSched watches the API's scheduler release messages that fell due at
// one instant: it polls GET /v1/messages/stats (by_status) from before
// -at until nothing is SCHEDULED, then until none of -sender's messages
// is PENDING either (every released message has left for the carrier),
// and prints the times from -at.
func cmdSched(args []string) error {
	fs := flag.NewFlagSet("sched", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:18080", "API base URL")
	key := fs.String("key", os.Getenv("BENCH_API_KEY"), "API key (default $BENCH_API_KEY)")
	at := fs.String("at", "", "the instant the messages fall due, RFC 3339")
	poll := fs.Duration("poll", 50*time.Millisecond, "poll interval")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long past -at")
	dbURL := fs.String("db", "", "PostgreSQL URL: with -sender, wait until none of its messages is PENDING (else the account's PENDING count)")
	sender := fs.String("sender", "", "the scheduled messages' sender")
	_ = fs.Parse(args)
	due, err := time.Parse(time.RFC3339Nano, *at)
	if err != nil {
		return fmt.Errorf("sched: -at %q: %w", *at, err)
	}
	c := &apiClient{base: strings.TrimRight(*base, "/"), auth: "Bearer " + *key, http: &http.Client{Timeout: 5 * time.Second}}
	ctx := context.Background()
	var db *sql.DB
	if *dbURL != "" {
		if db, err = openDB(*dbURL); err != nil {
			return err
		}
		defer db.Close()
	}
	read := func() (scheduled, pending int64, err error) {
		var st struct {
			ByStatus map[string]int64 `json:"by_status"`
		}
		if _, err := c.do(ctx, http.MethodGet, "/v1/messages/stats", nil, &st); err != nil {
			return 0, 0, err
		}
		if st.ByStatus == nil {
			return 0, 0, errors.New("stats without by_status")
		}
		if db != nil && *sender != "" {
			err := db.QueryRowContext(ctx, `SELECT count(*) FROM sms.messages WHERE status = 'PENDING' AND sender = $1`, *sender).Scan(&pending)
			return st.ByStatus["SCHEDULED"], pending, err
		}
		return st.ByStatus["SCHEDULED"], st.ByStatus["PENDING"], nil
	}
	var initial int64 = -1
	var first, released, sent time.Duration
	var polls, errs int
	deadline := due.Add(*timeout)
	var lastS, lastP int64
	for time.Now().Before(deadline) {
		s, p, err := read()
		now := time.Now()
		polls++
		if err != nil {
			errs++
			time.Sleep(*poll)
			continue
		}
		lastS, lastP = s, p
		if now.Before(due) {
			initial = s
		} else {
			if initial < 0 {
				initial = s // started late
			}
			if first == 0 && s < initial {
				first = now.Sub(due)
			}
			if released == 0 && s == 0 {
				released = now.Sub(due)
			}
			if released > 0 && p == 0 {
				sent = now.Sub(due)
				break
			}
		}
		time.Sleep(*poll)
	}
	kv("scheduled_before", initial)
	kv("first_release_s", first.Seconds())
	kv("all_released_s", released.Seconds())
	kv("released", released > 0)
	if released > 0 && initial > 0 {
		kv("release_rps", float64(initial)/released.Seconds())
	}
	kv("all_sent_s", sent.Seconds())
	kv("scheduled_left", lastS)
	kv("pending_left", lastP)
	kv("polls", polls)
	kv("poll_errors", errs)
	return nil
}
