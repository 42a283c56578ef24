package sms

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAbuseInputs sends what an attacker or a broken client would: each
// gets a 4xx problem, never a 5xx, and nothing is stored or changed.
func TestAbuseInputs(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	kept := a.send(t, SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: "keep me"})
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
		add(fmt.Sprintf("SQL in sender %d", i), request{http.MethodPost, "/v1/messages", SendInput{Sender: s, Recipient: "+14155552671", Text: "x"}, nil})
		add(fmt.Sprintf("SQL in recipient %d", i), request{http.MethodPost, "/v1/messages", SendInput{Sender: "+14155550100", Recipient: s, Text: "x"}, nil})
		add(fmt.Sprintf("SQL in id %d", i), request{http.MethodGet, "/v1/messages/" + url.PathEscape(s), nil, nil})
		add(fmt.Sprintf("SQL in phone %d", i), request{http.MethodGet, "/v1/users/" + url.PathEscape(s) + "/messages", nil, nil})
		for _, param := range []string{"page", "size", "status", "after"} {
			add(fmt.Sprintf("SQL in %s %d", param, i), request{http.MethodGet, "/v1/messages?" + param + "=" + esc, nil, nil})
		}
		add(fmt.Sprintf("SQL in Idempotency-Key %d", i), request{http.MethodPost, "/v1/messages", SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: ""}, []reqOpt{withHeader("Idempotency-Key", s)}})
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
	if after := a.stats(t); after != before {
		t.Errorf("abuse changed the data: stats %+v -> %+v", before, after)
	}
	if n := count(t, a.db, "messages"); n != 1 {
		t.Errorf("%d messages stored, want only the one sent before", n)
	}
	var text string
	if err := a.db.Get(&text, `SELECT text FROM sms.messages WHERE id = $1`, kept.ID); err != nil || text != "keep me" {
		t.Errorf("the stored message changed: %q, %v", text, err)
	}
	if count(t, a.db, "api_keys") == 0 {
		t.Error("api keys are gone")
	}
}
