package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
	"github.com/smsctl/smsctl/sms/webhook"
)

func ptr[T any](v T) *T { return &v }

// newEndpoint creates an endpoint of account for types (nil: every type).
func newEndpoint(tb testing.TB, w *Webhooks, account int64, types []string) webhook.Endpoint {
	tb.Helper()
	in := webhook.EndpointInput{URL: ptr("https://hooks.example.com/" + uuid.NewString())}
	if types != nil {
		in.EventTypes = &types
	}
	ep, err := w.CreateEndpoint(context.Background(), account, in)
	if err != nil {
		tb.Fatalf("create endpoint: %v", err)
	}
	return ep
}

type queued struct {
	EndpointID uuid.UUID  `db:"endpoint_id"`
	WebhookID  uuid.UUID  `db:"webhook_id"`
	EventType  string     `db:"event_type"`
	MessageID  *uuid.UUID `db:"message_id"`
	Sequence   *int       `db:"sequence"`
	Payload    []byte     `db:"payload"`
	State      string     `db:"state"`
}

// deliveries lists the queue, in the order of each message's events.
func deliveries(tb testing.TB, q sqlx.Queryer) []queued {
	tb.Helper()
	var out []queued
	if err := sqlx.Select(q, &out, `SELECT endpoint_id, webhook_id, event_type, message_id, sequence, payload::text AS payload, state
        FROM sms.webhook_deliveries ORDER BY endpoint_id, message_id, sequence, created_at`); err != nil {
		tb.Fatal(err)
	}
	return out
}

func typesOf(ds []queued, endpoint uuid.UUID) []string {
	var out []string
	for _, d := range ds {
		if d.EndpointID == endpoint {
			out = append(out, d.EventType)
		}
	}
	return out
}

// TestWebhookFanout: the trigger queues one delivery per event per enabled
// endpoint of the message's account subscribed to its type, and nothing
// when the account has no endpoint.
func TestWebhookFanout(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()

	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "before")}}); err != nil {
		t.Fatal(err)
	}
	if n := smstest.Count(t, db, "webhook_deliveries"); n != 0 {
		t.Fatalf("no endpoint anywhere: %d deliveries queued, want 0", n)
	}

	all := newEndpoint(t, w, 1, nil)
	sentOnly := newEndpoint(t, w, 1, []string{"message.sent"})
	off := newEndpoint(t, w, 1, nil)
	if _, err := w.UpdateEndpoint(ctx, 1, off.ID, webhook.EndpointInput{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	other := newEndpoint(t, w, 2, nil)

	msgs, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "hello")}})
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	reason := "transient: busy"
	_ = reason
	if _, err := s.ApplyReports(ctx, []sms.DeliveryReport{{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: time.Now(),
		CarrierMessageID: "c-1", Attempts: []sms.Attempt{{Attempt: 1, At: time.Now(), Result: "transient", Error: "busy"},
			{Attempt: 2, At: time.Now(), Result: "accepted"}}}}); err != nil {
		t.Fatal(err)
	}
	ds := deliveries(t, db)
	if got, want := typesOf(ds, all.ID), []string{"message.accepted", "message.attempt", "message.attempt", "message.sent"}; !slices.Equal(got, want) {
		t.Errorf("endpoint for every type got %v, want %v", got, want)
	}
	if got, want := typesOf(ds, sentOnly.ID), []string{"message.sent"}; !slices.Equal(got, want) {
		t.Errorf("endpoint for message.sent got %v, want %v", got, want)
	}
	if got := typesOf(ds, off.ID); len(got) != 0 {
		t.Errorf("disabled endpoint got %v, want nothing", got)
	}
	if got := typesOf(ds, other.ID); len(got) != 0 {
		t.Errorf("another account's endpoint got %v, want nothing", got)
	}

	// The body: {type, timestamp, data}, data the message as the API
	// returns it, with the event's status and sequence.
	api, err := s.Get(ctx, 1, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	apiJSON, _ := json.Marshal(api)
	var want map[string]any
	_ = json.Unmarshal(apiJSON, &want)
	for _, d := range ds {
		if d.EndpointID != all.ID {
			continue
		}
		var body struct {
			Type      string          `json:"type"`
			Timestamp time.Time       `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(d.Payload, &body); err != nil {
			t.Fatalf("payload %s: %v", d.Payload, err)
		}
		if body.Type != d.EventType || body.Timestamp.IsZero() {
			t.Errorf("payload %s: type or timestamp wrong", d.Payload)
		}
		var data map[string]any
		_ = json.Unmarshal(body.Data, &data)
		if seq, _ := data["sequence"].(float64); d.Sequence == nil || int(seq) != *d.Sequence {
			t.Errorf("data.sequence %v, delivery sequence %v", data["sequence"], d.Sequence)
		}
		wantKeys := slices.Sorted(maps.Keys(want))
		wantKeys = append(wantKeys, "sequence")
		if d.EventType == "message.attempt" || d.EventType == "message.sent" {
			wantKeys = append(wantKeys, "event_detail")
		}
		if got := slices.Sorted(maps.Keys(data)); !slices.Equal(got, slices.Sorted(slices.Values(wantKeys))) {
			t.Errorf("%s data fields %v, want %v", d.EventType, got, slices.Sorted(slices.Values(wantKeys)))
		}
		if d.EventType != "message.sent" {
			continue
		}
		for k, v := range want {
			got := data[k]
			if ts, ok := v.(string); ok && strings.HasSuffix(ts, "Z") && len(ts) > 20 {
				a, _ := time.Parse(time.RFC3339Nano, ts)
				b, _ := time.Parse(time.RFC3339Nano, got.(string))
				if !a.Equal(b) {
					t.Errorf("data.%s = %v, the API says %v", k, got, v)
				}
				continue
			}
			if gb, wb := mustJSON(got), mustJSON(v); gb != wb {
				t.Errorf("data.%s = %s, the API says %s", k, gb, wb)
			}
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestWebhookFanoutSameTransaction: deliveries are queued by the
// transaction that records the event, and go with it when it rolls back.
func TestWebhookFanoutSameTransaction(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	w := NewWebhooks(db)
	newEndpoint(t, w, 1, nil)
	ctx := context.Background()
	for _, commit := range []bool{false, true} {
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		id := sms.NewID()
		if _, err := tx.Exec(`INSERT INTO sms.messages (id, account_id, sender, recipient, text, status, encoding, segments, created_at, updated_at)
            VALUES ($1, 1, 'Acme', '+14155552671', 'x', 'PENDING', 'GSM-7', 1, now(), now())`, id); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(`INSERT INTO sms.message_events (message_id, sequence, type, status, occurred_at) VALUES ($1, 1, 'message.accepted', 'PENDING', now())`, id); err != nil {
			t.Fatal(err)
		}
		if n := len(deliveries(t, tx)); n != 1 {
			t.Errorf("inside the event's transaction: %d deliveries, want 1", n)
		}
		if commit {
			err = tx.Commit()
		} else {
			err = tx.Rollback()
		}
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if commit {
			want = 1
		}
		if n := smstest.Count(t, db, "webhook_deliveries"); n != want {
			t.Errorf("after commit=%v: %d deliveries, want %d", commit, n, want)
		}
	}
	// Other event sources queue through sms.queue_webhook.
	var n int
	if err := db.Get(&n, `SELECT sms.queue_webhook(1, 'message.received', now(), '{"from": "+14155552671"}')`); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("queue_webhook queued %d deliveries, want 1", n)
	}
	if err := db.Get(&n, `SELECT sms.queue_webhook(2, 'message.received', now(), '{}')`); err != nil || n != 0 {
		t.Errorf("queue_webhook for an account without endpoints: %d, %v; want 0", n, err)
	}
}

// TestWebhookEndpoints: create, read, update, rotate and delete, each
// account seeing only its own.
func TestWebhookEndpoints(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	w := NewWebhooks(db)
	ctx := context.Background()
	ep := newEndpoint(t, w, 1, []string{"message.sent", "message.failed"})
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(ep.Secret, "whsec_"))
	if !strings.HasPrefix(ep.Secret, "whsec_") || err != nil || len(key) < 24 || len(key) > 64 {
		t.Errorf("secret %q: want whsec_ and the standard base64 of 24 to 64 bytes", ep.Secret)
	}
	got, err := w.Endpoint(ctx, 1, ep.ID)
	if err != nil || got.Secret != "" || !got.Enabled || !slices.Equal(got.EventTypes, ep.EventTypes) {
		t.Errorf("get: %+v, %v", got, err)
	}
	list, err := w.Endpoints(ctx, 1)
	if err != nil || len(list) != 1 || list[0].ID != ep.ID || list[0].Secret != "" {
		t.Errorf("list: %+v, %v", list, err)
	}
	up, err := w.UpdateEndpoint(ctx, 1, ep.ID, webhook.EndpointInput{EventTypes: &[]string{}, Description: ptr("d"), Enabled: ptr(false)})
	if err != nil || len(up.EventTypes) != 0 || up.Description != "d" || up.Enabled || up.DisabledReason == nil {
		t.Errorf("update: %+v, %v", up, err)
	}
	up, err = w.UpdateEndpoint(ctx, 1, ep.ID, webhook.EndpointInput{Enabled: ptr(true)})
	if err != nil || !up.Enabled || up.DisabledReason != nil {
		t.Errorf("enable: %+v, %v", up, err)
	}
	rot, err := w.RotateSecret(ctx, 1, ep.ID)
	if err != nil || rot.Secret == "" || rot.Secret == ep.Secret {
		t.Fatalf("rotate: %+v, %v", rot, err)
	}
	// Both secrets sign until the previous one expires.
	if _, err := w.QueueTest(ctx, 1, ep.ID); err != nil {
		t.Fatal(err)
	}
	claimed := claimN(t, w, 10, 10, nil)
	if len(claimed) != 1 {
		t.Fatalf("claim the test event: %v", claimed)
	}
	if got := claimed[0].Secrets; !slices.Equal(got, []string{rot.Secret, ep.Secret}) {
		t.Errorf("signing secrets after a rotation: %v, want the new and the previous one", got)
	}
	if claimed[0].EventType != webhook.TypeTest {
		t.Errorf("test event type %q", claimed[0].EventType)
	}

	// Another account's endpoint does not exist for it.
	other := int64(2)
	checks := map[string]error{}
	_, checks["get"] = w.Endpoint(ctx, other, ep.ID)
	_, checks["update"] = w.UpdateEndpoint(ctx, other, ep.ID, webhook.EndpointInput{Enabled: ptr(false)})
	_, checks["rotate"] = w.RotateSecret(ctx, other, ep.ID)
	_, checks["test"] = w.QueueTest(ctx, other, ep.ID)
	_, checks["attempts"] = w.Attempts(ctx, other, ep.ID, webhook.AttemptFilter{Size: 10})
	_, checks["replay"] = w.Replay(ctx, other, ep.ID, time.Now().Add(-time.Hour))
	checks["delete"] = w.DeleteEndpoint(ctx, other, ep.ID)
	for op, err := range checks {
		if !errors.Is(err, sms.ErrNotFound) {
			t.Errorf("%s of another account's endpoint: %v, want ErrNotFound", op, err)
		}
	}
	if l, _ := w.Endpoints(ctx, other); len(l) != 0 {
		t.Errorf("another account lists %d endpoints", len(l))
	}
	if err := w.DeleteEndpoint(ctx, 1, ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Endpoint(ctx, 1, ep.ID); !errors.Is(err, sms.ErrNotFound) {
		t.Errorf("deleted endpoint: %v", err)
	}
	if n := smstest.Count(t, db, "webhook_deliveries"); n != 0 {
		t.Errorf("deleted endpoint left %d deliveries", n)
	}

	for i := range webhook.MaxEndpoints {
		if _, err := w.CreateEndpoint(ctx, 3, webhook.EndpointInput{URL: ptr("https://h.example.com/" + string(rune('a'+i)))}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.CreateEndpoint(ctx, 3, webhook.EndpointInput{URL: ptr("https://h.example.com/x")}); sms.ErrorCode(err) != sms.CodeUnprocessable {
		t.Errorf("endpoint %d: %v, want unprocessable", webhook.MaxEndpoints+1, err)
	}

	// Created all at once, the limit still holds: the count and the
	// insert run under the account's lock.
	var created atomic.Int64
	var wg sync.WaitGroup
	for i := range 2 * webhook.MaxEndpoints {
		wg.Go(func() {
			_, err := w.CreateEndpoint(ctx, 4, webhook.EndpointInput{URL: ptr(fmt.Sprintf("https://h.example.com/at-once/%d", i))})
			switch {
			case err == nil:
				created.Add(1)
			case sms.ErrorCode(err) != sms.CodeUnprocessable:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := created.Load(); got != webhook.MaxEndpoints {
		t.Errorf("%d endpoints created at once, want the limit, %d", got, webhook.MaxEndpoints)
	}
}

// record is a result of a claimed delivery.
func record(tb testing.TB, w *Webhooks, d webhook.Delivery, outcome webhook.Outcome, next time.Time) {
	tb.Helper()
	r := webhook.Result{DeliveryID: d.ID, EndpointID: d.EndpointID, Attempt: d.Attempt, Outcome: outcome,
		AttemptedAt: time.Now(), NextAttemptAt: next, Latency: time.Millisecond}
	if outcome != webhook.OutcomeSucceeded {
		r.StatusCode, r.Error = 500, "HTTP 500"
	}
	if err := w.Record(context.Background(), []webhook.Result{r}); err != nil {
		tb.Fatal(err)
	}
}

func claimTypes(ds []webhook.Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.EventType)
	}
	return out
}

// TestWebhookClaimOrder: a message's events go to an endpoint one at a
// time in sequence order; a retry holds the later events back; a final
// failure lets them go.
func TestWebhookClaimOrder(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()
	newEndpoint(t, w, 1, nil)
	msgs, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyReports(ctx, []sms.DeliveryReport{{MessageID: msgs[0].ID, Status: sms.StatusSent, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ApplyReports(ctx, []sms.DeliveryReport{{MessageID: msgs[0].ID, Status: sms.StatusDelivered, ProcessedAt: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	claim := func() []webhook.Delivery {
		t.Helper()
		return claimN(t, w, 100, 100, nil)
	}
	first := claim()
	if got := claimTypes(first); !slices.Equal(got, []string{"message.accepted"}) {
		t.Fatalf("first claim %v, want only message.accepted", got)
	}
	if got := claim(); len(got) != 0 {
		t.Fatalf("while message.accepted is in flight: claimed %v", claimTypes(got))
	}
	// A retry an hour away holds message.sent and message.delivered back.
	record(t, w, first[0], webhook.OutcomeRetrying, time.Now().Add(time.Hour))
	if got := claim(); len(got) != 0 {
		t.Fatalf("while message.accepted waits for a retry: claimed %v", claimTypes(got))
	}
	var held int
	if err := db.Get(&held, `SELECT count(*) FROM sms.webhook_deliveries WHERE sequence > 1 AND next_attempt_at > now() + interval '50 minutes'`); err != nil || held != 2 {
		t.Errorf("later events waiting for the retry: %d, %v; want 2", held, err)
	}
	// The endpoint answers again: everything due in the order queued.
	if err := w.Expedite(ctx, first[0].EndpointID); err != nil {
		t.Fatal(err)
	}
	again := claim()
	if got := claimTypes(again); !slices.Equal(got, []string{"message.accepted"}) || again[0].Attempt != 2 || again[0].WebhookID != first[0].WebhookID {
		t.Fatalf("after expedite: %v (attempt %d), want message.accepted again, attempt 2, same webhook id", got, again[0].Attempt)
	}
	// Failed for good: the next event goes.
	record(t, w, again[0], webhook.OutcomeFailed, time.Time{})
	next := claim()
	if got := claimTypes(next); !slices.Equal(got, []string{"message.sent"}) {
		t.Fatalf("after message.accepted failed for good: %v, want message.sent", got)
	}
	record(t, w, next[0], webhook.OutcomeSucceeded, time.Time{})
	if got := claimTypes(claim()); !slices.Equal(got, []string{"message.delivered"}) {
		t.Fatalf("after message.sent: %v, want message.delivered", got)
	}
	page, err := w.Attempts(ctx, 1, first[0].EndpointID, webhook.AttemptFilter{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, a := range page.Attempts {
		log = append(log, a.EventType+":"+a.State)
	}
	if want := []string{"message.sent:succeeded", "message.accepted:failed", "message.accepted:retrying"}; !slices.Equal(log, want) {
		t.Errorf("log newest first %v, want %v", log, want)
	}
}

// claimN claims with a cap per endpoint and what is in flight already.
func claimN(tb testing.TB, w *Webhooks, limit, perEndpoint int, inflight map[uuid.UUID]int) []webhook.Delivery {
	tb.Helper()
	ds, err := w.Claim(context.Background(), webhook.ClaimRequest{Limit: limit, PerEndpoint: perEndpoint, Held: inflight, Lease: time.Minute})
	if err != nil {
		tb.Fatal(err)
	}
	return ds
}

// TestWebhookClaimCap: a claim takes no more of an endpoint than keep
// PerEndpoint in flight, counting what the dispatcher has already.
func TestWebhookClaimCap(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()
	a := newEndpoint(t, w, 1, []string{"message.accepted"})
	b := newEndpoint(t, w, 1, []string{"message.accepted"})
	if _, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 10)); err != nil {
		t.Fatal(err)
	}
	per := map[uuid.UUID]int{}
	for _, d := range claimN(t, w, 100, 3, nil) {
		per[d.EndpointID]++
	}
	if per[a.ID] != 3 || per[b.ID] != 3 {
		t.Fatalf("claimed per endpoint %v, want 3 of each", per)
	}
	if more := claimN(t, w, 100, 3, per); len(more) != 0 {
		t.Fatalf("both endpoints at their cap: claimed %d more", len(more))
	}
	per[a.ID]--
	if more := claimN(t, w, 100, 3, per); len(more) != 1 || more[0].EndpointID != a.ID {
		t.Fatalf("one slot free at endpoint a: claimed %d, want 1 of a", len(more))
	}
	if more := claimN(t, w, 2, 100, nil); len(more) != 2 {
		t.Fatalf("limit 2: claimed %d", len(more))
	}
}

// TestWebhookLeaseGoneRelease: a lease that ends without a result makes
// the delivery due again and the late result changes nothing; a 410
// disables the endpoint; a delivery released by a stopping dispatcher is
// due at once with its attempt given back.
func TestWebhookLeaseGoneRelease(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()
	a := newEndpoint(t, w, 1, []string{"message.accepted"})
	newEndpoint(t, w, 1, []string{"message.accepted"})
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}); err != nil {
		t.Fatal(err)
	}
	ds := claimN(t, w, 10, 10, nil)
	if len(ds) != 2 {
		t.Fatalf("claimed %d, want 2", len(ds))
	}
	if ds[0].EndpointID != a.ID {
		ds[0], ds[1] = ds[1], ds[0]
	}
	da, dbl := ds[0], ds[1]
	if more := claimN(t, w, 10, 10, nil); len(more) != 0 {
		t.Fatalf("claimed deliveries claimed again: %d", len(more))
	}
	// The replica holding da dies: its lease ends.
	if _, err := db.Exec(`UPDATE sms.webhook_deliveries SET leased_until = now() - interval '1 second',
        next_attempt_at = now() - interval '1 second' WHERE id = $1`, da.ID); err != nil {
		t.Fatal(err)
	}
	re := claimN(t, w, 10, 10, nil)
	if len(re) != 1 || re[0].ID != da.ID || re[0].Attempt != 2 || string(re[0].Payload) != string(da.Payload) || re[0].WebhookID != da.WebhookID {
		t.Fatalf("after the lease ended: %+v; want the same delivery, attempt 2, same id and body", re)
	}
	record(t, w, da, webhook.OutcomeSucceeded, time.Time{}) // the dead replica's late result
	var state string
	if err := db.Get(&state, `SELECT state FROM sms.webhook_deliveries WHERE id = $1`, da.ID); err != nil || state != "pending" {
		t.Errorf("a stale result moved the delivery to %q (%v); want it still pending", state, err)
	}
	// A 410 disables the endpoint.
	r := webhook.Result{DeliveryID: re[0].ID, EndpointID: a.ID, Attempt: re[0].Attempt, Outcome: webhook.OutcomeFailed,
		StatusCode: 410, Error: "HTTP 410 Gone", AttemptedAt: time.Now(), Gone: true, DisabledReason: "the endpoint answered 410 Gone"}
	if err := w.Record(ctx, []webhook.Result{r}); err != nil {
		t.Fatal(err)
	}
	ep, err := w.Endpoint(ctx, 1, a.ID)
	if err != nil || ep.Enabled || ep.DisabledReason == nil || *ep.DisabledReason != r.DisabledReason {
		t.Errorf("after 410: %+v, %v; want disabled with the reason", ep, err)
	}
	// Released by a stopping dispatcher.
	rel := webhook.Result{DeliveryID: dbl.ID, EndpointID: dbl.EndpointID, Attempt: dbl.Attempt, Outcome: webhook.OutcomeReleased, AttemptedAt: time.Now()}
	if err := w.Record(ctx, []webhook.Result{rel}); err != nil {
		t.Fatal(err)
	}
	again := claimN(t, w, 10, 10, nil)
	if len(again) != 1 || again[0].ID != dbl.ID || again[0].Attempt != dbl.Attempt {
		t.Errorf("after the release: %+v; want the released delivery with the same attempt number", again)
	}
	var logged int
	if err := db.Get(&logged, `SELECT count(*) FROM sms.webhook_attempts`); err != nil || logged != 2 {
		t.Errorf("%d attempts logged (%v), want 2: the late one and the 410, not the release", logged, err)
	}
	st, err := w.QueueStats(ctx)
	if err != nil || st.Pending != 1 || st.Oldest.IsZero() {
		t.Errorf("queue stats %+v, %v; want 1 pending", st, err)
	}
}

// TestWebhookReplay: what was delivered goes again with its webhook id and
// body; events the endpoint missed while disabled go with new ids.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()
	ep := newEndpoint(t, w, 1, []string{"message.accepted"})
	since := time.Now().Add(-time.Minute)
	if _, err := s.Insert(ctx, slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}, 2)); err != nil {
		t.Fatal(err)
	}
	ds := claimN(t, w, 100, 100, nil)
	if len(ds) != 2 {
		t.Fatalf("claim: %d", len(ds))
	}
	record(t, w, ds[0], webhook.OutcomeSucceeded, time.Time{})
	record(t, w, ds[1], webhook.OutcomeFailed, time.Time{})
	// Disabled, it misses a message.
	if _, err := w.UpdateEndpoint(ctx, 1, ep.ID, webhook.EndpointInput{Enabled: ptr(false)}); err != nil {
		t.Fatal(err)
	}
	missed, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "missed")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.UpdateEndpoint(ctx, 1, ep.ID, webhook.EndpointInput{Enabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	n, err := w.Replay(ctx, 1, ep.ID, since)
	if err != nil || n != 3 {
		t.Fatalf("replay queued %d, %v; want 3", n, err)
	}
	again := claimN(t, w, 100, 100, nil)
	if len(again) != 3 {
		t.Fatalf("claim the replay: %d", len(again))
	}
	byWebhook := map[uuid.UUID]webhook.Delivery{}
	for _, d := range again {
		byWebhook[d.WebhookID] = d
	}
	for _, d := range ds {
		r, ok := byWebhook[d.WebhookID]
		if !ok || r.ID == d.ID || string(r.Payload) != string(d.Payload) || r.Attempt != 1 {
			t.Errorf("replay of %s: %+v; want a new delivery with the same webhook id and body", d.WebhookID, r)
		}
	}
	var fresh []webhook.Delivery
	for _, d := range again {
		if d.WebhookID != ds[0].WebhookID && d.WebhookID != ds[1].WebhookID {
			fresh = append(fresh, d)
		}
	}
	if len(fresh) != 1 || fresh[0].MessageID == nil || *fresh[0].MessageID != missed[0].ID || fresh[0].EventType != "message.accepted" {
		t.Errorf("missed event replayed as %+v", fresh)
	}
	// A replay while the replayed deliveries are pending adds nothing for them.
	if n, err := w.Replay(ctx, 1, ep.ID, since); err != nil || n != 0 {
		t.Errorf("second replay while the first is in flight: %d, %v; want 0", n, err)
	}
}

// BenchmarkWebhookFanout measures what the fan-out trigger adds to the
// insert of a batch of 500 messages (one statement, as the group-commit
// writer does): without the trigger, with no endpoint at all, with an
// endpoint of another account only, and with one endpoint subscribed to
// every event of the account.
func BenchmarkWebhookFanout(b *testing.B) {
	cases := []struct {
		name  string
		setup func(b *testing.B, db *sqlx.DB, w *Webhooks)
	}{
		{"no_trigger", func(b *testing.B, db *sqlx.DB, _ *Webhooks) {
			if _, err := db.Exec(`DROP TRIGGER message_events_webhooks ON sms.message_events`); err != nil {
				b.Fatal(err)
			}
		}},
		{"no_endpoint", func(*testing.B, *sqlx.DB, *Webhooks) {}},
		{"other_account_endpoint", func(b *testing.B, _ *sqlx.DB, w *Webhooks) { newEndpoint(b, w, 2, nil) }},
		{"subscribed_endpoint", func(b *testing.B, _ *sqlx.DB, w *Webhooks) { newEndpoint(b, w, 1, nil) }},
	}
	batch := slices.Repeat([]sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "hello")}}, 500)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			db := platformtest.NewDB(b)
			s, w := NewStore(db), NewWebhooks(db)
			c.setup(b, db, w)
			ctx := context.Background()
			// A table of some size, analyzed, as in production: the
			// planner looks messages up by id rather than scanning.
			if _, err := db.Exec(`INSERT INTO sms.messages (id, account_id, sender, recipient, text, status, encoding, segments, created_at, updated_at)
                SELECT gen_random_uuid(), 1 + i % 50, 'Acme', '+14155552671', 'old', 'SENT', 'GSM-7', 1, now(), now()
                FROM generate_series(1, 200000) i; ANALYZE sms.messages; ANALYZE sms.message_events`); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Insert(ctx, batch); err != nil { // warm the plans
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := s.Insert(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(batch)), "µs/msg")
		})
	}
}

// TestWebhookMigrationDown: migration 00007 rolls back cleanly with
// endpoints and deliveries in place (events are recorded as before), and
// applies again.
func TestWebhookMigrationDown(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	s, w := NewStore(db), NewWebhooks(db)
	ctx := context.Background()
	newEndpoint(t, w, 1, nil)
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")}}); err != nil {
		t.Fatal(err)
	}
	applied := func() int64 {
		st, err := migrations.Status(ctx, db.DB, migrations.SMS)
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		for _, m := range st {
			if m.Applied {
				last = max(last, m.Version)
			}
		}
		return last
	}
	for applied() >= 7 {
		if _, err := migrations.Down(ctx, db.DB, migrations.SMS); err != nil {
			t.Fatalf("down: %v", err)
		}
	}
	var left int
	if err := db.Get(&left, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'sms' AND c.relname LIKE 'webhook%'`); err != nil || left != 0 {
		t.Errorf("after down: %d webhook relations left (%v)", left, err)
	}
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "after down")}}); err != nil {
		t.Errorf("insert after down: %v", err)
	}
	if _, err := migrations.Up(ctx, db.DB, migrations.SMS); err != nil {
		t.Fatalf("up again: %v", err)
	}
	newEndpoint(t, w, 1, nil)
	if _, err := s.Insert(ctx, []sms.NewMessage{{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "after up")}}); err != nil {
		t.Fatal(err)
	}
	if n := smstest.Count(t, db, "webhook_deliveries"); n != 1 {
		t.Errorf("after up again: %d deliveries, want 1", n)
	}
}
