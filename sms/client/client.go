// Package client calls smsctl's HTTP API from Go: Client as an application
// does (send, look up, wait for a final status), and Internal as the
// processor does (delivery reports, with the internal token).
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// Client calls the SMS API as an application would.
type Client struct {
	api
}

// api is a base URL, the bearer credential and an HTTP client.
type api struct {
	baseURL string
	token   string
	http    *http.Client
}

// New returns a client for the API at baseURL using apiKey.
func New(baseURL, apiKey string) *Client {
	return &Client{api{baseURL: strings.TrimRight(baseURL, "/"), token: apiKey, http: &http.Client{Timeout: 30 * time.Second}}}
}

// APIError is an error answer from the API.
type APIError struct {
	Problem platform.Problem
}

func (e *APIError) Error() string {
	msg := fmt.Sprintf("API answered %d %s", e.Problem.Status, e.Problem.Title)
	if e.Problem.Detail != "" {
		msg += ": " + e.Problem.Detail
	}
	for _, v := range e.Problem.Violations {
		msg += fmt.Sprintf("\n  %s: %s", v.Field, v.Message)
	}
	return msg
}

// Send posts a message; idempotencyKey may be empty.
func (c *Client) Send(ctx context.Context, in sms.SendInput, idempotencyKey string) (sms.Message, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return sms.Message{}, fmt.Errorf("encode message: %w", err)
	}
	var m sms.Message
	err = c.do(ctx, http.MethodPost, "/v1/messages", body, func(r *http.Request) {
		if idempotencyKey != "" {
			r.Header.Set("Idempotency-Key", idempotencyKey)
		}
	}, &m)
	return m, err
}

// Get fetches a message by id.
func (c *Client) Get(ctx context.Context, id uuid.UUID) (sms.Message, error) {
	var m sms.Message
	err := c.do(ctx, http.MethodGet, "/v1/messages/"+id.String(), nil, nil, &m)
	return m, err
}

// Wait polls a message until it is final or ctx ends. On an error it
// returns the message as the last successful look found it.
func (c *Client) Wait(ctx context.Context, id uuid.UUID, every time.Duration) (sms.Message, error) {
	var last sms.Message // what the last look found, kept when a look fails
	for {
		m, err := c.Get(ctx, id)
		if err != nil {
			return last, err
		}
		if last = m; m.Status.Final() {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return m, fmt.Errorf("message %s still %s: %w", id, m.Status, ctx.Err())
		case <-time.After(every):
		}
	}
}

func (c *api) do(ctx context.Context, method, path string, body []byte, edit func(*http.Request), out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if edit != nil {
		edit(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		apiErr := &APIError{}
		if json.Unmarshal(data, &apiErr.Problem) != nil || apiErr.Problem.Status == 0 {
			apiErr.Problem = platform.Problem{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Detail: strings.TrimSpace(string(data))}
		}
		return apiErr
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// Cancel cancels a message that has not reached the carrier yet.
func (c *Client) Cancel(ctx context.Context, id uuid.UUID) (sms.Message, error) {
	var m sms.Message
	err := c.do(ctx, http.MethodPost, "/v1/messages/"+id.String()+"/cancel", []byte("{}"), nil, &m)
	return m, err
}

// Retry takes a FAILED, UNDELIVERED or EXPIRED message back to PENDING.
func (c *Client) Retry(ctx context.Context, id uuid.UUID) (sms.Message, error) {
	var m sms.Message
	err := c.do(ctx, http.MethodPost, "/v1/messages/"+id.String()+"/retry", []byte("{}"), nil, &m)
	return m, err
}

// Page is one page of a message list.
type Page struct {
	Messages  []sms.Message `json:"messages"`
	NextAfter *string       `json:"next_after"`
}

// List reads one page of the account's messages, newest first: status
// filters ("" for all), after continues a previous page ("" for the first).
func (c *Client) List(ctx context.Context, status sms.Status, after string, size int) (Page, error) {
	q := url.Values{"size": {strconv.Itoa(size)}}
	if status != "" {
		q.Set("status", string(status))
	}
	if after != "" {
		q.Set("after", after)
	}
	var p Page
	err := c.do(ctx, http.MethodGet, "/v1/messages?"+q.Encode(), nil, nil, &p)
	return p, err
}
