package sms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/smsctl/smsctl/platform"
)

// Problem types of the API's own errors.
const (
	ProblemValidation  = "https://smsctl.dev/problems/validation"
	ProblemIdempotency = "https://smsctl.dev/problems/idempotency-key-reused"
	ProblemBacklog     = "https://smsctl.dev/problems/outbox-backlog"
)

type rateLimitedError struct {
	retryAfter int
	// authentication is set when the limit is on failed authentications
	// from the client's address, not on an API key.
	authentication bool
}

func (e *rateLimitedError) Error() string { return "rate limit exceeded" }

// ProblemFor is the one place where errors become HTTP answers. Users see
// the problem; the cause of a 5xx is logged, not shown.
func ProblemFor(err error) *platform.Problem {
	var ve *ValidationError
	var rl *rateLimitedError
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
	case errors.Is(err, ErrMalformed):
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusBadRequest), Status: http.StatusBadRequest,
			Detail: err.Error()}
	case errors.Is(err, ErrNotFound):
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusNotFound), Status: http.StatusNotFound,
			Detail: "no such message"}
	case errors.Is(err, ErrUnauthorized):
		detail := "a valid API key is required: Authorization: Bearer <api key>"
		if _, msg, ok := strings.Cut(err.Error(), ": "); ok {
			detail = msg
		}
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusUnauthorized), Status: http.StatusUnauthorized,
			Detail: detail}
	case errors.As(err, &rl) && rl.authentication:
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusTooManyRequests), Status: http.StatusTooManyRequests,
			Detail: "too many failed authentications from this address; retry after the time in Retry-After", RetryAfter: rl.retryAfter}
	case errors.As(err, &rl):
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusTooManyRequests), Status: http.StatusTooManyRequests,
			Detail: "rate limit exceeded for this API key; retry after the time in Retry-After", RetryAfter: rl.retryAfter}
	case errors.Is(err, ErrIdempotencyMismatch):
		return &platform.Problem{Type: ProblemIdempotency, Title: "Idempotency key reused", Status: http.StatusUnprocessableEntity,
			Detail: "this Idempotency-Key was used with a different request in the last 24 hours"}
	case errors.Is(err, ErrBacklogFull):
		return &platform.Problem{Type: ProblemBacklog, Title: http.StatusText(http.StatusServiceUnavailable), Status: http.StatusServiceUnavailable,
			Detail: "too many accepted messages are waiting for the queue; retry later", RetryAfter: 5}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer, and it is no error of ours.
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: "Client Closed Request", Status: 499,
			Detail: "the client closed the request"}
	case errors.Is(err, ErrWriterStopped):
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusServiceUnavailable), Status: http.StatusServiceUnavailable,
			Detail: "this API replica is shutting down; retry", RetryAfter: 1}
	case errors.Is(err, ErrUnavailable):
		return &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusServiceUnavailable), Status: http.StatusServiceUnavailable,
			Detail: "the message store is unavailable; retry later", RetryAfter: 1}
	}
	return nil
}
