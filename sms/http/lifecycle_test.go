package http

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
)

// claim is the processor's claim of a message, through the internal route.
func (a *testAPI) claim(tb testing.TB, id uuid.UUID, retry int) sms.Verdict {
	tb.Helper()
	r := a.do(tb, http.MethodPost, "/v1/internal/dispatch", map[string]any{"claims": []sms.Claim{{MessageID: id, Retry: retry}}}, withInternalToken())
	want(tb, r, http.StatusOK)
	res := decodeAs[DispatchResponse](tb, r)
	if len(res.Results) != 1 || res.Results[0].MessageID != id {
		tb.Fatalf("claim answered %+v", res)
	}
	return res.Results[0].Verdict
}

func (a *testAPI) events(tb testing.TB, id uuid.UUID) []sms.Event {
	tb.Helper()
	r := a.do(tb, http.MethodGet, "/v1/messages/"+id.String()+"/events", nil)
	want(tb, r, http.StatusOK)
	return decodeAs[EventsResponse](tb, r).Events
}

func eventTypes(evs []sms.Event) string {
	var types []string
	for i, e := range evs {
		if e.Sequence != i+1 {
			return fmt.Sprintf("sequence %d at position %d", e.Sequence, i)
		}
		types = append(types, e.Type+":"+string(e.Status))
	}
	return strings.Join(types, " ")
}

// TestMessageLife follows messages through the statuses of the design,
// with their history: every move one event, in order, and the moves the
// table forbids changing nothing.
func TestMessageLife(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	t.Run("delivered", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		if v := a.claim(t, m.ID, 0); v != sms.VerdictSend {
			t.Fatalf("claim: %s", v)
		}
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, CarrierMessageID: "1A2B",
			Attempts: []sms.Attempt{{Attempt: 1, At: time.Now(), Result: "transient", Error: "timeout"}, {Attempt: 2, At: time.Now(), Result: "accepted"}}})
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusDelivered,
			Parts: []sms.PartReceipt{{CarrierID: "1A2B", Status: sms.StatusDelivered, State: "DELIVRD"}}})
		// Late and repeated reports change nothing.
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent})
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusExpired, FailureReason: ptr("late")})
		got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m.ID.String(), nil))
		if got.Status != sms.StatusDelivered || got.CarrierMessageID == nil || *got.CarrierMessageID != "1A2B" || got.DeliveredAt == nil {
			t.Errorf("message %+v, want DELIVERED with its carrier id and delivery time", got)
		}
		want := "message.accepted:PENDING message.queued:PENDING message.attempt:PENDING message.attempt:PENDING message.sent:SENT message.delivered:DELIVERED"
		if got := eventTypes(a.events(t, m.ID)); got != want {
			t.Errorf("history\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("undelivered, retried, then failed", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		a.claim(t, m.ID, 0)
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent})
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusUndelivered, FailureReason: ptr("undelivered: absent subscriber")})
		r := a.do(t, http.MethodPost, "/v1/messages/"+m.ID.String()+"/retry", nil)
		want(t, r, http.StatusAccepted)
		if got := decodeAs[sms.Message](t, r); got.Status != sms.StatusPending || got.Retries != 1 || got.FailureReason != nil {
			t.Fatalf("retried message %+v, want PENDING, retries 1, no failure reason", got)
		}
		// A report about the first try changes nothing now; the second
		// try is claimed and fails.
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusFailed, FailureReason: ptr("permanent: old try")})
		if v := a.claim(t, m.ID, 0); v != sms.VerdictSkip {
			t.Errorf("claim of the old try: %s, want skip", v)
		}
		if v := a.claim(t, m.ID, 1); v != sms.VerdictSend {
			t.Errorf("claim of the retry: %s, want send", v)
		}
		a.reportFull(t, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusFailed, FailureReason: ptr("permanent: unknown subscriber"), Retry: 1})
		got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+m.ID.String(), nil))
		if got.Status != sms.StatusFailed || got.FailureReason == nil || *got.FailureReason != "permanent: unknown subscriber" {
			t.Errorf("message %+v, want the retry's FAILED", got)
		}
		want := "message.accepted:PENDING message.queued:PENDING message.sent:SENT message.undelivered:UNDELIVERED message.queued:PENDING message.queued:PENDING message.failed:FAILED"
		if got := eventTypes(a.events(t, m.ID)); got != want {
			t.Errorf("history\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("retry is only for FAILED, UNDELIVERED and EXPIRED", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		p := wantProblem(t, a.do(t, http.MethodPost, "/v1/messages/"+m.ID.String()+"/retry", nil), http.StatusConflict)
		if p.Type != ProblemBase+"not-retryable" {
			t.Errorf("problem type %q", p.Type)
		}
		wantProblem(t, a.do(t, http.MethodPost, "/v1/messages/"+uuid.NewString()+"/retry", nil), http.StatusNotFound)
	})
	t.Run("another account's message is not found", func(t *testing.T) {
		t.Parallel()
		m := a.send(t, hello)
		other := withKey(a.newKey(t, "umbrella"))
		for _, path := range []string{"/events", "/cancel", "/retry"} {
			method := http.MethodPost
			if path == "/events" {
				method = http.MethodGet
			}
			wantProblem(t, a.do(t, method, "/v1/messages/"+m.ID.String()+path, nil, other), http.StatusNotFound)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// reportFull posts one report through the batch route and checks it was
// taken.
func (a *testAPI) reportFull(tb testing.TB, r sms.DeliveryReport) {
	tb.Helper()
	if r.ProcessedAt.IsZero() {
		r.ProcessedAt = time.Now().UTC()
	}
	want(tb, a.do(tb, http.MethodPost, "/v1/internal/delivery-reports", sms.ReportBatch{Reports: []sms.DeliveryReport{r}}, withInternalToken()), http.StatusOK)
}

// TestCancel checks that a message can be canceled while SCHEDULED, or
// PENDING and not yet claimed for the carrier, and never after; and that a
// canceled message's claim says skip.
func TestCancel(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	cancel := func(id uuid.UUID) response {
		return a.do(t, http.MethodPost, "/v1/messages/"+id.String()+"/cancel", nil)
	}

	pending := a.send(t, hello)
	r := cancel(pending.ID)
	want(t, r, http.StatusOK)
	if got := decodeAs[sms.Message](t, r); got.Status != sms.StatusCanceled {
		t.Fatalf("canceled message is %s", got.Status)
	}
	if v := a.claim(t, pending.ID, 0); v != sms.VerdictSkip {
		t.Errorf("claim of a canceled message: %s, want skip", v)
	}

	later := hello
	at := time.Now().Add(time.Hour)
	later.SendAt = &at
	scheduled := a.send(t, later)
	if scheduled.Status != sms.StatusScheduled {
		t.Fatalf("message with send_at in an hour is %s", scheduled.Status)
	}
	want(t, cancel(scheduled.ID), http.StatusOK)

	claimed := a.send(t, hello)
	a.claim(t, claimed.ID, 0)
	p := wantProblem(t, cancel(claimed.ID), http.StatusConflict)
	if p.Type != ProblemBase+"not-cancelable" {
		t.Errorf("problem type %q", p.Type)
	}
	if p := wantProblem(t, cancel(pending.ID), http.StatusConflict); !strings.Contains(p.Detail, "CANCELED and final") {
		t.Errorf("cancel of a canceled message says %q", p.Detail)
	}
	wantProblem(t, cancel(uuid.New()), http.StatusNotFound)

	st := a.stats(t)
	if st.ByStatus[sms.StatusCanceled] != 2 || st.ByStatus[sms.StatusPending] != 1 || st.TotalMessages != 3 {
		t.Errorf("stats %+v, want 2 CANCELED and 1 PENDING", st)
	}
	if got := eventTypes(a.events(t, scheduled.ID)); got != "message.accepted:SCHEDULED message.scheduled:SCHEDULED message.canceled:CANCELED" {
		t.Errorf("history of the canceled scheduled message: %s", got)
	}
}

// TestScheduledAndValidity checks send_at and validity_period at the API:
// the fields as stored and returned, the limits, and that an expired
// message is not claimed for the carrier.
func TestScheduledAndValidity(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	body := func(extra string) string {
		return `{"sender":"+14155552671","recipient":"+442071838750","text":"hi"` + extra + `}`
	}
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	r := a.do(t, http.MethodPost, "/v1/messages", body(`,"send_at":"`+at.Format(time.RFC3339)+`","validity_period":600,"priority":"high"`))
	want(t, r, http.StatusAccepted)
	m := decodeAs[sms.Message](t, r)
	if m.Status != sms.StatusScheduled || m.SendAt == nil || !m.SendAt.Equal(at) || m.ValidityPeriod == nil || *m.ValidityPeriod != 600 || m.Priority != sms.PriorityHigh {
		t.Errorf("scheduled message %+v", m)
	}
	for _, tc := range []struct{ name, extra, field string }{
		{"send_at in the past", `,"send_at":"2020-01-01T00:00:00Z"`, "send_at"},
		{"send_at 40 days ahead", `,"send_at":"` + time.Now().Add(40*24*time.Hour).Format(time.RFC3339) + `"`, "send_at"},
		{"send_at not a time", `,"send_at":"tomorrow"`, "send_at"},
		{"validity 0", `,"validity_period":0`, "validity_period"},
		{"validity not a number", `,"validity_period":"10m"`, "validity_period"},
		{"priority urgent", `,"priority":"urgent"`, "priority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantViolations(t, a.do(t, http.MethodPost, "/v1/messages", body(tc.extra)), tc.field)
		})
	}
	if got := a.page(t, "/v1/messages?status=SCHEDULED"); got.TotalCount != 1 {
		t.Errorf("SCHEDULED messages listed: %d", got.TotalCount)
	}
	// A message whose validity ended is not claimed: it ends EXPIRED.
	short := a.send(t, sms.SendInput{Sender: "+14155552671", Recipient: "+442071838750", Text: "soon stale", ValidityPeriod: ptr(1)})
	if _, err := a.db.Exec(`UPDATE sms.messages SET valid_until = now() - interval '1 second' WHERE id = $1`, short.ID); err != nil {
		t.Fatal(err)
	}
	if v := a.claim(t, short.ID, 0); v != sms.VerdictExpired {
		t.Errorf("claim of an expired message: %s, want expired", v)
	}
	got := decodeAs[sms.Message](t, a.do(t, http.MethodGet, "/v1/messages/"+short.ID.String(), nil))
	if got.Status != sms.StatusExpired || got.FailureReason == nil {
		t.Errorf("expired message %+v", got)
	}
}

// TestBatch checks POST /v1/messages/batch: valid messages accepted
// together, invalid ones answered by index with the problem a single POST
// gets, the limits, the rate limit counting every message, and an
// Idempotency-Key replaying the whole answer.
func TestBatch(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	batch := `{"messages":[
		{"sender":"+14155552671","recipient":"+442071838750","text":"one"},
		{"sender":"+14155552671","recipient":"not a phone","text":"two"},
		{"sender":"+14155552671","recipient":"+442071838750","text":"three","priority":"low"},
		42
	]}`
	r := a.do(t, http.MethodPost, "/v1/messages/batch", batch)
	want(t, r, http.StatusOK)
	res := decodeAs[BatchResponse](t, r)
	if res.Accepted != 2 || res.Rejected != 2 || len(res.Results) != 4 {
		t.Fatalf("batch answered %+v", res)
	}
	for i, wantStatus := range []int{202, 400, 202, 400} {
		got := res.Results[i]
		if got.Index != i || got.Status != wantStatus || (wantStatus == 202) != (got.Message != nil) || (wantStatus != 202) != (got.Problem != nil) {
			t.Errorf("result %d: %+v", i, got)
		}
	}
	if res.Results[1].Problem.Violations[0].Field != "recipient" {
		t.Errorf("the invalid message's problem names %+v", res.Results[1].Problem.Violations)
	}
	if smstestCount := a.page(t, "/v1/messages").TotalCount; smstestCount != 2 {
		t.Errorf("%d messages stored, want the 2 valid ones", smstestCount)
	}
	var outboxRows int
	if err := a.db.Get(&outboxRows, `SELECT count(*) FROM sms.outbox`); err != nil || outboxRows != 1 {
		t.Errorf("%d outbox rows (%v), want one for the batch", outboxRows, err)
	}

	// Idempotency-Key: the same answer, nothing stored twice.
	key := withHeader("Idempotency-Key", "batch-1")
	first := a.do(t, http.MethodPost, "/v1/messages/batch", batch, key)
	again := a.do(t, http.MethodPost, "/v1/messages/batch", batch, key)
	want(t, again, http.StatusOK)
	if string(first.Body) != string(again.Body) || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replayed batch answered differently or unmarked:\n%s\n%s", first.Body, again.Body)
	}
	if n := a.page(t, "/v1/messages").TotalCount; n != 4 {
		t.Errorf("%d messages after a replayed batch, want 4", n)
	}
	p := wantProblem(t, a.do(t, http.MethodPost, "/v1/messages/batch", `{"messages":[{"sender":"+14155552671","recipient":"+442071838750","text":"x"}]}`, key), http.StatusUnprocessableEntity)
	if p.Type != ProblemBase+"idempotency-key-reused" {
		t.Errorf("another batch under the key: %+v", p)
	}

	// Limits.
	wantViolations(t, a.do(t, http.MethodPost, "/v1/messages/batch", `{"messages":[]}`), "messages")
	many := make([]json.RawMessage, MaxBatch+1)
	for i := range many {
		many[i] = json.RawMessage(`{"sender":"+14155552671","recipient":"+442071838750","text":"x"}`)
	}
	p = wantProblem(t, a.do(t, http.MethodPost, "/v1/messages/batch", map[string]any{"messages": many}), http.StatusBadRequest)
	if p.Type != ProblemBase+"batch-too-large" {
		t.Errorf("a batch of %d: %+v", MaxBatch+1, p)
	}
}

// TestBatchRateLimit checks that a batch costs its number of messages.
func TestBatchRateLimit(t *testing.T) {
	t.Parallel()
	a := newAPI(t, func(o *apiOptions) { o.rateLimit, o.rateBurst = 0.001, 10 })
	msgs := make([]json.RawMessage, 8)
	for i := range msgs {
		msgs[i] = json.RawMessage(`{"sender":"+14155552671","recipient":"+442071838750","text":"x"}`)
	}
	want(t, a.do(t, http.MethodPost, "/v1/messages/batch", map[string]any{"messages": msgs}), http.StatusOK)
	// 8 of the burst of 10 are spent: another batch of 8 is over it.
	r := a.do(t, http.MethodPost, "/v1/messages/batch", map[string]any{"messages": msgs})
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("second batch: %v, want 429 with Retry-After", r)
	}
	if n := a.page(t, "/v1/messages").TotalCount; n != 8 {
		t.Errorf("%d messages stored, want the first batch's 8", n)
	}
}

// TestInternalEdgeInputs holds inputs the contract tests found answered
// with 500s or wrong shapes: numbers past PostgreSQL's integer, offsets
// past its ±15:59, NUL in the new report fields, a claim repeated in one
// dispatch, and the batch route read with GET.
func TestInternalEdgeInputs(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	m := a.send(t, hello)
	report := func(fields string) response {
		return a.do(t, http.MethodPost, "/v1/internal/delivery-report",
			`{"message_id":"`+m.ID.String()+`","status":"SENT","processed_at":"2026-01-01T00:00:00Z"`+fields+`}`, withInternalToken())
	}
	wantViolations(t, report(`,"retry":2147483648`), "retry")
	wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/dispatch", `{"claims":[{"message_id":"`+m.ID.String()+`","retry":2147483648}]}`, withInternalToken()), "claims[0]")
	// A null or missing message_id is refused, not read as the nil UUID;
	// a null retry is the first try, as the document says.
	wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/dispatch", `{"claims":[{"message_id":null,"retry":0}]}`, withInternalToken()), "claims[0]")
	wantViolations(t, a.do(t, http.MethodPost, "/v1/internal/dispatch", `{"claims":[{"retry":0}]}`, withInternalToken()), "claims[0]")
	fresh := a.send(t, hello)
	if r := a.do(t, http.MethodPost, "/v1/internal/dispatch", `{"claims":[{"message_id":"`+fresh.ID.String()+`","retry":null}]}`, withInternalToken()); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"verdict":"send"`) {
		t.Fatalf("dispatch with retry null: %d %s", r.Status, r.Body)
	}
	wantViolations(t, report(`,"carrier_message_id":"a\u0000b"`), "carrier_message_id")
	wantViolations(t, report(`,"attempts":[{"attempt":1,"at":"2026-01-01T00:00:00Z","result":"accepted","error":"x\u0000"}]`), "attempts[0].error")
	wantViolations(t, report(`,"parts":[{"carrier_id":"\u0000","status":"DELIVERED"}]`), "parts[0].carrier_id")

	r := a.do(t, http.MethodPost, "/v1/internal/delivery-report",
		`{"message_id":"`+m.ID.String()+`","status":"SENT","processed_at":"2026-01-01T12:00:00+16:00","attempts":[{"attempt":1,"at":"2026-01-01T12:00:00-17:30","result":"accepted"}]}`, withInternalToken())
	want(t, r, http.StatusOK)
	if got := decodeAs[sms.ReportResult](t, r); got.Status != sms.StatusSent || !got.Applied {
		t.Errorf("a report at +16:00 answered %+v, want SENT applied", got)
	}

	other := a.send(t, hello)
	r = a.do(t, http.MethodPost, "/v1/internal/dispatch", map[string]any{"claims": []sms.Claim{
		{MessageID: other.ID}, {MessageID: m.ID, Retry: 0}, {MessageID: other.ID}, {MessageID: other.ID, Retry: 1}}}, withInternalToken())
	want(t, r, http.StatusOK)
	res := decodeAs[DispatchResponse](t, r).Results
	var got []string
	for _, x := range res {
		got = append(got, x.MessageID.String()[:4]+":"+string(x.Verdict))
	}
	o, mm := other.ID.String()[:4], m.ID.String()[:4]
	if w := []string{o + ":send", mm + ":skip", o + ":send", o + ":skip"}; strings.Join(got, " ") != strings.Join(w, " ") {
		t.Errorf("dispatch answered %v, want %v (one answer per claim, in order)", got, w)
	}

	// Sent around the contract check: the document's router, like echo's,
	// would take GET /v1/messages/batch for a message id.
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
		req, _ := http.NewRequest(method, a.url+"/v1/messages/batch", nil)
		req.Header.Set("Authorization", "Bearer "+a.key)
		res, err := a.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if allow := res.Header.Get("Allow"); res.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(allow, http.MethodPost) || strings.Contains(allow, http.MethodGet) {
			t.Errorf("%s /v1/messages/batch: %d, Allow %q; want 405 allowing POST", method, res.StatusCode, allow)
		}
	}
}
