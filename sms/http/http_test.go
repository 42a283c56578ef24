package http

// The contract tests of the public API: a real server (store, group-commit
// writer, handlers on the platform's echo) over a fresh PostgreSQL database
// per test, and every response checked against the OpenAPI document, so the
// spec and the server cannot drift apart.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/apidoc"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
)

const testInternalToken = "internal-token-for-tests"

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// openAPI loads the served OpenAPI document once per test binary.
func openAPI(tb testing.TB) (*openapi3.T, routers.Router) {
	tb.Helper()
	specOnce.Do(func() {
		specDoc, specErr = openapi3.NewLoader().LoadFromData(apidoc.Spec())
		if specErr == nil {
			specRouter, specErr = legacy.NewRouter(specDoc)
		}
	})
	if specErr != nil {
		tb.Fatalf("OpenAPI document: %v", specErr)
	}
	return specDoc, specRouter
}

// fakeBacklog stands for the outbox relay's sampled backlog.
type fakeBacklog struct{ n atomic.Int64 }

func (b *fakeBacklog) Backlog() int64 { return b.n.Load() }

func (b *fakeBacklog) Wake() {}

// fixedAccount authenticates every key as one account, for tests whose
// database is gone.
type fixedAccount int64

func (a fixedAccount) Authenticate(context.Context, string) (int64, error) { return int64(a), nil }

func (a fixedAccount) Seen(string) bool { return true }

type apiOptions struct {
	db         *sqlx.DB // default: a fresh migrated database
	auth       Authenticator
	rateLimit  float64
	rateBurst  int
	maxBacklog int64
	// authFailureRate and authFailureBurst bound failed authentications
	// per client address.
	authFailureRate  float64
	authFailureBurst int
	// keyCacheTTL is how long keys are cached; 0 looks every one up.
	keyCacheTTL time.Duration
}

// testAPI is a running API server and what a test needs to drive it.
type testAPI struct {
	url     string
	db      *sqlx.DB
	store   *postgres.Store
	keys    *postgres.Keys
	backlog *fakeBacklog
	client  *http.Client
	// key is an API key of account "acme".
	key string
}

// newAPI starts the API in process: the store and the writer on a fresh
// database, the handlers on the platform's echo with health and docs, and
// an httptest server. Everything stops when the test ends.
func newAPI(tb testing.TB, opts ...func(*apiOptions)) *testAPI {
	tb.Helper()
	o := apiOptions{rateLimit: 1e6, rateBurst: 1_000_000, maxBacklog: 1000, authFailureRate: 1e6, authFailureBurst: 1_000_000}
	for _, f := range opts {
		f(&o)
	}
	db := o.db
	if db == nil {
		db = platformtest.NewDB(tb)
	}
	store := postgres.NewStore(db)
	writer := postgres.NewWriter(store, 2, 100, prometheus.NewRegistry())
	if err := writer.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(writer.Stop)

	keys := postgres.NewKeys(db, o.keyCacheTTL)
	var auth Authenticator = keys
	if o.auth != nil {
		auth = o.auth
	}
	backlog := &fakeBacklog{}
	e := platform.NewEcho(zerolog.Nop(), ProblemFor)
	platform.RegisterHealth(e,
		map[string]platform.Check{"postgres": db.PingContext},
		map[string]platform.Check{"kafka": func(context.Context) error { return nil }})
	if err := apidoc.Register(e); err != nil {
		tb.Fatalf("apidoc: %v", err)
	}
	h := NewHandler(store, writer, backlog, auth, Config{
		InternalToken: testInternalToken, MaxBacklog: o.maxBacklog, RateLimit: o.rateLimit, RateBurst: o.rateBurst,
		AuthFailureRate: o.authFailureRate, AuthFailureBurst: o.authFailureBurst,
	}, zerolog.Nop(), prometheus.NewRegistry())
	h.Register(e, e)
	srv := httptest.NewServer(e)
	tb.Cleanup(srv.Close)

	a := &testAPI{url: srv.URL, db: db, store: store, keys: keys, backlog: backlog, client: srv.Client()}
	if o.auth == nil {
		a.key = a.newKey(tb, "acme")
	} else {
		a.key = "sms_00000000_any"
	}
	return a
}

// newKey creates an API key for account (created if new).
func (a *testAPI) newKey(tb testing.TB, account string) string {
	tb.Helper()
	key, _, err := a.keys.CreateKey(context.Background(), account)
	if err != nil {
		tb.Fatalf("create key for %s: %v", account, err)
	}
	return key
}

// reqOpt edits a request before it is sent.
type reqOpt func(*http.Request)

// withKey authenticates with key; "" sends no Authorization header.
func withKey(key string) reqOpt {
	return func(r *http.Request) {
		if key == "" {
			r.Header.Del("Authorization")
			return
		}
		r.Header.Set("Authorization", "Bearer "+key)
	}
}

func withInternalToken() reqOpt { return withKey(testInternalToken) }

func withHeader(name, value string) reqOpt {
	return func(r *http.Request) { r.Header.Set(name, value) }
}

func withoutHeader(name string) reqOpt {
	return func(r *http.Request) { r.Header.Del(name) }
}

// response is what the server answered.
type response struct {
	method, path string
	Status       int
	Header       http.Header
	Body         []byte
}

func (r response) String() string {
	return fmt.Sprintf("%s %s -> %d %s", r.method, r.path, r.Status, bytes.TrimSpace(r.Body))
}

// do sends a request and checks the answer against the OpenAPI document,
// failing the test on any drift. body is sent as is when it is []byte or
// string, as JSON otherwise; nil sends none. The API key of account acme
// and Content-Type application/json are set unless opts change them.
func (a *testAPI) do(tb testing.TB, method, path string, body any, opts ...reqOpt) response {
	tb.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			tb.Fatalf("encode request body: %v", err)
		}
	}
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(raw))
	if err != nil {
		tb.Fatalf("build request %s %s: %v", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	for _, o := range opts {
		o(req)
	}
	res, err := a.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, path, err)
	}
	r := response{method: method, path: path, Status: res.StatusCode, Header: res.Header, Body: data}
	checkContract(tb, req, raw, r)
	return r
}

// checkContract holds one exchange to the OpenAPI document: the response
// must be one the operation documents (status, headers, content type and
// body schema); a request that succeeded must itself be valid by the spec;
// and every error must be a complete problem document.
func checkContract(tb testing.TB, sent *http.Request, body []byte, r response) {
	tb.Helper()
	doc, router := openAPI(tb)
	ctx := context.Background()
	clone := func() *http.Request {
		c := sent.Clone(ctx)
		c.Body = io.NopCloser(bytes.NewReader(body))
		// The spec's server is "/": match on the path alone.
		// The decoded path: the spec's parameters are values, not their
		// percent-encoded form (%2B1415… is +1415…).
		c.URL = &url.URL{Path: sent.URL.Path, RawQuery: sent.URL.RawQuery}
		return c
	}
	if r.Status >= 400 && sent.URL.Path != "/readyz" { // readiness answers its own document
		checkProblem(tb, sent, r)
	}
	route, params, err := router.FindRoute(clone())
	for k, v := range params { // the router hands them over still escaped
		if d, err := url.PathUnescape(v); err == nil {
			params[k] = d
		}
	}
	if err != nil {
		// Not an operation of the API (an unknown route or method): the
		// answer must still be a problem document.
		if r.Status < 400 {
			tb.Errorf("%v: the spec has no such operation (%v), yet the server answered %d", r, err, r.Status)
			return
		}
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			tb.Errorf("%v: body is not JSON: %v", r, err)
			return
		}
		if err := doc.Components.Schemas["Problem"].Value.VisitJSON(v); err != nil {
			tb.Errorf("%v: not a Problem as the spec defines it: %v", r, err)
		}
		return
	}
	if r.Status < 300 {
		err := openapi3filter.ValidateRequest(ctx, &openapi3filter.RequestValidationInput{
			Request: clone(), PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
		})
		if err != nil {
			tb.Errorf("%v: the server accepted a request the spec calls invalid: %v", r, err)
		}
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: clone(), PathParams: params, Route: route},
		Status:                 r.Status,
		Header:                 r.Header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	in.SetBodyBytes(r.Body)
	if err := openapi3filter.ValidateResponse(ctx, in); err != nil {
		tb.Errorf("%v: response does not match the spec: %v", r, err)
	}
}

// problem is an RFC 7807 problem document as the API sends it.
type problem struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Status     int             `json:"status"`
	Detail     string          `json:"detail"`
	Instance   string          `json:"instance"`
	RequestID  string          `json:"request_id"`
	Violations []sms.Violation `json:"violations"`
}

// fields lists the fields the violations name, in order.
func (p problem) fields() []string {
	out := make([]string, len(p.Violations))
	for i, v := range p.Violations {
		out[i] = v.Field
	}
	return out
}

// message returns what the violation of field says, or "".
func (p problem) message(field string) string {
	for _, v := range p.Violations {
		if v.Field == field {
			return v.Message
		}
	}
	return ""
}

// checkProblem checks the parts of an error answer a schema can't: the
// content type, that status and instance repeat the exchange's, and that
// the answers that ask clients to come back say when.
func checkProblem(tb testing.TB, sent *http.Request, r response) {
	tb.Helper()
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("%v: Content-Type %q, want application/problem+json", r, ct)
		return
	}
	var p problem
	if err := json.Unmarshal(r.Body, &p); err != nil {
		tb.Errorf("%v: problem is not JSON: %v", r, err)
		return
	}
	switch {
	case p.Status != r.Status:
		tb.Errorf("%v: problem status %d, HTTP status %d", r, p.Status, r.Status)
	case p.Type == "" || p.Title == "" || p.Detail == "" || p.RequestID == "":
		tb.Errorf("%v: problem lacks type, title, detail or request_id", r)
	case p.Instance != sent.URL.EscapedPath():
		tb.Errorf("%v: instance %q, want the request path %q", r, p.Instance, sent.URL.EscapedPath())
	case p.Type == ProblemValidation && len(p.Violations) == 0:
		tb.Errorf("%v: a validation problem without violations", r)
	}
	if r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable {
		if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 1 {
			tb.Errorf("%v: Retry-After %q, want a number of seconds", r, r.Header.Get("Retry-After"))
		}
	}
}

// want fails the test unless r has status code.
func want(tb testing.TB, r response, code int) {
	tb.Helper()
	if r.Status != code {
		tb.Fatalf("%v: want %d", r, code)
	}
}

// decodeAs decodes a JSON body.
func decodeAs[T any](tb testing.TB, r response) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal(r.Body, &v); err != nil {
		tb.Fatalf("%v: decode %T: %v", r, v, err)
	}
	return v
}

// wantProblem checks the status and returns the problem.
func wantProblem(tb testing.TB, r response, code int) problem {
	tb.Helper()
	want(tb, r, code)
	return decodeAs[problem](tb, r)
}

// wantViolations checks a 400 validation problem naming exactly fields, in
// any order.
func wantViolations(tb testing.TB, r response, fields ...string) problem {
	tb.Helper()
	p := wantProblem(tb, r, http.StatusBadRequest)
	if p.Type != ProblemValidation || p.Title != "Validation failed" {
		tb.Errorf("%v: type %q title %q, want %q, as the spec's examples show", r, p.Type, p.Title, ProblemValidation)
	}
	if !strings.HasPrefix(p.Detail, fmt.Sprintf("The request has %d invalid field", len(p.Violations))) {
		tb.Errorf("%v: detail %q does not count the %d violations", r, p.Detail, len(p.Violations))
	}
	got, wantFields := slices.Sorted(slices.Values(p.fields())), slices.Sorted(slices.Values(fields))
	if !slices.Equal(got, wantFields) {
		tb.Errorf("%v: violations name %q, want %q", r, got, wantFields)
	}
	for _, v := range p.Violations {
		if strings.TrimSpace(v.Message) == "" {
			tb.Errorf("%v: violation of %s has no message", r, v.Field)
		}
	}
	return p
}

// send posts a valid message and returns it.
func (a *testAPI) send(tb testing.TB, in sms.SendInput, opts ...reqOpt) sms.Message {
	tb.Helper()
	r := a.do(tb, http.MethodPost, "/v1/messages", in, opts...)
	want(tb, r, http.StatusAccepted)
	return decodeAs[sms.Message](tb, r)
}

// report applies one delivery report through the internal endpoint.
func (a *testAPI) report(tb testing.TB, id uuid.UUID, status sms.Status, reason string) sms.ReportResult {
	tb.Helper()
	body := map[string]any{"message_id": id, "status": status, "processed_at": time.Now().UTC().Format(time.RFC3339Nano)}
	if reason != "" {
		body["failure_reason"] = reason
	}
	r := a.do(tb, http.MethodPost, "/v1/internal/delivery-report", body, withInternalToken())
	want(tb, r, http.StatusOK)
	return decodeAs[sms.ReportResult](tb, r)
}

func (a *testAPI) stats(tb testing.TB, opts ...reqOpt) sms.Stats {
	tb.Helper()
	r := a.do(tb, http.MethodGet, "/v1/messages/stats", nil, opts...)
	want(tb, r, http.StatusOK)
	return decodeAs[sms.Stats](tb, r)
}

func (a *testAPI) page(tb testing.TB, path string, opts ...reqOpt) PageResponse {
	tb.Helper()
	r := a.do(tb, http.MethodGet, path, nil, opts...)
	want(tb, r, http.StatusOK)
	return decodeAs[PageResponse](tb, r)
}

// count counts rows of an sms table.
func count(tb testing.TB, db *sqlx.DB, table string) int {
	tb.Helper()
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM sms.`+table); err != nil {
		tb.Fatalf("count %s: %v", table, err)
	}
	return n
}

// ids lists the ids of msgs in order.
func ids(msgs []sms.Message) []uuid.UUID {
	out := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		out[i] = m.ID
	}
	return out
}

var hello = sms.SendInput{Sender: "+14155552671", Recipient: "+442071838750", Text: "Hello"}

// --- POST /v1/messages ---

func TestSendMessage(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	tests := []struct {
		name                  string
		in                    sms.SendInput
		wantSender, wantRecip string
	}{
		{"e164", hello, "+14155552671", "+442071838750"},
		{"typed with parentheses and spaces", sms.SendInput{Sender: "+1 (415) 555-2671", Recipient: "+44 20 7183 8750", Text: "See you at 6."}, "+14155552671", "+442071838750"},
		{"dots", sms.SendInput{Sender: "+33.1.23.45.67.89", Recipient: "+1.415.555.2671", Text: "x"}, "+33123456789", "+14155552671"},
		{"dashes", sms.SendInput{Sender: "+1-415-555-2671", Recipient: "+49-30-1234567", Text: "x"}, "+14155552671", "+49301234567"},
		{"surrounding spaces", sms.SendInput{Sender: "  +14155552671 ", Recipient: "\t+442071838750\n", Text: "x"}, "+14155552671", "+442071838750"},
		{"alphanumeric sender", sms.SendInput{Sender: "Acme Bank", Recipient: "+14155552671", Text: "Your code is 1234"}, "Acme Bank", "+14155552671"},
		{"alphanumeric sender trimmed", sms.SendInput{Sender: " Acme ", Recipient: "+14155552671", Text: "x"}, "Acme", "+14155552671"},
		{"alphanumeric sender of 11 characters", sms.SendInput{Sender: "ACME 2FA 11", Recipient: "+14155552671", Text: "x"}, "ACME 2FA 11", "+14155552671"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now().Add(-time.Second)
			r := a.do(t, http.MethodPost, "/v1/messages", tt.in)
			want(t, r, http.StatusAccepted)
			m := decodeAs[sms.Message](t, r)
			if m.ID == uuid.Nil || m.ID.Version() != 7 {
				t.Errorf("id %s, want a UUIDv7", m.ID)
			}
			if got := r.Header.Get("Location"); got != "/v1/messages/"+m.ID.String() {
				t.Errorf("Location %q, want /v1/messages/%s", got, m.ID)
			}
			if r.Header.Get("Idempotent-Replayed") != "" {
				t.Errorf("Idempotent-Replayed %q on a first request", r.Header.Get("Idempotent-Replayed"))
			}
			if m.Sender != tt.wantSender || m.Recipient != tt.wantRecip || m.Text != tt.in.Text {
				t.Errorf("got %q -> %q %q, want %q -> %q %q", m.Sender, m.Recipient, m.Text, tt.wantSender, tt.wantRecip, tt.in.Text)
			}
			if m.Status != sms.StatusPending || m.FailureReason != nil || m.Encoding != sms.EncodingGSM7 || m.Segments != 1 {
				t.Errorf("got status %s reason %v encoding %s segments %d, want PENDING <nil> GSM-7 1", m.Status, m.FailureReason, m.Encoding, m.Segments)
			}
			if m.CreatedAt.Before(before) || !m.UpdatedAt.Equal(m.CreatedAt) {
				t.Errorf("created_at %v updated_at %v, want now and equal", m.CreatedAt, m.UpdatedAt)
			}
			// A 202 means stored: the message reads back as it was answered.
			got := a.do(t, http.MethodGet, r.Header.Get("Location"), nil)
			want(t, got, http.StatusOK)
			stored := decodeAs[sms.Message](t, got)
			if stored.ID != m.ID || stored.Sender != m.Sender || stored.Recipient != m.Recipient || stored.Text != m.Text ||
				stored.Encoding != m.Encoding || stored.Segments != m.Segments || !stored.CreatedAt.Equal(m.CreatedAt) {
				t.Errorf("stored %+v, answered %+v", stored, m)
			}
			var outbox int
			if err := a.db.Get(&outbox, `SELECT count(*) FROM sms.outbox WHERE $1 = ANY(message_ids)`, m.ID); err != nil || outbox != 1 {
				t.Errorf("outbox rows for the message: %d (%v), want 1", outbox, err)
			}
		})
	}
}

func TestSendEncodingAndSegments(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	rep := strings.Repeat
	tests := []struct {
		name     string
		text     string
		encoding sms.Encoding
		segments int
	}{
		{"160 GSM characters", rep("a", 160), sms.EncodingGSM7, 1},
		{"161 GSM characters", rep("a", 161), sms.EncodingGSM7, 2},
		{"306 GSM characters fill two parts", rep("a", 306), sms.EncodingGSM7, 2},
		{"307 GSM characters", rep("a", 307), sms.EncodingGSM7, 3},
		{"one accent outside GSM-7", "Ça coûte 5€? àéèùìò ÄÖÑÜ ß", sms.EncodingUCS2, 1}, // û
		{"GSM basic table only", "Ça fait 5£ àéèùìò ÄÖÑÜ ß ΔΦΓΛΩΠΨΣΘΞ", sms.EncodingGSM7, 1},
		{"70 UCS-2 characters", rep("ж", 70), sms.EncodingUCS2, 1},
		{"71 UCS-2 characters", rep("ж", 71), sms.EncodingUCS2, 2},
		{"134 UCS-2 characters fill two parts", rep("ж", 134), sms.EncodingUCS2, 2},
		{"135 UCS-2 characters", rep("ж", 135), sms.EncodingUCS2, 3},
		{"one non-GSM character turns the text UCS-2", rep("a", 69) + "ç", sms.EncodingUCS2, 1},
		{"one non-GSM character in 71", rep("a", 70) + "ç", sms.EncodingUCS2, 2},
		{"backtick is not GSM-7", "`code`", sms.EncodingUCS2, 1},
		{"emoji is a surrogate pair", "😀", sms.EncodingUCS2, 1},
		{"35 emoji are 70 code units", rep("😀", 35), sms.EncodingUCS2, 1},
		{"36 emoji are 72 code units", rep("😀", 36), sms.EncodingUCS2, 2},
		{"69 characters and an emoji are 71 units", rep("a", 69) + "😀", sms.EncodingUCS2, 2},
		{"a pair is not split across parts", rep("a", 66) + "😀" + rep("a", 66), sms.EncodingUCS2, 3}, // 134 units, yet 3 parts
		{"flag and family emoji", "🇫🇷👨‍👩‍👧", sms.EncodingUCS2, 1},
		{"80 euro signs are 160 septets", rep("€", 80), sms.EncodingGSM7, 1},
		{"81 euro signs are 162 septets", rep("€", 81), sms.EncodingGSM7, 2},
		{"159 characters and one extension character", rep("a", 159) + "€", sms.EncodingGSM7, 2},
		{"every extension character counts two", rep(`{}[]~|^\`, 10), sms.EncodingGSM7, 1},
		{"extension characters over 160 septets", rep(`{}[]~|^\`, 10) + "a", sms.EncodingGSM7, 2},
		{"an escape is not split across parts", rep("a", 152) + "{" + rep("a", 152), sms.EncodingGSM7, 3}, // 306 septets, yet 3 parts
		{"1600 GSM characters", rep("a", 1600), sms.EncodingGSM7, 11},
		{"1600 emoji", rep("😀", 1600), sms.EncodingUCS2, 49},
		{"1600 extension characters", rep("€", 1600), sms.EncodingGSM7, 22}, // 76 a part
		{"newlines are GSM-7", "line 1\nline 2\r\n", sms.EncodingGSM7, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := a.send(t, sms.SendInput{Sender: "Acme", Recipient: "+14155552671", Text: tt.text})
			if m.Encoding != tt.encoding || m.Segments != tt.segments {
				t.Errorf("%s, %d segments; want %s, %d", m.Encoding, m.Segments, tt.encoding, tt.segments)
			}
			if m.Text != tt.text {
				t.Errorf("text changed: %q", m.Text)
			}
		})
	}
}

func TestSendValidation(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	long := strings.Repeat("a", 1601)
	tests := []struct {
		name   string
		body   string
		opts   []reqOpt
		fields []string
		// contains, when set, must be in the violation of the first field.
		contains string
	}{
		{"every field at once", `{"sender":"12ab!","recipient":"123","text":""}`, nil, []string{"sender", "recipient", "text"}, ""},
		{"missing fields", `{}`, nil, []string{"sender", "recipient", "text"}, "required"},
		{"null fields", `{"sender":null,"recipient":null,"text":null}`, nil, []string{"sender", "recipient", "text"}, "required"},
		{"text is a number", `{"sender":"Acme","recipient":"+14155552671","text":5}`, nil, []string{"text"}, "string"},
		{"every field of a wrong type", `{"sender":1,"recipient":true,"text":{"a":1}}`, nil, []string{"sender", "recipient", "text"}, "string"},
		{"wrong type and invalid value", `{"sender":"x!","recipient":"+14155552671","text":["a"]}`, nil, []string{"sender", "text"}, ""},
		{"whitespace only", `{"sender":"Acme","recipient":"+14155552671","text":" \n\t\u00a0\u2003"}`, nil, []string{"text"}, "whitespace"},
		{"NUL in text", `{"sender":"Acme","recipient":"+14155552671","text":"a\u0000b"}`, nil, []string{"text"}, "NUL"},
		{"1601 characters", `{"sender":"Acme","recipient":"+14155552671","text":"` + long + `"}`, nil, []string{"text"}, "1600"},
		{"empty text", `{"sender":"Acme","recipient":"+14155552671","text":""}`, nil, []string{"text"}, ""},
		{"unpaired high surrogate", `{"sender":"Acme","recipient":"+14155552671","text":"hi \ud83d"}`, nil, []string{"body"}, "surrogate"},
		{"unpaired low surrogate", `{"sender":"Acme","recipient":"+14155552671","text":"\ude00 hi"}`, nil, []string{"body"}, "surrogate"},
		{"reversed surrogates", `{"sender":"Acme","recipient":"+14155552671","text":"\ude00\ud83d"}`, nil, []string{"body"}, "surrogate"},
		{"recipient without country code", `{"sender":"Acme","recipient":"4155552671","text":"x"}`, nil, []string{"recipient"}, "+"},
		{"recipient with letters", `{"sender":"Acme","recipient":"+1 415 CALL NOW","text":"x"}`, nil, []string{"recipient"}, ""},
		{"recipient too long", `{"sender":"Acme","recipient":"+1234567890123456","text":"x"}`, nil, []string{"recipient"}, "15"},
		{"recipient unknown country code", `{"sender":"Acme","recipient":"+999 1234 5678","text":"x"}`, nil, []string{"recipient"}, "country"},
		{"recipient too short for its country", `{"sender":"Acme","recipient":"+1 555 2671","text":"x"}`, nil, []string{"recipient"}, "possible"},
		{"recipient alphanumeric", `{"sender":"Acme","recipient":"Acme","text":"x"}`, nil, []string{"recipient"}, ""},
		{"sender ID too long", `{"sender":"Acme Bank Ltd","recipient":"+14155552671","text":"x"}`, nil, []string{"sender"}, "11"},
		{"sender ID with punctuation", `{"sender":"Acme-Bank","recipient":"+14155552671","text":"x"}`, nil, []string{"sender"}, ""},
		{"sender ID not ASCII", `{"sender":"Café","recipient":"+14155552671","text":"x"}`, nil, []string{"sender"}, ""},
		{"sender digits without plus", `{"sender":"4155552671","recipient":"+14155552671","text":"x"}`, nil, []string{"sender"}, "+"},
		{"Idempotency-Key too long", `{"sender":"Acme","recipient":"+14155552671","text":"x"}`, []reqOpt{withHeader("Idempotency-Key", strings.Repeat("k", 256))}, []string{"Idempotency-Key"}, ""},
		{"Idempotency-Key with a space", `{"sender":"Acme","recipient":"+14155552671","text":"x"}`, []reqOpt{withHeader("Idempotency-Key", "my key")}, []string{"Idempotency-Key"}, ""},
		{"Idempotency-Key with a tab", `{"sender":"Acme","recipient":"+14155552671","text":"x"}`, []reqOpt{withHeader("Idempotency-Key", "my\tkey")}, []string{"Idempotency-Key"}, ""},
		{"Idempotency-Key not ASCII", `{"sender":"Acme","recipient":"+14155552671","text":"x"}`, []reqOpt{withHeader("Idempotency-Key", "clé")}, []string{"Idempotency-Key"}, ""},
		{"Idempotency-Key empty", `{"sender":"Acme","recipient":"+14155552671","text":"x"}`, []reqOpt{withHeader("Idempotency-Key", "")}, []string{"Idempotency-Key"}, ""},
		{"Idempotency-Key and body", `{"sender":"Acme","recipient":"1","text":""}`, []reqOpt{withHeader("Idempotency-Key", "a b")}, []string{"Idempotency-Key", "recipient", "text"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := wantViolations(t, a.do(t, http.MethodPost, "/v1/messages", tt.body, tt.opts...), tt.fields...)
			if tt.contains != "" && !strings.Contains(p.message(tt.fields[0]), tt.contains) {
				t.Errorf("violation of %s is %q, want it to mention %q", tt.fields[0], p.message(tt.fields[0]), tt.contains)
			}
		})
	}
	t.Cleanup(func() {
		if n := smstest.Count(t, a.db, "messages"); n != 0 {
			t.Errorf("invalid requests stored %d messages", n)
		}
	})
}

func TestSendMalformed(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	valid := `{"sender":"Acme","recipient":"+14155552671","text":"x"}`
	tests := []struct {
		name, body string
		wantField  string // a validation problem naming this field, or "" for a plain 400
	}{
		{"truncated JSON", `{"sender":"Acme","recipient":`, ""},
		{"not JSON", `sender=Acme&recipient=x`, ""},
		{"trailing garbage", valid + ` x`, ""},
		{"two objects", valid + valid, ""},
		{"empty body", ``, ""},
		{"only whitespace", " \n ", ""},
		{"an array", `[` + valid + `]`, ""},
		{"a string", `"hello"`, ""},
		{"a number", `42`, ""},
		{"a JSON null", `null`, ""},
		{"single quotes", `{'sender':'Acme'}`, ""},
		{"trailing comma", `{"sender":"Acme",}`, ""},
		{"invalid UTF-8 in text", "{\"sender\":\"Acme\",\"recipient\":\"+14155552671\",\"text\":\"caf\xe9\"}", "body"},
		{"invalid UTF-8 outside strings", "\xff" + valid, "body"},
		{"bad escape", `{"sender":"Acme","recipient":"+14155552671","text":"\x41"}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := a.do(t, http.MethodPost, "/v1/messages", tt.body)
			if tt.wantField != "" {
				wantViolations(t, r, tt.wantField)
				return
			}
			p := wantProblem(t, r, http.StatusBadRequest)
			if p.Type != platform.ProblemTypeBlank || !strings.Contains(p.Detail, "body") && !strings.Contains(p.Detail, "JSON") {
				t.Errorf("problem %+v, want about:blank with a detail about the body", p)
			}
			if strings.Contains(p.Detail, "sms.") || strings.Contains(p.Detail, "Go ") {
				t.Errorf("detail %q leaks Go type names", p.Detail)
			}
		})
	}
	t.Cleanup(func() {
		if n := smstest.Count(t, a.db, "messages"); n != 0 {
			t.Errorf("malformed requests stored %d messages", n)
		}
	})
}

func TestSendContentTypeAndSize(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	valid := `{"sender":"Acme","recipient":"+14155552671","text":"x"}`
	// padTo pads a valid body with trailing whitespace to n bytes.
	padTo := func(n int) string { return valid + strings.Repeat(" ", n-len(valid)) }
	tests := []struct {
		name string
		body string
		opts []reqOpt
		code int
	}{
		{"text/plain", valid, []reqOpt{withHeader("Content-Type", "text/plain")}, http.StatusUnsupportedMediaType},
		{"form", valid, []reqOpt{withHeader("Content-Type", "application/x-www-form-urlencoded")}, http.StatusUnsupportedMediaType},
		{"no Content-Type", valid, []reqOpt{withoutHeader("Content-Type")}, http.StatusUnsupportedMediaType},
		{"garbage Content-Type", valid, []reqOpt{withHeader("Content-Type", ";;;")}, http.StatusUnsupportedMediaType},
		{"json with charset", valid, []reqOpt{withHeader("Content-Type", "application/json; charset=utf-8")}, http.StatusAccepted},
		{"exactly 64 KiB", padTo(MaxBodyBytes), nil, http.StatusAccepted},
		{"64 KiB and one byte", padTo(MaxBodyBytes + 1), nil, http.StatusRequestEntityTooLarge},
		{"1 MiB of text", `{"sender":"Acme","recipient":"+14155552671","text":"` + strings.Repeat("a", 1<<20) + `"}`, nil, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := a.do(t, http.MethodPost, "/v1/messages", tt.body, tt.opts...)
			want(t, r, tt.code)
		})
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	revoked := a.newKey(t, "acme")
	keys, err := a.keys.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The newest key is the one just created.
	at, already, err := a.keys.RevokeKey(context.Background(), keys[0].ID)
	if err != nil || already {
		t.Fatalf("RevokeKey = %v, %v; want a first revocation", already, err)
	}
	if again, already, err := a.keys.RevokeKey(context.Background(), keys[0].ID); err != nil || !already || !again.Equal(at) {
		t.Errorf("second RevokeKey = %s, %v, %v; want the first time (%s), already revoked", again, already, err, at)
	}
	if _, _, err := a.keys.RevokeKey(context.Background(), -1); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("RevokeKey of no key: %v, want ErrNotFound", err)
	}
	tests := []struct {
		name string
		opt  reqOpt
	}{
		{"no Authorization", withKey("")},
		{"basic auth", withHeader("Authorization", "Basic YWNtZTpzZWNyZXQ=")},
		{"bearer without token", withHeader("Authorization", "Bearer ")},
		{"not a key", withKey("hunter2")},
		{"unknown key", withKey("sms_deadbeef_" + strings.Repeat("0", 48))},
		{"a key with the secret changed", withKey(a.key[:len(a.key)-4] + "0000")},
		{"revoked key", withKey(revoked)},
		{"internal token on a client route", withInternalToken()},
		{"very long key", withKey("sms_" + strings.Repeat("a", 10000))},
	}
	routes := []struct{ method, path string }{
		{http.MethodPost, "/v1/messages"},
		{http.MethodGet, "/v1/messages"},
		{http.MethodGet, "/v1/messages/" + uuid.NewString()},
		{http.MethodGet, "/v1/messages/stats"},
		{http.MethodGet, "/v1/messages/failed"},
		{http.MethodGet, "/v1/users/%2B14155552671/messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, rt := range routes {
				var body any
				if rt.method == http.MethodPost {
					body = hello
				}
				r := a.do(t, rt.method, rt.path, body, tt.opt)
				wantProblem(t, r, http.StatusUnauthorized)
				if got := r.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("%v: WWW-Authenticate %q, want Bearer", r, got)
				}
			}
		})
	}
	t.Run("valid key", func(t *testing.T) {
		t.Parallel()
		want(t, a.do(t, http.MethodGet, "/v1/messages", nil), http.StatusOK)
		want(t, a.do(t, http.MethodGet, "/v1/messages", nil, withHeader("Authorization", "bearer "+a.key)), http.StatusOK)
	})
	t.Cleanup(func() {
		if n := smstest.Count(t, a.db, "messages"); n != 0 {
			t.Errorf("unauthenticated requests stored %d messages", n)
		}
	})
}

// --- Idempotency ---

func TestIdempotency(t *testing.T) {
	t.Parallel()
	t.Run("same key and body replays", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		key := withHeader("Idempotency-Key", "order-1234")
		first := a.do(t, http.MethodPost, "/v1/messages", hello, key)
		want(t, first, http.StatusAccepted)
		again := a.do(t, http.MethodPost, "/v1/messages", hello, key)
		want(t, again, http.StatusAccepted)
		m1, m2 := decodeAs[sms.Message](t, first), decodeAs[sms.Message](t, again)
		if m1.ID != m2.ID || !m1.CreatedAt.Equal(m2.CreatedAt) {
			t.Errorf("replay answered %s, first %s", m2.ID, m1.ID)
		}
		if first.Header.Get("Idempotent-Replayed") != "" || again.Header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("Idempotent-Replayed %q then %q, want absent then true", first.Header.Get("Idempotent-Replayed"), again.Header.Get("Idempotent-Replayed"))
		}
		if again.Header.Get("Location") != "/v1/messages/"+m1.ID.String() {
			t.Errorf("replay Location %q", again.Header.Get("Location"))
		}
		// The same message normalized the same way is the same request.
		typed := sms.SendInput{Sender: "+1 (415) 555-2671", Recipient: "+44 20 7183 8750", Text: hello.Text}
		if m3 := a.send(t, typed, key); m3.ID != m1.ID {
			t.Errorf("the same request typed differently made message %s, want %s", m3.ID, m1.ID)
		}
		if n, o := smstest.Count(t, a.db, "messages"), smstest.Count(t, a.db, "outbox"); n != 1 || o != 1 {
			t.Errorf("%d messages and %d outbox rows, want 1 and 1", n, o)
		}
		if st := a.stats(t); st.TotalMessages != 1 || st.PendingMessages != 1 {
			t.Errorf("stats %+v, want one pending message", st)
		}
		// A replay after delivery answers the message as it is now.
		a.report(t, m1.ID, sms.StatusSent, "")
		if m4 := a.send(t, hello, key); m4.ID != m1.ID || m4.Status != sms.StatusSent {
			t.Errorf("replay after delivery: %s %s, want %s SENT", m4.ID, m4.Status, m1.ID)
		}
	})
	t.Run("same key different body", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		key := withHeader("Idempotency-Key", "order-1234")
		a.send(t, hello, key)
		for _, other := range []sms.SendInput{
			{Sender: hello.Sender, Recipient: hello.Recipient, Text: hello.Text + "!"},
			{Sender: "Acme", Recipient: hello.Recipient, Text: hello.Text},
			{Sender: hello.Sender, Recipient: "+14155552671", Text: hello.Text},
		} {
			p := wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", other, key), http.StatusUnprocessableEntity)
			if p.Type != ProblemBase+"idempotency-key-reused" {
				t.Errorf("type %q, want %q", p.Type, ProblemBase+"idempotency-key-reused")
			}
		}
		if n := smstest.Count(t, a.db, "messages"); n != 1 {
			t.Errorf("%d messages, want 1", n)
		}
		// An invalid body with a used key is a 400, not a 422.
		wantViolations(t, a.do(t, http.MethodPost, "/v1/messages", sms.SendInput{Sender: "Acme", Recipient: "x", Text: "y"}, key), "recipient")
	})
	t.Run("concurrent retries make one message", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		const n = 20
		var wg sync.WaitGroup
		got := make([]response, n)
		for i := range n {
			wg.Go(func() {
				got[i] = a.do(t, http.MethodPost, "/v1/messages", hello, withHeader("Idempotency-Key", "retry-me"))
			})
		}
		wg.Wait()
		replayed := 0
		var id uuid.UUID
		for i, r := range got {
			want(t, r, http.StatusAccepted)
			m := decodeAs[sms.Message](t, r)
			if i == 0 {
				id = m.ID
			} else if m.ID != id {
				t.Errorf("request %d got message %s, request 0 got %s", i, m.ID, id)
			}
			if r.Header.Get("Idempotent-Replayed") == "true" {
				replayed++
			}
		}
		if replayed != n-1 {
			t.Errorf("%d answers replayed, want %d", replayed, n-1)
		}
		if m, o := smstest.Count(t, a.db, "messages"), smstest.Count(t, a.db, "outbox"); m != 1 || o != 1 {
			t.Errorf("%d messages and %d outbox rows, want 1 and 1", m, o)
		}
		if st := a.stats(t); st.PendingMessages != 1 {
			t.Errorf("stats %+v, want one pending", st)
		}
	})
	t.Run("keys are per account", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		other := a.newKey(t, "globex")
		m1 := a.send(t, hello, withHeader("Idempotency-Key", "k1"))
		m2 := a.send(t, hello, withHeader("Idempotency-Key", "k1"), withKey(other))
		if m1.ID == m2.ID {
			t.Fatalf("two accounts share message %s", m1.ID)
		}
		if n := smstest.Count(t, a.db, "messages"); n != 2 {
			t.Errorf("%d messages, want 2", n)
		}
	})
	t.Run("no key makes a message per request", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		if m1, m2 := a.send(t, hello), a.send(t, hello); m1.ID == m2.ID {
			t.Errorf("two sends without a key share id %s", m1.ID)
		}
	})
	t.Run("expired key is forgotten", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		m1 := a.send(t, hello, withHeader("Idempotency-Key", "old"))
		if _, err := a.db.Exec(`UPDATE sms.idempotency_keys SET created_at = now() - interval '25 hours'`); err != nil {
			t.Fatal(err)
		}
		m2 := a.send(t, sms.SendInput{Sender: "Acme", Recipient: hello.Recipient, Text: "new"}, withHeader("Idempotency-Key", "old"))
		if m2.ID == m1.ID {
			t.Errorf("a key older than 24 h still replayed")
		}
		n, err := a.store.DeleteExpiredIdempotencyKeys(context.Background())
		if err != nil || n != 0 {
			t.Errorf("DeleteExpiredIdempotencyKeys: %d, %v; want 0 (the key was reclaimed)", n, err)
		}
	})
}

// --- GET /v1/messages/{id} ---

func TestGetMessage(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	m := a.send(t, hello)
	other := a.newKey(t, "globex")
	tests := []struct {
		name  string
		path  string
		opts  []reqOpt
		code  int
		field string
	}{
		{"own message", "/v1/messages/" + m.ID.String(), nil, http.StatusOK, ""},
		{"upper case id", "/v1/messages/" + strings.ToUpper(m.ID.String()), nil, http.StatusOK, ""},
		{"unknown id", "/v1/messages/" + uuid.NewString(), nil, http.StatusNotFound, ""},
		{"nil uuid", "/v1/messages/" + uuid.Nil.String(), nil, http.StatusNotFound, ""},
		{"another account's message", "/v1/messages/" + m.ID.String(), []reqOpt{withKey(other)}, http.StatusNotFound, ""},
		{"not a uuid", "/v1/messages/not-a-uuid", nil, http.StatusBadRequest, "id"},
		{"a number", "/v1/messages/42", nil, http.StatusBadRequest, "id"},
		{"uuid with garbage", "/v1/messages/" + m.ID.String() + "x", nil, http.StatusBadRequest, "id"},
		{"sql in the id", "/v1/messages/1'%20OR%20'1'='1", nil, http.StatusBadRequest, "id"},
		{"id without dashes", "/v1/messages/" + strings.ReplaceAll(m.ID.String(), "-", ""), nil, http.StatusBadRequest, "id"},
		{"id in braces", "/v1/messages/%7B" + m.ID.String() + "%7D", nil, http.StatusBadRequest, "id"},
		{"id as urn", "/v1/messages/urn:uuid:" + m.ID.String(), nil, http.StatusBadRequest, "id"},
		{"path below a message", "/v1/messages/" + m.ID.String() + "/extra", nil, http.StatusNotFound, ""},
		{"trailing slash", "/v1/messages/" + m.ID.String() + "/", nil, http.StatusNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := a.do(t, http.MethodGet, tt.path, nil, tt.opts...)
			switch tt.code {
			case http.StatusOK:
				want(t, r, http.StatusOK)
				if got := decodeAs[sms.Message](t, r); got.ID != m.ID {
					t.Errorf("got %s, want %s", got.ID, m.ID)
				}
			case http.StatusBadRequest:
				wantViolations(t, r, tt.field)
			default:
				wantProblem(t, r, tt.code)
			}
		})
	}
}

// --- Lists ---

// seed stores n messages for account from fn(i), each batch of one in its
// own transaction so created_at increases, and returns them newest first.
func seed(tb testing.TB, s *postgres.Store, account int64, n int, fn func(i int) sms.Draft) []sms.Message {
	tb.Helper()
	out := make([]sms.Message, 0, n)
	for i := range n {
		d := fn(i)
		d.Encoding, d.Segments = sms.Segments(d.Text)
		ms, err := s.Insert(context.Background(), []sms.NewMessage{{AccountID: account, Draft: d}})
		if err != nil {
			tb.Fatalf("seed: %v", err)
		}
		out = append(out, ms[0])
	}
	slices.Reverse(out)
	return out
}

// accountOfKey returns the account id behind an API key.
func accountOfKey(tb testing.TB, a *testAPI, key string) int64 {
	tb.Helper()
	id, err := a.keys.Authenticate(context.Background(), key)
	if err != nil {
		tb.Fatalf("authenticate: %v", err)
	}
	return id
}

func simpleDraft(i int) sms.Draft {
	return sms.Draft{Sender: "Acme", Recipient: fmt.Sprintf("+1415555%04d", i), Text: fmt.Sprintf("message %d", i)}
}

// walk follows next_after from path until the last page and returns every
// message in order.
func walk(tb testing.TB, a *testAPI, path string, opts ...reqOpt) []sms.Message {
	tb.Helper()
	var all []sms.Message
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	p := a.page(tb, path, opts...)
	for i := 0; ; i++ {
		all = append(all, p.Messages...)
		if p.NextAfter == nil {
			return all
		}
		if i > 10_000 {
			tb.Fatalf("walking %s does not end", path)
		}
		p = a.page(tb, path+sep+"after="+url.QueryEscape(*p.NextAfter), opts...)
		if p.Page != 0 {
			tb.Errorf("page %d on a cursor page, want 0", p.Page)
		}
	}
}

func TestListMessages(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	account := accountOfKey(t, a, a.key)
	all := seed(t, a.store, account, 45, simpleDraft)
	// Another account's messages never show.
	seed(t, a.store, account+1000, 5, simpleDraft)

	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		p := a.page(t, "/v1/messages")
		if p.Page != 0 || p.PageSize != 20 || p.TotalCount != 45 || p.TotalPages != 3 || len(p.Messages) != 20 {
			t.Fatalf("page %d size %d total %d pages %d with %d messages, want 0 20 45 3 with 20", p.Page, p.PageSize, p.TotalCount, p.TotalPages, len(p.Messages))
		}
		if !slices.Equal(ids(p.Messages), ids(all[:20])) {
			t.Errorf("not the newest 20, newest first")
		}
		if p.NextAfter == nil {
			t.Errorf("no next_after on a page with more after it")
		}
	})
	tests := []struct {
		query      string
		from, to   int
		page, size int
		totalPages int64
		last       bool
	}{
		{"page=0&size=20", 0, 20, 0, 20, 3, false},
		{"page=1&size=20", 20, 40, 1, 20, 3, false},
		{"page=2&size=20", 40, 45, 2, 20, 3, true},
		{"page=3&size=20", 45, 45, 3, 20, 3, true},
		{"page=1000&size=20", 45, 45, 1000, 20, 3, true},
		{"size=1", 0, 1, 0, 1, 45, false},
		{"page=44&size=1", 44, 45, 44, 1, 45, true},
		{"size=100", 0, 45, 0, 100, 1, true},
		{"size=45", 0, 45, 0, 45, 1, true},
		{"size=44", 0, 44, 0, 44, 2, false},
		{"page=1&size=44", 44, 45, 1, 44, 2, true},
		{"size=7&page=6", 42, 45, 6, 7, 7, true},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			p := a.page(t, "/v1/messages?"+tt.query)
			if p.Page != tt.page || p.PageSize != tt.size || p.TotalCount != 45 || p.TotalPages != tt.totalPages {
				t.Errorf("page %d size %d total %d pages %d, want %d %d 45 %d", p.Page, p.PageSize, p.TotalCount, p.TotalPages, tt.page, tt.size, tt.totalPages)
			}
			if !slices.Equal(ids(p.Messages), ids(all[tt.from:tt.to])) {
				t.Errorf("got %d messages, want messages %d to %d newest first", len(p.Messages), tt.from, tt.to)
			}
			if (p.NextAfter == nil) != tt.last {
				t.Errorf("next_after %v on a page that is last=%v", p.NextAfter, tt.last)
			}
		})
	}
	t.Run("pages cover everything once", func(t *testing.T) {
		t.Parallel()
		var got []sms.Message
		for page := 0; page < 7; page++ {
			got = append(got, a.page(t, fmt.Sprintf("/v1/messages?size=7&page=%d", page)).Messages...)
		}
		if !slices.Equal(ids(got), ids(all)) {
			t.Errorf("pages of 7 give %d messages, not the 45 in order", len(got))
		}
	})
	t.Run("cursor walks everything once and agrees with pages", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{1, 7, 20, 45, 100} {
			got := walk(t, a, fmt.Sprintf("/v1/messages?size=%d", size))
			if !slices.Equal(ids(got), ids(all)) {
				t.Errorf("size %d: the cursor walk gave %d messages, not the 45 in order", size, len(got))
			}
		}
		// The cursor of page k leads to page k+1.
		p0 := a.page(t, "/v1/messages?size=7&page=2")
		p1 := a.page(t, "/v1/messages?size=7&after="+url.QueryEscape(*p0.NextAfter))
		if want := a.page(t, "/v1/messages?size=7&page=3"); !slices.Equal(ids(p1.Messages), ids(want.Messages)) {
			t.Errorf("after page 2 came another page than page 3")
		}
		if p1.TotalCount != 45 || p1.TotalPages != 7 {
			t.Errorf("cursor page totals %d/%d, want 45/7", p1.TotalCount, p1.TotalPages)
		}
	})
}

func TestListCursorWhileSending(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	account := accountOfKey(t, a, a.key)
	all := seed(t, a.store, account, 12, simpleDraft)
	// New messages arrive between pages: a cursor neither repeats nor
	// skips what was there when the walk began, where offsets would.
	p := a.page(t, "/v1/messages?size=5")
	got := p.Messages
	for p.NextAfter != nil {
		a.send(t, hello)
		p = a.page(t, "/v1/messages?size=5&after="+url.QueryEscape(*p.NextAfter))
		got = append(got, p.Messages...)
	}
	if !slices.Equal(ids(got), ids(all)) {
		t.Errorf("walk with concurrent sends gave %d messages, want the 12 in order", len(got))
	}
}

func TestListFilterByStatus(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	account := accountOfKey(t, a, a.key)
	all := seed(t, a.store, account, 30, simpleDraft)
	var sent, failed, pending []sms.Message
	for i, m := range all {
		switch i % 3 {
		case 0:
			a.report(t, m.ID, sms.StatusSent, "")
			sent = append(sent, m)
		case 1:
			a.report(t, m.ID, sms.StatusFailed, "permanent: unknown subscriber")
			failed = append(failed, m)
		default:
			pending = append(pending, m)
		}
	}
	for _, tt := range []struct {
		status sms.Status
		want   []sms.Message
	}{{sms.StatusSent, sent}, {sms.StatusFailed, failed}, {sms.StatusPending, pending}} {
		t.Run(string(tt.status), func(t *testing.T) {
			t.Parallel()
			p := a.page(t, "/v1/messages?size=4&status="+string(tt.status))
			if p.TotalCount != 10 || p.TotalPages != 3 {
				t.Errorf("total %d pages %d, want 10 and 3", p.TotalCount, p.TotalPages)
			}
			for _, m := range p.Messages {
				if m.Status != tt.status {
					t.Errorf("message %s is %s in a %s list", m.ID, m.Status, tt.status)
				}
			}
			got := walk(t, a, "/v1/messages?size=4&status="+string(tt.status))
			if !slices.Equal(ids(got), ids(tt.want)) {
				t.Errorf("cursor walk gave %d messages, want the %d %s ones in order", len(got), len(tt.want), tt.status)
			}
			last := a.page(t, "/v1/messages?size=4&page=2&status="+string(tt.status))
			if !slices.Equal(ids(last.Messages), ids(tt.want[8:])) {
				t.Errorf("page 2 is not the last 2 %s messages", tt.status)
			}
		})
	}
}

func TestListBadParameters(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	seed(t, a.store, accountOfKey(t, a, a.key), 3, simpleDraft)
	cursor := *a.page(t, "/v1/messages?size=1").NextAfter
	tests := []struct {
		query string
		field string
	}{
		{"page=-1", "page"},
		{"page=abc", "page"},
		{"page=1.5", "page"},
		{"page=", "page"},
		{"page=1&page=2", "page"},
		{"page=99999999999999999999", "page"},
		{"page=1001&size=100", "page"}, // skips more than sms.MaxOffset
		{"page=100001&size=1", "page"},
		{"size=0", "size"},
		{"size=101", "size"},
		{"size=-5", "size"},
		{"size=abc", "size"},
		{"size=", "size"},
		{"size=10&size=10", "size"},
		{"size=1e2", "size"},
		{"status=LOST", "status"},
		{"status=sent", "status"},
		{"status=", "status"},
		{"status=SENT&status=FAILED", "status"},
		{"status=SENT&status=SENT", "status"},
		{"after=abc", "after"},
		{"after=", "after"},
		{"after=" + url.QueryEscape(cursor) + "&after=" + url.QueryEscape(cursor), "after"},
		{"after=bm90LWEtY3Vyc29y", "after"}, // base64 of "not-a-cursor"
		{"after=" + url.QueryEscape(cursor) + "&page=1", "page"},
		{"after=%ZZ", "query"},
		{"size=5&status=%", "query"},
	}
	for _, path := range []string{"/v1/messages", "/v1/users/%2B14155550001/messages"} {
		for _, tt := range tests {
			t.Run(path+"?"+tt.query, func(t *testing.T) {
				t.Parallel()
				wantViolations(t, a.do(t, http.MethodGet, path+"?"+tt.query, nil), tt.field)
			})
		}
	}
	t.Run("several at once", func(t *testing.T) {
		t.Parallel()
		wantViolations(t, a.do(t, http.MethodGet, "/v1/messages?page=-1&size=0&status=NOPE", nil), "page", "size", "status")
	})
	t.Run("failed list takes no status", func(t *testing.T) {
		t.Parallel()
		wantViolations(t, a.do(t, http.MethodGet, "/v1/messages/failed?status=SENT", nil), "status")
		wantViolations(t, a.do(t, http.MethodGet, "/v1/messages/failed?size=0", nil), "size")
	})
	t.Run("unknown parameters are ignored", func(t *testing.T) {
		t.Parallel()
		if p := a.page(t, "/v1/messages?sort=asc"); p.TotalCount != 3 {
			t.Errorf("total %d, want 3", p.TotalCount)
		}
	})
}

// --- GET /v1/users/{phone}/messages ---

func TestUserMessages(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	account := accountOfKey(t, a, a.key)
	const phone, other = "+14155552671", "+442071838750"
	// Newest first: index 0 is the last stored.
	drafts := []sms.Draft{
		{Sender: phone, Recipient: other, Text: "1 from"},
		{Sender: other, Recipient: phone, Text: "2 to"},
		{Sender: "Acme", Recipient: other, Text: "3 unrelated"},
		{Sender: phone, Recipient: phone, Text: "4 to self"},
		{Sender: "Acme", Recipient: phone, Text: "5 to"},
		{Sender: other, Recipient: "+14155550000", Text: "6 unrelated"},
		{Sender: phone, Recipient: "+14155550000", Text: "7 from"},
		{Sender: "Acme", Recipient: other, Text: "8 unrelated"},
	}
	all := seed(t, a.store, account, len(drafts), func(i int) sms.Draft { return drafts[i] })
	var mine []sms.Message // newest first
	for _, m := range all {
		if m.Sender == phone || m.Recipient == phone {
			mine = append(mine, m)
		}
	}
	// The phone's messages in another account are not this account's.
	seed(t, a.store, account+1000, 3, func(int) sms.Draft { return drafts[0] })

	for _, path := range []string{
		"/v1/users/%2B14155552671/messages",
		"/v1/users/+14155552671/messages",
		"/v1/users/%2B1%20(415)%20555-2671/messages",
		"/v1/users/%2B1.415.555.2671/messages",
		"/v1/users/%2B1-415-555-2671/messages",
	} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			p := a.page(t, path)
			if p.TotalCount != 5 || p.TotalPages != 1 || !slices.Equal(ids(p.Messages), ids(mine)) {
				t.Errorf("total %d pages %d with %d messages, want the phone's 5 newest first", p.TotalCount, p.TotalPages, len(p.Messages))
			}
		})
	}
	t.Run("paging and cursor on the union of sender and recipient", func(t *testing.T) {
		t.Parallel()
		for size := 1; size <= 6; size++ {
			var paged []sms.Message
			for page := 0; page*size < 5; page++ {
				p := a.page(t, fmt.Sprintf("/v1/users/%%2B14155552671/messages?size=%d&page=%d", size, page))
				if p.TotalCount != 5 {
					t.Errorf("size %d page %d: total %d, want 5", size, page, p.TotalCount)
				}
				paged = append(paged, p.Messages...)
			}
			if !slices.Equal(ids(paged), ids(mine)) {
				t.Errorf("size %d: pages give %d messages, not the 5 in order", size, len(paged))
			}
			if got := walk(t, a, fmt.Sprintf("/v1/users/%%2B14155552671/messages?size=%d", size)); !slices.Equal(ids(got), ids(mine)) {
				t.Errorf("size %d: cursor walk gives %d messages, not the 5 in order", size, len(got))
			}
		}
		if p := a.page(t, "/v1/users/%2B14155552671/messages?size=2&page=3"); len(p.Messages) != 0 || p.TotalCount != 5 {
			t.Errorf("page past the end: %d messages total %d, want none of 5", len(p.Messages), p.TotalCount)
		}
	})
	t.Run("status filter counts only the phone's messages", func(t *testing.T) {
		t.Parallel()
		// The reference platform counted every message of the status when
		// a status was given, not the phone's. Here the account has SENT
		// messages that aren't the phone's, so that count would be wrong.
		a := newAPI(t)
		account := accountOfKey(t, a, a.key)
		all := seed(t, a.store, account, len(drafts), func(i int) sms.Draft { return drafts[i] })
		for _, m := range all {
			switch m.Text {
			case "2 to", "3 unrelated": // stay PENDING
			case "5 to", "6 unrelated":
				a.report(t, m.ID, sms.StatusFailed, "permanent: blocked")
			default:
				a.report(t, m.ID, sms.StatusSent, "")
			}
		}
		for _, tt := range []struct {
			status     sms.Status
			wantTexts  []string
			otherTotal int64 // the account's count of that status, which must not leak in
		}{
			{sms.StatusSent, []string{"7 from", "4 to self", "1 from"}, 4},
			{sms.StatusPending, []string{"2 to"}, 2},
			{sms.StatusFailed, []string{"5 to"}, 2},
		} {
			p := a.page(t, "/v1/users/%2B14155552671/messages?status="+string(tt.status))
			var texts []string
			for _, m := range p.Messages {
				texts = append(texts, m.Text)
			}
			if !slices.Equal(texts, tt.wantTexts) || p.TotalCount != int64(len(tt.wantTexts)) {
				t.Errorf("%s: got %q total %d, want %q total %d (not the account's %d)", tt.status, texts, p.TotalCount, tt.wantTexts, len(tt.wantTexts), tt.otherTotal)
			}
			if acc := a.page(t, "/v1/messages?status="+string(tt.status)); acc.TotalCount != tt.otherTotal {
				t.Errorf("%s: account total %d, want %d", tt.status, acc.TotalCount, tt.otherTotal)
			}
		}
	})
	t.Run("a phone with no messages", func(t *testing.T) {
		t.Parallel()
		p := a.page(t, "/v1/users/%2B33123456789/messages")
		if p.TotalCount != 0 || p.TotalPages != 0 || len(p.Messages) != 0 || p.NextAfter != nil {
			t.Errorf("got %+v, want an empty page", p)
		}
	})
	t.Run("another account sees none of them", func(t *testing.T) {
		t.Parallel()
		if p := a.page(t, "/v1/users/%2B14155552671/messages", withKey(a.newKey(t, "initech"))); p.TotalCount != 0 || len(p.Messages) != 0 {
			t.Errorf("another account sees %d messages", p.TotalCount)
		}
	})
	// "%252B1415…" is the text "%2B1415…", not a phone: decoded once, not twice.
	for _, bad := range []string{"%252B14155552671", "abc", "14155552671", "%2B1", "%2B1234567890123456", "%2B999123456", "%2B1%20415%20CALL", "Acme%20Bank", "%2F", "%2B1%2F415"} {
		t.Run("invalid "+bad, func(t *testing.T) {
			t.Parallel()
			wantViolations(t, a.do(t, http.MethodGet, "/v1/users/"+bad+"/messages", nil), "phone")
		})
	}
}

// --- Stats, failed, delivery reports ---

func TestStatsAndFailed(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	if st := a.stats(t); !reflect.DeepEqual(st, sms.NewStats(nil)) {
		t.Errorf("stats of a new account %+v, want zeros", st)
	}
	var ms []sms.Message
	for i := range 6 {
		ms = append(ms, a.send(t, sms.SendInput{Sender: "Acme", Recipient: "+14155552671", Text: fmt.Sprint("m", i)}))
	}
	if st := a.stats(t); !reflect.DeepEqual(st, sms.NewStats(map[sms.Status]int64{sms.StatusPending: 6})) {
		t.Errorf("stats %+v, want 6 pending", st)
	}
	// One report alone, then a batch.
	if res := a.report(t, ms[0].ID, sms.StatusSent, ""); !res.Applied || res.Status != sms.StatusSent || res.MessageID != ms[0].ID {
		t.Errorf("report result %+v, want applied SENT for %s", res, ms[0].ID)
	}
	batch := map[string]any{"reports": []map[string]any{
		{"message_id": ms[1].ID, "status": "SENT", "processed_at": "2025-06-01T12:00:03Z", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		{"message_id": ms[2].ID, "status": "FAILED", "failure_reason": "permanent: unknown subscriber", "processed_at": "2025-06-01T12:00:03.123456+02:00"},
		{"message_id": ms[3].ID, "status": "FAILED", "failure_reason": "exhausted: carrier timeout", "processed_at": "2025-06-01T12:00:04Z"},
	}}
	r := a.do(t, http.MethodPost, "/v1/internal/delivery-reports", batch, withInternalToken())
	want(t, r, http.StatusOK)
	for i, res := range decodeAs[sms.ReportResults](t, r).Results {
		if res.Outcome != sms.ReportApplied || res.MessageID != ms[i+1].ID {
			t.Errorf("result %d: %+v, want applied for %s", i, res, ms[i+1].ID)
		}
	}
	st := a.stats(t)
	if st.TotalMessages != 6 || st.PendingMessages != 2 || st.SentMessages != 2 || st.FailedMessages != 2 || st.SuccessRate != 50 {
		t.Errorf("stats %+v, want 6 total, 2 pending, 2 sent, 2 failed, 50%%", st)
	}
	a.report(t, ms[4].ID, sms.StatusSent, "")
	if st := a.stats(t); math.Abs(st.SuccessRate-60) > 1e-9 {
		t.Errorf("success rate %v, want 60", st.SuccessRate)
	}

	p := a.page(t, "/v1/messages/failed")
	if p.TotalCount != 2 || len(p.Messages) != 2 {
		t.Fatalf("failed list: total %d with %d messages, want 2", p.TotalCount, len(p.Messages))
	}
	wantReasons := map[uuid.UUID]string{ms[2].ID: "permanent: unknown subscriber", ms[3].ID: "exhausted: carrier timeout"}
	for _, m := range p.Messages {
		if m.Status != sms.StatusFailed || m.FailureReason == nil || *m.FailureReason != wantReasons[m.ID] {
			t.Errorf("failed list has %s %s reason %v", m.ID, m.Status, m.FailureReason)
		}
	}
	if p.Messages[0].ID != ms[3].ID {
		t.Errorf("failed list is not newest first")
	}
	if p1 := a.page(t, "/v1/messages/failed?size=1&page=1"); len(p1.Messages) != 1 || p1.Messages[0].ID != ms[2].ID || p1.TotalPages != 2 {
		t.Errorf("failed page 1 of size 1: %+v", p1)
	}
	if got := walk(t, a, "/v1/messages/failed?size=1"); !slices.Equal(ids(got), []uuid.UUID{ms[3].ID, ms[2].ID}) {
		t.Errorf("failed cursor walk: %v", ids(got))
	}
	// A sent message has no failure reason.
	got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+ms[0].ID.String(), nil))
	if got.Status != sms.StatusSent || got.FailureReason != nil || !got.UpdatedAt.After(got.CreatedAt) {
		t.Errorf("sent message %+v", got)
	}
	// Stats are per account.
	if st := a.stats(t, withKey(a.newKey(t, "globex"))); !reflect.DeepEqual(st, sms.NewStats(nil)) {
		t.Errorf("another account's stats %+v, want zeros", st)
	}
}

func TestDeliveryReports(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	now := time.Now().UTC().Format(time.RFC3339)
	sent := func(id uuid.UUID) map[string]any {
		return map[string]any{"message_id": id, "status": "SENT", "processed_at": now}
	}

	t.Run("credentials", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		for _, opt := range []reqOpt{withKey(""), withKey("wrong"), withKey(testInternalToken + "x"), withKey(a.key), withHeader("Authorization", testInternalToken)} {
			wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", sent(m.ID), opt), http.StatusUnauthorized)
			wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": []any{sent(m.ID)}}, opt), http.StatusUnauthorized)
		}
		if got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m.ID.String(), nil)); got.Status != sms.StatusPending {
			t.Errorf("an unauthenticated report changed the message to %s", got.Status)
		}
	})
	t.Run("duplicate and late reports change nothing", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		m := a.send(t, hello)
		f := a.send(t, hello)
		if res := a.report(t, m.ID, sms.StatusSent, ""); !res.Applied {
			t.Fatalf("first report not applied: %+v", res)
		}
		if res := a.report(t, f.ID, sms.StatusFailed, "permanent: blocked"); !res.Applied || res.Status != sms.StatusFailed {
			t.Fatalf("first report not applied: %+v", res)
		}
		before := a.stats(t)
		msgBefore := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m.ID.String(), nil))
		for _, tt := range []struct {
			id     uuid.UUID
			status sms.Status
			reason string
			final  sms.Status
		}{
			{m.ID, sms.StatusSent, "", sms.StatusSent},
			{m.ID, sms.StatusFailed, "exhausted: late", sms.StatusSent},
			{f.ID, sms.StatusFailed, "permanent: blocked", sms.StatusFailed},
			{f.ID, sms.StatusSent, "", sms.StatusFailed},
		} {
			if res := a.report(t, tt.id, tt.status, tt.reason); res.Applied || res.Status != tt.final {
				t.Errorf("%s report for a %s message: %+v, want not applied, status %s", tt.status, tt.final, res, tt.final)
			}
		}
		r := a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": []any{sent(m.ID), sent(f.ID)}}, withInternalToken())
		want(t, r, http.StatusOK)
		for _, res := range decodeAs[sms.ReportResults](t, r).Results {
			if res.Outcome != sms.ReportDuplicate {
				t.Errorf("batch: %+v, want duplicate", res)
			}
		}
		if after := a.stats(t); !reflect.DeepEqual(after, before) {
			t.Errorf("stats changed from %+v to %+v", before, after)
		}
		msgAfter := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m.ID.String(), nil))
		if msgAfter.Status != sms.StatusSent || msgAfter.FailureReason != nil || !msgAfter.UpdatedAt.Equal(msgBefore.UpdatedAt) {
			t.Errorf("message changed from %+v to %+v", msgBefore, msgAfter)
		}
	})
	t.Run("unknown message", func(t *testing.T) {
		t.Parallel()
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", sent(uuid.New()), withInternalToken()), http.StatusNotFound)
		r := a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": []any{sent(uuid.New())}}, withInternalToken())
		want(t, r, http.StatusOK)
		if res := decodeAs[sms.ReportResults](t, r).Results; len(res) != 1 || res[0].Outcome != sms.ReportNotFound {
			t.Errorf("results %+v, want one not_found", res)
		}
	})
	t.Run("batch answers each report in order", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		m1, m2, m3 := a.send(t, hello), a.send(t, hello), a.send(t, hello)
		a.report(t, m3.ID, sms.StatusSent, "")
		unknown := uuid.New()
		reports := []any{
			map[string]any{"message_id": m2.ID, "status": "FAILED", "failure_reason": "permanent: first", "processed_at": now},
			sent(m1.ID),
			sent(unknown),
			sent(m2.ID), // the same message again in the batch
			sent(m3.ID), // already final
			sent(unknown),
		}
		r := a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": reports}, withInternalToken())
		want(t, r, http.StatusOK)
		res := decodeAs[sms.ReportResults](t, r).Results
		wantRes := []sms.AppliedReport{
			{MessageID: m2.ID, Outcome: sms.ReportApplied}, {MessageID: m1.ID, Outcome: sms.ReportApplied}, {MessageID: unknown, Outcome: sms.ReportNotFound},
			{MessageID: m2.ID, Outcome: sms.ReportDuplicate}, {MessageID: m3.ID, Outcome: sms.ReportDuplicate}, {MessageID: unknown, Outcome: sms.ReportNotFound},
		}
		if len(res) != len(wantRes) {
			t.Fatalf("%d results, want %d", len(res), len(wantRes))
		}
		for i := range res {
			if res[i].MessageID != wantRes[i].MessageID || res[i].Outcome != wantRes[i].Outcome {
				t.Errorf("result %d: %s %s, want %s %s", i, res[i].MessageID, res[i].Outcome, wantRes[i].MessageID, wantRes[i].Outcome)
			}
		}
		// The first report of a message in the batch is the one applied.
		got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m2.ID.String(), nil))
		if got.Status != sms.StatusFailed || got.FailureReason == nil || *got.FailureReason != "permanent: first" {
			t.Errorf("m2 is %s (%v), want FAILED by the first report", got.Status, got.FailureReason)
		}
		if st := a.stats(t); !reflect.DeepEqual(st, sms.NewStats(map[sms.Status]int64{sms.StatusSent: 2, sms.StatusFailed: 1})) {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("a full batch of the longest reports fits", func(t *testing.T) {
		t.Parallel()
		a := newAPI(t)
		account := accountOfKey(t, a, a.key)
		ms := seed(t, a.store, account, 3, simpleDraft)
		reason := "permanent: " + strings.Repeat("x", 1000-len("permanent: "))
		reports := make([]any, sms.MaxReportBatch)
		for i := range reports {
			// Many reports for a few messages, and ids that don't exist.
			id := uuid.New()
			if i < len(ms) {
				id = ms[i].ID
			}
			reports[i] = map[string]any{"message_id": id, "status": "FAILED", "failure_reason": reason,
				"processed_at": time.Now().UTC().Format(time.RFC3339Nano)}
		}
		r := a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": reports}, withInternalToken())
		want(t, r, http.StatusOK)
		res := decodeAs[sms.ReportResults](t, r).Results
		if len(res) != sms.MaxReportBatch || res[0].Outcome != sms.ReportApplied || res[sms.MaxReportBatch-1].Outcome != sms.ReportNotFound {
			t.Errorf("%d results, first %+v", len(res), res[0])
		}
		if st := a.stats(t); st.FailedMessages != 3 {
			t.Errorf("stats %+v, want 3 failed", st)
		}
	})
	t.Run("lengths are counted in characters", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		reason := strings.Repeat("é", sms.MaxFailureReason) // 2,000 bytes
		body := map[string]any{"message_id": m.ID, "status": "FAILED", "failure_reason": reason, "processed_at": now, "traceparent": strings.Repeat("é", sms.MaxTraceparent)}
		r := a.do(t, http.MethodPost, "/v1/internal/delivery-report", body, withInternalToken())
		want(t, r, http.StatusOK)
		if res := decodeAs[sms.ReportResult](t, r); !res.Applied {
			t.Errorf("report with a reason of %d characters not applied", sms.MaxFailureReason)
		}
		m = a.send(t, hello)
		body = map[string]any{"message_id": m.ID, "status": "SENT", "processed_at": now, "carrier_message_id": strings.Repeat("é", sms.MaxCarrierMessageID)}
		r = a.do(t, http.MethodPost, "/v1/internal/delivery-report", body, withInternalToken())
		want(t, r, http.StatusOK)
		if res := decodeAs[sms.ReportResult](t, r); !res.Applied {
			t.Errorf("report with a carrier_message_id of %d characters not applied", sms.MaxCarrierMessageID)
		}
	})
	t.Run("a full batch of the longest reports fits the body limit", func(t *testing.T) {
		t.Parallel()
		// encoding/json writes < as \u003c: 6 bytes a character, the most
		// it writes for one; the processor encodes its reports with it.
		reports := make([]sms.DeliveryReport, sms.MaxReportBatch)
		for i := range reports {
			reason := strings.Repeat("<", sms.MaxFailureReason)
			reports[i] = sms.DeliveryReport{MessageID: uuid.New(), Status: sms.StatusFailed, FailureReason: &reason,
				ProcessedAt: time.Now(), Traceparent: strings.Repeat("<", sms.MaxTraceparent)}
		}
		body, err := json.Marshal(sms.ReportBatch{Reports: reports})
		if err != nil {
			t.Fatal(err)
		}
		if len(body) <= MaxBodyBytes*64 {
			t.Fatalf("the batch is only %d bytes: not the worst case", len(body))
		}
		want(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", body, withInternalToken()), http.StatusOK)
	})
	t.Run("invalid reports", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		id := m.ID.String()
		tests := []struct {
			name, body string
			fields     []string
		}{
			{"status PENDING", `{"message_id":"` + id + `","status":"PENDING","processed_at":"` + now + `"}`, []string{"status"}},
			{"status lower case", `{"message_id":"` + id + `","status":"sent","processed_at":"` + now + `"}`, []string{"status"}},
			{"FAILED without reason", `{"message_id":"` + id + `","status":"FAILED","processed_at":"` + now + `"}`, []string{"failure_reason"}},
			{"FAILED with blank reason", `{"message_id":"` + id + `","status":"FAILED","failure_reason":"  ","processed_at":"` + now + `"}`, []string{"failure_reason"}},
			{"reason over 1000 characters", `{"message_id":"` + id + `","status":"FAILED","failure_reason":"` + strings.Repeat("é", 1001) + `","processed_at":"` + now + `"}`, []string{"failure_reason"}},
			{"empty reason on a SENT report", `{"message_id":"` + id + `","status":"SENT","failure_reason":"","processed_at":"` + now + `"}`, []string{"failure_reason"}},
			{"NUL in the reason", `{"message_id":"` + id + `","status":"FAILED","failure_reason":"a\u0000b","processed_at":"` + now + `"}`, []string{"failure_reason"}},
			{"the zero time", `{"message_id":"` + id + `","status":"SENT","processed_at":"0001-01-01T00:00:00Z"}`, []string{"processed_at"}},
			// Valid RFC 3339 in year 0 once in UTC, which PostgreSQL refuses (schemathesis found it).
			{"before year 1 in UTC", `{"message_id":"` + id + `","status":"SENT","processed_at":"0001-01-01T00:00:00+01:00"}`, []string{"processed_at"}},
			{"an attempt before year 1 in UTC", `{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `","attempts":[{"attempt":1,"at":"0001-01-01T00:30:00+01:00","result":"accepted"}]}`, []string{"attempts[0].at"}},
			{"a part done after 9999 in UTC", `{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `","parts":[{"carrier_id":"c1","status":"DELIVERED","done_at":"9999-12-31T23:00:00-05:00"}]}`, []string{"parts[0].done_at"}},
			{"traceparent null", `{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `","traceparent":null}`, []string{"traceparent"}},
			{"bad uuid", `{"message_id":"not-a-uuid","status":"SENT","processed_at":"` + now + `"}`, []string{"message_id"}},
			{"uuid without dashes", `{"message_id":"` + strings.Repeat("a", 32) + `","status":"SENT","processed_at":"` + now + `"}`, []string{"message_id"}},
			{"nil uuid", `{"message_id":"` + uuid.Nil.String() + `","status":"SENT","processed_at":"` + now + `"}`, []string{"message_id"}},
			{"uuid of a wrong type", `{"message_id":42,"status":"SENT","processed_at":"` + now + `"}`, []string{"message_id"}},
			{"bad timestamp", `{"message_id":"` + id + `","status":"SENT","processed_at":"yesterday"}`, []string{"processed_at"}},
			{"traceparent too long", `{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `","traceparent":"` + strings.Repeat("é", 129) + `"}`, []string{"traceparent"}},
			{"carrier id too long", `{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `","carrier_message_id":"` + strings.Repeat("é", 129) + `"}`, []string{"carrier_message_id"}},
			{"missing everything", `{}`, []string{"message_id", "status", "processed_at"}},
			{"everything wrong", `{"message_id":"x","status":"DONE","processed_at":"x"}`, []string{"message_id", "status", "processed_at"}},
		}
		for _, tt := range tests {
			wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", tt.body, withInternalToken()), tt.fields...)
			batchFields := make([]string, len(tt.fields))
			for i, f := range tt.fields {
				batchFields[i] = "reports[1]." + f
			}
			body := `{"reports":[{"message_id":"` + id + `","status":"SENT","processed_at":"` + now + `"},` + tt.body + `]}`
			wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", body, withInternalToken()), batchFields...)
		}
		wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", `{"reports":[]}`, withInternalToken()), "reports")
		wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", `{}`, withInternalToken()), "reports")
		many := make([]any, sms.MaxReportBatch+1)
		for i := range many {
			many[i] = sent(m.ID)
		}
		wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": many}, withInternalToken()), "reports")
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", `{"message_id":`, withInternalToken()), http.StatusBadRequest)
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", strings.Repeat(" ", MaxBodyBytes+1), withInternalToken()), http.StatusRequestEntityTooLarge)
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-reports", strings.Repeat(" ", MaxReportBatchBytes+1), withInternalToken()), http.StatusRequestEntityTooLarge)
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", sent(m.ID), withInternalToken(), withHeader("Content-Type", "text/plain")), http.StatusUnsupportedMediaType)
		wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/delivery-report", sent(m.ID), withInternalToken(), withHeader("Content-Type", "application/merge-patch+json")), http.StatusUnsupportedMediaType)
		// A batch with an invalid report applies nothing, not even the
		// valid report before it.
		if got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+id, nil)); got.Status != sms.StatusPending {
			t.Errorf("invalid batches changed the message to %s", got.Status)
		}
	})
}

// --- Plain HTTP errors, backlog, rate limit, outages ---

func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/v1/nope", http.StatusNotFound},
		{http.MethodGet, "/", http.StatusNotFound},
		{http.MethodGet, "/v2/messages", http.StatusNotFound},
		{http.MethodGet, "/v1/users/%2B14155552671", http.StatusNotFound},
		{http.MethodDelete, "/v1/messages", http.StatusMethodNotAllowed},
		{http.MethodPut, "/v1/messages/" + uuid.NewString(), http.StatusMethodNotAllowed},
		{http.MethodPatch, "/v1/messages/stats", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/internal/delivery-report", http.StatusMethodNotAllowed},
		{http.MethodPost, "/healthz", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			wantProblem(t, a.do(t, tt.method, tt.path, nil), tt.code)
		})
	}
}

// TestHeadWhereverGet checks RFC 9110's rule that HEAD works wherever GET
// does: for every GET operation of the OpenAPI document, HEAD answers the
// same status and headers as GET, with no body.
func TestHeadWhereverGet(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	msg := a.send(t, sms.SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: "hi"})
	doc, _ := openAPI(t)
	paths := []string{"/metrics"} // served, deliberately not an API operation
	for path, item := range doc.Paths.Map() {
		if item.Get == nil || strings.HasPrefix(path, "/docs/") {
			continue
		}
		path = strings.ReplaceAll(path, "{id}", msg.ID.String())
		path = strings.ReplaceAll(path, "{phone}", "%2B14155552671")
		paths = append(paths, path)
	}
	if len(paths) < 8 {
		t.Fatalf("only %d GET operations in the document: %v", len(paths), paths)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			get := a.raw(t, http.MethodGet, path)
			head := a.raw(t, http.MethodHead, path)
			if head.Status != get.Status || head.Header.Get("Content-Type") != get.Header.Get("Content-Type") {
				t.Errorf("HEAD %s = %d %q, GET = %d %q", path, head.Status, head.Header.Get("Content-Type"), get.Status, get.Header.Get("Content-Type"))
			}
			if len(head.Body) != 0 {
				t.Errorf("HEAD %s answered a body of %d bytes", path, len(head.Body))
			}
		})
	}
}

// raw sends a request with acme's key, outside the contract check (HEAD
// is implied by GET, not listed in the document).
func (a *testAPI) raw(tb testing.TB, method, path string) response {
	tb.Helper()
	req, err := http.NewRequest(method, a.url+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	res, err := a.client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return response{method: method, path: path, Status: res.StatusCode, Header: res.Header, Body: data}
}

func TestOperationalRoutes(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	for _, path := range []string{"/healthz", "/readyz", "/openapi.json", "/openapi.yaml", "/docs"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			want(t, a.do(t, http.MethodGet, path, nil, withKey("")), http.StatusOK)
		})
	}
}

func TestBacklogFull(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(o *apiOptions) { o.maxBacklog = 50 })
	a.backlog.n.Store(50)
	p := wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", hello), http.StatusServiceUnavailable)
	if p.Type != ProblemBase+"outbox-backlog" {
		t.Errorf("type %q, want %q", p.Type, ProblemBase+"outbox-backlog")
	}
	// Even with an Idempotency-Key, and nothing is stored.
	wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", hello, withHeader("Idempotency-Key", "k")), http.StatusServiceUnavailable)
	wantProblem(t, a.do(t, http.MethodPost, "/v1/messages/batch", map[string]any{"messages": []any{hello}}), http.StatusServiceUnavailable)
	for _, table := range []string{"messages", "idempotency_keys", "outbox", "message_events", "account_counters"} {
		if n := smstest.Count(t, a.db, table); n != 0 {
			t.Errorf("%d rows in sms.%s after 503s: a refused message must leave nothing behind", n, table)
		}
	}
	// Invalid input is still a 400, and reads still work.
	wantViolations(t, a.do(t, http.MethodPost, "/v1/messages", sms.SendInput{Sender: "Acme", Recipient: "x", Text: "y"}), "recipient")
	a.page(t, "/v1/messages")
	a.backlog.n.Store(49)
	// The key of the refused request was not used up: the same request is
	// now taken as new, not answered as a replay.
	r := a.do(t, http.MethodPost, "/v1/messages", hello, withHeader("Idempotency-Key", "k"))
	want(t, r, http.StatusAccepted)
	if r.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("Idempotent-Replayed %q: the key of a 503 was kept", r.Header.Get("Idempotent-Replayed"))
	}
	if n := smstest.Count(t, a.db, "messages"); n != 1 {
		t.Errorf("%d messages stored, want the one accepted", n)
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(o *apiOptions) { o.rateLimit, o.rateBurst = 0.01, 3 })
	other := a.newKey(t, "globex")
	for range 3 {
		r := a.do(t, http.MethodGet, "/v1/messages", nil)
		want(t, r, http.StatusOK)
		if r.Header.Get("RateLimit-Limit") != "3" {
			t.Errorf("RateLimit-Limit %q, want 3", r.Header.Get("RateLimit-Limit"))
		}
	}
	r := a.do(t, http.MethodGet, "/v1/messages", nil)
	wantProblem(t, r, http.StatusTooManyRequests)
	if n, _ := strconv.Atoi(r.Header.Get("Retry-After")); n < 50 {
		t.Errorf("Retry-After %q, want about 100 s at 0.01 requests a second", r.Header.Get("Retry-After"))
	}
	wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", hello), http.StatusTooManyRequests)
	// Limits are per key.
	want(t, a.do(t, http.MethodGet, "/v1/messages", nil, withKey(other)), http.StatusOK)
}

func TestStoreOutage(t *testing.T) {
	t.Parallel()
	// Every route that needs the store, each answering 503 problem+json
	// when PostgreSQL is gone, never 500.
	routes := []struct {
		method, path string
		body         any
		internal     bool
	}{
		{http.MethodPost, "/v1/messages", hello, false},
		{http.MethodPost, "/v1/messages", hello, false}, // again, once the pool has given up on its connections
		{http.MethodGet, "/v1/messages", nil, false},
		{http.MethodGet, "/v1/messages?status=SENT&size=5", nil, false},
		{http.MethodGet, "/v1/messages/" + uuid.NewString(), nil, false},
		{http.MethodGet, "/v1/messages/stats", nil, false},
		{http.MethodGet, "/v1/messages/failed", nil, false},
		{http.MethodGet, "/v1/users/%2B14155552671/messages", nil, false},
		{http.MethodPost, "/v1/internal/delivery-report", map[string]any{"message_id": uuid.New(), "status": "SENT", "processed_at": time.Now()}, true},
		{http.MethodPost, "/v1/internal/delivery-reports", map[string]any{"reports": []any{map[string]any{"message_id": uuid.New(), "status": "SENT", "processed_at": time.Now()}}}, true},
	}
	check := func(t *testing.T, a *testAPI, withIdempotency bool) {
		t.Helper()
		for _, rt := range routes {
			var opts []reqOpt
			if rt.internal {
				opts = append(opts, withInternalToken())
			}
			wantProblem(t, a.do(t, rt.method, rt.path, rt.body, opts...), http.StatusServiceUnavailable)
		}
		if withIdempotency {
			wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", hello, withHeader("Idempotency-Key", "k")), http.StatusServiceUnavailable)
		}
		// Bad input is still told apart from an outage.
		wantViolations(t, a.do(t, http.MethodGet, "/v1/messages/42", nil), "id")
		r := a.do(t, http.MethodGet, "/readyz", nil, withKey(""))
		want(t, r, http.StatusServiceUnavailable)
		if rd := decodeAs[struct{ Status string }](t, r); rd.Status != "unavailable" {
			t.Errorf("readyz status %q", rd.Status)
		}
		want(t, a.do(t, http.MethodGet, "/healthz", nil, withKey("")), http.StatusOK)
	}
	t.Run("server unreachable", func(t *testing.T) {
		t.Parallel()
		// Nothing listens on port 1: every connection is refused.
		db, err := sqlx.Open("postgres", "postgres://smsctl:smsctl@127.0.0.1:1/smsctl?sslmode=disable&connect_timeout=2")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		a := newAPI(t, func(o *apiOptions) { o.db, o.auth = db, fixedAccount(1) })
		check(t, a, true)
	})
	t.Run("pool closed under the handlers", func(t *testing.T) {
		t.Parallel()
		db, err := sqlx.Open("postgres", platformtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		a := newAPI(t, func(o *apiOptions) { o.db, o.auth = db, fixedAccount(1) })
		a.send(t, hello)
		db.Close()
		check(t, a, true)
	})
	t.Run("authentication during an outage is a 503, not a 401", func(t *testing.T) {
		t.Parallel()
		db, err := sqlx.Open("postgres", platformtest.NewDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		a := newAPI(t, func(o *apiOptions) { o.db = db })
		a.send(t, hello)
		db.Close()
		wantProblem(t, a.do(t, http.MethodGet, "/v1/messages", nil), http.StatusServiceUnavailable)
		wantProblem(t, a.do(t, http.MethodPost, "/v1/messages", hello), http.StatusServiceUnavailable)
	})
}
