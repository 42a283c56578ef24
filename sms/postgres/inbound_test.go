package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
)

const (
	ourNumber = "+14155550100" // owned by the test's account
	handset   = "+14155552671"
	otherSet  = "+442071838750"
)

// inboundEnv is a store on a fresh database with account "acme" owning
// ourNumber, and the outbox batches the store handed to the relay.
type inboundEnv struct {
	db      *sqlx.DB
	url     string
	store   *Store
	in      *Inbound
	cache   *Suppressions
	account int64

	mu        sync.Mutex
	committed []sms.OutboxBatch
}

func newInboundEnv(tb testing.TB) *inboundEnv {
	tb.Helper()
	url := platformtest.NewDatabase(tb)
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(8) // the test server is shared
	db.SetMaxIdleConns(8) // as platform.OpenPostgres does: no reconnect per query
	tb.Cleanup(func() { db.Close() })
	e := &inboundEnv{db: db, url: url, store: NewStore(db)}
	e.store.OnCommit(func(b sms.OutboxBatch) {
		e.mu.Lock()
		e.committed = append(e.committed, b)
		e.mu.Unlock()
	})
	e.cache = NewSuppressions(db, "", zerolog.Nop())
	e.in = NewInbound(e.store, e.cache)
	e.account = newAccount(tb, db, "acme")
	if _, _, err := e.in.AddNumber(context.Background(), "acme", ourNumber); err != nil {
		tb.Fatal(err)
	}
	return e
}

func newAccount(tb testing.TB, db *sqlx.DB, name string) int64 {
	tb.Helper()
	var id int64
	if err := db.Get(&id, `INSERT INTO sms.accounts (name) VALUES ($1) RETURNING id`, name); err != nil {
		tb.Fatal(err)
	}
	return id
}

// inbound is a valid hand-over from handset to ourNumber with a fresh
// carrier id.
func inbound(text string) sms.InboundReport {
	return sms.InboundReport{From: handset, To: ourNumber, Text: text, ReceivedAt: time.Now().UTC().Truncate(time.Microsecond),
		CarrierMessageID: "mo-" + uuid.NewString()}
}

func (e *inboundEnv) receive(tb testing.TB, r sms.InboundReport) sms.InboundResult {
	tb.Helper()
	res, err := e.in.Receive(context.Background(), r)
	if err != nil {
		tb.Fatalf("Receive %q: %v", r.Text, err)
	}
	return res
}

func (e *inboundEnv) suppressed(tb testing.TB, account int64, phone string) bool {
	tb.Helper()
	var n int
	if err := e.db.Get(&n, `SELECT count(*) FROM sms.suppressions WHERE account_id = $1 AND phone = $2`, account, phone); err != nil {
		tb.Fatal(err)
	}
	return n > 0
}

// message reads a message whatever its account, with keyword_reply.
func (e *inboundEnv) message(tb testing.TB, id uuid.UUID) (sms.Message, bool) {
	tb.Helper()
	var row struct {
		sms.Message
		KeywordReply bool `db:"keyword_reply"`
	}
	if err := e.db.Get(&row, `SELECT `+messageColumns+`, keyword_reply FROM sms.messages WHERE id = $1`, id); err != nil {
		tb.Fatalf("message %s: %v", id, err)
	}
	return row.Message, row.KeywordReply
}

func (e *inboundEnv) dispatch(tb testing.TB, id uuid.UUID) sms.Verdict {
	tb.Helper()
	res, err := e.store.Dispatch(context.Background(), []sms.Claim{{MessageID: id}})
	if err != nil || len(res) != 1 {
		tb.Fatalf("Dispatch %s: %v %v", id, res, err)
	}
	return res[0].Verdict
}

// TestInboundKeywords: STOP suppresses the sender for the account and gets
// a confirmation that the claim sends even though its recipient is now
// suppressed; START lifts it and confirms; HELP gets the help text and
// changes nothing.
func TestInboundKeywords(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()

	stop := e.receive(t, inbound("  Stop "))
	if !stop.AccountRouted || stop.Keyword == nil || *stop.Keyword != sms.KeywordStop || stop.ReplyMessageID == nil || stop.Duplicate {
		t.Fatalf("STOP: %+v", stop)
	}
	if !e.suppressed(t, e.account, handset) {
		t.Fatal("STOP answered, and the sender is not suppressed")
	}
	reply, marked := e.message(t, *stop.ReplyMessageID)
	if reply.AccountID != e.account || reply.Sender != ourNumber || reply.Recipient != handset || reply.Text != sms.DefaultStopReply ||
		reply.Status != sms.StatusPending || reply.Priority != sms.PriorityHigh || !marked {
		t.Errorf("STOP confirmation %+v (keyword_reply %t)", reply, marked)
	}
	if got := smstest.Outboxed(t, e.db); !slices.Contains(got, reply.ID) {
		t.Errorf("the confirmation is not in the outbox: %v", got)
	}
	e.mu.Lock()
	handed := len(e.committed) == 1 && len(e.committed[0].Records) == 1 && e.committed[0].Records[0].MessageID == reply.ID &&
		e.committed[0].Records[0].Priority == sms.PriorityHigh
	e.mu.Unlock()
	if !handed {
		t.Errorf("the relay was handed %+v, want the confirmation's record", e.committed)
	}
	if evs, err := e.store.Events(ctx, e.account, reply.ID); err != nil || len(evs) != 1 || evs[0].Type != "message.accepted" {
		t.Errorf("confirmation events %+v, %v", evs, err)
	}
	if p, _, _ := smstest.Counters(t, e.db, e.account); p != 1 {
		t.Errorf("pending counter %d after the confirmation, want 1", p)
	}
	// The confirmation passes the suppression it confirms; a message of
	// the account's own to the same recipient does not.
	if v := e.dispatch(t, reply.ID); v != sms.VerdictSend {
		t.Errorf("claim of the STOP confirmation: %q, want send (dispatchSQL must skip the suppression for keyword_reply)", v)
	}
	ordinary, err := e.store.Insert(ctx, []sms.NewMessage{{AccountID: e.account, Draft: smstest.Draft(ourNumber, handset, "sale!")}})
	if err != nil {
		t.Fatal(err)
	}
	if v := e.dispatch(t, ordinary[0].ID); v != sms.VerdictOptedOut {
		t.Errorf("claim of a campaign message after STOP: %q, want opted_out", v)
	}

	help := e.receive(t, inbound("HELP"))
	if help.Keyword == nil || *help.Keyword != sms.KeywordHelp || help.ReplyMessageID == nil {
		t.Fatalf("HELP: %+v", help)
	}
	if m, marked := e.message(t, *help.ReplyMessageID); m.Text != sms.DefaultHelpReply || !marked {
		t.Errorf("HELP reply %q (keyword_reply %t)", m.Text, marked)
	}
	if !e.suppressed(t, e.account, handset) {
		t.Error("HELP lifted the suppression")
	}
	if v := e.dispatch(t, *help.ReplyMessageID); v != sms.VerdictSend {
		t.Errorf("claim of the HELP reply to a suppressed recipient: %q, want send", v)
	}

	// Replies confirm changes only, so that two automatic responders
	// can't answer each other forever: a STOP while suppressed, a YES
	// while subscribed, a second HELP soon after the first get none.
	again := e.receive(t, inbound("STOP"))
	if again.Keyword == nil || *again.Keyword != sms.KeywordStop || again.ReplyMessageID != nil {
		t.Errorf("STOP while suppressed: %+v, want the keyword and no reply", again)
	}
	if !e.suppressed(t, e.account, handset) {
		t.Error("a second STOP lifted the suppression")
	}
	if again := e.receive(t, inbound("help")); again.Keyword == nil || again.ReplyMessageID != nil {
		t.Errorf("HELP again within %s: %+v, want no reply", HelpReplyInterval, again)
	}

	start := e.receive(t, inbound("yes"))
	if start.Keyword == nil || *start.Keyword != sms.KeywordStart || start.ReplyMessageID == nil {
		t.Fatalf("START: %+v", start)
	}
	if e.suppressed(t, e.account, handset) {
		t.Error("START answered, and the sender is still suppressed")
	}
	if m, _ := e.message(t, *start.ReplyMessageID); m.Text != sms.DefaultStartReply {
		t.Errorf("START reply %q", m.Text)
	}

	if yes := e.receive(t, inbound("YES")); yes.Keyword == nil || *yes.Keyword != sms.KeywordStart || yes.ReplyMessageID != nil {
		t.Errorf("YES while subscribed: %+v, want the keyword and no reply", yes)
	}
	plain := e.receive(t, inbound("stop please"))
	if plain.Keyword != nil || plain.ReplyMessageID != nil {
		t.Errorf("a sentence got keyword %v and reply %v", plain.Keyword, plain.ReplyMessageID)
	}
	if e.suppressed(t, e.account, handset) {
		t.Error(`"stop please" suppressed the sender`)
	}
	if n := smstest.Count(t, e.db, "messages"); n != 4 { // three replies and the campaign message
		t.Errorf("%d messages, want 4", n)
	}
}

// TestInboundStopFailsQueuedMessages: messages accepted before the STOP,
// still PENDING (hundreds of them) or SCHEDULED, are not sent: the claim
// ends them FAILED opted_out.
func TestInboundStopFailsQueuedMessages(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	scheduledDraft := smstest.Draft(ourNumber, handset, "tomorrow")
	scheduledDraft.SendAt = &later
	msgs, err := e.store.Insert(ctx, []sms.NewMessage{
		{AccountID: e.account, Draft: smstest.Draft(ourNumber, handset, "queued")},
		{AccountID: e.account, Draft: scheduledDraft},
		{AccountID: e.account, Draft: smstest.Draft(ourNumber, otherSet, "someone else")},
	})
	if err != nil {
		t.Fatal(err)
	}
	campaign, err := e.store.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: e.account, Draft: smstest.Draft(ourNumber, handset, "sale")}}, 300))
	if err != nil {
		t.Fatal(err)
	}
	e.receive(t, inbound("STOP"))
	claims := make([]sms.Claim, len(campaign))
	for i, m := range campaign {
		claims[i] = sms.Claim{MessageID: m.ID}
	}
	res, err := e.store.Dispatch(ctx, claims)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Verdict != sms.VerdictOptedOut {
			t.Fatalf("claim of one of %d messages queued before the STOP: %q, want opted_out", len(campaign), r.Verdict)
		}
	}
	var failed int
	if err := e.db.Get(&failed, `SELECT count(*) FROM sms.messages WHERE status = 'FAILED' AND failure_reason = 'opted_out'`); err != nil || failed != len(campaign) {
		t.Errorf("%d messages FAILED opted_out, want %d (%v)", failed, len(campaign), err)
	}
	// The scheduled one falls due.
	if _, err := e.db.Exec(`UPDATE sms.messages SET send_at = now() - interval '1 second' WHERE id = $1`, msgs[1].ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.store.ReleaseDue(ctx, 10); err != nil || n != 1 {
		t.Fatalf("ReleaseDue: %d, %v", n, err)
	}
	res, err = e.store.Dispatch(ctx, []sms.Claim{{MessageID: msgs[0].ID}, {MessageID: msgs[1].ID}, {MessageID: msgs[2].ID}})
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[uuid.UUID]sms.Verdict{}
	for _, r := range res {
		verdicts[r.MessageID] = r.Verdict
	}
	want := map[uuid.UUID]sms.Verdict{msgs[0].ID: sms.VerdictOptedOut, msgs[1].ID: sms.VerdictOptedOut, msgs[2].ID: sms.VerdictSend}
	for id, v := range want {
		if verdicts[id] != v {
			t.Errorf("claim of %s: %q, want %q", id, verdicts[id], v)
		}
	}
	for _, m := range msgs[:2] {
		got, err := e.store.Get(ctx, e.account, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != sms.StatusFailed || got.FailureReason == nil || *got.FailureReason != "opted_out" {
			t.Errorf("message queued before the STOP: %s %v, want FAILED opted_out", got.Status, got.FailureReason)
		}
	}
}

// TestInboundIdempotent: the same carrier id handed over again, even
// concurrently, is one inbound message with one reply and one suppression
// change; every call answers the same.
func TestInboundIdempotent(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	r := inbound("STOP")
	first := e.receive(t, r)
	again := r
	again.Text = "something else" // what was taken first stands
	second := e.receive(t, again)
	if !second.Duplicate || second.ID != first.ID || second.AccountRouted != first.AccountRouted ||
		*second.Keyword != *first.Keyword || *second.ReplyMessageID != *first.ReplyMessageID {
		t.Errorf("repeat answered %+v, first %+v", second, first)
	}

	r = inbound("HELP")
	const n = 8
	results := make([]sms.InboundResult, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i] = e.receive(t, r) })
	}
	wg.Wait()
	dups := 0
	for _, res := range results {
		if res.ID != results[0].ID || *res.ReplyMessageID != *results[0].ReplyMessageID {
			t.Errorf("concurrent hand-overs answered %+v and %+v", res, results[0])
		}
		if res.Duplicate {
			dups++
		}
	}
	if dups != n-1 {
		t.Errorf("%d of %d concurrent hand-overs were duplicates, want %d", dups, n, n-1)
	}
	if got := smstest.Count(t, e.db, "inbound_messages"); got != 2 {
		t.Errorf("%d inbound messages, want 2", got)
	}
	if got := smstest.Count(t, e.db, "messages"); got != 2 {
		t.Errorf("%d replies, want 2", got)
	}
}

// TestInboundUnrouted: a message to a number nobody owns is kept, with no
// keyword applied, no reply, no webhook, and no account sees it.
func TestInboundUnrouted(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	endpoint(t, e.db, e.account, nil)
	r := inbound("STOP")
	r.To = "+14155550199"
	res := e.receive(t, r)
	if res.AccountRouted || res.Keyword != nil || res.ReplyMessageID != nil {
		t.Errorf("unrouted STOP: %+v", res)
	}
	if e.suppressed(t, e.account, handset) || smstest.Count(t, e.db, "messages") != 0 {
		t.Error("a STOP to nobody's number changed an account")
	}
	if n := smstest.Count(t, e.db, "webhook_deliveries"); n != 0 {
		t.Errorf("%d webhooks queued for an unrouted message", n)
	}
	for _, acct := range []int64{e.account, 0, newAccount(t, e.db, "other")} {
		p, err := e.in.InboundMessages(ctx, acct, sms.InboundFilter{Size: 100})
		if err != nil || len(p.Messages) != 0 || p.TotalCount != 0 {
			t.Errorf("account %d lists %+v (%v)", acct, p, err)
		}
		if _, err := e.in.InboundMessage(ctx, acct, res.ID); !errors.Is(err, sms.ErrNotFound) {
			t.Errorf("account %d reads the unrouted message: %v", acct, err)
		}
	}
	un, err := e.in.Unrouted(ctx, 10)
	if err != nil || len(un) != 1 || un[0].ID != res.ID || un[0].AccountID != nil || un[0].To != r.To {
		t.Errorf("Unrouted: %+v, %v", un, err)
	}
	nums, err := e.in.UnroutedNumbers(ctx, 10)
	if err != nil || len(nums) != 1 || nums[0].Number != r.To || nums[0].Messages != 1 {
		t.Errorf("UnroutedNumbers: %+v, %v", nums, err)
	}
}

// TestInboundWebhook: a routed message queues message.received for the
// account's endpoints in its transaction, with the message as the API
// shows it; another account's endpoints get nothing.
func TestInboundWebhook(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	other := newAccount(t, e.db, "other")
	mine := endpoint(t, e.db, e.account, []string{"message.received"})
	endpoint(t, e.db, other, nil)
	res := e.receive(t, inbound("Thanks!"))
	var rows []struct {
		EndpointID uuid.UUID `db:"endpoint_id"`
		Type       string    `db:"event_type"`
		Payload    []byte    `db:"payload"`
	}
	if err := e.db.Select(&rows, `SELECT endpoint_id, event_type, payload FROM sms.webhook_deliveries`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].EndpointID != mine || rows[0].Type != "message.received" {
		t.Fatalf("deliveries %+v, want one message.received to the account's endpoint", rows)
	}
	var body struct {
		Type string             `json:"type"`
		Data sms.InboundMessage `json:"data"`
	}
	if err := json.Unmarshal(rows[0].Payload, &body); err != nil {
		t.Fatal(err)
	}
	got, err := e.in.InboundMessage(context.Background(), e.account, res.ID)
	if err != nil {
		t.Fatal(err)
	}
	body.Data.AccountID = got.AccountID
	if body.Type != "message.received" || !inboundEqual(body.Data, got) {
		t.Errorf("webhook data %+v, the API shows %+v", body.Data, got)
	}
}

// endpoint adds an enabled webhook endpoint for account (types nil: every
// type) straight to the table.
func endpoint(tb testing.TB, db *sqlx.DB, account int64, types []string) uuid.UUID {
	tb.Helper()
	id := uuid.New()
	if types == nil {
		types = []string{}
	}
	if _, err := db.Exec(`INSERT INTO sms.webhook_endpoints (id, account_id, url, secret, event_types) VALUES ($1, $2, 'https://example.com/hook', 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0', $3)`,
		id, account, pq.Array(types)); err != nil {
		tb.Fatal(err)
	}
	return id
}

func inboundEqual(a, b sms.InboundMessage) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestInboundAccountsApart: an account never sees another's inbound
// messages or suppressions, and one account's STOP does not suppress the
// recipient for another.
func TestInboundAccountsApart(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	other := newAccount(t, e.db, "other")
	res := e.receive(t, inbound("STOP"))
	if p, err := e.in.InboundMessages(ctx, other, sms.InboundFilter{Size: 100}); err != nil || p.TotalCount != 0 || len(p.Messages) != 0 {
		t.Errorf("the other account lists %+v, %v", p, err)
	}
	if _, err := e.in.InboundMessage(ctx, other, res.ID); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("the other account reads it: %v", err)
	}
	if p, err := e.in.Suppressions(ctx, other, sms.SuppressionFilter{Size: 100}); err != nil || p.TotalCount != 0 || len(p.Suppressions) != 0 {
		t.Errorf("the other account lists suppressions %+v, %v", p, err)
	}
	if _, err := e.in.Suppression(ctx, other, handset); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("the other account reads the suppression: %v", err)
	}
	if err := e.in.RemoveSuppression(ctx, other, handset); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("the other account deletes the suppression: %v", err)
	}
	if err := e.cache.Check(ctx, other, handset); err != nil {
		t.Errorf("the other account may not send to the recipient: %v", err)
	}
	if err := e.cache.Check(ctx, e.account, handset); !errors.Is(err, sms.ErrOptedOut) {
		t.Errorf("the account may send after STOP: %v", err)
	}
	if p, err := e.in.Suppressions(ctx, e.account, sms.SuppressionFilter{Size: 100}); err != nil || len(p.Suppressions) != 1 ||
		p.Suppressions[0].Phone != handset || p.Suppressions[0].Reason != sms.ReasonStop {
		t.Errorf("the account's suppressions %+v, %v", p, err)
	}
}

// TestInboundList: pages and the cursor walk give every message newest
// first under every filter, with the filter's total.
func TestInboundList(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	second := "+14155550101"
	if _, _, err := e.in.AddNumber(ctx, "acme", second); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []sms.InboundMessage
	for i := range 30 {
		r := inbound(fmt.Sprintf("reply %d", i))
		r.From = []string{handset, otherSet}[i%2]
		r.To = []string{ourNumber, second, ourNumber}[i%3]
		r.ReceivedAt = base.Add(time.Duration(i/2) * time.Minute) // pairs share a time: the id breaks the tie
		res := e.receive(t, r)
		m, err := e.in.InboundMessage(ctx, e.account, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, m)
	}
	slices.SortFunc(all, func(x, y sms.InboundMessage) int {
		if c := y.ReceivedAt.Compare(x.ReceivedAt); c != 0 {
			return c
		}
		return slices.Compare(y.ID[:], x.ID[:])
	})
	since, until := base.Add(3*time.Minute), base.Add(9*time.Minute)
	filters := []sms.InboundFilter{{}, {From: handset}, {To: second}, {From: otherSet, To: ourNumber}, {Since: &since},
		{Until: &until}, {Since: &since, Until: &until, From: handset}, {From: "+15005550006"}}
	for _, f := range filters {
		var want []uuid.UUID
		for _, m := range all {
			if (f.From == "" || m.From == f.From) && (f.To == "" || m.To == f.To) &&
				(f.Since == nil || !m.ReceivedAt.Before(*f.Since)) && (f.Until == nil || m.ReceivedAt.Before(*f.Until)) {
				want = append(want, m.ID)
			}
		}
		for _, size := range []int{1, 4, 100} {
			name := fmt.Sprintf("from=%q to=%q since=%v until=%v size=%d", f.From, f.To, f.Since, f.Until, size)
			var paged, walked []uuid.UUID
			for page := 0; page <= len(want)/size; page++ {
				pf := f
				pf.Page, pf.Size = page, size
				p, err := e.in.InboundMessages(ctx, e.account, pf)
				if err != nil {
					t.Fatalf("%s page %d: %v", name, page, err)
				}
				if p.TotalCount != int64(len(want)) {
					t.Errorf("%s page %d: total %d, want %d", name, page, p.TotalCount, len(want))
				}
				for _, m := range p.Messages {
					paged = append(paged, m.ID)
				}
			}
			wf := f
			wf.Size = size
			for range 100 {
				p, err := e.in.InboundMessages(ctx, e.account, wf)
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range p.Messages {
					walked = append(walked, m.ID)
				}
				if p.Next == nil {
					break
				}
				wf.After = p.Next
			}
			if !slices.Equal(paged, want) {
				t.Errorf("%s: pages give %d messages, want %d in order", name, len(paged), len(want))
			}
			if !slices.Equal(walked, want) {
				t.Errorf("%s: the cursor walk gives %d messages, want %d in order", name, len(walked), len(want))
			}
		}
	}
}

// TestNumbers: a number has one account; adding it again is a no-op,
// adding another account's names that account, and only the owner removes
// it.
func TestNumbers(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	other := newAccount(t, e.db, "other")
	if _, added, err := e.in.AddNumber(ctx, "acme", ourNumber); err != nil || added {
		t.Errorf("adding the account's own number again: added %t, %v", added, err)
	}
	_, _, err := e.in.AddNumber(ctx, "other", ourNumber)
	var se *sms.Error
	if !errors.As(err, &se) || se.Code != sms.CodeConflict || se.Kind != KindNumberTaken || !containsAll(se.Message, `"acme"`, ourNumber) {
		t.Errorf("adding acme's number to other: %v, want a conflict naming acme", err)
	}
	if _, _, err := e.in.AddNumber(ctx, "nobody", "+14155550102"); sms.ErrorCode(err) != sms.CodeNotFound {
		t.Errorf("adding to an unknown account: %v", err)
	}
	if n, added, err := e.in.AddNumber(ctx, "other", "+14155550102"); err != nil || !added || n.Account != "other" {
		t.Errorf("adding a free number: %+v %t %v", n, added, err)
	}
	if err := e.in.RemoveNumber(ctx, "other", ourNumber); sms.ErrorCode(err) != sms.CodeNotFound || !containsAll(err.Error(), `"acme"`) {
		t.Errorf("other removing acme's number: %v, want not found naming acme", err)
	}
	mine, err := e.in.Numbers(ctx, e.account)
	if err != nil || len(mine) != 1 || mine[0].Number != ourNumber {
		t.Errorf("acme's numbers: %+v, %v", mine, err)
	}
	theirs, err := e.in.Numbers(ctx, other)
	if err != nil || len(theirs) != 1 || theirs[0].Number != "+14155550102" {
		t.Errorf("other's numbers: %+v, %v", theirs, err)
	}
	all, err := e.in.ListNumbers(ctx, "")
	if err != nil || len(all) != 2 || all[0].Account != "acme" || all[1].Account != "other" {
		t.Errorf("all numbers: %+v, %v", all, err)
	}
	if err := e.in.RemoveNumber(ctx, "acme", ourNumber); err != nil {
		t.Fatal(err)
	}
	// From now on, messages to it are unrouted.
	if res := e.receive(t, inbound("hello")); res.AccountRouted {
		t.Error("a message to a removed number is routed")
	}
	if _, added, err := e.in.AddNumber(ctx, "other", ourNumber); err != nil || !added {
		t.Errorf("adding the freed number to other: %t, %v", added, err)
	}
	if res := e.receive(t, inbound("hello")); !res.AccountRouted {
		t.Error("a message to the number's new owner is unrouted")
	} else if p, _ := e.in.InboundMessages(ctx, other, sms.InboundFilter{Size: 10}); p.TotalCount != 1 {
		t.Errorf("the new owner lists %d messages, want 1", p.TotalCount)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// TestInboundKeywordSettings: an account's own words and replies are what
// Receive applies.
func TestInboundKeywordSettings(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	if s, err := e.in.KeywordSettings(ctx, e.account); err != nil || s.StopWords != nil || s.HelpReply != "" {
		t.Errorf("settings never set: %+v, %v", s, err)
	}
	set, err := sms.KeywordSettings{StopWords: []string{"STOP", "arret"}, StartWords: []string{}, StopReply: "Acme: unsubscribed."}.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.in.SetKeywordSettings(ctx, e.account, set); err != nil {
		t.Fatal(err)
	}
	got, err := e.in.KeywordSettings(ctx, e.account)
	if err != nil || !slices.Equal(got.StopWords, []string{"STOP", "ARRET"}) || got.StartWords == nil || len(got.StartWords) != 0 ||
		got.HelpWords != nil || got.StopReply != "Acme: unsubscribed." || got.HelpReply != "" {
		t.Errorf("settings read back %+v, %v", got, err)
	}
	res := e.receive(t, inbound("Arret"))
	if res.Keyword == nil || *res.Keyword != sms.KeywordStop {
		t.Fatalf("custom stop word: %+v", res)
	}
	if m, _ := e.message(t, *res.ReplyMessageID); m.Text != "Acme: unsubscribed." {
		t.Errorf("custom stop reply %q", m.Text)
	}
	if res := e.receive(t, inbound("START")); res.Keyword != nil {
		t.Errorf("START with start words turned off: %+v", res)
	}
	if !e.suppressed(t, e.account, handset) {
		t.Error("START lifted the suppression though start words are off")
	}
	if res := e.receive(t, inbound("info")); res.Keyword == nil || *res.Keyword != sms.KeywordHelp {
		t.Errorf("default help words, left unset: %+v", res)
	}
	// Back to the defaults.
	if err := e.in.SetKeywordSettings(ctx, e.account, sms.KeywordSettings{}); err != nil {
		t.Fatal(err)
	}
	if res := e.receive(t, inbound("unstop")); res.Keyword == nil || *res.Keyword != sms.KeywordStart {
		t.Errorf("default start words after a reset: %+v", res)
	}
}

// TestSuppressionsAddRemove: one entry is created once (then answered as
// it is), an import counts what it added, a delete of nothing is not
// found.
func TestSuppressionsAddRemove(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	s, created, err := e.in.AddSuppression(ctx, e.account, handset, "complaint")
	if err != nil || !created || s.Phone != handset || s.Reason != "complaint" {
		t.Fatalf("AddSuppression: %+v %t %v", s, created, err)
	}
	again, created, err := e.in.AddSuppression(ctx, e.account, handset, "other reason")
	if err != nil || created || again != s {
		t.Errorf("adding it again: %+v %t %v, want %+v unchanged", again, created, err, s)
	}
	phones := []string{handset, otherSet}
	for i := range 100 {
		phones = append(phones, fmt.Sprintf("+1415555%04d", 3000+i))
	}
	added, err := e.in.AddSuppressions(ctx, e.account, phones, sms.ReasonManual)
	if err != nil || added != int64(len(phones)-1) {
		t.Errorf("import of %d phones, one there already: added %d, %v", len(phones), added, err)
	}
	// Paged newest first, every entry once.
	var walked []string
	f := sms.SuppressionFilter{Size: 7}
	for range 100 {
		p, err := e.in.Suppressions(ctx, e.account, f)
		if err != nil {
			t.Fatal(err)
		}
		if p.TotalCount != int64(len(phones)) {
			t.Errorf("total %d, want %d", p.TotalCount, len(phones))
		}
		for _, s := range p.Suppressions {
			walked = append(walked, s.Phone)
		}
		if p.Next == nil {
			break
		}
		f.After = p.Next
	}
	if len(walked) != len(phones) || walked[len(walked)-1] != handset || !slices.Equal(slices.Sorted(slices.Values(walked)), slices.Sorted(slices.Values(phones))) {
		t.Errorf("walked %d suppressions ending with %s, want %d ending with the oldest, %s", len(walked), walked[len(walked)-1], len(phones), handset)
	}
	if err := e.in.RemoveSuppression(ctx, e.account, handset); err != nil {
		t.Fatal(err)
	}
	if err := e.in.RemoveSuppression(ctx, e.account, handset); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("removing it twice: %v", err)
	}
}

// listening starts a cache with a listener and waits until it is in use.
// Each applied notification's payload goes to the returned channel.
func (e *inboundEnv) listening(tb testing.TB) (*Suppressions, <-chan string) {
	tb.Helper()
	c := NewSuppressions(e.db, e.url, zerolog.Nop())
	c.Heartbeat = time.Hour // no beats among the payloads
	c.Silence = 24 * time.Hour
	payloads := make(chan string, 1000)
	c.notified = func(p string) { payloads <- p }
	if err := c.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Stop)
	select {
	case <-c.Live():
	case <-time.After(30 * time.Second):
		tb.Fatal("the suppressions listener never listened")
	}
	return c, payloads
}

// await waits for the notification with payload.
func await(tb testing.TB, payloads <-chan string, payload string) {
	tb.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case p := <-payloads:
			if p == payload {
				return
			}
		case <-timeout:
			tb.Fatalf("notification %q never came", payload)
		}
	}
}

// TestSuppressionsCache: answers come from memory once an account's list
// is read; a change made here is seen before the call that made it
// returns, and one made elsewhere (another replica, psql) once its
// notification has come.
func TestSuppressionsCache(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	c, payloads := e.listening(t)
	in := NewInbound(e.store, c)
	if _, _, err := in.AddSuppression(ctx, e.account, handset, ""); err != nil {
		t.Fatal(err)
	}
	// Its own notification comes too; let it pass before counting.
	await(t, payloads, fmt.Sprintf("%d %s", e.account, handset))
	ask := func(account int64, phone string, want bool) {
		t.Helper()
		got, err := c.Suppressed(ctx, account, phone)
		if err != nil || got != want {
			t.Fatalf("Suppressed(%d, %s) = %t, %v; want %t", account, phone, got, err, want)
		}
	}
	ask(e.account, handset, true) // reads the account's list
	before := c.queries.Load()
	for range 100 {
		ask(e.account, handset, true)
		ask(e.account, otherSet, false)
	}
	if q := c.queries.Load() - before; q != 0 {
		t.Errorf("%d queries for 200 answers from a list read already", q)
	}

	// Changes made through this process's store: seen at once.
	if _, err := in.Receive(ctx, inbound("START")); err != nil {
		t.Fatal(err)
	}
	ask(e.account, handset, false)
	r := inbound("STOP")
	r.From = otherSet
	if _, err := in.Receive(ctx, r); err != nil {
		t.Fatal(err)
	}
	ask(e.account, otherSet, true)
	// Their notifications come too, with the payloads awaited below.
	await(t, payloads, fmt.Sprintf("%d %s", e.account, handset))
	await(t, payloads, fmt.Sprintf("%d %s", e.account, otherSet))

	// Changes made elsewhere: seen once notified.
	if _, err := e.db.Exec(`INSERT INTO sms.suppressions (account_id, phone, reason) VALUES ($1, $2, 'psql')`, e.account, handset); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, fmt.Sprintf("%d %s", e.account, handset))
	ask(e.account, handset, true)
	if _, err := e.db.Exec(`DELETE FROM sms.suppressions WHERE account_id = $1 AND phone = $2`, e.account, otherSet); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, fmt.Sprintf("%d %s", e.account, otherSet))
	ask(e.account, otherSet, false)

	// A statement changing many phones announces the account once.
	var many []string
	for i := range 100 {
		many = append(many, fmt.Sprintf("+1415555%04d", 5000+i))
	}
	if _, err := e.db.Exec(`INSERT INTO sms.suppressions (account_id, phone) SELECT $1, unnest($2::text[])`, e.account, many); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, fmt.Sprint(e.account))
	ask(e.account, many[42], true)
	if _, err := e.db.Exec(`TRUNCATE sms.suppressions`); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, "*")
	ask(e.account, many[42], false)
	ask(e.account, handset, false)
}

// TestSuppressionsReconnect: while the listener's connection is gone the
// cache is not used (what changes meanwhile is never notified), and once
// it is back, the cache starts over.
func TestSuppressionsReconnect(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	c := NewSuppressions(e.db, e.url, zerolog.Nop())
	c.Heartbeat, c.Silence = time.Hour, 24*time.Hour
	payloads, states := make(chan string, 100), make(chan bool, 10)
	c.notified = func(p string) { payloads <- p }
	c.liveness = func(live bool) { states <- live }
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	state := func(want bool) {
		t.Helper()
		select {
		case got := <-states:
			if got != want {
				t.Fatalf("listener live %t, want %t", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("listener never became live=%t", want)
		}
	}
	state(true)
	if got, err := c.Suppressed(ctx, e.account, handset); err != nil || got {
		t.Fatalf("Suppressed before: %t, %v", got, err)
	}
	if _, err := e.db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()`); err != nil {
		t.Fatal(err)
	}
	state(false)
	if _, err := e.db.Exec(`INSERT INTO sms.suppressions (account_id, phone) VALUES ($1, $2)`, e.account, handset); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Suppressed(ctx, e.account, handset); err != nil || !got {
		t.Errorf("Suppressed while disconnected, after a change: %t, %v", got, err)
	}
	state(true)
	if got, err := c.Suppressed(ctx, e.account, handset); err != nil || !got {
		t.Errorf("Suppressed after reconnecting: %t, %v", got, err)
	}
	if _, err := e.db.Exec(`DELETE FROM sms.suppressions`); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, fmt.Sprintf("%d %s", e.account, handset))
	if got, err := c.Suppressed(ctx, e.account, handset); err != nil || got {
		t.Errorf("Suppressed after a delete, reconnected: %t, %v", got, err)
	}
}

// TestSuppressionsWithoutListener: a cache that is not listening asks the
// database every time, and is right every time.
func TestSuppressionsWithoutListener(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	if _, err := e.db.Exec(`INSERT INTO sms.suppressions (account_id, phone) VALUES ($1, $2)`, e.account, handset); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := e.cache.Check(ctx, e.account, handset); !errors.Is(err, sms.ErrOptedOut) {
			t.Fatalf("Check: %v, want opted out", err)
		}
	}
	if _, err := e.db.Exec(`DELETE FROM sms.suppressions`); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Check(ctx, e.account, handset); err != nil {
		t.Errorf("Check after the delete: %v", err)
	}
	if q := e.cache.queries.Load(); q != 4 {
		t.Errorf("%d queries for 4 answers without a listener, want 4", q)
	}
}

// TestSuppressionsLargeList: an account with more phones than
// MaxPerAccount is answered phone by phone, and stays right.
func TestSuppressionsLargeList(t *testing.T) {
	t.Parallel()
	e := newInboundEnv(t)
	ctx := context.Background()
	c, payloads := e.listening(t)
	c.mu.Lock()
	c.MaxPerAccount = 3
	c.mu.Unlock()
	in := NewInbound(e.store, c)
	phones := []string{"+14155553001", "+14155553002", "+14155553003", "+14155553004"}
	if _, err := in.AddSuppressions(ctx, e.account, phones, "bulk"); err != nil {
		t.Fatal(err)
	}
	for _, p := range append(phones, handset) {
		want := p != handset
		for range 2 {
			if got, err := c.Suppressed(ctx, e.account, p); err != nil || got != want {
				t.Errorf("Suppressed(%s) = %t, %v; want %t", p, got, err, want)
			}
		}
	}
	if err := in.RemoveSuppression(ctx, e.account, phones[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Suppressed(ctx, e.account, phones[0]); got {
		t.Error("a removed phone is still suppressed")
	}
	if _, err := e.db.Exec(`INSERT INTO sms.suppressions (account_id, phone) VALUES ($1, $2)`, e.account, handset); err != nil {
		t.Fatal(err)
	}
	await(t, payloads, fmt.Sprintf("%d %s", e.account, handset))
	if got, _ := c.Suppressed(ctx, e.account, handset); !got {
		t.Error("a phone suppressed elsewhere is not")
	}
}

// BenchmarkSuppressionsCheck is the cost of the send path's question for
// an account with 1,000 suppressions: cached (the listener keeps the list
// in memory) or a query (one primary-key lookup), for a recipient who is
// not suppressed (nearly every send) and one who is.
func BenchmarkSuppressionsCheck(b *testing.B) {
	e := newInboundEnv(b)
	ctx := context.Background()
	var phones, others []string
	for i := range 1000 {
		phones = append(phones, fmt.Sprintf("+1415556%04d", i))
		others = append(others, fmt.Sprintf("+1415557%04d", i))
	}
	if _, err := e.in.AddSuppressions(ctx, e.account, phones, "bench"); err != nil {
		b.Fatal(err)
	}
	cached, _ := e.listening(b)
	for _, c := range []struct {
		name  string
		cache *Suppressions
	}{{"cached", cached}, {"query", e.cache}} {
		for _, suppressed := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/suppressed=%t", c.name, suppressed), func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						phone := others[i%len(others)]
						if suppressed {
							phone = phones[i%len(phones)]
						}
						if err := c.cache.Check(ctx, e.account, phone); (err != nil) != suppressed {
							b.Errorf("Check(%s): %v", phone, err)
							return
						}
					}
				})
			})
		}
	}
}
