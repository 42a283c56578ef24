package http

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/webhook"
)

// ProblemBase is the prefix of the problem types of the API's own errors:
// an *sms.Error of Kind "outbox-backlog" is type ProblemBase+"outbox-backlog".
const ProblemBase = "https://smsctl.dev/problems/"

// ProblemValidation is the type of a validation problem (a 400 naming the
// fields).
const ProblemValidation = ProblemBase + "validation"

// statusOf is the one table from the domain's error codes to HTTP statuses.
var statusOf = map[sms.Code]int{
	sms.CodeInvalid:       http.StatusBadRequest,
	sms.CodeMalformed:     http.StatusBadRequest,
	sms.CodeUnauthorized:  http.StatusUnauthorized,
	sms.CodeNotFound:      http.StatusNotFound,
	sms.CodeConflict:      http.StatusConflict,
	sms.CodeUnprocessable: http.StatusUnprocessableEntity,
	sms.CodeRateLimited:   http.StatusTooManyRequests,
	sms.CodeUnavailable:   http.StatusServiceUnavailable,
}

// ProblemFor is the one place where errors become HTTP answers. Users see
// the problem; the cause of a 5xx is logged, not shown. It returns nil for
// errors that are not the domain's (echo's own, and faults: the platform
// answers those).
func ProblemFor(err error) *platform.Problem {
	var ve *sms.ValidationError
	var e *sms.Error
	switch {
	case errors.As(err, &ve):
		vs := make([]platform.Violation, len(ve.Violations))
		for i, v := range ve.Violations {
			vs[i] = platform.Violation{Field: v.Field, Message: v.Message}
		}
		detail := fmt.Sprintf("The request has %d invalid fields.", len(vs))
		if len(vs) == 1 {
			detail = "The request has 1 invalid field."
		}
		return &platform.Problem{Type: ProblemValidation, Title: "Validation failed", Status: http.StatusBadRequest,
			Detail: detail, Violations: vs}
	case errors.As(err, &e):
		status, ok := statusOf[e.Code]
		if !ok {
			return nil // CodeInternal: a 500 whose cause is logged
		}
		p := &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(status), Status: status,
			Detail: e.Message, RetryAfter: int(e.RetryAfter / time.Second)}
		if e.Kind != "" {
			p.Type = ProblemBase + e.Kind
			p.Title = titles[e.Kind]
			if p.Title == "" {
				p.Title = http.StatusText(status)
			}
		}
		return p
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer, and it is no error of ours.
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: "Client Closed Request", Status: 499,
			Detail: "the client closed the request"}
	}
	return nil
}

// titles are the problem titles of the kinds that have their own type.
var titles = map[string]string{
	"idempotency-key-reused":     "Idempotency key reused",
	"batch-too-large":            "Batch too large",
	"not-cancelable":             "Message not cancelable",
	"not-retryable":              "Message not retryable",
	"opted-out":                  "Recipient opted out",
	"outbox-backlog":             "Too many messages waiting",
	"stopping":                   "Server stopping",
	webhook.KindURLRefused:       "Webhook URL refused",
	webhook.KindTooManyEndpoints: "Too many webhook endpoints",
	webhook.KindEndpointDisabled: "Webhook endpoint disabled",
}
