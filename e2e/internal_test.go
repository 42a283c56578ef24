package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/smsctl/smsctl/sms/client"
)

// TestInternalListener serves the delivery-report endpoints on their own
// address: the public listener doesn't have them, the internal one needs
// the token, and the processor reports through it.
func TestInternalListener(t *testing.T) {
	p := newPlatform(t)
	internal := freeAddr(t)
	p.startAPI("SMS_INTERNAL_ADDR=" + internal)
	p.startProcessor("processor", "SMS_API_URL=http://"+internal, "SMS_SIM_MIN_DELAY=0s", "SMS_SIM_MAX_DELAY=10ms")

	post := func(base, token string) int {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/internal/delivery-reports", strings.NewReader(`{"reports":[]}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const token = "e2e-internal-token-0123456789"
	checks := []struct {
		name       string
		base, auth string
		want       int
	}{
		{"public listener has no internal route", "http://" + p.apiAddr, token, http.StatusNotFound},
		{"internal listener without token", "http://" + internal, "", http.StatusUnauthorized},
		{"internal listener with a wrong token", "http://" + internal, "not-the-token-at-all", http.StatusUnauthorized},
		{"internal listener with the token (empty batch is invalid)", "http://" + internal, token, http.StatusBadRequest},
	}
	for _, c := range checks {
		if got := post(c.base, c.auth); got != c.want {
			t.Errorf("%s: got %d, want %d", c.name, got, c.want)
		}
	}

	sender := client.New("http://"+p.apiAddr, p.apiKey)
	ctx := ctxTimeout(t, time.Minute)
	l := postLoad(ctx, sender, 20, 4)
	db := openDB(t, p)
	waitAllFinal(t, db, time.Minute)
	checkNoLoss(t, db, l.accepted)
}
