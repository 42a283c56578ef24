package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

func TestOverview(t *testing.T) {
	t.Parallel()
	metrics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# TYPE sms_consumer_lag gauge
sms_consumer_lag{partition="0"} 5
sms_consumer_lag{partition="1"} 7
# TYPE sms_reports_waiting gauge
sms_reports_waiting 3
# TYPE sms_smpp_bind_up gauge
sms_smpp_bind_up{bind="0"} 1
sms_smpp_bind_up{bind="1"} 0
`)
	}))
	t.Cleanup(metrics.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(down.Close)
	en := newEnv(t, func(_ *Deps, c *Config) { c.ProcessorMetricsURLs = []string{metrics.URL, down.URL} })
	en.backlog.n.Store(1234)
	a, keyA := en.account(t, "alpha")
	bID, _ := en.account(t, "bravo")
	for _, m := range en.send(t, a, 4, "+4915100000900") {
		en.report(t, m.ID, sms.StatusSent, "")
		en.report(t, m.ID, sms.StatusDelivered, "")
	}
	en.failed(t, a)
	en.send(t, a, 2, "+4915100000901")
	en.send(t, bID, 5, "+4915100000902")

	b := en.browser(t)
	b.mustSignIn(keyA)
	p := b.get("/console")
	for _, want := range []string{
		`id="count-DELIVERED">4<`, `id="count-FAILED">1<`, `id="count-PENDING">2<`, // alpha's, not bravo's 5
		`id="success-rate">80.0%<`, `data-live="/console/live/overview"`, `<svg viewBox="0 0 600 160"`,
		"sent or delivered: 4", "failed, undelivered or expired: 1", "scheduled or pending: 2",
	} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("account overview lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "outbox-backlog") || strings.Contains(p.Body, "consumer-lag") {
		t.Error("an account sees the operators' pipeline figures")
	}
	if n := len(regexp.MustCompile(`<rect class="bar-`).FindAllString(p.Body, -1)); n < 1 || n > 3 {
		t.Errorf("the chart has %d bar parts, want the minute(s) of the test's messages", n)
	}

	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	p = op.get("/console/live/overview")
	for _, want := range []string{`id="count-PENDING">7<`, `id="outbox-backlog">1,234 waiting`, `id="consumer-lag">12 records`,
		`id="binds">1 of 2 bound`, "Processors scraped</dt><dd>1", down.URL + ": status 404", `id="webhook-queue">0 deliveries pending`} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("operator overview lacks %q", want)
		}
	}
	if strings.Contains(p.Body, "<html") {
		t.Error("the live part is a whole page")
	}
}

func TestBuildChart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 30, 30, 0, time.UTC)
	rows := []minuteCount{
		{Account: 1, Ago: 0, Status: sms.StatusPending, N: 3, Oldest: now.Add(-10 * time.Second)},
		{Account: 1, Ago: 0, Status: sms.StatusDelivered, N: 6, Oldest: now.Add(-20 * time.Second)},
		{Account: 1, Ago: 59, Status: sms.StatusFailed, N: 2, Oldest: now.Add(-59 * time.Minute)},
		{Account: 1, Ago: 30, Status: sms.StatusCanceled, N: 1, Oldest: now.Add(-30 * time.Minute)},
	}
	ch := buildChart(rows, now)
	last, first := ch.Bars[chartMinutes-1], ch.Bars[0]
	if last.Total != 9 || last.Counts != [4]int64{6, 0, 3, 0} || first.Counts != [4]int64{0, 2, 0, 0} {
		t.Errorf("bars: last %+v, first %+v", last, first)
	}
	if ch.Total != 12 || ch.Max != 10 || !ch.HasRate || ch.SuccessRate != 75 || ch.Truncated {
		t.Errorf("chart: total %d, scale %d, rate %v %.1f, truncated %v; want 12, 10, 75%%, not truncated", ch.Total, ch.Max, ch.HasRate, ch.SuccessRate, ch.Truncated)
	}
	// Stacked bottom up, heights to scale: 6/10 and 3/10 of 160.
	if len(last.Rects) != 2 || last.Rects[0] != (rect{Class: "bar-ok", Y: 64, Height: 96}) || last.Rects[1] != (rect{Class: "bar-wait", Y: 16, Height: 48}) {
		t.Errorf("last bar's rects: %+v", last.Rects)
	}
	busy := buildChart([]minuteCount{{Account: 1, Ago: 0, Status: sms.StatusSent, N: chartLimit, Oldest: now.Add(-5 * time.Minute)}}, now)
	if !busy.Truncated || !busy.Since.Equal(now.Add(-5*time.Minute)) {
		t.Errorf("a chart that read its limit: truncated %v since %v, want since 5 minutes ago", busy.Truncated, busy.Since)
	}
	for n, want := range map[int64]int64{0: 0, 1: 1, 3: 5, 10: 10, 11: 20, 999: 1000} {
		if got := niceCeil(n); got != want {
			t.Errorf("niceCeil(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestTablesOfOtherFeatures(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	a, keyA := en.account(t, "alpha")
	bID, _ := en.account(t, "bravo")
	b := en.browser(t)
	b.mustSignIn(keyA)
	// Issue 16's migration (00008) makes these tables; without it the
	// pages say they are not installed, and stand-ins with its columns
	// take their place here.
	if t0, err := en.console.read.table(t.Context(), "inbound_messages"); err != nil || !t0.exists {
		for path, want := range map[string]string{"/console/inbound": "no sms.inbound_messages table", "/console/numbers": "no numbers table"} {
			if p := b.get(path); p.Status != http.StatusOK || !strings.Contains(p.Body, want) {
				t.Errorf("GET %s without its table: %d, want 200 saying %q", path, p.Status, want)
			}
		}
	}
	for _, ddl := range []string{`
        CREATE TABLE IF NOT EXISTS sms.inbound_messages (id uuid PRIMARY KEY, account_id bigint, sender text NOT NULL,
            recipient text NOT NULL, text text NOT NULL, received_at timestamptz NOT NULL, carrier_message_id text NOT NULL)`, `
        CREATE TABLE IF NOT EXISTS sms.numbers (number text PRIMARY KEY, account_id bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
		`ALTER TABLE sms.numbers ADD COLUMN webhook_secret text`} {
		if _, err := en.db.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
	_, err := en.db.Exec(`
        INSERT INTO sms.inbound_messages (id, account_id, sender, recipient, text, carrier_message_id, received_at) VALUES
            (gen_random_uuid(), $1, '+4915100001001', '+4930000001', 'hello alpha', 'c1', now() - interval '1 minute'),
            (gen_random_uuid(), $1, '+4915100001002', '+4930000001', 'STOP', 'c2', now()),
            (gen_random_uuid(), $2, '+4915100001003', '+4930000002', 'hello bravo', 'c3', now()),
            (gen_random_uuid(), NULL, '+4915100001004', '+4930000009', 'to nobody', 'c4', now())`, a, bID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := en.db.Exec(`INSERT INTO sms.numbers (account_id, number, webhook_secret) VALUES ($1, '+4930000001', 'whsec_zzz'), ($2, '+4930000002', 'whsec_yyy')`, a, bID); err != nil {
		t.Fatal(err)
	}
	en.console.read.mu.Lock()
	clear(en.console.read.tables) // as after a minute
	en.console.read.mu.Unlock()
	p := b.get("/console/inbound")
	if !strings.Contains(p.Body, "<th scope=\"col\">sender</th>") || strings.Contains(p.Body, ">account_id<") {
		t.Error("inbound page: columns not shown as the table has them (account_id hidden)")
	}
	if strings.Index(p.Body, "STOP") > strings.Index(p.Body, "hello alpha") {
		t.Error("inbound page: not newest first")
	}
	if strings.Contains(p.Body, "hello bravo") || strings.Contains(p.Body, "to nobody") {
		t.Error("inbound page shows another account's or unrouted messages to an account")
	}
	p = b.get("/console/numbers")
	if !strings.Contains(p.Body, "+4930000001") || strings.Contains(p.Body, "+4930000002") || strings.Contains(p.Body, "whsec_") {
		t.Errorf("numbers page: not the account's own, or a secret shown\n%s", p.Body)
	}
	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	p = op.get("/console/inbound?unrouted=1")
	if !strings.Contains(p.Body, "to nobody") || strings.Contains(p.Body, "hello alpha") {
		t.Error("operator's unrouted inbound messages are not those to nobody's number")
	}
	if p := op.get("/console/inbound"); !strings.Contains(p.Body, "hello bravo") || !strings.Contains(p.Body, "hello alpha") || strings.Contains(p.Body, "to nobody") {
		t.Error("operator's inbound messages of every account: some missing, or unrouted ones mixed in")
	}
}

func TestWebhookScreens(t *testing.T) {
	t.Parallel()
	woken := make(chan struct{}, 10)
	en := newEnv(t, func(d *Deps, _ *Config) { d.WakeWebhooks = func() { woken <- struct{}{} } })
	a, keyA := en.account(t, "alpha")
	b := en.browser(t)
	b.mustSignIn(keyA)
	b.get("/console/webhooks")
	bad := b.post("/console/webhooks", b.withCSRF(url.Values{"url": {"ftp://x"}}))
	if bad.Status != http.StatusUnprocessableEntity || !strings.Contains(bad.Body, `id="url-err"`) {
		t.Errorf("endpoint with a bad URL: %d, want 422 naming the url", bad.Status)
	}
	p := b.post("/console/webhooks", b.withCSRF(url.Values{"url": {"http://127.0.0.1:9/hook"}, "description": {"ops"},
		"event_types": {"message.delivered", "message.failed"}}))
	secret := regexp.MustCompile(`value="(whsec_[^"]+)"`).FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || secret == nil {
		t.Fatalf("create endpoint: %d, no secret shown", p.Status)
	}
	eps, err := en.webhooks.Endpoints(t.Context(), a)
	if err != nil || len(eps) != 1 || len(eps[0].EventTypes) != 2 {
		t.Fatalf("endpoints after creation: %+v, %v", eps, err)
	}
	ep := eps[0]
	if strings.Contains(b.get("/console/webhooks/"+ep.ID.String()).Body, secret[1]) {
		t.Error("the endpoint page shows the secret again")
	}
	if r := b.post("/console/webhooks/"+ep.ID.String()+"/test", b.withCSRF(nil)); r.Status != http.StatusSeeOther {
		t.Fatalf("test event: %d", r.Status)
	}
	<-woken
	var queued int
	if err := en.db.Get(&queued, `SELECT count(*) FROM sms.webhook_deliveries WHERE endpoint_id = $1 AND event_type = 'webhook.test'`, ep.ID); err != nil || queued != 1 {
		t.Errorf("test deliveries queued: %d (%v), want 1", queued, err)
	}
	r := b.post("/console/webhooks/"+ep.ID.String()+"/rotate", b.withCSRF(nil))
	rotated := regexp.MustCompile(`value="(whsec_[^"]+)"`).FindStringSubmatch(r.Body)
	if rotated == nil || rotated[1] == secret[1] {
		t.Error("rotation shows no new secret")
	}
	// A failed message's delivery shows on the message's page.
	m := en.failed(t, a)
	mp := b.get("/console/messages/" + m.ID.String())
	if !strings.Contains(mp.Body, "Webhook deliveries") || !strings.Contains(mp.Body, "message.failed") || !strings.Contains(mp.Body, "/console/webhooks/"+ep.ID.String()) {
		t.Error("the message page does not list its webhook delivery")
	}
	if r := b.post("/console/webhooks/"+ep.ID.String()+"/replay", b.withCSRF(url.Values{"since": {time.Now().Add(-time.Hour).UTC().Format(formTime)}})); r.Status != http.StatusSeeOther || !strings.Contains(r.Location, "queued=") {
		t.Errorf("replay: %d to %q", r.Status, r.Location)
	}
	if r := b.post("/console/webhooks/"+ep.ID.String()+"/disable", b.withCSRF(nil)); r.Status != http.StatusSeeOther {
		t.Errorf("disable: %d", r.Status)
	}
	if got, _ := en.webhooks.Endpoint(t.Context(), a, ep.ID); got.Enabled {
		t.Error("the endpoint is still enabled")
	}
	if r := b.post("/console/webhooks/"+ep.ID.String()+"/delete", b.withCSRF(nil)); r.Status != http.StatusSeeOther {
		t.Errorf("delete: %d", r.Status)
	}
	if _, err := en.webhooks.Endpoint(t.Context(), a, ep.ID); err == nil {
		t.Error("the endpoint still exists")
	}

	// Without a webhook store, the screens say so.
	none := newEnv(t, func(d *Deps, _ *Config) { d.Webhooks, d.URLGuard = nil, nil })
	_, key := none.account(t, "x")
	nb := none.browser(t)
	nb.mustSignIn(key)
	if p := nb.get("/console/webhooks"); !strings.Contains(p.Body, "not enabled") {
		t.Error("webhooks page without a store does not say they are off")
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	dlq, requests := platformtest.UniqueTopic("dlq"), platformtest.UniqueTopic("requests")
	brokers := platformtest.KafkaBrokers(t, dlq, requests, requests+".high", requests+".low")
	cl, err := platform.NewKafkaClient(brokers, zerolog.Nop(), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := platform.EnsureTopics(ctx, cl, 2, 1, dlq, requests, requests+".high", requests+".low"); err != nil {
		t.Fatal(err)
	}
	dl := NewKafkaDeadLetters(cl, brokers, dlq, requests, zerolog.Nop())
	en := newEnv(t, func(d *Deps, _ *Config) { d.DeadLetters = dl })
	acc, _ := en.account(t, "acme")
	m := en.failed(t, acc)
	value := fmt.Sprintf(`{"message_id":%q,"sender":"ACME","recipient":"+4915100000042","text":"x","encoding":"GSM7","segments":1}`, m.ID)
	recs := []*kgo.Record{
		{Topic: dlq, Key: []byte("+4915100000042"), Value: []byte(value), Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
			{Key: "error", Value: []byte("exhausted: 4 attempts, last error: connection refused")},
			{Key: "original_topic", Value: []byte(requests + ".high")}, {Key: "original_partition", Value: []byte("1")},
			{Key: "original_offset", Value: []byte("17")}}},
		{Topic: dlq, Key: []byte("k"), Value: []byte("not json"), Headers: []kgo.RecordHeader{
			{Key: "error", Value: []byte("poison: invalid character")}, {Key: "original_topic", Value: []byte("elsewhere")}}},
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	p := op.get("/console/dead-letters")
	for _, want := range []string{"exhausted: 4 attempts, last error: connection refused", "poison: invalid character",
		"/console/messages/" + m.ID.String(), ">FAILED<", "not a send request", "holds 2 records", "from " + requests + ".high 1/17"} {
		if !strings.Contains(p.Body, want) {
			t.Errorf("dead-letter page lacks %q", want)
		}
	}
	for i, rec := range recs {
		r := op.post("/console/dead-letters/redrive", op.withCSRF(url.Values{"partition": {fmt.Sprint(rec.Partition)}, "offset": {fmt.Sprint(rec.Offset)}}))
		if r.Status != http.StatusSeeOther {
			t.Fatalf("re-drive %d: %d\n%s", i, r.Status, r.Body)
		}
	}
	if r := op.post("/console/dead-letters/redrive", op.withCSRF(url.Values{"partition": {"0"}, "offset": {"999"}})); r.Status != http.StatusNotFound {
		t.Errorf("re-drive of no record: %d, want 404", r.Status)
	}
	// Each copy went to its request topic (the normal lane when the header
	// names no request topic), without the error headers.
	got := map[string]*kgo.Record{}
	cons, err := platform.NewKafkaClient(brokers, zerolog.Nop(), kgo.ConsumeTopics(requests, requests+".high"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	for len(got) < 2 && ctx.Err() == nil {
		cons.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[string(r.Value)] = r })
	}
	first, second := got[value], got["not json"]
	if first == nil || second == nil {
		t.Fatalf("re-driven records: %d of 2", len(got))
	}
	if first.Topic != requests+".high" || second.Topic != requests {
		t.Errorf("re-driven to %s and %s, want %s.high and %s", first.Topic, second.Topic, requests, requests)
	}
	hdr := func(r *kgo.Record) map[string]string {
		out := map[string]string{}
		for _, h := range r.Headers {
			out[h.Key] = string(h.Value)
		}
		return out
	}
	h := hdr(first)
	if h["error"] != "" || h["original_topic"] != "" || h["traceparent"] == "" || h["redriven_from"] != fmt.Sprintf("%s/%d/%d", dlq, recs[0].Partition, recs[0].Offset) {
		t.Errorf("re-driven headers: %v", h)
	}
	if string(first.Key) != "+4915100000042" {
		t.Errorf("re-driven key %q", first.Key)
	}

	// Accounts don't see the view, and without Kafka it says it is off.
	_, key := en.account(t, "acme")
	b := en.browser(t)
	b.mustSignIn(key)
	if p := b.get("/console/dead-letters"); p.Status != http.StatusNotFound {
		t.Errorf("account on the dead-letter view: %d, want 404", p.Status)
	}
	off := newEnv(t)
	ob := off.browser(t)
	ob.mustSignIn(testAdminToken)
	if p := ob.get("/console/dead-letters"); !strings.Contains(p.Body, "not configured") {
		t.Error("dead-letter view without Kafka does not say it is off")
	}
}
