package http

import (
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
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

// TestForgedKeysAreCheap checks that failed authentication costs little:
// an unknown key is looked up once and then answered from memory (here the
// database is gone by the second try, and the answer is still 401, not
// 503), and an address that keeps failing gets 429 with Retry-After
// without a lookup, while a key the API has verified before still works
// from that address.
func TestForgedKeysAreCheap(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	a := newAPI(t, func(o *apiOptions) {
		o.db = db
		o.authFailureRate = 0.001
		o.authFailureBurst = 5
		o.keyCacheTTL = time.Hour // the negative cache outlives the test
	})
	good := a.do(t, http.MethodGet, "/v1/messages/stats", nil)
	if good.Status != http.StatusOK {
		t.Fatalf("valid key: %v", good)
	}
	forged := "sms_0badbeef_" + strings.Repeat("0", 48)
	if r := a.do(t, http.MethodGet, "/v1/messages/stats", nil, withKey(forged)); r.Status != http.StatusUnauthorized {
		t.Fatalf("forged key: %v, want 401", r)
	}
	// From here on no lookup can succeed: a query would answer 503.
	if _, err := db.Exec(`ALTER TABLE sms.api_keys RENAME TO api_keys_gone`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Exec(`ALTER TABLE sms.api_keys_gone RENAME TO api_keys`) })
	if r := a.do(t, http.MethodGet, "/v1/messages/stats", nil, withKey(forged)); r.Status != http.StatusUnauthorized {
		t.Fatalf("the same forged key again: %v, want 401 from the negative cache", r)
	}
	// Three more failures use up the burst of 5 ...
	for i := range 3 {
		if r := a.do(t, http.MethodGet, "/v1/messages/stats", nil, withKey("")); r.Status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %v, want 401", i, r)
		}
	}
	// ... so new forged keys get 429 without touching the database.
	for i := range 10 {
		key := fmt.Sprintf("sms_%08x_%s", i, strings.Repeat("1", 48))
		r := a.do(t, http.MethodGet, "/v1/messages/stats", nil, withKey(key))
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("forged key %d past the burst: %v (Retry-After %q), want 429 with Retry-After", i, r, r.Header.Get("Retry-After"))
		}
	}
	// A valid key from the same address is not held back.
	if r := a.do(t, http.MethodGet, "/v1/messages/stats", nil); r.Status != http.StatusOK {
		t.Fatalf("valid key from a throttled address: %v, want 200", r)
	}
}
