package cmd

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	smshttp "github.com/smsctl/smsctl/sms/http"
)

const fakeAPIKey = "sms_test_key"

// fakeAPI plays the parts of the API that send uses. POST /v1/messages
// validates the body as the server does (a 400 problem+json from the
// server's own mapper) and accepts it as PENDING; each GET of the message
// answers the next status of statuses, and the last one from then on.
type fakeAPI struct {
	t        *testing.T
	statuses []sms.Status
	reason   string // failure_reason of a FAILED, UNDELIVERED or EXPIRED answer

	mu    sync.Mutex
	msg   sms.Message
	posts int
	gets  int
}

func newFakeAPI(t *testing.T, reason string, statuses ...sms.Status) (*fakeAPI, string) {
	t.Helper()
	f := &fakeAPI{t: t, statuses: statuses, reason: reason}
	e := platform.NewEcho(zerolog.Nop(), smshttp.ProblemFor)
	e.POST("/v1/messages", f.post)
	platform.GET(e, "/v1/messages/:id", f.get)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeAPI) post(c echo.Context) error {
	if got := c.Request().Header.Get("Authorization"); got != "Bearer "+fakeAPIKey {
		f.t.Errorf("POST /v1/messages with Authorization %q, want the key of --api-key", got)
	}
	var in sms.SendInput
	if err := json.NewDecoder(c.Request().Body).Decode(&in); err != nil {
		f.t.Errorf("POST /v1/messages: body is not a message: %v", err)
		return err
	}
	d, err := in.Validate()
	if err != nil {
		return err // the server's own validation answer
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.posts++
	now := time.Now().UTC()
	f.msg = sms.Message{ID: uuid.Must(uuid.NewV7()), Sender: d.Sender, Recipient: d.Recipient, Text: d.Text,
		Status: sms.StatusPending, Encoding: d.Encoding, Segments: d.Segments, Priority: d.Priority,
		CreatedAt: now, UpdatedAt: now}
	c.Response().Header().Set(echo.HeaderLocation, "/v1/messages/"+f.msg.ID.String())
	return c.JSON(http.StatusAccepted, f.msg)
}

func (f *fakeAPI) get(c echo.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Param("id") != f.msg.ID.String() {
		f.t.Errorf("GET /v1/messages/%s, want the id POST answered (%s)", c.Param("id"), f.msg.ID)
		return sms.Errorf(sms.CodeNotFound, "message not found")
	}
	m := f.msg
	m.Status = f.statuses[min(f.gets, len(f.statuses)-1)]
	f.gets++
	m.UpdatedAt = time.Now().UTC()
	switch m.Status {
	case sms.StatusFailed, sms.StatusUndelivered, sms.StatusExpired:
		m.FailureReason = &f.reason
	case sms.StatusDelivered:
		m.DeliveredAt = &m.UpdatedAt
	}
	if m.Status != sms.StatusPending && m.Status != sms.StatusCanceled {
		id := "carrier-1"
		m.CarrierMessageID = &id
	}
	return c.JSON(http.StatusOK, m)
}

// counts returns how many messages the fake accepted and looked up.
func (f *fakeAPI) counts() (posts, gets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts, f.gets
}

// runSend runs smsctl send against url as a user would, and returns its
// exit code, the messages it printed and what it wrote to stderr.
func runSend(t *testing.T, url string, extra ...string) (int, []sms.Message, string) {
	t.Helper()
	var stdout, stderr strings.Builder
	args := append([]string{"send", "--api-url", url, "--api-key", fakeAPIKey,
		"--from", "+14155550100", "--to", "+1 (415) 555-2671", "--text", "hello"}, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, newRoot("test"), args, &stdout, &stderr)
	var printed []sms.Message
	dec := json.NewDecoder(strings.NewReader(stdout.String()))
	for {
		var m sms.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("smsctl send printed something other than messages as JSON (%v):\n%s", err, stdout.String())
		}
		printed = append(printed, m)
	}
	return code, printed, stderr.String()
}

// TestSendWaitExitCodes: send --wait ends with the exit code its help
// promises for each final status (0 DELIVERED; 2 FAILED, UNDELIVERED,
// EXPIRED or CANCELED), prints the final message, and for a failure names
// the status and the reason on stderr. TestEndToEnd meets FAILED only when
// the simulator happens to fail its one message.
func TestSendWaitExitCodes(t *testing.T) {
	t.Parallel()
	const reason = "carrier said: unknown subscriber"
	for _, tc := range []struct {
		final    sms.Status
		wantCode int
	}{
		{sms.StatusDelivered, 0},
		{sms.StatusFailed, 2},
		{sms.StatusUndelivered, 2},
		{sms.StatusExpired, 2},
		{sms.StatusCanceled, 2},
	} {
		t.Run(string(tc.final), func(t *testing.T) {
			t.Parallel()
			statuses := []sms.Status{sms.StatusPending, sms.StatusSent, tc.final}
			if tc.final == sms.StatusCanceled { // canceled before it reached the carrier
				statuses = []sms.Status{sms.StatusPending, tc.final}
			}
			api, url := newFakeAPI(t, reason, statuses...)
			code, printed, stderr := runSend(t, url, "--wait")
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if len(printed) != 2 || printed[0].Status != sms.StatusPending || printed[1].Status != tc.final {
				t.Fatalf("printed %d messages %v, want the accepted PENDING one and the %s one", len(printed), statusesOf(printed), tc.final)
			}
			if _, gets := api.counts(); gets != len(statuses) {
				t.Errorf("send looked at the message %d times, want %d (until its status was final)", gets, len(statuses))
			}
			if printed[1].ID != printed[0].ID || printed[1].Recipient != "+14155552671" {
				t.Errorf("final message %s to %s, want %s to +14155552671", printed[1].ID, printed[1].Recipient, printed[0].ID)
			}
			if tc.wantCode == 0 {
				if stderr != "" {
					t.Errorf("a delivered message wrote to stderr:\n%s", stderr)
				}
				return
			}
			want := "smsctl: message " + printed[0].ID.String() + " " + string(tc.final)
			if tc.final != sms.StatusCanceled {
				want += ": " + reason
			}
			if strings.TrimSpace(stderr) != want {
				t.Errorf("stderr is %q, want %q", stderr, want)
			}
		})
	}
}

// TestSendWaitTimeout: when --timeout runs out, a SENT message (no receipt
// yet) exits 0 and says so, and one not yet at the carrier exits 3.
func TestSendWaitTimeout(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     sms.Status
		wantCode   int
		wantStderr string
	}{
		{sms.StatusSent, 0, "SENT; no receipt after 1s"},
		{sms.StatusPending, 3, "still PENDING after 1s"},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			t.Parallel()
			_, url := newFakeAPI(t, "", tc.status) // never final
			code, printed, stderr := runSend(t, url, "--wait", "--timeout", "1s")
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("stderr is %q, want it to contain %q", stderr, tc.wantStderr)
			}
			if len(printed) == 0 || printed[0].Status != sms.StatusPending {
				t.Errorf("printed %v, want the accepted PENDING message first", statusesOf(printed))
			}
		})
	}
}

// TestSendRefused: a message the API refuses (400 naming the recipient)
// exits 1, the code for an error, prints the API's problem and no message,
// and is not waited for.
func TestSendRefused(t *testing.T) {
	t.Parallel()
	api, url := newFakeAPI(t, "", sms.StatusDelivered)
	var stdout, stderr strings.Builder
	code := run(t.Context(), newRoot("test"), []string{"send", "--api-url", url, "--api-key", fakeAPIKey,
		"--from", "+14155550100", "--to", "not a number", "--text", "hello", "--wait"}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if stdout.Len() != 0 {
		t.Errorf("a refused message printed:\n%s", stdout.String())
	}
	for _, want := range []string{"smsctl: API answered 400 Validation failed", "\n  recipient: "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr does not contain %q:\n%s", want, stderr.String())
		}
	}
	if posts, gets := api.counts(); posts != 0 || gets != 0 {
		t.Errorf("the fake accepted %d messages and was asked %d times for one, want none", posts, gets)
	}
}

func statusesOf(ms []sms.Message) []sms.Status {
	s := make([]sms.Status, len(ms))
	for i, m := range ms {
		s[i] = m.Status
	}
	return s
}
