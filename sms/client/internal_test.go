package client

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
)

// TestPostReportsSplitsToFitTheBodyLimit: a batch whose JSON is over the
// API's limit (long attempt logs) goes in parts that each fit, and the
// results come back one per report, in the order given. Sent whole, the
// API would refuse it with 413 every time and the reports would never
// be applied.
func TestPostReportsSplitsToFitTheBodyLimit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(body))
		mu.Unlock()
		if len(body) > sms.MaxReportBatchBytes { // what the API answers
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		var b sms.ReportBatch
		if err := json.Unmarshal(body, &b); err != nil {
			t.Error(err)
			return
		}
		var res sms.ReportResults
		for _, rep := range b.Reports {
			res.Results = append(res.Results, sms.AppliedReport{MessageID: rep.MessageID, Outcome: sms.ReportApplied})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	}))
	defer srv.Close()

	// 100 reports, each with the most attempts and the longest errors
	// the processor writes: about 10 MB of JSON.
	attempts := make([]sms.Attempt, sms.MaxReportAttempts)
	for i := range attempts {
		attempts[i] = sms.Attempt{Attempt: i + 1, At: time.Now(), Result: "transient", Error: strings.Repeat("x", sms.MaxFailureReason)}
	}
	reports := make([]sms.DeliveryReport, 100)
	for i := range reports {
		reports[i] = sms.DeliveryReport{MessageID: uuid.New(), Status: sms.StatusSent, ProcessedAt: time.Now(), Attempts: attempts}
	}
	res, err := NewInternal(srv.URL, "token", time.Minute).PostReports(context.Background(), reports)
	if err != nil {
		t.Fatalf("PostReports: %v", err)
	}
	if len(res) != len(reports) {
		t.Fatalf("%d results for %d reports", len(res), len(reports))
	}
	for i := range reports {
		if res[i].MessageID != reports[i].MessageID {
			t.Fatalf("result %d is about %s, want %s: results out of order", i, res[i].MessageID, reports[i].MessageID)
		}
	}
	if len(sizes) < 2 {
		t.Errorf("%d requests: the batch was not split", len(sizes))
	}
	for _, n := range sizes {
		if n > sms.MaxReportBatchBytes {
			t.Errorf("a body of %d bytes was sent, over the limit of %d", n, sms.MaxReportBatchBytes)
		}
	}
	t.Logf("%d reports went in %d requests", len(reports), len(sizes))
}
