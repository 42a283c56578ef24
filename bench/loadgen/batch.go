package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// cmdBatch is a closed-loop generator for POST /v1/messages/batch: -conns
// connections each send one batch of -size messages, wait for the answer,
// and send the next, for -duration or until -count messages were sent.
// Each answer's "accepted" count (the batch route answers 200 with
// per-index results) is what counts, so the loss check can compare it
// with what was stored.
func cmdBatch(args []string) error {
	fs := flag.NewFlagSet("batch", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:18080/v1/messages/batch", "batch route")
	key := fs.String("key", os.Getenv("BENCH_API_KEY"), "API key (default $BENCH_API_KEY)")
	size := fs.Int("size", 100, "messages per batch (1..1000)")
	conns := fs.Int("conns", 4, "connections, one batch in flight on each")
	duration := fs.Duration("duration", 0, "send batches for this long (0: until -count)")
	warmup := fs.Duration("warmup", 0, "batches answered in the first warmup are counted but left out of the windowed rate")
	count := fs.Int("count", 0, "send this many messages in all, then stop (with -duration 0)")
	sender := fs.String("sender", "+14155550106", "sender of every message (the benchmark gives each phase its own)")
	text := fs.String("text", "smsctl bench: your code is 424242", "message text (a sequence number is appended)")
	recipient := fs.Int("recipient-offset", 0, "first recipient number (0..999999) of the +447911 range")
	priority := fs.String("priority", "", "priority of every message: high, normal or low (empty: not sent, the default)")
	sendAt := fs.String("send-at", "", "send_at of every message, RFC 3339 (empty: none)")
	timeout := fs.Duration("timeout", 60*time.Second, "per-request timeout")
	_ = fs.Parse(args)
	if *size < 1 || *size > 1000 || *conns < 1 {
		return errors.New("batch: -size must be 1..1000 and -conns positive")
	}
	if (*duration <= 0) == (*count <= 0) {
		return errors.New("batch: give exactly one of -duration and -count")
	}
	if *warmup > 0 && *warmup >= *duration {
		return errors.New("batch: -warmup must be shorter than -duration")
	}
	if *sendAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, *sendAt); err != nil {
			return fmt.Errorf("batch: -send-at %q: %w", *sendAt, err)
		}
	}
	target, err := neturl.Parse(*url)
	if err != nil || target.Scheme != "http" {
		return fmt.Errorf("batch: -url %q: want an http:// URL", *url)
	}
	// The fields every message shares, after the recipient and the text.
	var extra string
	if *priority != "" {
		extra += `,"priority":"` + *priority + `"`
	}
	if *sendAt != "" {
		extra += `,"send_at":"` + *sendAt + `"`
	}
	var next atomic.Int64 // next message number
	limit := int64(*count)
	type result struct {
		done     time.Duration // since start, when the answer was read
		lat      time.Duration
		code     int
		accepted int
		rejected int
		size     int
		err      string
	}
	var mu sync.Mutex
	var results []result
	start := time.Now()
	stop := start.Add(*duration)
	fmt.Fprintf(os.Stderr, "loadgen batch: batches of %d on %d connections to %s (%s)\n", *size, *conns, *url,
		map[bool]string{true: fmt.Sprintf("%d messages", *count), false: duration.String()}[*count > 0])
	var wg sync.WaitGroup
	for range *conns {
		wg.Go(func() {
			p := newRawPoster(target, "Bearer "+*key)
			p.keep = 64
			defer p.close()
			var body []byte
			for {
				if *duration > 0 && time.Now().After(stop) {
					return
				}
				n := int64(*size)
				first := next.Add(n) - n
				if limit > 0 {
					if first >= limit {
						return
					}
					n = min(n, limit-first)
				}
				body = append(body[:0], `{"messages":[`...)
				for i := first; i < first+n; i++ {
					if i > first {
						body = append(body, ',')
					}
					body = append(body, `{"sender":"`...)
					body = append(body, *sender...)
					body = append(body, `","recipient":"+447911`...)
					r := (int64(*recipient) + i) % 1_000_000
					for d := int64(100_000); d > 0; d /= 10 {
						body = append(body, byte('0'+r/d%10))
					}
					body = append(body, `","text":"`...)
					body = append(body, *text...)
					body = append(body, " #"...)
					body = strconv.AppendInt(body, i, 10)
					body = append(body, '"')
					body = append(body, extra...)
					body = append(body, '}')
				}
				body = append(body, "]}"...)
				t0 := time.Now()
				code, err := p.post(body, t0.Add(*timeout))
				res := result{done: time.Since(start), lat: time.Since(t0), code: code, size: int(n)}
				if err != nil {
					res.err = err.Error()
				} else if code == http.StatusOK {
					res.accepted, res.rejected = batchCounts(p.kept)
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
				if err != nil {
					time.Sleep(100 * time.Millisecond) // refused: don't spin
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var ok, non200, transport, accepted, rejected, unknown, acceptedWindow int
	codes := map[int]int{}
	errs := map[string]int{}
	var lats []float64
	lastDone := time.Duration(0)
	for _, r := range results {
		switch {
		case r.err != "":
			transport++
			unknown += r.size // may or may not be stored
			errs[shortErr(r.err)]++
			continue
		case r.code != http.StatusOK:
			non200++
			codes[r.code]++
			continue
		}
		ok++
		accepted += r.accepted
		rejected += r.rejected
		lats = append(lats, float64(r.lat.Microseconds())/1000)
		if r.done >= *warmup && (*duration <= 0 || r.done <= *duration) {
			acceptedWindow += r.accepted
		}
		lastDone = max(lastDone, r.done)
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return math.NaN()
		}
		return lats[min(len(lats)-1, max(0, int(math.Ceil(p/100*float64(len(lats))))-1))]
	}
	kv("batches", len(results))
	kv("batches_ok", ok)
	kv("non200", non200)
	kv("transport_errors", transport)
	kv("unknown_messages", unknown)
	kv("accepted", accepted)
	kv("rejected", rejected)
	var cl []string
	for c, n := range codes {
		cl = append(cl, fmt.Sprintf("%d:%d", c, n))
	}
	sort.Strings(cl)
	kv("codes", strings.Join(cl, ","))
	var el []string
	for e, n := range errs {
		el = append(el, fmt.Sprintf("%s:%d", e, n))
	}
	sort.Strings(el)
	kv("errors", strings.Join(el, ","))
	kv("elapsed_s", elapsed.Seconds())
	kv("last_answer_s", lastDone.Seconds())
	if *duration > 0 {
		kv("accepted_rps_window", float64(acceptedWindow)/(*duration-*warmup).Seconds())
	} else if lastDone > 0 {
		kv("accepted_rps_window", float64(accepted)/lastDone.Seconds())
	}
	if len(lats) > 0 {
		kv("batch_p50_ms", pct(50))
		kv("batch_p99_ms", pct(99))
		kv("batch_max_ms", lats[len(lats)-1])
	}
	return nil
}

// batchCounts reads accepted and rejected from the start of a batch
// answer: {"accepted":N,"rejected":M,"results":[...]}.
func batchCounts(b []byte) (accepted, rejected int) {
	num := func(key string) int {
		i := bytes.Index(b, []byte(`"`+key+`":`))
		if i < 0 {
			return 0
		}
		j := i + len(key) + 3
		n := 0
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			n = n*10 + int(b[j]-'0')
			j++
		}
		return n
	}
	return num("accepted"), num("rejected")
}

// shortErr names a transport error by its kind.
func shortErr(msg string) string {
	switch {
	case strings.Contains(msg, "timeout"):
		return "timeout"
	case strings.Contains(msg, "connection refused"):
		return "connection refused"
	case strings.Contains(msg, "connection reset"):
		return "connection reset"
	case strings.Contains(msg, "EOF"):
		return "EOF"
	}
	return msg
}
