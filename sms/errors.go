package sms

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Code classifies an error by what its caller can do about it; the HTTP
// edge maps each code to a status in one table (sms/http), and nothing
// matches on an error's text.
type Code string

// The codes of the domain's errors.
const (
	// CodeInvalid: the request has fields that are wrong (a *ValidationError).
	CodeInvalid Code = "invalid"
	// CodeMalformed: the request body is not the JSON expected.
	CodeMalformed Code = "malformed"
	// CodeUnauthorized: the credential is missing or wrong.
	CodeUnauthorized Code = "unauthorized"
	// CodeNotFound: no such resource for this account.
	CodeNotFound Code = "not_found"
	// CodeConflict: the resource is not in a state that allows the action.
	CodeConflict Code = "conflict"
	// CodeUnprocessable: well-formed, but refused by a rule of the domain.
	CodeUnprocessable Code = "unprocessable"
	// CodeRateLimited: too many requests; retry after Error.RetryAfter.
	CodeRateLimited Code = "rate_limited"
	// CodeUnavailable: a dependency is down or the service is stopping;
	// retry after Error.RetryAfter.
	CodeUnavailable Code = "unavailable"
	// CodeInternal: a fault of ours; the cause is logged, not shown.
	CodeInternal Code = "internal"
)

// Error is an error of the domain: a Code for whoever must answer it, a
// Kind naming the problem more precisely (it becomes the problem type at
// the HTTP edge), a Message safe to show a client, and the cause.
type Error struct {
	Code Code
	// Kind is a short slug such as "idempotency-key-reused"; empty for the
	// plain form of Code.
	Kind string
	// Message is shown to the client; it never carries the cause.
	Message string
	// RetryAfter, when set, is how long the client should wait.
	RetryAfter time.Duration
	// Err is the cause, for logs.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Is matches another *Error with the same Code, and the same Kind when the
// target names one: errors.Is(err, ErrUnavailable) holds for every outage.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && (t.Kind == "" || t.Kind == e.Kind)
}

// ErrorCode returns the code of the first *Error in err's chain, CodeInvalid
// for a *ValidationError, or CodeInternal.
func ErrorCode(err error) Code {
	var e *Error
	var ve *ValidationError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ve):
		return CodeInvalid
	case errors.As(err, &e):
		return e.Code
	}
	return CodeInternal
}

// Errorf returns an *Error with code and a message for the client.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// The errors the store and the handlers return; callers test them with
// errors.Is.
var (
	// ErrNotFound means no message (or resource) with that id exists for
	// the account.
	ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}
	// ErrIdempotencyMismatch means an Idempotency-Key was reused with
	// another body.
	ErrIdempotencyMismatch = &Error{Code: CodeUnprocessable, Kind: "idempotency-key-reused",
		Message: "this Idempotency-Key was used with a different request in the last 24 hours"}
	// ErrUnavailable means the store can't be reached; the client may retry.
	ErrUnavailable = &Error{Code: CodeUnavailable, Message: "the message store is unavailable; retry later", RetryAfter: time.Second}
	// ErrBacklogFull means too many accepted messages still wait for Kafka.
	ErrBacklogFull = &Error{Code: CodeUnavailable, Kind: "outbox-backlog",
		Message: "too many accepted messages are waiting for the queue; retry later", RetryAfter: 5 * time.Second}
	// ErrStopping means this replica is shutting down and took nothing.
	ErrStopping = &Error{Code: CodeUnavailable, Kind: "stopping", Message: "this API replica is shutting down; retry", RetryAfter: time.Second}
	// ErrUnauthorized means the credential is missing or wrong.
	ErrUnauthorized = &Error{Code: CodeUnauthorized, Message: "a valid API key is required: Authorization: Bearer <api key>"}
	// ErrMalformed means the request body is not the JSON expected.
	ErrMalformed = &Error{Code: CodeMalformed, Message: "malformed request body"}
)

// Unavailable marks cause as an outage of a dependency: ErrUnavailable
// with the cause kept for the log.
func Unavailable(op string, cause error) error {
	return &Error{Code: CodeUnavailable, Message: ErrUnavailable.Message, RetryAfter: ErrUnavailable.RetryAfter,
		Err: fmt.Errorf("%s: %w", op, cause)}
}

// Unauthorized is ErrUnauthorized with a message saying what was wrong.
func Unauthorized(message string) error {
	return &Error{Code: CodeUnauthorized, Message: message}
}

// Malformed is ErrMalformed with a message saying what was wrong.
func Malformed(format string, args ...any) error {
	return &Error{Code: CodeMalformed, Message: ErrMalformed.Message + ": " + fmt.Sprintf(format, args...)}
}

// RateLimited says the client must wait retryAfter; kind tells which limit.
func RateLimited(kind, message string, retryAfter time.Duration) error {
	return &Error{Code: CodeRateLimited, Kind: kind, Message: message, RetryAfter: retryAfter}
}

// ValidationError lists every problem found in a request.
type ValidationError struct {
	Violations []Violation
}

// Violation names a field and what is wrong with it.
type Violation struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Add records one violation.
func (v *ValidationError) Add(field, message string) {
	v.Violations = append(v.Violations, Violation{Field: field, Message: message})
}

// Err returns v as an error, or nil when nothing was wrong.
func (v *ValidationError) Err() error {
	if len(v.Violations) == 0 {
		return nil
	}
	return v
}

func (v *ValidationError) Error() string {
	parts := make([]string, len(v.Violations))
	for i, x := range v.Violations {
		parts[i] = x.Field + ": " + x.Message
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Invalid returns a validation error with one violation.
func Invalid(field, message string) error {
	return &ValidationError{Violations: []Violation{{Field: field, Message: message}}}
}
