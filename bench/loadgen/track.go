package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// finalStatus says whether a message status is final for the benchmark's
// purpose: no move but an explicit retry can follow. SENT is not: a
// receipt follows it.
func finalStatus(s string) bool {
	switch s {
	case "DELIVERED", "UNDELIVERED", "FAILED", "EXPIRED", "CANCELED":
		return true
	}
	return false
}

// apiClient is a small JSON client for the API's public routes.
type apiClient struct {
	base string
	auth string
	http *http.Client
}

func (c *apiClient) do(ctx context.Context, method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", c.auth)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return resp.StatusCode, nil
}

// tracked is one message the track command follows.
type tracked struct {
	priority string
	round    int
	id       string
	posted   time.Time
	sent     time.Duration // until it left PENDING (the carrier took it), 0 if never seen
	final    time.Duration // until a final status, 0 if not reached
	status   string
}

// cmdTrack posts a few messages of each priority at the same instant,
// -rounds times -every apart, while a backlog sits in the lanes, and polls
// each until it is final: how long a high-priority message waits behind a
// backlog of low ones, with normal and low messages posted at the same
// instant as controls. The backlog (consumer lag per lane, deliveries in
// flight, messages not yet sent) is measured just before the first round.
func cmdTrack(args []string) error {
	fs := flag.NewFlagSet("track", flag.ExitOnError)
	base := fs.String("url", "http://127.0.0.1:18080", "API base URL")
	key := fs.String("key", os.Getenv("BENCH_API_KEY"), "API key (default $BENCH_API_KEY)")
	prios := fs.String("priorities", "high,normal,low", "priorities posted in each round")
	rounds := fs.Int("rounds", 3, "rounds")
	every := fs.Duration("every", time.Second, "time between rounds")
	poll := fs.Duration("poll", 25*time.Millisecond, "poll interval of GET /v1/messages/{id}")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up on a message after")
	sender := fs.String("sender", "+14155550109", "sender of the tracked messages")
	dbURL := fs.String("db", "", "PostgreSQL URL: count messages not yet sent at the first round")
	brokers := fs.String("brokers", "", "Kafka brokers: consumer lag of each lane at the first round")
	group := fs.String("group", "processor-service", "consumer group")
	procMetrics := fs.String("processor-metrics", "", "processor /metrics URL: deliveries in flight at the first round")
	until := fs.String("until", "final", "follow each message until it is final (a receipt settled it) or sent (it left PENDING: final when the carrier sends no receipts)")
	_ = fs.Parse(args)
	if *until != "final" && *until != "sent" {
		return errors.New("track: -until must be final or sent")
	}
	if *rounds < 1 {
		return errors.New("track: -rounds must be positive")
	}
	c := &apiClient{base: strings.TrimRight(*base, "/"), auth: "Bearer " + *key, http: &http.Client{Timeout: 10 * time.Second}}
	ctx := context.Background()

	// The backlog just before the first round.
	var backlog []string
	if *brokers != "" {
		for _, topic := range []string{"sms.requests.high", "sms.requests", "sms.requests.low"} {
			m, err := newLagMeter(*brokers, *group, topic)
			if err != nil {
				return err
			}
			mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := m.Measure(mctx)
			cancel()
			m.Close()
			name := strings.TrimPrefix(strings.TrimPrefix(topic, "sms.requests"), ".")
			if name == "" {
				name = "normal"
			}
			if err != nil {
				backlog = append(backlog, fmt.Sprintf("lag_%s=?", name))
				continue
			}
			backlog = append(backlog, fmt.Sprintf("lag_%s=%d", name, r.Lag))
		}
	}
	if *procMetrics != "" {
		mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		v, err := scrapeGauges(mctx, &http.Client{Timeout: 3 * time.Second}, *procMetrics, "sms_processor_in_flight")
		cancel()
		if x, ok := v["sms_processor_in_flight"]; err == nil && ok {
			backlog = append(backlog, fmt.Sprintf("in_flight=%.0f", x))
		}
	}
	if *dbURL != "" {
		db, err := openDB(*dbURL)
		if err != nil {
			return err
		}
		st, err := counters(ctx, db)
		db.Close()
		if err != nil {
			return err
		}
		backlog = append(backlog, fmt.Sprintf("not_sent=%d", st.NotFinal()))
	}
	for _, b := range backlog {
		fmt.Println("backlog_" + b)
	}

	var mu sync.Mutex
	var all []*tracked
	var wg sync.WaitGroup
	follow := func(t *tracked) {
		defer wg.Done()
		deadline := t.posted.Add(*timeout)
		for time.Now().Before(deadline) {
			var m struct {
				Status string `json:"status"`
			}
			if _, err := c.do(ctx, http.MethodGet, "/v1/messages/"+t.id, nil, &m); err == nil {
				el := time.Since(t.posted)
				mu.Lock()
				t.status = m.Status
				if t.sent == 0 && m.Status != "PENDING" && m.Status != "SCHEDULED" {
					t.sent = el
				}
				if *until == "sent" && t.sent > 0 {
					t.final = el
				}
				if finalStatus(m.Status) || (*until == "sent" && t.sent > 0) {
					t.final = el
					mu.Unlock()
					return
				}
				mu.Unlock()
			}
			time.Sleep(*poll)
		}
	}
	start := time.Now()
	for r := 0; r < *rounds; r++ {
		if d := time.Until(start.Add(time.Duration(r) * *every)); d > 0 {
			time.Sleep(d)
		}
		var rw sync.WaitGroup
		for i, p := range strings.Split(*prios, ",") {
			rw.Go(func() {
				t := &tracked{priority: p, round: r, posted: time.Now()}
				in := map[string]any{"sender": *sender, "recipient": fmt.Sprintf("+447911%06d", 990_000+r*10+i), "text": "smsctl bench: priority " + p, "priority": p}
				var out struct {
					ID string `json:"id"`
				}
				if _, err := c.do(ctx, http.MethodPost, "/v1/messages", in, &out); err != nil {
					fmt.Fprintf(os.Stderr, "loadgen track: post %s: %v\n", p, err)
					return
				}
				t.id = out.ID
				mu.Lock()
				all = append(all, t)
				mu.Unlock()
				wg.Add(1)
				go follow(t)
			})
		}
		rw.Wait()
	}
	wg.Wait()

	kv("posted", len(all))
	for _, p := range strings.Split(*prios, ",") {
		var sent, final []float64
		var open int
		var last string
		for _, t := range all {
			if t.priority != p {
				continue
			}
			if t.sent > 0 {
				sent = append(sent, t.sent.Seconds()*1000)
			}
			if t.final > 0 {
				final = append(final, t.final.Seconds()*1000)
			} else {
				open++
			}
			last = t.status
		}
		slices.Sort(sent)
		slices.Sort(final)
		med := func(x []float64) float64 {
			if len(x) == 0 {
				return math.NaN()
			}
			return x[len(x)/2]
		}
		top := func(x []float64) float64 {
			if len(x) == 0 {
				return math.NaN()
			}
			return x[len(x)-1]
		}
		kv(p+"_sent_ms_median", med(sent))
		kv(p+"_sent_ms_max", top(sent))
		kv(p+"_final_ms_median", med(final))
		kv(p+"_final_ms_max", top(final))
		kv(p+"_final_ms_all", strings.Trim(strings.Join(strings.Fields(fmt.Sprintf("%.0f", final)), ","), "[]"))
		kv(p+"_not_final", open)
		kv(p+"_last_status", last)
	}
	return nil
}
