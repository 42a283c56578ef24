package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// Internal calls the API's internal endpoints, as the processor does.
type Internal struct {
	api
}

// NewInternal returns a client for the internal endpoints at baseURL,
// authenticated with the internal token; each call takes at most timeout.
func NewInternal(baseURL, token string, timeout time.Duration) *Internal {
	return &Internal{api{baseURL: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: timeout}}}
}

// PostReports hands delivery reports to the API (at most
// sms.MaxReportBatch) and returns what each did, in the order given.
// Reports whose JSON would make a body over sms.MaxReportBatchBytes, as
// long attempt logs and receipts can, go in several requests, so that
// the API never refuses them for their size. Applying a report twice
// changes nothing, so a failed call may be retried.
func (c *Internal) PostReports(ctx context.Context, reports []sms.DeliveryReport) ([]sms.AppliedReport, error) {
	encoded := make([][]byte, len(reports))
	for i, r := range reports {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode reports: %w", err)
		}
		encoded[i] = b
	}
	const open, sep, end = `{"reports":[`, ",", `]}`
	results := make([]sms.AppliedReport, 0, len(reports))
	for len(encoded) > 0 {
		n, size := 1, len(open)+len(encoded[0])+len(end)
		for n < len(encoded) && size+len(sep)+len(encoded[n]) <= sms.MaxReportBatchBytes {
			size += len(sep) + len(encoded[n])
			n++
		}
		body := make([]byte, 0, size)
		body = append(append(body, open...), bytes.Join(encoded[:n], []byte(sep))...)
		body = append(body, end...)
		var res sms.ReportResults
		if err := c.do(ctx, http.MethodPost, "/v1/internal/delivery-reports", body, nil, &res); err != nil {
			return nil, err
		}
		results, encoded = append(results, res.Results...), encoded[n:]
	}
	return results, nil
}

// Dispatch claims messages for the carrier and returns the API's verdict
// on each (see sms.Verdict).
func (c *Internal) Dispatch(ctx context.Context, claims []sms.Claim) ([]sms.ClaimResult, error) {
	body, err := json.Marshal(struct {
		Claims []sms.Claim `json:"claims"`
	}{claims})
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	var res struct {
		Results []sms.ClaimResult `json:"results"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/internal/dispatch", body, nil, &res); err != nil {
		return nil, err
	}
	return res.Results, nil
}

// PostInbound hands an inbound message to the API.
func (c *Internal) PostInbound(ctx context.Context, m sms.InboundReport) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode inbound message: %w", err)
	}
	var res json.RawMessage
	return c.do(ctx, http.MethodPost, "/v1/internal/inbound", body, nil, &res)
}
