package console

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Consumer lag and carrier binds live in the processors, not in the API the
// console runs in: the console reads them from the processors' /metrics.

// procStats is what the processors' metrics say, summed over them.
type procStats struct {
	Configured bool
	// Scraped counts the processors that answered; Errors says why the
	// others didn't.
	Scraped int
	Errors  []string
	// Lag is the sum of sms_consumer_lag over partitions and processors.
	Lag    float64
	HasLag bool
	// ReportsWaiting is the sum of sms_reports_waiting.
	ReportsWaiting    float64
	HasReportsWaiting bool
	// BindsUp of Binds SMPP binds are bound (sms_smpp_bind_up); no binds
	// with the simulator.
	BindsUp, Binds int
	// BreakerOpen counts processors whose circuit breaker on the API is
	// open or half-open (sms_report_breaker_state > 0).
	BreakerOpen int
	At          time.Time
}

type procScraper struct {
	urls   []string
	client *http.Client

	mu    sync.Mutex
	last  procStats
	until time.Time
}

// procTTL is how long a scrape is reused: every open overview refreshes.
const procTTL = 5 * time.Second

func newProcScraper(urls []string) *procScraper {
	return &procScraper{urls: urls, client: &http.Client{Timeout: 2 * time.Second}}
}

func (p *procScraper) stats(ctx context.Context, now time.Time) procStats {
	if len(p.urls) == 0 {
		return procStats{}
	}
	p.mu.Lock()
	defer p.mu.Unlock() // one scrape at a time; the others wait for its result
	if now.Before(p.until) {
		return p.last
	}
	st := procStats{Configured: true, At: now}
	type result struct {
		url string
		mf  map[string]*dto.MetricFamily
		err error
	}
	results := make(chan result, len(p.urls))
	for _, u := range p.urls {
		go func() {
			mf, err := p.scrape(ctx, u)
			results <- result{u, mf, err}
		}()
	}
	for range p.urls {
		r := <-results
		if r.err != nil {
			st.Errors = append(st.Errors, fmt.Sprintf("%s: %v", r.url, r.err))
			continue
		}
		st.Scraped++
		if f := r.mf["sms_consumer_lag"]; f != nil {
			st.HasLag = true
			for _, m := range f.GetMetric() {
				st.Lag += m.GetGauge().GetValue()
			}
		}
		if f := r.mf["sms_reports_waiting"]; f != nil {
			st.HasReportsWaiting = true
			for _, m := range f.GetMetric() {
				st.ReportsWaiting += m.GetGauge().GetValue()
			}
		}
		if f := r.mf["sms_smpp_bind_up"]; f != nil {
			for _, m := range f.GetMetric() {
				st.Binds++
				if m.GetGauge().GetValue() > 0 {
					st.BindsUp++
				}
			}
		}
		if f := r.mf["sms_report_breaker_state"]; f != nil {
			for _, m := range f.GetMetric() {
				if m.GetGauge().GetValue() > 0 {
					st.BreakerOpen++
				}
			}
		}
	}
	p.last, p.until = st, now.Add(procTTL)
	return st
}

func (p *procScraper) scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(http.MaxBytesReader(nil, resp.Body, 16<<20))
}
