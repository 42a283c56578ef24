package http

import (
	"net/http"
	"strings"
	"testing"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
)

// TestSendOptedOut: with Config.OptOuts, a single send to a recipient who
// replied STOP answers 422 opted-out and stores nothing, with or without an
// Idempotency-Key; in a batch, that message alone is refused (its own 422
// in the results) and the others are accepted.
func TestSendOptedOut(t *testing.T) {
	t.Parallel()
	a := newInboundAPI(t, false, func(cfg *Config, s *postgres.Suppressions) { cfg.OptOuts = s })
	// Accepted before the STOP: its retry is answered as it was, not refused.
	early := sms.SendInput{Sender: ourNumber, Recipient: handset, Text: "before the STOP"}
	first := a.do(t, http.MethodPost, "/v1/messages", a.key, early, withHeader("Idempotency-Key", "k-early"))
	want(t, first, http.StatusAccepted)
	a.handOver(t, "STOP", "mo-stop")
	retried := a.do(t, http.MethodPost, "/v1/messages", a.key, early, withHeader("Idempotency-Key", "k-early"))
	want(t, retried, http.StatusAccepted)
	if retried.Header.Get("Idempotent-Replayed") != "true" || decodeAs[sms.Message](t, retried).ID != decodeAs[sms.Message](t, first).ID {
		t.Errorf("retry of a send accepted before the STOP: %v, want the original replayed", retried)
	}
	before := count(t, a.db, "messages")
	wantOptedOut(t, a.sendTo(t, a.key, handset), handset)
	r := a.do(t, http.MethodPost, "/v1/messages", a.key, sms.SendInput{Sender: ourNumber, Recipient: handset, Text: "x"},
		withHeader("Idempotency-Key", "k-1"))
	wantOptedOut(t, r, handset)
	if p := decodeAs[problem](t, r); p.Title != "Recipient opted out" {
		t.Errorf("title %q", p.Title)
	}
	r = a.do(t, http.MethodPost, "/v1/messages/batch", a.key, map[string]any{"messages": []sms.SendInput{
		{Sender: ourNumber, Recipient: "+442071838750", Text: "ok"},
		{Sender: ourNumber, Recipient: "+1 415 555 2671", Text: "refused"},
		{Sender: ourNumber, Recipient: "+442071838751", Text: "ok too"},
	}})
	want(t, r, http.StatusOK)
	b := decodeAs[BatchResponse](t, r)
	if b.Accepted != 2 || b.Rejected != 1 || b.Results[1].Status != http.StatusUnprocessableEntity ||
		!strings.HasSuffix(b.Results[1].Problem.Type, "/opted-out") || b.Results[1].Problem.Instance != "/v1/messages/batch#/messages/1" ||
		b.Results[0].Status != http.StatusAccepted || b.Results[2].Status != http.StatusAccepted {
		t.Errorf("batch: %v", r)
	}
	if n := count(t, a.db, "messages"); n != before+2 {
		t.Errorf("%d messages stored, want the batch's 2", n-before)
	}
	a.handOver(t, "START", "mo-start")
	want(t, a.sendTo(t, a.key, handset), http.StatusAccepted)
}
