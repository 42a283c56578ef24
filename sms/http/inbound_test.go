package http

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
)

// The routes of two-way messaging over a real server and database. Every
// answer is held to the OpenAPI document where it describes the route
// (checkContract), and errors are complete problems anyway.

const (
	ourNumber = "+14155550100" // owned by account acme
	handset   = "+14155552671"
)

// optOutSender is the send path's opt-out check as the API handler makes
// it: asked before the message is stored.
type optOutSender struct {
	Sender
	check *postgres.Suppressions
}

func (s optOutSender) Insert(ctx context.Context, m sms.NewMessage) (sms.Message, error) {
	if err := s.check.Check(ctx, m.AccountID, m.Recipient); err != nil {
		return sms.Message{}, err
	}
	return s.Sender.Insert(ctx, m)
}

// inboundAPI is the API with the two-way messaging routes, a suppressions
// cache kept current by its listener, and two accounts: acme (owning
// ourNumber) and other.
type inboundAPI struct {
	url      string
	client   *http.Client
	db       *sqlx.DB
	store    *postgres.Store
	handler  *Inbound
	key      string // acme's
	otherKey string
	account  int64
}

// newInboundAPI starts it; with check, sends are refused to recipients
// who opted out (as the handler's Config.OptOuts does); configure may edit
// the handler's configuration.
func newInboundAPI(tb testing.TB, check bool, configure ...func(*Config, *postgres.Suppressions)) *inboundAPI {
	tb.Helper()
	dsn := platformtest.NewDatabase(tb)
	db, err := sqlx.Open("postgres", dsn)
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(16) // the test server is shared
	db.SetMaxIdleConns(16) // as platform.OpenPostgres does: no reconnect per query
	tb.Cleanup(func() { db.Close() })
	store := postgres.NewStore(db)
	writer := postgres.NewWriter(store, 2, 100, prometheus.NewRegistry())
	if err := writer.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(writer.Stop)
	cache := postgres.NewSuppressions(db, dsn, zerolog.Nop())
	if err := cache.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(cache.Stop)
	select {
	case <-cache.Live():
	case <-time.After(30 * time.Second):
		tb.Fatal("the suppressions listener never listened")
	}
	var sender Sender = writer
	if check {
		sender = optOutSender{Sender: writer, check: cache}
	}
	keys := postgres.NewKeys(db, time.Minute)
	e := platform.NewEcho(zerolog.Nop(), ProblemFor)
	cfg := Config{InternalToken: testInternalToken, MaxBacklog: 1000,
		RateLimit: 1e6, RateBurst: 1_000_000, AuthFailureRate: 1e6, AuthFailureBurst: 1_000_000}
	for _, f := range configure {
		f(&cfg, cache)
	}
	h := NewHandler(store, sender, &fakeBacklog{}, keys, cfg, zerolog.Nop(), prometheus.NewRegistry())
	h.Register(e, e)
	inbound := postgres.NewInbound(store, cache)
	a := &inboundAPI{db: db, store: store, handler: NewInbound(inbound, zerolog.Nop(), prometheus.NewRegistry())}
	a.handler.Register(e, e, h.ClientMiddleware(), h.InternalMiddleware())
	srv := httptest.NewServer(e)
	tb.Cleanup(srv.Close)
	a.url, a.client = srv.URL, srv.Client()
	for _, k := range []*string{&a.key, &a.otherKey} {
		name := map[*string]string{&a.key: "acme", &a.otherKey: "other"}[k]
		if *k, _, err = keys.CreateKey(context.Background(), name); err != nil {
			tb.Fatal(err)
		}
	}
	if _, _, err := inbound.AddNumber(context.Background(), "acme", ourNumber); err != nil {
		tb.Fatal(err)
	}
	if err := db.Get(&a.account, `SELECT id FROM sms.accounts WHERE name = 'acme'`); err != nil {
		tb.Fatal(err)
	}
	return a
}

// do sends a request with key ("" for none) and checks that an error is a
// complete problem document.
func (a *inboundAPI) do(tb testing.TB, method, path, key string, body any, opts ...reqOpt) response {
	tb.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			tb.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, a.url+path, bytes.NewReader(raw))
	if err != nil {
		tb.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for _, o := range opts {
		o(req)
	}
	res, err := a.client.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := response{method: method, path: path, Status: res.StatusCode, Header: res.Header, Body: data}
	if specHas(tb, req) {
		checkContract(tb, req, raw, r)
	} else if r.Status >= 400 {
		checkProblem(tb, req, r)
	}
	return r
}

// specHas reports whether the OpenAPI document describes req's route: the
// routes of two-way messaging are held to it once it does.
func specHas(tb testing.TB, req *http.Request) bool {
	tb.Helper()
	_, router := openAPI(tb)
	c := req.Clone(context.Background())
	c.URL = &url.URL{Path: req.URL.Path, RawQuery: req.URL.RawQuery}
	_, _, err := router.FindRoute(c)
	return err == nil
}

// handOver posts an inbound message from handset to ourNumber as the
// processor does.
func (a *inboundAPI) handOver(tb testing.TB, text, carrierID string) (sms.InboundResult, response) {
	tb.Helper()
	r := a.do(tb, http.MethodPost, "/v1/internal/inbound", testInternalToken, map[string]any{
		"from": handset, "to": ourNumber, "text": text, "received_at": time.Now().UTC().Format(time.RFC3339Nano), "carrier_message_id": carrierID})
	want(tb, r, http.StatusOK)
	return decodeAs[sms.InboundResult](tb, r), r
}

func (a *inboundAPI) sendTo(tb testing.TB, key, recipient string) response {
	tb.Helper()
	return a.do(tb, http.MethodPost, "/v1/messages", key, sms.SendInput{Sender: ourNumber, Recipient: recipient, Text: "Sale today"})
}

func wantOptedOut(tb testing.TB, r response, recipient string) {
	tb.Helper()
	p := wantProblem(tb, r, http.StatusUnprocessableEntity)
	if !strings.HasSuffix(p.Type, "/opted-out") || !strings.Contains(p.Detail, recipient) {
		tb.Errorf("%v: type %q, detail %q; want a type ending in /opted-out naming the recipient", r, p.Type, p.Detail)
	}
}

// TestInboundStopStart: a STOP handed over suppresses the sender from the
// moment the call answers: a send to it is refused with 422 opted-out and
// nothing is stored but the STOP's confirmation; START lifts it.
func TestInboundStopStart(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, true)
	want(t, a.sendTo(t, a.key, handset), http.StatusAccepted)

	stop, r := a.handOver(t, "stop", "mo-1")
	if !stop.AccountRouted || stop.Keyword == nil || *stop.Keyword != sms.KeywordStop || stop.ReplyMessageID == nil {
		t.Fatalf("%v: want routed, keyword stop and a reply", r)
	}
	before := count(t, a.db, "messages")
	wantOptedOut(t, a.sendTo(t, a.key, handset), handset)
	if n := count(t, a.db, "messages"); n != before {
		t.Errorf("%d messages stored by a refused send", n-before)
	}
	// The STOP's confirmation is the account's message, PENDING.
	r = a.do(t, http.MethodGet, "/v1/messages/"+stop.ReplyMessageID.String(), a.key, nil)
	want(t, r, http.StatusOK)
	if m := decodeAs[sms.Message](t, r); m.Recipient != handset || m.Sender != ourNumber || m.Text != sms.DefaultStopReply || m.Status != sms.StatusPending {
		t.Errorf("the STOP confirmation: %v", r)
	}
	// Another account may still send to the recipient.
	want(t, a.sendTo(t, a.otherKey, handset), http.StatusAccepted)

	r = a.do(t, http.MethodGet, "/v1/suppressions", a.key, nil)
	want(t, r, http.StatusOK)
	if s := decodeAs[SuppressionsResponse](t, r); len(s.Suppressions) != 1 || s.Suppressions[0].Phone != handset || s.Suppressions[0].Reason != "stop" {
		t.Errorf("%v: want the STOP's suppression", r)
	}

	start, _ := a.handOver(t, "  START ", "mo-2")
	if start.Keyword == nil || *start.Keyword != sms.KeywordStart {
		t.Fatalf("START: %+v", start)
	}
	want(t, a.sendTo(t, a.key, handset), http.StatusAccepted)
}

// TestInternalInbound: the hand-over is idempotent on the carrier id,
// validated field by field, and only for the internal token.
func TestInternalInbound(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, false)
	first, r1 := a.handOver(t, "HELP", "mo-help")
	second, r2 := a.handOver(t, "HELP", "mo-help")
	if !bytes.Equal(r1.Body, r2.Body) || r2.Header.Get("Idempotent-Replayed") != "true" || r1.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("repeat answered %v (replayed %q), first %v", r2, r2.Header.Get("Idempotent-Replayed"), r1)
	}
	if first.ReplyMessageID == nil || second.ID != first.ID {
		t.Errorf("first %+v, second %+v", first, second)
	}
	if n := count(t, a.db, "inbound_messages"); n != 1 {
		t.Errorf("%d inbound messages after a repeat, want 1", n)
	}
	if n := count(t, a.db, "messages"); n != 1 {
		t.Errorf("%d replies after a repeat, want 1", n)
	}
	if got := testutil.ToFloat64(a.handler.duplicates); got != 1 {
		t.Errorf("sms_inbound_duplicate_total %v, want 1", got)
	}

	unrouted := a.do(t, http.MethodPost, "/v1/internal/inbound", testInternalToken, map[string]any{
		"from": handset, "to": "+1 415 555 0199", "text": "hi", "received_at": "2026-01-01T00:00:00-22:20", "carrier_message_id": "mo-x"}) // an offset PostgreSQL refuses
	want(t, unrouted, http.StatusOK)
	if res := decodeAs[sms.InboundResult](t, unrouted); res.AccountRouted || res.Keyword != nil {
		t.Errorf("%v: want unrouted", unrouted)
	}
	if got := testutil.ToFloat64(a.handler.unrouted); got != 1 {
		t.Errorf("sms_inbound_unrouted_total %v, want 1", got)
	}

	valid := map[string]any{"from": handset, "to": ourNumber, "text": "x", "received_at": "2026-01-01T00:00:00Z", "carrier_message_id": "mo-y"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for key, val := range valid {
			m[key] = val
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, tt := range []struct {
		name   string
		body   map[string]any
		fields []string
	}{
		{"empty", map[string]any{}, []string{"from", "to", "text", "received_at", "carrier_message_id"}},
		{"from not a phone", with("from", "Acme"), []string{"from"}},
		{"to without country code", with("to", "4155550100"), []string{"to"}},
		{"text missing", with("text", nil), []string{"text"}},
		{"text too long", with("text", strings.Repeat("a", 1601)), []string{"text"}},
		{"text with NUL", with("text", "a\x00"), []string{"text"}},
		{"received_at not RFC 3339", with("received_at", "yesterday"), []string{"received_at"}},
		{"received_at in year 0 in UTC", with("received_at", "0001-01-01T00:00:00+01:00"), []string{"received_at"}},
		{"carrier id too long", with("carrier_message_id", strings.Repeat("i", 129)), []string{"carrier_message_id"}},
		{"text of the wrong type", with("text", 5), []string{"text"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/inbound", testInternalToken, tt.body), tt.fields...)
		})
	}
	if n := count(t, a.db, "inbound_messages"); n != 2 {
		t.Errorf("%d inbound messages after refused hand-overs, want 2", n)
	}
	wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/inbound", a.key, valid), http.StatusUnauthorized)
	wantProblem(t, a.do(t, http.MethodPost, "/v1/internal/inbound", "", valid), http.StatusUnauthorized)
}

// TestInboundMessagesRoute: the account lists its own inbound messages,
// paged and filtered; nobody sees another's or unrouted ones.
func TestInboundMessagesRoute(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, false)
	base := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	var ids []uuid.UUID
	for i := range 7 {
		from := handset
		if i%2 == 1 {
			from = "+442071838750"
		}
		r := a.do(t, http.MethodPost, "/v1/internal/inbound", testInternalToken, map[string]any{"from": from, "to": ourNumber,
			"text": fmt.Sprintf("msg %d", i), "received_at": base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339), "carrier_message_id": fmt.Sprintf("mo-%d", i)})
		want(t, r, http.StatusOK)
		ids = append(ids, decodeAs[sms.InboundResult](t, r).ID)
	}
	slices.Reverse(ids) // newest first
	want(t, a.do(t, http.MethodPost, "/v1/internal/inbound", testInternalToken, map[string]any{"from": handset, "to": "+14155550199",
		"text": "unrouted", "received_at": base.Format(time.RFC3339), "carrier_message_id": "mo-unrouted"}), http.StatusOK)

	page := func(key, query string) InboundPageResponse {
		t.Helper()
		r := a.do(t, http.MethodGet, "/v1/inbound-messages"+query, key, nil)
		want(t, r, http.StatusOK)
		return decodeAs[InboundPageResponse](t, r)
	}
	idsOf := func(p InboundPageResponse) []uuid.UUID {
		var out []uuid.UUID
		for _, m := range p.InboundMessages {
			out = append(out, m.ID)
		}
		return out
	}
	all := page(a.key, "")
	if !slices.Equal(idsOf(all), ids) || all.TotalCount != 7 || all.TotalPages != 1 || all.PageSize != 20 || all.NextAfter != nil {
		t.Errorf("the whole list: %+v", all)
	}
	var walked []uuid.UUID
	q := "?size=3"
	for range 10 {
		p := page(a.key, q)
		walked = append(walked, idsOf(p)...)
		if p.NextAfter == nil {
			break
		}
		q = "?size=3&after=" + url.QueryEscape(*p.NextAfter)
	}
	if !slices.Equal(walked, ids) {
		t.Errorf("the cursor walk gives %v, want %v", walked, ids)
	}
	if p := page(a.key, "?size=3&page=2"); !slices.Equal(idsOf(p), ids[6:]) || p.TotalPages != 3 {
		t.Errorf("page 2 of 3: %+v", p)
	}
	if p := page(a.key, "?from="+url.QueryEscape("+44 20 7183 8750")); p.TotalCount != 3 {
		t.Errorf("from the UK handset: %d, want 3", p.TotalCount)
	}
	if p := page(a.key, "?to="+url.QueryEscape(ourNumber)+"&since=2026-02-01T10:02:00Z&until=2026-02-01T10:05:00Z"); !slices.Equal(idsOf(p), ids[2:5]) {
		t.Errorf("10:02 to 10:05: %v, want %v", idsOf(p), ids[2:5])
	}
	// The same window with offsets PostgreSQL refuses (past ±15:59).
	if p := page(a.key, "?to="+url.QueryEscape(ourNumber)+"&since="+url.QueryEscape("2026-02-02T02:22:00+16:20")+"&until="+url.QueryEscape("2026-01-31T12:05:00-22:00")); !slices.Equal(idsOf(p), ids[2:5]) {
		t.Errorf("10:02 to 10:05 with offsets ±16:20 and -22:00: %v, want %v", idsOf(p), ids[2:5])
	}
	if p := page(a.otherKey, ""); p.TotalCount != 0 || len(p.InboundMessages) != 0 {
		t.Errorf("the other account lists %+v", p)
	}
	wantProblem(t, a.do(t, http.MethodGet, "/v1/inbound-messages/"+ids[0].String(), a.otherKey, nil), http.StatusNotFound)
	r := a.do(t, http.MethodGet, "/v1/inbound-messages/"+ids[0].String(), a.key, nil)
	want(t, r, http.StatusOK)
	if m := decodeAs[sms.InboundMessage](t, r); m.Text != "msg 6" || m.From != handset || m.To != ourNumber || m.Keyword != nil {
		t.Errorf("GET one: %v", r)
	}
	wantViolations(t, a.do(t, http.MethodGet, "/v1/inbound-messages?from=abc&since=soon&size=0&status=SENT", a.key, nil), "from", "since", "size", "status")
	wantViolations(t, a.do(t, http.MethodGet, "/v1/inbound-messages?since=2026-02-02T00:00:00Z&until=2026-02-01T00:00:00Z", a.key, nil), "until")
	wantViolations(t, a.do(t, http.MethodGet, "/v1/inbound-messages/nope", a.key, nil), "id")
	wantProblem(t, a.do(t, http.MethodGet, "/v1/inbound-messages", "", nil), http.StatusUnauthorized)
}

// TestSuppressionsRoutes: the account manages its own list; sends follow
// it.
func TestSuppressionsRoutes(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, true)
	r := a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phone": "+1 (415) 555-2671", "reason": "asked by phone"})
	want(t, r, http.StatusCreated)
	created := decodeAs[sms.Suppression](t, r)
	if created.Phone != handset || created.Reason != "asked by phone" || r.Header.Get("Location") != "/v1/suppressions/+14155552671" {
		t.Errorf("%v (Location %q)", r, r.Header.Get("Location"))
	}
	wantOptedOut(t, a.sendTo(t, a.key, handset), handset)
	r = a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phone": handset})
	want(t, r, http.StatusOK)
	if again := decodeAs[sms.Suppression](t, r); again != created {
		t.Errorf("adding it again answered %+v, want %+v", again, created)
	}
	for _, path := range []string{"/v1/suppressions/%2B14155552671", "/v1/suppressions/+14155552671"} {
		r = a.do(t, http.MethodGet, path, a.key, nil)
		want(t, r, http.StatusOK)
		if got := decodeAs[sms.Suppression](t, r); got != created {
			t.Errorf("GET %s: %v", path, r)
		}
	}
	wantProblem(t, a.do(t, http.MethodGet, "/v1/suppressions/%2B14155552671", a.otherKey, nil), http.StatusNotFound)
	wantProblem(t, a.do(t, http.MethodDelete, "/v1/suppressions/%2B14155552671", a.otherKey, nil), http.StatusNotFound)

	// An import: repeats and entries there already are counted, not added.
	phones := []string{handset, handset, "+44 20 7183 8750"}
	for i := range 200 {
		phones = append(phones, fmt.Sprintf("+1415555%04d", 3000+i))
	}
	r = a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phones": phones, "reason": "import"})
	want(t, r, http.StatusOK)
	if got := decodeAs[SuppressionImportResponse](t, r); got.Added != 201 || got.Existing != 2 {
		t.Errorf("%v: want 201 added, 2 existing", r)
	}
	wantOptedOut(t, a.do(t, http.MethodPost, "/v1/messages", a.key, sms.SendInput{Sender: ourNumber, Recipient: "+14155553199", Text: "x"}), "+14155553199")
	var walked []string
	q := "?size=50"
	for range 10 {
		r := a.do(t, http.MethodGet, "/v1/suppressions"+q, a.key, nil)
		want(t, r, http.StatusOK)
		p := decodeAs[SuppressionsResponse](t, r)
		if p.TotalCount != 202 {
			t.Errorf("total %d, want 202", p.TotalCount)
		}
		for _, s := range p.Suppressions {
			walked = append(walked, s.Phone)
		}
		if p.NextAfter == nil {
			break
		}
		q = "?size=50&after=" + url.QueryEscape(*p.NextAfter)
	}
	if len(walked) != 202 || walked[201] != handset {
		t.Errorf("walked %d suppressions, want 202 ending with the oldest", len(walked))
	}
	r = a.do(t, http.MethodGet, "/v1/suppressions", a.otherKey, nil)
	want(t, r, http.StatusOK)
	if p := decodeAs[SuppressionsResponse](t, r); p.TotalCount != 0 || len(p.Suppressions) != 0 {
		t.Errorf("the other account lists %v", r)
	}

	// Refused imports store nothing.
	before := count(t, a.db, "suppressions")
	p := wantViolations(t, a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phones": []string{"+14155550001", "nope", "+1"}}),
		"phones[1]", "phones[2]")
	if !strings.Contains(p.message("phones[2]"), "digits") {
		t.Errorf("phones[2]: %q", p.message("phones[2]"))
	}
	wantViolations(t, a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phones": slices.Repeat([]string{handset}, sms.MaxSuppressionImport+1)}), "phones")
	wantViolations(t, a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phone": handset, "phones": []string{handset}}), "phones")
	wantViolations(t, a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{}), "phone")
	wantViolations(t, a.do(t, http.MethodPost, "/v1/suppressions", a.key, map[string]any{"phone": handset, "reason": strings.Repeat("r", 101)}), "reason")
	if n := count(t, a.db, "suppressions"); n != before {
		t.Errorf("refused requests stored %d suppressions", n-before)
	}

	r = a.do(t, http.MethodDelete, "/v1/suppressions/%2B14155552671", a.key, nil)
	want(t, r, http.StatusNoContent)
	wantProblem(t, a.do(t, http.MethodDelete, "/v1/suppressions/%2B14155552671", a.key, nil), http.StatusNotFound)
	wantViolations(t, a.do(t, http.MethodDelete, "/v1/suppressions/12", a.key, nil), "phone")
	want(t, a.sendTo(t, a.key, handset), http.StatusAccepted)
}

// TestNumbersRoute: the account sees its own numbers only.
func TestNumbersRoute(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, false)
	for key, wantNumbers := range map[string][]string{a.key: {ourNumber}, a.otherKey: {}} {
		r := a.do(t, http.MethodGet, "/v1/numbers", key, nil)
		want(t, r, http.StatusOK)
		var got []string
		for _, n := range decodeAs[NumbersResponse](t, r).Numbers {
			got = append(got, n.Number)
		}
		if !slices.Equal(got, wantNumbers) && !(len(got) == 0 && len(wantNumbers) == 0) {
			t.Errorf("%v: want %v", r, wantNumbers)
		}
		if !bytes.Contains(r.Body, []byte(`"numbers":[`)) {
			t.Errorf("%v: numbers must be a list, even empty", r)
		}
	}
}

// TestKeywordSettingsRoutes: the account's words and replies are what its
// inbound messages are judged by.
func TestKeywordSettingsRoutes(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, true)
	r := a.do(t, http.MethodGet, "/v1/keyword-settings", a.key, nil)
	want(t, r, http.StatusOK)
	if s := decodeAs[sms.KeywordSettings](t, r); !slices.Equal(s.StopWords, sms.DefaultStopWords) || s.HelpReply != sms.DefaultHelpReply {
		t.Errorf("defaults: %v", r)
	}
	r = a.do(t, http.MethodPut, "/v1/keyword-settings", a.key, map[string]any{"stop_words": []string{"stop", "arret"}, "help_reply": "Acme: 555-0100"})
	want(t, r, http.StatusOK)
	if s := decodeAs[sms.KeywordSettings](t, r); !slices.Equal(s.StopWords, []string{"STOP", "ARRET"}) || s.HelpReply != "Acme: 555-0100" ||
		!slices.Equal(s.StartWords, sms.DefaultStartWords) {
		t.Errorf("after PUT: %v", r)
	}
	// null is not "every field left out": it would reset the settings.
	wantProblem(t, a.do(t, http.MethodPut, "/v1/keyword-settings", a.key, json.RawMessage("null")), http.StatusBadRequest)
	wantViolations(t, a.do(t, http.MethodPut, "/v1/keyword-settings", a.key, map[string]any{"stop_words": []string{"QUIT"}, "help_reply": "stop"}), "stop_words")
	wantViolations(t, a.do(t, http.MethodPut, "/v1/keyword-settings", a.key, map[string]any{"stop_words": []string{"STOP", "ARRET"}, "help_reply": "arret"}), "help_reply")
	// The other account keeps the defaults.
	r = a.do(t, http.MethodGet, "/v1/keyword-settings", a.otherKey, nil)
	want(t, r, http.StatusOK)
	if s := decodeAs[sms.KeywordSettings](t, r); !slices.Equal(s.StopWords, sms.DefaultStopWords) {
		t.Errorf("the other account's settings: %v", r)
	}
	if res, _ := a.handOver(t, "Arret", "mo-arret"); res.Keyword == nil || *res.Keyword != sms.KeywordStop {
		t.Errorf("ARRET after setting it: %+v", res)
	}
	wantOptedOut(t, a.sendTo(t, a.key, handset), handset)
	help, _ := a.handOver(t, "help", "mo-help")
	r = a.do(t, http.MethodGet, "/v1/messages/"+help.ReplyMessageID.String(), a.key, nil)
	want(t, r, http.StatusOK)
	if m := decodeAs[sms.Message](t, r); m.Text != "Acme: 555-0100" {
		t.Errorf("HELP reply %q", m.Text)
	}
}

// BenchmarkSendOptOutCheck is POST /v1/messages through the handler and
// the group-commit writer on PostgreSQL, without the opt-out check and
// with it (the account has 1,000 suppressions, the recipients none): the
// cost the check adds to the send path.
func BenchmarkSendOptOutCheck(b *testing.B) {
	for _, check := range []bool{false, true} {
		b.Run(map[bool]string{false: "without", true: "with"}[check], func(b *testing.B) {
			a := newInboundAPI(b, check)
			var phones []string
			for i := range 1000 {
				phones = append(phones, fmt.Sprintf("+1415556%04d", i))
			}
			in := postgres.NewInbound(a.store, nil)
			if _, err := in.AddSuppressions(context.Background(), a.account, phones, "bench"); err != nil {
				b.Fatal(err)
			}
			body, _ := json.Marshal(sms.SendInput{Sender: ourNumber, Recipient: handset, Text: "Hello"})
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodPost, a.url+"/v1/messages", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+a.key)
					res, err := a.client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusAccepted {
						b.Errorf("status %d", res.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkInternalInbound is hand-overs per second through POST
// /v1/internal/inbound to PostgreSQL: routed plain texts from 10,000 handsets,
// 8 × GOMAXPROCS at a time.
func BenchmarkInternalInbound(b *testing.B) {
	a := newInboundAPI(b, false)
	b.SetParallelism(8)
	b.ReportAllocs()
	start := time.Now()
	var n atomicInt
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.next()
			body, _ := json.Marshal(map[string]any{"from": fmt.Sprintf("+1415557%04d", i%10000), "to": ourNumber, "text": "Thanks, see you then",
				"received_at": time.Now().UTC().Format(time.RFC3339Nano), "carrier_message_id": fmt.Sprintf("bench-%d", i)})
			req, _ := http.NewRequest(http.MethodPost, a.url+"/v1/internal/inbound", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testInternalToken)
			res, err := a.client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

type atomicInt struct{ v atomic.Int64 }

func (a *atomicInt) next() int64 { return a.v.Add(1) }
