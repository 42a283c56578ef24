package http

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
)

// TestAbuseInputs sends what an attacker or a broken client would: each
// gets a 4xx problem, never a 5xx, and nothing is stored or changed.
func TestAbuseInputs(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	kept := a.send(t, sms.SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: "keep me"})
	before := a.stats(t)

	sqlish := []string{`' OR '1'='1`, `'; DROP TABLE sms.messages; --`, `" OR 1=1 --`, `%' --`, `\x00`, `1) UNION SELECT * FROM sms.api_keys --`}
	type request struct {
		method, path string
		body         any
		opts         []reqOpt
	}
	var cases []struct {
		name string
		req  request
	}
	add := func(name string, r request) {
		cases = append(cases, struct {
			name string
			req  request
		}{name, r})
	}
	add("oversized body", request{http.MethodPost, "/v1/messages", `{"sender":"+14155550100","recipient":"+14155552671","text":"` + strings.Repeat("a", 200<<10) + `"}`, nil})
	add("deeply nested JSON", request{http.MethodPost, "/v1/messages", strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), nil})
	add("deeply nested array in a field", request{http.MethodPost, "/v1/messages", `{"sender":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, nil})
	add("invalid UTF-8", request{http.MethodPost, "/v1/messages", []byte("{\"sender\":\"+14155550100\",\"recipient\":\"+14155552671\",\"text\":\"\xff\xfe\"}"), nil})
	// Very long headers are refused by the server itself (platform.NewHTTPServer,
	// tested in platform), before any handler runs.
	for i, s := range sqlish {
		esc := url.QueryEscape(s)
		add(fmt.Sprintf("SQL in sender %d", i), request{http.MethodPost, "/v1/messages", sms.SendInput{Sender: s, Recipient: "+14155552671", Text: "x"}, nil})
		add(fmt.Sprintf("SQL in recipient %d", i), request{http.MethodPost, "/v1/messages", sms.SendInput{Sender: "+14155550100", Recipient: s, Text: "x"}, nil})
		add(fmt.Sprintf("SQL in id %d", i), request{http.MethodGet, "/v1/messages/" + url.PathEscape(s), nil, nil})
		add(fmt.Sprintf("SQL in phone %d", i), request{http.MethodGet, "/v1/users/" + url.PathEscape(s) + "/messages", nil, nil})
		for _, param := range []string{"page", "size", "status", "after"} {
			add(fmt.Sprintf("SQL in %s %d", param, i), request{http.MethodGet, "/v1/messages?" + param + "=" + esc, nil, nil})
		}
		add(fmt.Sprintf("SQL in Idempotency-Key %d", i), request{http.MethodPost, "/v1/messages", sms.SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: ""}, []reqOpt{withHeader("Idempotency-Key", s)}})
		add(fmt.Sprintf("SQL as API key %d", i), request{http.MethodGet, "/v1/messages", nil, []reqOpt{withKey(s)}})
		add(fmt.Sprintf("SQL in report id %d", i), request{http.MethodPost, "/v1/internal/delivery-report",
			`{"message_id":"` + strings.ReplaceAll(s, `"`, `\"`) + `","status":"SENT","processed_at":"2026-01-01T00:00:00Z"}`, []reqOpt{withInternalToken()}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := a.do(t, tc.req.method, tc.req.path, tc.req.body, tc.req.opts...)
			if r.Status < 400 || r.Status >= 500 {
				t.Errorf("got %s, want a 4xx", r)
			}
		})
	}
	if after := a.stats(t); !reflect.DeepEqual(after, before) {
		t.Errorf("abuse changed the data: stats %+v -> %+v", before, after)
	}
	if n := smstest.Count(t, a.db, "messages"); n != 1 {
		t.Errorf("%d messages stored, want only the one sent before", n)
	}
	var text string
	if err := a.db.Get(&text, `SELECT text FROM sms.messages WHERE id = $1`, kept.ID); err != nil || text != "keep me" {
		t.Errorf("the stored message changed: %q, %v", text, err)
	}
	if smstest.Count(t, a.db, "api_keys") == 0 {
		t.Error("api keys are gone")
	}
}

// authAPI serves the API straight from echo, so that a test can say which
// address each request comes from.
type authAPI struct {
	e    *echo.Echo
	db   *sqlx.DB
	keys *postgres.Keys
}

// newAuthAPI allows failed authentications at rate per second after burst,
// per client address; X-Forwarded-For is believed from trusted peers.
func newAuthAPI(t *testing.T, rate float64, burst int, trusted ...*net.IPNet) *authAPI {
	t.Helper()
	db := platformtest.NewDB(t)
	store := postgres.NewStore(db)
	writer := postgres.NewWriter(store, 1, 10, prometheus.NewRegistry())
	if err := writer.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(writer.Stop)
	keys := postgres.NewKeys(db, time.Hour) // the negative cache outlives the test
	e := platform.NewEcho(zerolog.Nop(), ProblemFor)
	e.IPExtractor = platform.ClientIP(trusted)
	NewHandler(store, writer, &fakeBacklog{}, keys, Config{
		InternalToken: testInternalToken, MaxBacklog: 1000, RateLimit: 1e6, RateBurst: 1_000_000,
		AuthFailureRate: rate, AuthFailureBurst: burst,
	}, zerolog.Nop(), prometheus.NewRegistry()).Register(e, e)
	return &authAPI{e: e, db: db, keys: keys}
}

// get asks for the stats with key ("" sends none) from the peer address
// from, with X-Forwarded-For xff unless "".
func (a *authAPI) get(key, from, xff string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/v1/messages/stats", nil)
	req.RemoteAddr = from
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	rec := httptest.NewRecorder()
	a.e.ServeHTTP(rec, req)
	return rec
}

// expect fails the test unless r has status want (and Retry-After if 429).
func expect(t *testing.T, what string, r *httptest.ResponseRecorder, want int) {
	t.Helper()
	if r.Code != want || (want == http.StatusTooManyRequests && r.Header().Get("Retry-After") == "") {
		t.Fatalf("%s: %d %s (Retry-After %q), want %d", what, r.Code, strings.TrimSpace(r.Body.String()), r.Header().Get("Retry-After"), want)
	}
}

// keysGone renames the keys table away: from then on any lookup answers
// 503, so a 401 or 429 shows that no query was made. keysBack undoes it.
func (a *authAPI) keysGone(t *testing.T) {
	t.Helper()
	if _, err := a.db.Exec(`ALTER TABLE sms.api_keys RENAME TO api_keys_gone`); err != nil {
		t.Fatal(err)
	}
}

func (a *authAPI) keysBack(t *testing.T) {
	t.Helper()
	if _, err := a.db.Exec(`ALTER TABLE sms.api_keys_gone RENAME TO api_keys`); err != nil {
		t.Fatal(err)
	}
}

// newKey creates a key the way `smsctl apikey create` does, in another
// process: this API has not seen it.
func (a *authAPI) newKey(t *testing.T) string {
	t.Helper()
	key, _, err := postgres.NewKeys(a.db, 0).CreateKey(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// forgedKey is a well-formed key no one has, its prefix made of n.
func forgedKey(n int) string { return fmt.Sprintf("sms_%08x_%s", n, strings.Repeat("1", 48)) }

// TestForgedKeysAreCheap checks that failed authentication costs little
// and never slows a valid key: an unknown key is looked up once and then
// answered from memory; an address that keeps failing gets 429 with
// Retry-After for what it is known to have wrong, without a lookup, while
// keys the API has verified before, and valid keys it has not seen yet,
// still work from it; its lookups of unknown keys are bounded by a second
// budget as large as the first, which valid keys do not use up; and
// another address is not held back at all.
func TestForgedKeysAreCheap(t *testing.T) {
	t.Parallel()
	const burst = 5
	a := newAuthAPI(t, 0.001, burst) // no refill while the test runs
	const from, other = "198.51.100.7:4000", "198.51.100.8:4000"
	known := a.newKey(t)
	expect(t, "valid key", a.get(known, from, ""), http.StatusOK)
	forged := forgedKey(0xbadbeef)
	expect(t, "forged key", a.get(forged, from, ""), http.StatusUnauthorized)

	a.keysGone(t)
	expect(t, "the same forged key again, from the negative cache", a.get(forged, from, ""), http.StatusUnauthorized)
	for i := range burst - 2 {
		expect(t, fmt.Sprintf("failure %d without a key", i+3), a.get("", from, ""), http.StatusUnauthorized)
	}
	// The burst is used up: what is known to be wrong gets 429 without a
	// lookup, the key verified before still works.
	expect(t, "the forged key past the burst", a.get(forged, from, ""), http.StatusTooManyRequests)
	expect(t, "no key past the burst", a.get("", from, ""), http.StatusTooManyRequests)
	expect(t, "a malformed key past the burst", a.get("sms_junk", from, ""), http.StatusTooManyRequests)
	expect(t, "the key verified before, from the throttled address", a.get(known, from, ""), http.StatusOK)
	a.keysBack(t)

	// A valid key this API has never seen is looked up, and authenticates.
	fresh := a.newKey(t)
	expect(t, "a new valid key from the throttled address", a.get(fresh, from, ""), http.StatusOK)
	// New forged keys are looked up too, but only within the second
	// budget, which only their failures spend: exactly burst of them cost
	// a query.
	for i := range burst {
		expect(t, fmt.Sprintf("new forged key %d within the lookup budget", i), a.get(forgedKey(i), from, ""), http.StatusUnauthorized)
	}
	expect(t, "a new forged key past the lookup budget", a.get(forgedKey(burst), from, ""), http.StatusTooManyRequests)

	// Another address is not held back: its forged keys are looked up
	// (401) and its new valid keys work.
	expect(t, "a new forged key from another address", a.get(forgedKey(100), other, ""), http.StatusUnauthorized)
	expect(t, "a new valid key from another address", a.get(a.newKey(t), other, ""), http.StatusOK)

	// From here on no lookup can succeed: the throttled address's forged
	// keys, new or not, get 429, never a query (which would answer 503).
	a.keysGone(t)
	t.Cleanup(func() { a.keysBack(t) })
	for i := range 10 {
		expect(t, fmt.Sprintf("forged key %d from the throttled address", i), a.get(forgedKey(200+i), from, ""), http.StatusTooManyRequests)
	}
	expect(t, "the keys verified before", a.get(fresh, from, ""), http.StatusOK)
}

// TestColdCacheDoesNotThrottleValidKeys: valid keys this API has not seen
// yet (after a restart, on a new replica) may all be looked up at once
// from one address, many more of them than the failure budget, and each
// authenticates: only failures spend the budget.
func TestColdCacheDoesNotThrottleValidKeys(t *testing.T) {
	t.Parallel()
	const burst, n, from = 2, 12, "198.51.100.9:4000"
	a := newAuthAPI(t, 0.001, burst)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = a.newKey(t)
	}
	// Hold every lookup until all n requests are in: the table is locked.
	lock, err := a.db.Beginx()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback() }()
	if _, err := lock.Exec(`LOCK TABLE sms.api_keys IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	var answered atomic.Int32
	codes := make(chan int, n)
	for _, key := range keys {
		go func() {
			r := a.get(key, from, "")
			answered.Add(1)
			codes <- r.Code
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int32
		if err := a.db.Get(&waiting, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`); err != nil {
			t.Fatal(err)
		}
		if waiting+answered.Load() == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d lookups waiting and %d requests answered, want %d in all", waiting, answered.Load(), n)
		}
		time.Sleep(10 * time.Millisecond) // polling the condition above
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	for range n {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a valid key looked up at once with %d others from one address: %d, want 200", n-1, code)
		}
	}
}

// TestFailedAuthenticationsPerClient: failed attempts are counted per
// client: behind a trusted proxy per forwarded address, from anyone else
// per peer whatever X-Forwarded-For says, and for IPv6 per /64.
func TestFailedAuthenticationsPerClient(t *testing.T) {
	t.Parallel()
	_, proxies, _ := net.ParseCIDR("192.0.2.0/24")
	a := newAuthAPI(t, 0.001, 2, proxies)
	exhaust := func(from, xff string) {
		t.Helper()
		for range 2 {
			expect(t, "failure within the burst from "+from+" for "+xff, a.get("", from, xff), http.StatusUnauthorized)
		}
		expect(t, "failure past the burst from "+from+" for "+xff, a.get("", from, xff), http.StatusTooManyRequests)
	}
	const proxy, proxy2 = "192.0.2.10:4000", "192.0.2.11:4000"
	exhaust(proxy, "203.0.113.1")
	expect(t, "another client through the same proxy", a.get("", proxy, "203.0.113.2"), http.StatusUnauthorized)
	expect(t, "the throttled client through another proxy", a.get("", proxy2, "203.0.113.1"), http.StatusTooManyRequests)
	expect(t, "the throttled client naming itself after a made-up address", a.get("", proxy, "10.1.1.1, 203.0.113.1"), http.StatusTooManyRequests)

	const untrusted = "198.51.100.7:4000"
	exhaust(untrusted, "203.0.113.3")
	expect(t, "an untrusted peer's X-Forwarded-For is ignored", a.get("", untrusted, "203.0.113.4"), http.StatusTooManyRequests)
	expect(t, "and does not count against the address it names", a.get("", proxy, "203.0.113.3"), http.StatusUnauthorized)

	exhaust("[2001:db8:1:2::1]:4000", "")
	expect(t, "another address of the same /64", a.get("", "[2001:db8:1:2:ffff::9]:4000", ""), http.StatusTooManyRequests)
	expect(t, "an address of the next /64", a.get("", "[2001:db8:1:3::1]:4000", ""), http.StatusUnauthorized)
	expect(t, "an IPv4-mapped address is its IPv4 address", a.get("", "[::ffff:198.51.100.7]:4000", ""), http.StatusTooManyRequests)
}
