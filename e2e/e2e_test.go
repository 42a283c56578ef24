package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// TestEndToEnd runs the API and a processor as two processes and follows
// messages from POST to their final status.
func TestEndToEnd(t *testing.T) {
	p := newPlatform(t)
	p.startAPI()
	p.startProcessor("processor", "SMS_SIM_MIN_DELAY=10ms", "SMS_SIM_MAX_DELAY=50ms", "SMS_SIM_FAILURE_RATE=0.3")
	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, 60*time.Second)

	const n = 30
	ids := make([]string, n)
	for i := range n {
		m, err := sender.Send(ctx, sms.SendInput{Sender: "+14155550100", Recipient: fmt.Sprintf("+1415555%04d", 2000+i), Text: fmt.Sprintf("hello %d", i)}, "")
		if err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if m.Status != sms.StatusPending {
			t.Fatalf("accepted message has status %s, want PENDING", m.Status)
		}
		ids[i] = m.ID.String()
	}
	for _, id := range ids {
		m, err := sender.Wait(ctx, mustUUID(t, id), 100*time.Millisecond)
		if err != nil {
			t.Fatalf("wait %s: %v", id, err)
		}
		if m.Status == sms.StatusFailed && (m.FailureReason == nil || *m.FailureReason == "") {
			t.Errorf("message %s FAILED without a reason", id)
		}
	}

	// The test client, as a user would run it.
	cmd := exec.Command(binary, "send", "--from", "Acme", "--to", "+44 20 7946 0958", "--text", "hi", "--wait", "--timeout", "30s")
	cmd.Env = append(cmd.Environ(), "SMS_API_URL=http://"+p.apiAddr, "SMS_API_KEY="+p.apiKey)
	out, err := cmd.CombinedOutput()
	// Exit 0 is DELIVERED and exit 2 is FAILED, UNDELIVERED or EXPIRED:
	// the status printed last must agree.
	last := string(out)
	if i := strings.LastIndex(last, `"status": "`); i >= 0 {
		last = last[i:]
	}
	switch code := cmd.ProcessState.ExitCode(); {
	case code == 0 && strings.HasPrefix(last, `"status": "DELIVERED"`):
	case code == 2 && (strings.HasPrefix(last, `"status": "FAILED"`) || strings.HasPrefix(last, `"status": "UNDELIVERED"`) ||
		strings.HasPrefix(last, `"status": "EXPIRED"`)):
	default:
		t.Fatalf("smsctl send --wait: exit %d (%v) with this output, want 0 and DELIVERED or 2 and FAILED, UNDELIVERED or EXPIRED:\n%s", code, err, out)
	}
}

func openDB(t testing.TB, p *platform) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", p.databaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
