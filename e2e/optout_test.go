package e2e

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// optOutCase is one account number, one handset, and what the tests
// check of the handset's opt-out as the platform recorded it.
type optOutCase struct {
	t       *testing.T
	p       *platform
	db      *sqlx.DB
	sender  *client.Client
	number  string
	handset string
}

func newOptOutCase(t *testing.T, handset string) *optOutCase {
	p := newPlatform(t)
	const number = "+14155550100"
	p.run("number", "add", "--account", "e2e", number)
	return &optOutCase{t: t, p: p, db: openDB(t, p), sender: client.New("http://"+p.apiAddr, p.apiKey), number: number, handset: handset}
}

// send posts a message from the number to the handset and returns it, or
// the problem's type for a refusal.
func (c *optOutCase) send(text string) (sms.Message, string) {
	c.t.Helper()
	m, err := c.sender.Send(ctxTimeout(c.t, 30*time.Second), sms.SendInput{Sender: c.number, Recipient: c.handset, Text: text}, "")
	var apiErr *client.APIError
	switch {
	case errors.As(err, &apiErr):
		return sms.Message{}, apiErr.Problem.Type
	case err != nil:
		c.t.Fatalf("send: %v", err)
	}
	return m, ""
}

// waitStatus waits until message id has one of the statuses.
func (c *optOutCase) waitStatus(id string, statuses ...string) {
	c.t.Helper()
	eventually(c.t, 90*time.Second, "message "+id+" "+strings.Join(statuses, " or "), func() (bool, string) {
		var st string
		_ = c.db.Get(&st, `SELECT status FROM sms.messages WHERE id = $1`, id)
		for _, want := range statuses {
			if st == want {
				return true, st
			}
		}
		return false, st
	})
}

// waitKeyword waits for the handset's n-th inbound keyword with an
// automatic reply, and for that reply to reach the carrier although the
// handset may be suppressed by then: a confirmation passes its own STOP.
func (c *optOutCase) waitKeyword(keyword string, n int) {
	c.t.Helper()
	var reply string
	eventually(c.t, 90*time.Second, fmt.Sprintf("inbound %s number %d with its reply", keyword, n), func() (bool, string) {
		var replies []string
		_ = c.db.Select(&replies, `SELECT reply_message_id::text FROM sms.inbound_messages
            WHERE sender = $1 AND recipient = $2 AND keyword = $3 AND reply_message_id IS NOT NULL ORDER BY created_at`, c.handset, c.number, keyword)
		if len(replies) < n {
			return false, fmt.Sprintf("%d so far", len(replies))
		}
		reply = replies[n-1]
		return true, ""
	})
	c.waitStatus(reply, "SENT", "DELIVERED")
}

func (c *optOutCase) suppressed() bool {
	c.t.Helper()
	var n int
	if err := c.db.Get(&n, `SELECT count(*) FROM sms.suppressions WHERE phone = $1`, c.handset); err != nil {
		c.t.Fatal(err)
	}
	return n == 1
}

const optedOutType = "/opted-out"

// TestStopThroughSimulator: a handset of the simulated carrier answers
// STOP to a message. The reply travels back through the processor to the
// API, the handset is suppressed, the confirmation still goes out, and the
// next send is refused with 422 opted-out. (The handset never says START
// here, so the refusal is not a race with it.)
func TestStopThroughSimulator(t *testing.T) {
	t.Parallel()
	kfakeLaneOnly(t)
	c := newOptOutCase(t, "+14155559001")
	c.p.startAPI()
	c.p.startProcessor("processor", "SMS_SIM_FAILURE_RATE=0", "SMS_SIM_UNDELIVERED_RATE=0", "SMS_SIM_EXPIRED_RATE=0", "SMS_SIM_REPLY_RATE=1", "SMS_SIM_STOP_RATE=1", "SMS_SIM_START_RATE=0",
		"SMS_SIM_REPLY_DELAY=100ms")

	m, problem := c.send("hello")
	if problem != "" {
		t.Fatalf("first send refused: %s", problem)
	}
	c.waitStatus(m.ID.String(), "DELIVERED")
	c.waitKeyword("stop", 1)
	if !c.suppressed() {
		t.Fatal("the STOP did not suppress the handset")
	}
	if _, problem := c.send("after the STOP"); !strings.HasSuffix(problem, optedOutType) {
		t.Errorf("send after STOP: problem %q, want one ending in %s", problem, optedOutType)
	}
}

// TestStopStartThroughSimulator: a handset of the simulated carrier
// answers STOP to a message and START to the STOP's confirmation. Both
// travel back through the processor; START lifts the suppression and is
// confirmed in turn, and sending to the handset works again.
func TestStopStartThroughSimulator(t *testing.T) {
	t.Parallel()
	kfakeLaneOnly(t)
	c := newOptOutCase(t, "+14155559003")
	c.p.startAPI()
	c.p.startProcessor("processor", "SMS_SIM_FAILURE_RATE=0", "SMS_SIM_UNDELIVERED_RATE=0", "SMS_SIM_EXPIRED_RATE=0", "SMS_SIM_REPLY_RATE=1", "SMS_SIM_STOP_RATE=1", "SMS_SIM_START_RATE=1",
		"SMS_SIM_REPLY_DELAY=100ms")

	m, problem := c.send("hello")
	if problem != "" {
		t.Fatalf("first send refused: %s", problem)
	}
	c.waitStatus(m.ID.String(), "DELIVERED")
	c.waitKeyword("stop", 1)
	c.waitKeyword("start", 1)
	if c.suppressed() {
		t.Fatal("the START left the handset suppressed")
	}
	again, problem := c.send("welcome back")
	if problem != "" {
		t.Fatalf("send after START refused: %s", problem)
	}
	c.waitStatus(again.ID.String(), "DELIVERED")

	var texts []string
	if err := c.db.Select(&texts, `SELECT text FROM sms.inbound_messages WHERE sender = $1 AND keyword IS NOT NULL ORDER BY created_at`, c.handset); err != nil {
		t.Fatal(err)
	}
	if strings.Join(texts, ",") != "STOP,START" {
		t.Errorf("the handset's keywords as recorded: %q, want STOP then START", texts)
	}
}

// TestStopStartThroughSMPP: the same through the SMPP carrier and
// OpenSMPP's SMSC, whose handsets send STOP and then START as deliver_sm:
// START lifts the suppression, confirms, and sending works again.
func TestStopStartThroughSMPP(t *testing.T) {
	t.Parallel()
	kfakeLaneOnly(t)
	c := newOptOutCase(t, "+14155559002")
	smsc := startOpenSMSC(t)
	c.p.startAPI()
	c.p.startProcessor("processor", smppEnv(smsc.addr, "smsctl")...)

	m, problem := c.send("hello")
	if problem != "" {
		t.Fatalf("first send refused: %s", problem)
	}
	c.waitStatus(m.ID.String(), "DELIVERED")

	smsc.run("mo", c.handset, c.number, "Stop ")
	c.waitKeyword("stop", 1)
	if !c.suppressed() {
		t.Fatal("the STOP did not suppress the handset")
	}
	if _, problem := c.send("after the STOP"); !strings.HasSuffix(problem, optedOutType) {
		t.Errorf("send after STOP: problem %q, want one ending in %s", problem, optedOutType)
	}

	smsc.run("mo", c.handset, c.number, "START")
	c.waitKeyword("start", 1)
	if c.suppressed() {
		t.Fatal("the START left the handset suppressed")
	}
	again, problem := c.send("welcome back")
	if problem != "" {
		t.Fatalf("send after START refused: %s", problem)
	}
	c.waitStatus(again.ID.String(), "DELIVERED")

	var page struct {
		Total int `json:"total_count"`
	}
	getJSON(t, "http://"+c.p.apiAddr+"/v1/inbound-messages?from="+url.QueryEscape(c.handset), c.p.apiKey, &page)
	if page.Total != 2 {
		t.Errorf("GET /v1/inbound-messages lists %d from the handset, want the STOP and the START", page.Total)
	}
}
