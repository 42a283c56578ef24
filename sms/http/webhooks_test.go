package http

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
	"github.com/smsctl/smsctl/sms/webhook"
)

// webhookAPI serves the webhook routes over a fresh database, with a
// stand-in for ClientMiddleware: the account is the X-Test-Account header.
type webhookAPI struct {
	url      string
	store    *postgres.Webhooks
	messages *postgres.Store
	client   *http.Client
	wakes    chan struct{}
}

func testAccount(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id, err := strconv.ParseInt(c.Request().Header.Get("X-Test-Account"), 10, 64)
		if err != nil {
			return sms.ErrUnauthorized
		}
		c.Set("account", id)
		return next(c)
	}
}

func newWebhookAPI(t *testing.T, guard webhook.Guard) *webhookAPI {
	t.Helper()
	db := platformtest.NewDB(t)
	a := &webhookAPI{store: postgres.NewWebhooks(db), messages: postgres.NewStore(db), wakes: make(chan struct{}, 100)}
	e := platform.NewEcho(zerolog.Nop(), ProblemFor)
	NewWebhooks(a.store, guard, func() { a.wakes <- struct{}{} }).Register(e, testAccount)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	a.url, a.client = srv.URL, srv.Client()
	return a
}

// call sends a request as account and decodes a JSON answer into out
// (when not nil).
func (a *webhookAPI) call(t *testing.T, account int, method, path, body string, out any) (int, http.Header) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Test-Account", strconv.Itoa(account))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode, resp.Header
}

// TestWebhookEndpointsAPI: the endpoint routes, each answer's status and
// fields; the secret is shown at creation and rotation only.
func TestWebhookEndpointsAPI(t *testing.T) {
	t.Parallel()
	a := newWebhookAPI(t, webhook.Guard{AllowPrivate: true})
	var created map[string]any
	status, hdr := a.call(t, 1, "POST", "/v1/webhook-endpoints", `{"url": "http://127.0.0.1:9/hook", "description": "ops"}`, &created)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, created)
	}
	id, _ := created["id"].(string)
	for _, k := range []string{"id", "url", "event_types", "secret", "enabled", "created_at", "description"} {
		if _, ok := created[k]; !ok {
			t.Errorf("creation answer has no %s: %v", k, created)
		}
	}
	if secret, _ := created["secret"].(string); !strings.HasPrefix(secret, "whsec_") {
		t.Errorf("secret %q", created["secret"])
	}
	if types, ok := created["event_types"].([]any); !ok || len(types) != 0 || created["enabled"] != true {
		t.Errorf("omitted event_types should read [] and the endpoint be enabled: %v", created)
	}
	if hdr.Get("Location") != "/v1/webhook-endpoints/"+id {
		t.Errorf("Location %q", hdr.Get("Location"))
	}

	var got map[string]any
	if status, _ := a.call(t, 1, "GET", "/v1/webhook-endpoints/"+id, "", &got); status != http.StatusOK || got["id"] != id {
		t.Fatalf("get: %d %v", status, got)
	}
	if _, ok := got["secret"]; ok {
		t.Errorf("GET shows the secret: %v", got)
	}
	var list struct {
		WebhookEndpoints []map[string]any `json:"webhook_endpoints"`
	}
	if status, _ := a.call(t, 1, "GET", "/v1/webhook-endpoints", "", &list); status != http.StatusOK || len(list.WebhookEndpoints) != 1 {
		t.Fatalf("list: %d %v", status, list)
	}
	if _, ok := list.WebhookEndpoints[0]["secret"]; ok {
		t.Errorf("the list shows the secret")
	}
	var patched webhook.Endpoint
	status, _ = a.call(t, 1, "PATCH", "/v1/webhook-endpoints/"+id, `{"event_types": ["message.sent", "message.failed", "message.sent"], "enabled": false}`, &patched)
	if status != http.StatusOK || !slices.Equal(patched.EventTypes, []string{"message.sent", "message.failed"}) || patched.Enabled || patched.Description != "ops" {
		t.Errorf("patch: %d %+v", status, patched)
	}
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+id+"/test", "", nil); status != http.StatusConflict {
		t.Errorf("test event to a disabled endpoint: %d, want 409", status)
	}
	if status, _ := a.call(t, 1, "PATCH", "/v1/webhook-endpoints/"+id, `{"enabled": true}`, &patched); status != http.StatusOK || !patched.Enabled {
		t.Errorf("enable: %d %+v", status, patched)
	}
	var rotated map[string]any
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+id+"/rotate-secret", "", &rotated); status != http.StatusOK ||
		rotated["secret"] == created["secret"] || !strings.HasPrefix(rotated["secret"].(string), "whsec_") {
		t.Errorf("rotate: %d %v", status, rotated)
	}
	var test struct {
		WebhookID string `json:"webhook_id"`
	}
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+id+"/test", "", &test); status != http.StatusAccepted || test.WebhookID == "" {
		t.Errorf("test: %d %+v", status, test)
	}
	var replay struct {
		Queued *int64 `json:"queued"`
	}
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+id+"/replay", `{"since": "2020-01-01T00:00:00Z"}`, &replay); status != http.StatusAccepted || replay.Queued == nil {
		t.Errorf("replay: %d %+v", status, replay)
	}
	// An offset PostgreSQL refuses (past ±15:59) is still a valid time.
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+id+"/replay", `{"since": "2000-11-13T23:39:59.268-22:20"}`, &replay); status != http.StatusAccepted {
		t.Errorf("replay since -22:20: %d %+v", status, replay)
	}
	var log struct {
		Deliveries []map[string]any `json:"deliveries"`
		NextAfter  *string          `json:"next_after"`
	}
	if status, _ := a.call(t, 1, "GET", "/v1/webhook-endpoints/"+id+"/deliveries", "", &log); status != http.StatusOK || log.Deliveries == nil {
		t.Errorf("deliveries: %d %+v", status, log)
	}
	if status, _ := a.call(t, 1, "HEAD", "/v1/webhook-endpoints/"+id, "", nil); status != http.StatusOK {
		t.Errorf("HEAD: %d", status)
	}
	if status, _ := a.call(t, 1, "DELETE", "/v1/webhook-endpoints/"+id, "", nil); status != http.StatusNoContent {
		t.Errorf("delete: %d", status)
	}
	if status, _ := a.call(t, 1, "GET", "/v1/webhook-endpoints/"+id, "", nil); status != http.StatusNotFound {
		t.Errorf("deleted: %d", status)
	}
}

// TestWebhookEndpointsAPIOtherAccount: another account's endpoint is 404
// on every route, and not listed.
func TestWebhookEndpointsAPIOtherAccount(t *testing.T) {
	t.Parallel()
	a := newWebhookAPI(t, webhook.Guard{AllowPrivate: true})
	var ep webhook.Endpoint
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints", `{"url": "http://127.0.0.1:9/"}`, &ep); status != http.StatusCreated {
		t.Fatal(status)
	}
	p := "/v1/webhook-endpoints/" + ep.ID.String()
	for _, r := range []struct{ method, path, body string }{
		{"GET", p, ""}, {"PATCH", p, `{"enabled": false}`}, {"DELETE", p, ""}, {"POST", p + "/rotate-secret", ""},
		{"POST", p + "/test", ""}, {"GET", p + "/deliveries", ""}, {"POST", p + "/replay", `{"since": "2020-01-01T00:00:00Z"}`},
	} {
		if status, _ := a.call(t, 2, r.method, r.path, r.body, nil); status != http.StatusNotFound {
			t.Errorf("%s %s as another account: %d, want 404", r.method, r.path, status)
		}
	}
	var list WebhookEndpointsResponse
	if a.call(t, 2, "GET", "/v1/webhook-endpoints", "", &list); len(list.WebhookEndpoints) != 0 {
		t.Errorf("another account lists %v", list.WebhookEndpoints)
	}
	if got, err := a.store.Endpoint(context.Background(), 1, ep.ID); err != nil || !got.Enabled {
		t.Errorf("another account's PATCH or DELETE changed the endpoint: %+v, %v", got, err)
	}
}

// TestWebhookEndpointsAPIValidation: bad input is a 400 naming the field;
// an unsafe url a 422 naming the url.
func TestWebhookEndpointsAPIValidation(t *testing.T) {
	t.Parallel()
	lookup := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "hooks.example.com":
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		case "localhost":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, errors.New("no such host")
	}
	a := newWebhookAPI(t, webhook.Guard{Lookup: lookup})
	var ep webhook.Endpoint
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints", `{"url": "https://hooks.example.com/sms"}`, &ep); status != http.StatusCreated {
		t.Fatalf("a public https endpoint: %d", status)
	}
	p := "/v1/webhook-endpoints/" + ep.ID.String()
	tests := []struct {
		name, method, path, body string
		status                   int
		field                    string // the violation, or for 422 what the detail names
	}{
		{"no url", "POST", "/v1/webhook-endpoints", `{}`, 400, "url"},
		{"url not a string", "POST", "/v1/webhook-endpoints", `{"url": 5}`, 400, "url"},
		{"relative url", "POST", "/v1/webhook-endpoints", `{"url": "/hook"}`, 400, "url"},
		{"unknown event type", "POST", "/v1/webhook-endpoints", `{"url": "https://hooks.example.com/", "event_types": ["message.sent", "sms.sent"]}`, 400, "event_types[1]"},
		{"event_types not a list", "POST", "/v1/webhook-endpoints", `{"url": "https://hooks.example.com/", "event_types": "message.sent"}`, 400, "event_types"},
		{"description too long", "POST", "/v1/webhook-endpoints", `{"url": "https://hooks.example.com/", "description": "` + strings.Repeat("x", 501) + `"}`, 400, "description"},
		{"bad id", "GET", "/v1/webhook-endpoints/nope", "", 400, "id"},
		{"patch to an unknown type", "PATCH", p, `{"event_types": ["x"]}`, 400, "event_types[0]"},
		{"replay without since", "POST", p + "/replay", `{}`, 400, "since"},
		{"replay since not a time", "POST", p + "/replay", `{"since": "yesterday"}`, 400, "since"},
		{"replay since in the future", "POST", p + "/replay", `{"since": "` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`, 400, "since"},
		{"size 0", "GET", p + "/deliveries?size=0", "", 400, "size"},
		{"not a cursor", "GET", p + "/deliveries?after=zzz", "", 400, "after"},
		{"http", "POST", "/v1/webhook-endpoints", `{"url": "http://hooks.example.com/sms"}`, 422, "http://hooks.example.com/sms"},
		{"loopback", "POST", "/v1/webhook-endpoints", `{"url": "https://127.0.0.1/hook"}`, 422, "https://127.0.0.1/hook"},
		{"localhost", "POST", "/v1/webhook-endpoints", `{"url": "https://localhost:8443/hook"}`, 422, "https://localhost:8443/hook"},
		{"private", "POST", "/v1/webhook-endpoints", `{"url": "https://10.1.2.3/hook"}`, 422, "https://10.1.2.3/hook"},
		{"private 192.168", "POST", "/v1/webhook-endpoints", `{"url": "https://192.168.0.1/hook"}`, 422, "https://192.168.0.1/hook"},
		{"metadata", "POST", "/v1/webhook-endpoints", `{"url": "https://169.254.169.254/latest"}`, 422, "https://169.254.169.254/latest"},
		{"ipv6 loopback", "POST", "/v1/webhook-endpoints", `{"url": "https://[::1]/hook"}`, 422, "https://[::1]/hook"},
		{"ipv4-mapped", "POST", "/v1/webhook-endpoints", `{"url": "https://[::ffff:127.0.0.1]/hook"}`, 422, "https://[::ffff:127.0.0.1]/hook"},
		{"unspecified", "POST", "/v1/webhook-endpoints", `{"url": "https://0.0.0.0/hook"}`, 422, "https://0.0.0.0/hook"},
		{"patch to loopback", "PATCH", p, `{"url": "https://127.0.0.1/hook"}`, 422, "https://127.0.0.1/hook"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var prob platform.Problem
			status, hdr := a.call(t, 1, tt.method, tt.path, tt.body, &prob)
			if status != tt.status {
				t.Fatalf("status %d (%+v), want %d", status, prob, tt.status)
			}
			if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("Content-Type %q", ct)
			}
			if tt.status == 422 {
				if !strings.HasSuffix(prob.Type, "/"+webhook.KindURLRefused) || !strings.Contains(prob.Detail, tt.field) {
					t.Errorf("problem %+v should be of type .../%s and name %s", prob, webhook.KindURLRefused, tt.field)
				}
				return
			}
			if len(prob.Violations) == 0 || prob.Violations[0].Field != tt.field {
				t.Errorf("violations %+v, want the first on %s", prob.Violations, tt.field)
			}
		})
	}
	if got, _ := a.store.Endpoints(context.Background(), 1); len(got) != 1 || got[0].URL != "https://hooks.example.com/sms" {
		t.Errorf("refused requests changed the endpoints: %+v", got)
	}
}

// TestWebhookEndToEnd: an endpoint registered over HTTP receives the
// account's events and a test event, verified with the Standard Webhooks
// library; the log lists each attempt with the ids the requests carried,
// page by page; a replay sends them again with the same ids.
func TestWebhookEndToEnd(t *testing.T) {
	t.Parallel()
	a := newWebhookAPI(t, webhook.Guard{AllowPrivate: true})
	type got struct {
		id, typ string
		ok      bool
	}
	hits := make(chan got, 100)
	var wh atomic.Pointer[standardwebhooks.Webhook]
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &p)
		hits <- got{id: r.Header.Get("webhook-id"), typ: p.Type, ok: wh.Load().Verify(body, r.Header) == nil}
	}))
	t.Cleanup(rc.Close)

	var ep webhook.Endpoint
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints", `{"url": "`+rc.URL+`/hook", "event_types": ["message.accepted", "webhook.test"]}`, &ep); status != http.StatusCreated {
		t.Fatal(status)
	}
	v, err := standardwebhooks.NewWebhook(ep.Secret)
	if err != nil {
		t.Fatal(err)
	}
	wh.Store(v)
	recorded := make(chan webhook.Result, 100)
	d, err := webhook.NewDispatcher(a.store, config.Webhooks{AllowPrivate: true, Timeout: 5 * time.Second, RetrySchedule: "1s", Concurrency: 4, PerEndpoint: 1},
		zerolog.Nop(), prometheus.NewRegistry(), webhook.Options{PollInterval: time.Hour, // only woken
			Recorded: func(rs []webhook.Result) {
				for _, r := range rs {
					recorded <- r
				}
			}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	go func() {
		for range a.wakes {
			d.Wake()
		}
	}()
	t.Cleanup(func() { close(a.wakes) })

	if _, err := a.messages.Insert(context.Background(), []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "hi")}}); err != nil {
		t.Fatal(err)
	}
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+ep.ID.String()+"/test", "", nil); status != http.StatusAccepted {
		t.Fatal(status)
	}
	sent := map[string]string{}
	for range 2 {
		select {
		case h := <-hits:
			if !h.ok {
				t.Errorf("%s did not verify with the official library", h.typ)
			}
			sent[h.id] = h.typ
		case <-time.After(20 * time.Second):
			t.Fatalf("got %v, want message.accepted and webhook.test", sent)
		}
	}
	for range 2 {
		select {
		case <-recorded:
		case <-time.After(20 * time.Second):
			t.Fatal("attempts not recorded")
		}
	}
	var entries []webhook.Attempt
	after := ""
	for range 3 {
		var page WebhookDeliveriesResponse
		if status, _ := a.call(t, 1, "GET", "/v1/webhook-endpoints/"+ep.ID.String()+"/deliveries?size=1"+after, "", &page); status != http.StatusOK {
			t.Fatal(status)
		}
		entries = append(entries, page.Deliveries...)
		if page.NextAfter == nil {
			break
		}
		after = "&after=" + *page.NextAfter
	}
	if len(entries) != 2 {
		t.Fatalf("log has %d entries over its pages, want 2", len(entries))
	}
	for _, e := range entries {
		if sent[e.WebhookID.String()] != e.EventType || e.State != "succeeded" || e.Attempt != 1 || e.StatusCode == nil || *e.StatusCode != 200 {
			t.Errorf("log entry %+v does not match what was sent (%v)", e, sent)
		}
	}
	if !entries[0].AttemptedAt.After(entries[1].AttemptedAt) && !entries[0].AttemptedAt.Equal(entries[1].AttemptedAt) {
		t.Errorf("log not newest first: %v then %v", entries[0].AttemptedAt, entries[1].AttemptedAt)
	}

	var replay WebhookReplayResponse
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if status, _ := a.call(t, 1, "POST", "/v1/webhook-endpoints/"+ep.ID.String()+"/replay", `{"since": "`+since+`"}`, &replay); status != http.StatusAccepted || replay.Queued != 2 {
		t.Fatalf("replay: %d %+v, want 2 queued", status, replay)
	}
	for range 2 {
		select {
		case h := <-hits:
			if _, ok := sent[h.id]; !ok || !h.ok {
				t.Errorf("replayed %s with id %s (verified %v); want an id sent before", h.typ, h.id, h.ok)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the replay did not arrive")
		}
	}
}
