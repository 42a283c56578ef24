package http

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// MaxBatch is the most messages one batch request may hold.
const MaxBatch = 1000

// MaxBatchBytes is the largest body of a batch: MaxBatch messages of the
// longest text, every character written as a six-byte escape, fit.
const MaxBatchBytes = 16 << 20

// BatchResponse answers POST /v1/messages/batch: one result per message,
// in the order of the request.
type BatchResponse struct {
	Accepted int           `json:"accepted"`
	Rejected int           `json:"rejected"`
	Results  []BatchResult `json:"results"`
}

// BatchResult is what became of one message of a batch: 202 and the
// message, or the 4xx a single POST would have got and its problem.
type BatchResult struct {
	Index   int               `json:"index"`
	Status  int               `json:"status"`
	Message *sms.Message      `json:"message,omitempty"`
	Problem *platform.Problem `json:"problem,omitempty"`
}

// sendBatch accepts the valid messages of a batch in one transaction (one
// statement, one outbox row) and reports the invalid ones by index. The
// rate limit counts the batch as its number of messages; an
// Idempotency-Key covers the whole batch and replays its answer.
func (h *Handler) sendBatch(c echo.Context) error {
	body, err := readBody(c, MaxBatchBytes)
	if err != nil {
		return err
	}
	var in struct {
		Messages []json.RawMessage `json:"messages"`
	}
	if err := DecodeJSON(body, &in); err != nil {
		return err
	}
	var v sms.ValidationError
	key := c.Request().Header.Get("Idempotency-Key")
	if _, present := c.Request().Header["Idempotency-Key"]; present && !validIdempotencyKey(key) {
		v.Add("Idempotency-Key", "must be 1 to 255 visible ASCII characters")
	}
	switch n := len(in.Messages); {
	case in.Messages == nil || n == 0:
		v.Add("messages", fmt.Sprintf("required, 1 to %d messages", MaxBatch))
	case n > MaxBatch:
		return &sms.Error{Code: sms.CodeInvalid, Kind: "batch-too-large",
			Message: fmt.Sprintf("a batch holds at most %d messages, got %d", MaxBatch, n)}
	}
	if err := v.Err(); err != nil {
		return err
	}
	// The middleware took one token for the request; the batch costs one
	// per message.
	if extra := len(in.Messages) - 1; extra > 0 {
		if err := h.takeTokens(c, extra); err != nil {
			return err
		}
	}
	if h.backlog != nil && h.backlog.Backlog() >= h.cfg.MaxBacklog {
		return sms.ErrBacklogFull
	}
	results := make([]BatchResult, len(in.Messages))
	var drafts []sms.NewMessage
	var valid []int // index in the request of each draft
	account, trace := accountOf(c), platform.Traceparent(c.Request().Context())
	for i, raw := range in.Messages {
		results[i].Index = i
		if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			results[i].Status, results[i].Problem = h.problem(c, i, sms.Malformed("message %d: expected a JSON object", i))
			continue
		}
		d, err := h.decodeDraft(raw, nil)
		if err != nil {
			results[i].Status, results[i].Problem = h.problem(c, i, err)
			continue
		}
		if h.cfg.OptOuts != nil {
			if err := h.cfg.OptOuts.Check(c.Request().Context(), account, d.Recipient); err != nil {
				if !errors.Is(err, sms.ErrOptedOut) {
					return err // the store is down: the whole batch gets its 503
				}
				results[i].Status, results[i].Problem = h.problem(c, i, err)
				continue
			}
		}
		drafts = append(drafts, sms.NewMessage{AccountID: account, Draft: d, Traceparent: trace})
		valid = append(valid, i)
	}
	respond := func(msgs []sms.Message) ([]byte, error) {
		resp := BatchResponse{Accepted: len(msgs), Rejected: len(results) - len(msgs), Results: results}
		for j, m := range msgs {
			r := &resp.Results[valid[j]]
			r.Status, r.Message = http.StatusAccepted, &m
		}
		return json.Marshal(resp)
	}
	ctx := c.Request().Context()
	var out []byte
	switch {
	case key != "":
		sum := sha256.Sum256(body)
		var replayed bool
		out, replayed, err = h.store.InsertBatchIdempotent(ctx, account, drafts, key, sum[:], respond)
		if replayed {
			c.Response().Header().Set("Idempotent-Replayed", "true")
		} else if err == nil {
			h.metrics.accepted.Add(float64(len(drafts)))
		}
	case len(drafts) > 0:
		var msgs []sms.Message
		if msgs, err = h.store.Insert(ctx, drafts); err == nil {
			h.metrics.accepted.Add(float64(len(msgs)))
			out, err = respond(msgs)
		}
	default:
		out, err = respond(nil)
	}
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, out)
}

// problem is the answer a single POST would have got for err, with the
// message's place in the batch as its instance.
func (h *Handler) problem(c echo.Context, index int, err error) (int, *platform.Problem) {
	p := ProblemFor(err)
	if p == nil {
		p = &platform.Problem{Type: platform.ProblemTypeBlank, Title: http.StatusText(http.StatusBadRequest), Status: http.StatusBadRequest, Detail: err.Error()}
	}
	p.Instance = c.Request().URL.EscapedPath() + "#/messages/" + strconv.Itoa(index)
	return p.Status, p
}

// takeTokens takes n more tokens from the request's API key.
func (h *Handler) takeTokens(c echo.Context, n int) error {
	key, _ := c.Get("api_key").(string)
	if ok, _, retry := h.limits.allowN(key, n); !ok {
		retry = ceilSecond(retry)
		c.Response().Header().Set("RateLimit-Reset", strconv.Itoa(int(retry.Seconds())))
		return sms.RateLimited("", fmt.Sprintf("the batch of %d messages is over the rate limit for this API key; retry after the time in Retry-After", n+1), retry)
	}
	return nil
}
