package cmd

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/smsctl/smsctl/sms/webhook"
)

// webhook listen prints what verifies and answers 401 to what does not.
func TestWebhookListenVerifies(t *testing.T) {
	secret, err := webhook.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	srv := httptest.NewServer(webhookPrinter(&out, &errOut, wh, http.StatusNoContent))
	defer srv.Close()
	body := []byte(`{"type":"message.sent","timestamp":"2026-01-01T00:00:00Z","data":{"id":"x","sequence":3}}`)
	post := func(body []byte, secret string) int {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		if err := webhook.SetHeaders(req.Header, []string{secret}, "msg_1", time.Now(), body); err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(body, secret); got != http.StatusNoContent {
		t.Errorf("signed event answered %d, want 204", got)
	}
	if !strings.Contains(out.String(), "message.sent webhook-id=msg_1") || !strings.Contains(out.String(), `"sequence": 3`) {
		t.Errorf("printed %q", out.String())
	}
	other, _ := webhook.NewSecret()
	if got := post(body, other); got != http.StatusUnauthorized {
		t.Errorf("event signed with another secret answered %d, want 401", got)
	}
	if !strings.Contains(errOut.String(), "refused webhook-id=\"msg_1\"") || strings.Count(out.String(), "webhook-id=") != 1 {
		t.Errorf("the refused event was printed, or not reported: out %q err %q", out.String(), errOut.String())
	}
}

func TestWebhookListenRejectsBadSecret(t *testing.T) {
	c := newWebhook()
	c.SetArgs([]string{"listen", "--secret", "not base64!", "--addr", "127.0.0.1:0"})
	c.SetOut(io.Discard)
	c.SetErr(io.Discard)
	if err := c.Execute(); err == nil || !strings.Contains(err.Error(), "--secret") {
		t.Errorf("error %v, want one naming --secret", err)
	}
}
