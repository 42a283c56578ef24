package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request outcomes besides an HTTP status code.
const (
	codeNotDone   = 0 // no answer (still outstanding when the generator gave up)
	codeTransport = 1 // transport error: refused, reset, timeout...
	codeSkipped   = 2 // never sent: too many requests outstanding
)

// generator is an open-loop load generator: request i is due at
// start + i/rate whatever happened to the earlier ones, and its latency is
// measured from that intended instant, so a server that stalls is charged
// for every request that should have gone out meanwhile (no coordinated
// omission). A fixed pool of workers, one connection each, takes due
// requests from a queue; time spent queued for a free connection is part
// of the latency too.
type generator struct {
	sender    string
	text      string
	recipient int
	start     time.Time
	interval  float64 // ns between intended send times
	timeout   time.Duration

	lat  []int64 // ns from intended send time to the full answer
	code []uint16
	ok   *atomic.Int64 // 202s so far, for the monitor

	errMu sync.Mutex
	errs  map[string]int
}

func (g *generator) intended(i int) time.Time {
	return g.start.Add(time.Duration(math.Round(float64(i) * g.interval)))
}

func (g *generator) body(b []byte, i int) []byte {
	b = append(b[:0], `{"sender":"`...)
	b = append(b, g.sender...)
	// UK mobile range +44 7911 xxxxxx: a million valid, distinct recipients.
	b = append(b, `","recipient":"+447911`...)
	r := (g.recipient + i) % 1_000_000
	for d := 100_000; d > 0; d /= 10 {
		b = append(b, byte('0'+r/d%10))
	}
	b = append(b, `","text":"`...)
	b = append(b, g.text...)
	b = append(b, " #"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `"}`...)
	return b
}

func (g *generator) work(p poster, jobs <-chan int) {
	defer p.close()
	var buf []byte
	for i := range jobs {
		intended := g.intended(i)
		if time.Since(intended) > g.timeout {
			// A client would have given up before a connection was free.
			g.fail(i, errQueuedTooLong)
			continue
		}
		buf = g.body(buf, i)
		code, err := p.post(buf, time.Now().Add(g.timeout))
		if err != nil {
			g.fail(i, err)
			continue
		}
		g.lat[i] = int64(time.Since(intended))
		g.code[i] = uint16(code)
		if code == http.StatusAccepted {
			g.ok.Add(1)
		}
	}
}

var errQueuedTooLong = errors.New("timed out waiting for a free connection")

func (g *generator) fail(i int, err error) {
	g.code[i] = codeTransport
	msg := err.Error()
	var ne net.Error
	switch {
	case errors.Is(err, errQueuedTooLong):
		msg = "queued past the timeout"
	case errors.As(err, &ne) && ne.Timeout():
		msg = "timeout"
	case strings.Contains(msg, "connection refused"):
		msg = "connection refused"
	case strings.Contains(msg, "connection reset"):
		msg = "connection reset"
	case strings.Contains(msg, "EOF"):
		msg = "EOF"
	}
	g.errMu.Lock()
	g.errs[msg]++
	g.errMu.Unlock()
}

// sample is one look at end-to-end progress while load runs.
type sample struct {
	T        float64 // seconds since the first intended send
	Pending  int64   // PENDING + SCHEDULED, API counters
	Final    int64   // past PENDING (SENT and every final status), API counters
	Receipt  int64   // settled by a receipt: DELIVERED + UNDELIVERED + EXPIRED
	Deliv    int64   // DELIVERED
	Lag      int64   // consumer-group lag, -1 if unknown
	InFlight float64 // processor's sms_processor_in_flight, -1 if unknown
	Reports  float64 // outcomes recorded by the processor, not yet acknowledged by the API (processor.deliveries), -1 if unknown
	Outbox   float64 // API's sms_outbox_backlog (stored, not yet in Kafka), -1 if unknown
	OK       int64   // 202s the generator has received so far
}

type monitor struct {
	db       *sql.DB
	lag      *lagMeter
	inflight string // processor /metrics
	apiMet   string // API /metrics
	http     *http.Client
	ok       *atomic.Int64

	mu      sync.Mutex
	samples []sample
}

// scrapeGauges reads the named metrics (first series of each) from a
// Prometheus text endpoint.
func scrapeGauges(ctx context.Context, c *http.Client, url string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range names {
			if _, seen := out[name]; seen {
				continue
			}
			if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
				f := strings.Fields(rest)
				if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
					out[name] = v
				}
			}
		}
	}
	return out, sc.Err()
}

func (m *monitor) take(ctx context.Context, start time.Time) {
	s := sample{T: time.Since(start).Seconds(), Lag: -1, InFlight: -1, Reports: -1, Outbox: -1, Pending: -1, Final: -1, Receipt: -1, Deliv: -1, OK: m.ok.Load()}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	if m.db != nil {
		wg.Go(func() {
			if st, err := counters(ctx, m.db); err == nil {
				s.Pending, s.Final, s.Receipt, s.Deliv = st.NotFinal(), st.Final(), st.Receipted(), st.Delivered
			}
			var n int64
			if err := m.db.QueryRowContext(ctx, `SELECT count(*) FROM processor.unreported`).Scan(&n); err == nil {
				s.Reports = float64(n)
			}
		})
	}
	if m.lag != nil {
		wg.Go(func() {
			if r, err := m.lag.Measure(ctx); err == nil {
				s.Lag = r.Lag
			}
		})
	}
	if m.inflight != "" {
		wg.Go(func() {
			if v, err := scrapeGauges(ctx, m.http, m.inflight, "sms_processor_in_flight"); err == nil {
				if x, ok := v["sms_processor_in_flight"]; ok {
					s.InFlight = x
				}
			}
		})
	}
	if m.apiMet != "" {
		wg.Go(func() {
			if v, err := scrapeGauges(ctx, m.http, m.apiMet, "sms_outbox_backlog"); err == nil {
				if x, ok := v["sms_outbox_backlog"]; ok {
					s.Outbox = x
				}
			}
		})
	}
	wg.Wait()
	m.mu.Lock()
	m.samples = append(m.samples, s)
	m.mu.Unlock()
}

func (m *monitor) loop(ctx context.Context, start time.Time, every time.Duration) {
	// First sample at the start, then on a fixed grid; a slow sample skips
	// the grid points it overran rather than bunching samples up.
	for k := 0; ; {
		at := start.Add(time.Duration(k) * every)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		m.take(ctx, start)
		k = max(k+1, int(time.Since(start)/every)+1)
	}
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:18080/v1/messages", "POST target")
	key := fs.String("key", os.Getenv("BENCH_API_KEY"), "API key (default $BENCH_API_KEY)")
	rate := fs.Float64("rate", 5000, "offered requests per second")
	duration := fs.Duration("duration", 20*time.Second, "how long requests are issued")
	warmup := fs.Duration("warmup", 2*time.Second, "requests due in the first warmup are sent and counted, but left out of latency figures and windowed rates")
	conns := fs.Int("conns", 256, "most connections open at once")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout")
	maxOut := fs.Int("max-queued", 50_000, "due requests waiting for a free connection before new ones are skipped (and counted as errors)")
	clientKind := fs.String("client", "raw", "HTTP client: raw (minimal HTTP/1.1, cheap) or nethttp (net/http)")
	sender := fs.String("sender", "+14155550100", "sender of every message (the benchmark gives each phase its own)")
	text := fs.String("text", "smsctl bench: your code is 424242", "message text (a sequence number is appended)")
	recipient := fs.Int("recipient-offset", 0, "first recipient number (0..999999) of the +447911 range")
	samplesOut := fs.String("samples", "", "write progress samples (CSV) here")
	every := fs.Duration("sample-every", time.Second, "progress sampling interval")
	dbURL := fs.String("db", "", "sample the API's counters in this PostgreSQL database")
	brokers := fs.String("brokers", "", "sample consumer lag on these Kafka brokers")
	group := fs.String("group", "processor-service", "consumer group for -brokers")
	topic := fs.String("topic", "sms.requests", "topic for -brokers")
	inflight := fs.String("inflight-url", "", "sample sms_processor_in_flight from the processor's /metrics URL")
	apiMet := fs.String("api-metrics-url", "", "sample sms_outbox_backlog from the API's /metrics URL")
	_ = fs.Parse(args)
	if *rate <= 0 || *duration <= 0 {
		return errors.New("run: -rate and -duration must be positive")
	}
	if *warmup >= *duration {
		return errors.New("run: -warmup must be shorter than -duration")
	}
	debug.SetGCPercent(400)

	n := int(math.Round(*rate * duration.Seconds()))
	target, err := neturl.Parse(*url)
	if err != nil || target.Scheme != "http" {
		return fmt.Errorf("run: -url %q: want an http:// URL", *url)
	}
	auth := "Bearer " + *key
	var newPoster func() poster
	switch *clientKind {
	case "raw":
		newPoster = func() poster { return newRawPoster(target, auth) }
	case "nethttp":
		hc := &http.Client{Transport: newNetHTTPTransport(*conns)}
		newPoster = func() poster { return &netHTTPPoster{client: hc, url: *url, auth: auth} }
	default:
		return fmt.Errorf("run: -client %q: want raw or nethttp", *clientKind)
	}
	g := &generator{
		sender: *sender, text: *text, recipient: *recipient,
		interval: 1e9 / *rate, timeout: *timeout,
		lat: make([]int64, n), code: make([]uint16, n), errs: map[string]int{},
	}
	var okSoFar atomic.Int64
	g.ok = &okSoFar
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mon *monitor
	if *dbURL != "" || *brokers != "" || *inflight != "" || *apiMet != "" {
		mon = &monitor{inflight: *inflight, apiMet: *apiMet, http: &http.Client{Timeout: 2 * time.Second}, ok: &okSoFar}
		if *dbURL != "" {
			db, err := openDB(*dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			mon.db = db
		}
		if *brokers != "" {
			lm, err := newLagMeter(*brokers, *group, *topic)
			if err != nil {
				return err
			}
			defer lm.Close()
			mon.lag = lm
		}
	}

	g.start = time.Now().Add(20 * time.Millisecond)
	var monDone sync.WaitGroup
	if mon != nil {
		monDone.Go(func() { mon.loop(ctx, g.start, *every) })
	}
	fmt.Fprintf(os.Stderr, "loadgen: %d requests at %.0f/s for %s to %s (%d connections, %s client)\n", n, *rate, *duration, *url, *conns, *clientKind)
	jobs := make(chan int, *maxOut)
	var workers sync.WaitGroup
	for range *conns {
		p := newPoster()
		workers.Go(func() { g.work(p, jobs) })
	}
	var lateMax time.Duration
	var late1ms, skipped int
	for i := 0; i < n; {
		now := time.Now()
		for i < n {
			due := g.intended(i)
			if due.After(now) {
				break
			}
			l := now.Sub(due)
			lateMax = max(lateMax, l)
			if l > time.Millisecond {
				late1ms++
			}
			select {
			case jobs <- i:
			default:
				g.code[i] = codeSkipped
				skipped++
			}
			i++
		}
		if i < n {
			if d := time.Until(g.intended(i)); d > 0 {
				time.Sleep(d)
			}
		}
	}
	sendEnd := time.Since(g.start)
	close(jobs)
	// Queued requests past the timeout are dropped by the workers, so this
	// ends about one timeout after the last send.
	workers.Wait()
	allDone := time.Since(g.start)
	cancel()
	monDone.Wait()

	// Tally.
	codes := map[int]int{}
	var answered, ok, transport, notDone int
	var okInWindow int
	warm, end := *warmup, *duration
	lats := make([]int64, 0, n)
	for i := 0; i < n; i++ {
		c := int(g.code[i])
		switch c {
		case codeNotDone:
			notDone++
			continue
		case codeTransport:
			transport++
			continue
		case codeSkipped:
			continue
		}
		answered++
		codes[c]++
		intended := time.Duration(math.Round(float64(i) * g.interval))
		done := intended + time.Duration(g.lat[i])
		if c == http.StatusAccepted {
			ok++
			if done >= warm && done < end {
				okInWindow++
			}
		}
		if intended >= warm {
			lats = append(lats, g.lat[i])
		}
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		if len(lats) == 0 {
			return math.NaN()
		}
		idx := int(math.Ceil(p/100*float64(len(lats)))) - 1
		idx = min(max(idx, 0), len(lats)-1)
		return float64(lats[idx]) / 1e6
	}
	var sum float64
	for _, l := range lats {
		sum += float64(l)
	}
	var codeList []string
	keys := make([]int, 0, len(codes))
	for c := range codes {
		keys = append(keys, c)
	}
	sort.Ints(keys)
	for _, c := range keys {
		codeList = append(codeList, fmt.Sprintf("%d:%d", c, codes[c]))
	}
	var errList []string
	for e, c := range g.errs {
		errList = append(errList, fmt.Sprintf("%s:%d", e, c))
	}
	sort.Strings(errList)

	kv("requests", n)
	kv("offered_rps", float64(n)/sendEnd.Seconds())
	kv("answered", answered)
	kv("ok202", ok)
	kv("non202", answered-ok)
	kv("transport_errors", transport)
	kv("skipped", skipped)
	kv("unanswered", notDone)
	kv("codes", strings.Join(codeList, ","))
	kv("errors", strings.Join(errList, ","))
	kv("accepted_rps_window", float64(okInWindow)/(end-warm).Seconds())
	kv("latency_samples", len(lats))
	if len(lats) > 0 {
		kv("p50_ms", pct(50))
		kv("p90_ms", pct(90))
		kv("p99_ms", pct(99))
		kv("p999_ms", pct(99.9))
		kv("max_ms", float64(lats[len(lats)-1])/1e6)
		kv("mean_ms", sum/float64(len(lats))/1e6)
	}
	kv("gen_late_max_ms", float64(lateMax.Microseconds())/1000)
	kv("gen_late_over_1ms", late1ms)
	kv("send_s", sendEnd.Seconds())
	kv("all_answered_s", allDone.Seconds())

	if mon != nil {
		mon.mu.Lock()
		samples := mon.samples
		mon.mu.Unlock()
		if *samplesOut != "" {
			if err := writeSamples(*samplesOut, samples); err != nil {
				return err
			}
		}
		reportWindow(samples, warm.Seconds(), end.Seconds())
	}
	return nil
}

func writeSamples(path string, samples []sample) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "t_s,pending,final,outbox,lag,in_flight,reports_waiting,ok202,receipted,delivered")
	for _, s := range samples {
		fmt.Fprintf(w, "%.3f,%d,%d,%.0f,%d,%.0f,%.0f,%d,%d,%d\n", s.T, s.Pending, s.Final, s.Outbox, s.Lag, s.InFlight, s.Reports, s.OK, s.Receipt, s.Deliv)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportWindow prints end-to-end figures over the measurement window
// [from, to] seconds: the rate at which messages reached a final status,
// consumer lag at its start and end, and deliveries in flight. Each figure
// uses the first and last samples in the window where it was measured (a
// sample can miss one when a source is slow to answer).
func reportWindow(samples []sample, from, to float64) {
	var in []sample
	for _, s := range samples {
		if s.T >= from-0.05 && s.T <= to+0.05 {
			in = append(in, s)
		}
	}
	if len(in) < 2 {
		kv("window", "too few samples")
		return
	}
	ends := func(valid func(sample) bool) (a, b sample, ok bool) {
		i, j := 0, len(in)-1
		for i < len(in) && !valid(in[i]) {
			i++
		}
		for j >= 0 && !valid(in[j]) {
			j--
		}
		if i >= j {
			return sample{}, sample{}, false
		}
		return in[i], in[j], true
	}
	a, b := in[0], in[len(in)-1]
	kv("window_s", b.T-a.T)
	kv("accepted_rps_sampled", float64(b.OK-a.OK)/(b.T-a.T))
	if a, b, ok := ends(func(s sample) bool { return s.Final >= 0 }); ok {
		kv("final_rps_window", float64(b.Final-a.Final)/(b.T-a.T))
		kv("receipted_rps_window", float64(b.Receipt-a.Receipt)/(b.T-a.T))
		kv("delivered_rps_window", float64(b.Deliv-a.Deliv)/(b.T-a.T))
		kv("pending_start", a.Pending)
		kv("pending_end", b.Pending)
	}
	if a, b, ok := ends(func(s sample) bool { return s.Lag >= 0 }); ok {
		kv("lag_start", a.Lag)
		kv("lag_end", b.Lag)
		var lagMax int64
		var misses int
		for _, s := range in {
			if s.Lag < 0 {
				misses++
			}
			lagMax = max(lagMax, s.Lag)
		}
		kv("lag_max", lagMax)
		kv("lag_missed_samples", misses)
	}
	if a, b, ok := ends(func(s sample) bool { return s.Outbox >= 0 }); ok {
		kv("outbox_start", a.Outbox)
		kv("outbox_end", b.Outbox)
	}
	if a, b, ok := ends(func(s sample) bool { return s.Reports >= 0 }); ok {
		kv("reports_waiting_start", a.Reports)
		kv("reports_waiting_end", b.Reports)
	}
	var inMax, inSum float64
	inN := 0
	for _, s := range in {
		if s.InFlight >= 0 {
			inMax = max(inMax, s.InFlight)
			inSum += s.InFlight
			inN++
		}
	}
	if inN > 0 {
		kv("in_flight_avg", inSum/float64(inN))
		kv("in_flight_max", inMax)
	}
	if _, b, ok := ends(func(s sample) bool { return s.InFlight >= 0 }); ok {
		kv("in_flight_end", b.InFlight)
	}
}
