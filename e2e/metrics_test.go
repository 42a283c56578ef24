package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smsctl/smsctl/sms/client"
)

// TestMetricsAgreeWithDatabase runs a known load and checks that the
// counters both roles export say what the database says.
func TestMetricsAgreeWithDatabase(t *testing.T) {
	p := newPlatform(t)
	p.startAPI()
	procAddr := freeAddr(t)
	p.start("processor", "http://"+procAddr+"/readyz", []string{"SMS_PROCESSOR_HTTP_ADDR=" + procAddr,
		"SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=5ms", "SMS_SIM_FAILURE_RATE=0.4", "SMS_SIM_TRANSIENT_SHARE=0.5",
		"SMS_MAX_ATTEMPTS=2", "SMS_RETRY_BACKOFF=5ms"}, "serve", "processor")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 2*time.Minute)
	const n = 300
	postAll(ctx, t, sender, n, 8)
	db := openDB(t, p)
	waitAllDone(t, db, time.Minute)
	rows := finalCounts(t, db)
	var exhausted, sent int
	if err := db.Get(&exhausted, `SELECT count(*) FROM sms.messages WHERE failure_reason LIKE 'exhausted:%'`); err != nil {
		t.Fatal(err)
	}
	// Every message the carrier accepted passed through SENT, whatever its
	// receipt said later.
	if err := db.Get(&sent, `SELECT count(*) FROM sms.message_events WHERE type = 'message.sent'`); err != nil {
		t.Fatal(err)
	}
	if rows["FAILED"] == 0 || exhausted == 0 {
		t.Fatalf("the load produced no failures (%v, %d exhausted): the comparison would prove little", rows, exhausted)
	}

	// Reports are counted when acknowledged, a moment after the status
	// changed: wait until the processor says none is waiting, then hold
	// that and every other figure to the database.
	// One report per outcome, one more per message its receipts settled.
	var settled int
	if err := db.Get(&settled, `SELECT count(*) FROM processor.deliveries WHERE final_status IS NOT NULL`); err != nil {
		t.Fatal(err)
	}
	var api, proc map[string]float64
	eventually(t, 10*time.Second, "processor counted every report", func() (bool, string) {
		api, proc = scrape(t, "http://"+p.apiAddr+"/metrics"), scrape(t, "http://"+procAddr+"/metrics")
		return proc["sms_reports_sent_total"] == float64(n+settled) && proc["sms_reports_waiting"] == 0,
			fmt.Sprintf("%v sent (want %d), %v waiting", proc["sms_reports_sent_total"], n+settled, proc["sms_reports_waiting"])
	})
	// The acknowledged rows are deleted by the next statement, within
	// 100 ms.
	var unreported int
	eventually(t, 10*time.Second, "acknowledged outcomes deleted", func() (bool, string) {
		err := db.Get(&unreported, `SELECT count(*) FROM processor.unreported`)
		return err == nil && unreported == 0, fmt.Sprint(unreported, err)
	})
	checks := []struct {
		metric string
		got    float64
		want   int
	}{
		{"api sms_accepted_total", api["sms_accepted_total"], n},
		{"api sms_queued_total", api["sms_queued_total"], n},
		{"api sms_sent_total", api["sms_sent_total"], sent},
		{"api sms_failed_total", api["sms_failed_total"], rows["FAILED"]},
		{"api sms_processing_duration_seconds_count", api["sms_processing_duration_seconds_count"], n},
		{"processor sms_carrier_calls_total{delivered}", proc[`sms_carrier_calls_total{result="delivered"}`], sent},
		{"processor sms_dlq_total", proc["sms_dlq_total"], exhausted},
		// sms_reports_waiting is not compared here: both sides were waited
		// to 0 above, so the comparison could not fail.
		// TestMonitorCountsWaitingReportsWhenScraped (processor) holds the
		// gauge to the store while reports do wait.
	}
	for _, c := range checks {
		if int(c.got) != c.want {
			t.Errorf("%s = %v, the database says %d", c.metric, c.got, c.want)
		}
	}
	if api[`http_requests_total{code="202",method="POST",route="/v1/messages"}`] != n {
		t.Errorf("http_requests_total for 202 POSTs = %v, want %d", api[`http_requests_total{code="202",method="POST",route="/v1/messages"}`], n)
	}
	var kafka bool
	for k := range api {
		kafka = kafka || strings.HasPrefix(k, "kafka_")
	}
	if !kafka {
		t.Error("no kafka_ client metrics (kprom) on the API")
	}
}

// scrape reads a Prometheus text page: each series by its full name and
// labels, and each metric name summed over its series.
func scrape(t testing.TB, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		out[series] = v
		if name, _, found := strings.Cut(series, "{"); found {
			out[name] += v
		}
	}
	return out
}
