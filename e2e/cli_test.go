package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// TestCLIScheduleCancelRetry runs the message commands as a user would:
// `send --at --validity --priority`, `cancel` by id and by filter, and
// `retry --status FAILED`. No processor runs, so the messages stay where
// the commands put them; the one failure is reported through the internal
// routes, as the processor would.
func TestCLIScheduleCancelRetry(t *testing.T) {
	t.Parallel()
	p := newPlatform(t)
	api := p.startAPI()
	defer api.stop(t)
	p.env = append(p.env, "SMS_API_KEY="+p.apiKey)

	send := func(args ...string) sms.Message {
		t.Helper()
		out := p.run(append([]string{"send", "--from", "Acme", "--to", "+44 20 7946 0958", "--text", "hi"}, args...)...)
		var m sms.Message
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("send printed %q: %v", out, err)
		}
		return m
	}
	before := time.Now()
	m := send("--at", "1h", "--validity", "30m", "--priority", "high")
	switch {
	case m.Status != sms.StatusScheduled:
		t.Errorf("send --at 1h: status %s, want SCHEDULED", m.Status)
	case m.SendAt == nil || m.SendAt.Before(before.Add(time.Hour-time.Second)) || m.SendAt.After(time.Now().Add(time.Hour+time.Second)):
		t.Errorf("send --at 1h: send_at %v, want about %v", m.SendAt, before.Add(time.Hour))
	case m.Priority != sms.PriorityHigh:
		t.Errorf("send --priority high: priority %q", m.Priority)
	case m.ValidityPeriod == nil || *m.ValidityPeriod != 1800:
		t.Errorf("send --validity 30m: validity_period %v, want 1800", m.ValidityPeriod)
	}

	if out := p.run("cancel", m.ID.String()); strings.TrimSpace(out) != m.ID.String()+" CANCELED" {
		t.Errorf("cancel by id printed %q, want %q", out, m.ID.String()+" CANCELED")
	}

	// Two more scheduled and one due now: the filter cancels the two.
	a, b := send("--at", "2h"), send("--at", "3h")
	now := send()
	out := p.run("cancel", "--status", "SCHEDULED", "--since", "1h")
	got := strings.Fields(out)
	want := []string{b.ID.String(), "CANCELED", a.ID.String(), "CANCELED"} // newest first
	if !slices.Equal(got, want) {
		t.Errorf("cancel --status SCHEDULED printed %q, want %q", out, want)
	}

	// now fails at the carrier; retry --status FAILED sends it again.
	internal := func(path string, body any) {
		t.Helper()
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, "http://"+p.apiAddr+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer e2e-internal-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d", path, resp.StatusCode)
		}
	}
	internal("/v1/internal/dispatch", map[string]any{"claims": []map[string]any{{"message_id": now.ID, "retry": 0}}})
	internal("/v1/internal/delivery-report", map[string]any{"message_id": now.ID, "status": "FAILED",
		"failure_reason": "carrier timeout", "processed_at": time.Now().UTC().Format(time.RFC3339Nano)})
	if out := p.run("retry", "--status", "FAILED"); strings.TrimSpace(out) != now.ID.String()+" PENDING" {
		t.Errorf("retry --status FAILED printed %q, want %q", out, now.ID.String()+" PENDING")
	}
	if out := p.run("retry", "--status", "FAILED"); strings.TrimSpace(out) != "" {
		t.Errorf("a second retry --status FAILED found %q, want nothing left", out)
	}
}
