package http

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// reportInput is a delivery report as it arrives. Its fields are strings so
// that a malformed id or timestamp is reported as a violation naming the
// field, like every other invalid field, instead of failing the decode.
type reportInput struct {
	MessageID        string            `json:"message_id"`
	Status           string            `json:"status"`
	FailureReason    *string           `json:"failure_reason"`
	ProcessedAt      string            `json:"processed_at"`
	Traceparent      notNullString     `json:"traceparent"`
	CarrierMessageID string            `json:"carrier_message_id"`
	Attempts         []sms.Attempt     `json:"attempts"`
	Parts            []sms.PartReceipt `json:"parts"`
	Retry            int               `json:"retry"`
}

// notNullString is a string field that may be left out but not be null.
type notNullString struct {
	value string
	null  bool
}

// UnmarshalJSON takes a JSON string, or notes a null.
func (n *notNullString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		n.null = true
		return nil
	}
	return json.Unmarshal(b, &n.value)
}

// report parses and validates in; violations are added to v with prefix
// before each field name.
func (in reportInput) report(prefix string, v *sms.ValidationError) sms.DeliveryReport {
	r := sms.DeliveryReport{Status: sms.Status(in.Status), FailureReason: in.FailureReason, Traceparent: in.Traceparent.value,
		CarrierMessageID: in.CarrierMessageID, Attempts: in.Attempts, Parts: in.Parts, Retry: in.Retry}
	bad := map[string]bool{}
	if in.Traceparent.null {
		v.Add(prefix+"traceparent", "must be a string when present, not null")
		bad["traceparent"] = true
	}
	if in.MessageID != "" {
		id, err := parseID(in.MessageID)
		if err != nil {
			v.Add(prefix+"message_id", "must be a UUID")
			bad["message_id"] = true
		}
		r.MessageID = id
	}
	if in.ProcessedAt != "" {
		at, err := time.Parse(time.RFC3339Nano, in.ProcessedAt)
		switch {
		case err != nil:
			v.Add(prefix+"processed_at", "must be an RFC 3339 timestamp")
			bad["processed_at"] = true
		}
		// PostgreSQL refuses offsets beyond ±15:59, which RFC 3339 allows.
		r.ProcessedAt = at.UTC()
	}
	for i := range r.Attempts {
		r.Attempts[i].At = r.Attempts[i].At.UTC()
	}
	for i := range r.Parts {
		if at := r.Parts[i].DoneAt; at != nil {
			utc := at.UTC()
			r.Parts[i].DoneAt = &utc
		}
	}
	var ve *sms.ValidationError
	if errors.As(r.Validate(), &ve) {
		for _, x := range ve.Violations {
			if !bad[x.Field] {
				v.Add(prefix+x.Field, x.Message)
			}
		}
	}
	return r
}

func (h *Handler) deliveryReport(c echo.Context) error {
	var in reportInput
	if err := readJSON(c, &in); err != nil {
		return err
	}
	var v sms.ValidationError
	r := in.report("", &v)
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.apply(c.Request().Context(), []sms.DeliveryReport{r})
	if err != nil {
		return err
	}
	if res[0].Outcome == sms.ReportNotFound {
		return fmt.Errorf("message %s: %w", r.MessageID, sms.ErrNotFound)
	}
	return c.JSON(http.StatusOK, sms.ReportResult{MessageID: r.MessageID, Status: res[0].Status, Applied: res[0].Outcome == sms.ReportApplied})
}

func (h *Handler) deliveryReports(c echo.Context) error {
	var b struct {
		Reports []reportInput `json:"reports"`
	}
	if err := readJSONLimit(c, &b, MaxReportBatchBytes); err != nil {
		return err
	}
	var v sms.ValidationError
	if len(b.Reports) == 0 || len(b.Reports) > sms.MaxReportBatch {
		v.Add("reports", fmt.Sprintf("must hold 1 to %d reports", sms.MaxReportBatch))
	}
	reports := make([]sms.DeliveryReport, len(b.Reports))
	for i, in := range b.Reports {
		reports[i] = in.report(fmt.Sprintf("reports[%d].", i), &v)
	}
	if err := v.Err(); err != nil {
		return err
	}
	res, err := h.apply(c.Request().Context(), reports)
	if err != nil {
		return err
	}
	// The store applies each message once; answer every report in request
	// order, a repeated id after an applied one being a duplicate.
	byID := make(map[uuid.UUID]sms.AppliedReport, len(res))
	for _, r := range res {
		byID[r.MessageID] = r
	}
	out := make([]sms.AppliedReport, len(reports))
	seen := make(map[uuid.UUID]bool, len(reports))
	for i, r := range reports {
		a := byID[r.MessageID]
		if seen[r.MessageID] && a.Outcome == sms.ReportApplied {
			a.Outcome = sms.ReportDuplicate
		}
		seen[r.MessageID] = true
		out[i] = a
	}
	return c.JSON(http.StatusOK, sms.ReportResults{Results: out})
}

// apply applies reports and counts what actually changed.
func (h *Handler) apply(ctx context.Context, reports []sms.DeliveryReport) ([]sms.AppliedReport, error) {
	res, err := h.store.ApplyReports(ctx, reports)
	if err != nil {
		return nil, err
	}
	traces := make(map[uuid.UUID]string, len(reports))
	for _, r := range reports {
		if r.Traceparent != "" {
			traces[r.MessageID] = r.Traceparent
		}
	}
	now := time.Now()
	for _, r := range res {
		// The report joins its message's trace, linked to the batch request.
		if tp, ok := traces[r.MessageID]; ok {
			_, span := h.tracer.Start(platform.WithTraceparent(context.WithoutCancel(ctx), tp), "sms.apply_report",
				trace.WithLinks(trace.LinkFromContext(ctx)),
				trace.WithAttributes(attribute.String("message_id", r.MessageID.String()), attribute.String("outcome", string(r.Outcome))))
			span.End()
		}
		switch r.Outcome {
		case sms.ReportApplied:
			if r.CreatedAt != nil && r.Status.Final() {
				h.metrics.duration.WithLabelValues(string(r.Status)).Observe(now.Sub(*r.CreatedAt).Seconds())
			}
			h.metrics.reached.WithLabelValues(string(r.Status)).Inc()
			switch r.Status {
			case sms.StatusSent:
				h.metrics.sent.Inc()
			case sms.StatusFailed:
				h.metrics.failed.WithLabelValues(sms.ReasonClass(r.FailureReason)).Inc()
			}
			h.log.Debug().Str("message_id", r.MessageID.String()).Str("status", string(r.Status)).Msg("delivery report applied")
		case sms.ReportDuplicate:
			h.metrics.duplicate.Inc()
		}
	}
	return res, nil
}
