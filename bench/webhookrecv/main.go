// Command webhookrecv is the benchmark's webhook endpoint: it takes
// Standard Webhooks posts, verifies each with the specification's library,
// counts them (duplicates by webhook-id, events of a message that arrive
// after a later one), and measures the delivery lag of each: the time it
// arrived minus the event's timestamp (when it occurred, from the body).
// Knobs make it answer slowly or fail, from the start or at run time.
//
//	go run ./bench/webhookrecv -addr :18091 -secret whsec_...
//
// Routes besides the webhook itself (POST /):
//
//	GET  /stats             key=value lines: counts, rate, lag p50/p99/max
//	POST /control?fail=0.2&delay=50ms&status=503   change the knobs
//	POST /reset             forget everything measured
//
// On SIGTERM or SIGINT it prints the stats on stdout and exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// knobs say how the receiver answers.
type knobs struct {
	// fail is the share of verified posts answered with status (0..1).
	fail   float64
	status int
	// delay is how long each answer waits.
	delay time.Duration
}

// stats are what the receiver measured.
type stats struct {
	mu         sync.Mutex
	received   int64 // posts
	bad        int64 // signature did not verify
	failed     int64 // answered with the failure status on purpose
	accepted   int64 // answered 2xx
	duplicates int64 // accepted again with a webhook-id accepted before
	outOfOrder int64 // accepted with a sequence below one accepted before for its message
	ids        map[uuid.UUID]struct{}
	lastSeq    map[string]int
	lagsMS     []float64
	types      map[string]int64
	first      time.Time
	last       time.Time
}

func newStats() *stats {
	return &stats{ids: map[uuid.UUID]struct{}{}, lastSeq: map[string]int{}, types: map[string]int64{}}
}

type receiver struct {
	wh    *standardwebhooks.Webhook
	mu    sync.Mutex
	knobs knobs
	st    *stats
}

func (rc *receiver) currentKnobs() knobs {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.knobs
}

func (rc *receiver) stats() *stats {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.st
}

func (rc *receiver) webhook(w http.ResponseWriter, r *http.Request) {
	at := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st := rc.stats()
	k := rc.currentKnobs()
	if err := rc.wh.Verify(body, r.Header); err != nil {
		st.mu.Lock()
		st.received++
		st.bad++
		st.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	if k.delay > 0 {
		select {
		case <-time.After(k.delay):
		case <-r.Context().Done():
			return
		}
	}
	if k.fail > 0 && rand.Float64() < k.fail {
		st.mu.Lock()
		st.received++
		st.failed++
		st.mu.Unlock()
		w.WriteHeader(k.status)
		return
	}
	var ev struct {
		Type      string    `json:"type"`
		Timestamp time.Time `json:"timestamp"`
		Data      struct {
			ID       string `json:"id"`
			Sequence int    `json:"sequence"`
		} `json:"data"`
	}
	_ = json.Unmarshal(body, &ev)
	id, _ := uuid.Parse(r.Header.Get(standardwebhooks.HeaderWebhookID))
	st.mu.Lock()
	st.received++
	st.accepted++
	if _, dup := st.ids[id]; dup {
		st.duplicates++
	} else {
		st.ids[id] = struct{}{}
		if !ev.Timestamp.IsZero() {
			st.lagsMS = append(st.lagsMS, float64(at.Sub(ev.Timestamp))/float64(time.Millisecond))
		}
		if ev.Data.ID != "" && ev.Data.Sequence > 0 {
			if ev.Data.Sequence < st.lastSeq[ev.Data.ID] {
				st.outOfOrder++
			} else {
				st.lastSeq[ev.Data.ID] = ev.Data.Sequence
			}
		}
		st.types[ev.Type]++
	}
	if st.first.IsZero() {
		st.first = at
	}
	st.last = at
	st.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// report writes the stats as key=value lines.
func (st *stats) report(w io.Writer) {
	st.mu.Lock()
	defer st.mu.Unlock()
	lags := slices.Clone(st.lagsMS)
	slices.Sort(lags)
	pct := func(p float64) float64 {
		if len(lags) == 0 {
			return 0
		}
		return lags[min(len(lags)-1, int(p*float64(len(lags))))]
	}
	rate := 0.0
	if span := st.last.Sub(st.first).Seconds(); span > 0 {
		rate = float64(len(st.ids)) / span
	}
	fmt.Fprintf(w, "received=%d\nverified_bad=%d\nfailed_on_purpose=%d\naccepted=%d\ndistinct=%d\nduplicates=%d\nout_of_order=%d\n",
		st.received, st.bad, st.failed, st.accepted, len(st.ids), st.duplicates, st.outOfOrder)
	fmt.Fprintf(w, "rate_per_s=%.1f\nlag_p50_ms=%.1f\nlag_p99_ms=%.1f\nlag_max_ms=%.1f\n", rate, pct(0.50), pct(0.99), pct(1))
	for _, t := range slices.Sorted(maps.Keys(st.types)) {
		fmt.Fprintf(w, "type_%s=%d\n", strings.ReplaceAll(t, ".", "_"), st.types[t])
	}
}

func (rc *receiver) control(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	k := rc.knobs
	var errs []error
	if v := q.Get("fail"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1 {
			errs = append(errs, errors.New("fail: a share from 0 to 1"))
		}
		k.fail = f
	}
	if v := q.Get("status"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 300 || n > 599 {
			errs = append(errs, errors.New("status: an HTTP status from 300 to 599"))
		}
		k.status = n
	}
	if v := q.Get("delay"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			errs = append(errs, errors.New("delay: a duration such as 50ms"))
		}
		k.delay = d
	}
	if err := errors.Join(errs...); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.knobs = k
	fmt.Fprintf(w, "fail=%g\nstatus=%d\ndelay=%s\n", k.fail, k.status, k.delay)
}

func main() {
	addr := flag.String("addr", ":18091", "listen address")
	secret := flag.String("secret", os.Getenv("WEBHOOK_SECRET"), "the endpoint's whsec_ secret (or WEBHOOK_SECRET)")
	fail := flag.Float64("fail", 0, "share of posts answered with -status (0..1)")
	status := flag.Int("status", http.StatusServiceUnavailable, "status of the failures")
	delay := flag.Duration("delay", 0, "how long each answer waits")
	flag.Parse()

	wh, err := standardwebhooks.NewWebhook(*secret)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookrecv: -secret:", err)
		os.Exit(2)
	}
	rc := &receiver{wh: wh, knobs: knobs{fail: *fail, status: *status, delay: *delay}, st: newStats()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{$}", rc.webhook)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { rc.stats().report(w) })
	mux.HandleFunc("POST /control", rc.control)
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		rc.mu.Lock()
		rc.st = newStats()
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookrecv:", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	shutdown := make(chan struct{})
	go func() {
		defer close(shutdown)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx) // lets the answers in flight finish
	}()
	fmt.Fprintf(os.Stderr, "webhookrecv listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "webhookrecv:", err)
		os.Exit(1)
	}
	<-shutdown
	rc.stats().report(os.Stdout)
}
