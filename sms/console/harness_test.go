package console

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	smshttp "github.com/smsctl/smsctl/sms/http"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/smstest"
	"github.com/smsctl/smsctl/sms/webhook"
)

func TestMain(m *testing.M) {
	if os.Getenv("SMS_TEST_NO_GOLEAK") != "" {
		os.Exit(m.Run())
	}
	// Every test stops what it started: servers, writers, pools, browsers.
	goleak.VerifyTestMain(m)
}

const testAdminToken = "admin-token-for-console-tests"

// fakeBacklog stands for the outbox relay.
type fakeBacklog struct {
	n     atomic.Int64
	wakes atomic.Int64
}

func (b *fakeBacklog) Backlog() int64 { return b.n.Load() }
func (b *fakeBacklog) Wake()          { b.wakes.Add(1) }

// clock is the console's clock in tests: real time plus an offset a test
// moves forward.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time           { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration)  { c.offset.Add(int64(d)) }
func (c *clock) Set(offset time.Duration) { c.offset.Store(int64(offset)) }

// env is a console on a fresh database, served by an httptest server.
type env struct {
	db       *sqlx.DB
	store    *postgres.Store
	keys     *postgres.Keys
	webhooks *postgres.Webhooks
	console  *Console
	e        *echo.Echo
	srv      *httptest.Server
	clock    *clock
	backlog  *fakeBacklog
}

type envOption func(*Deps, *Config)

func newEnv(tb testing.TB, opts ...envOption) *env {
	tb.Helper()
	db := platformtest.NewDB(tb)
	store := postgres.NewStore(db)
	writer := postgres.NewWriter(store, 2, 100, prometheus.NewRegistry())
	if err := writer.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(writer.Stop)
	keys := postgres.NewKeys(db, 0)
	en := &env{db: db, store: store, keys: keys, webhooks: postgres.NewWebhooks(db), clock: &clock{}, backlog: &fakeBacklog{}}
	deps := Deps{DB: db, Store: store, Sender: writer, Keys: keys, Backlog: en.backlog,
		Webhooks: en.webhooks, URLGuard: webhook.Guard{AllowPrivate: true}, Log: zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.WarnLevel)}
	cfg := Config{SessionKey: DeriveSessionKey("console tests"), AdminToken: testAdminToken,
		RefreshInterval: 200 * time.Millisecond, Now: en.clock.Now, LoginBurst: 1000, LoginRate: 1000}
	for _, o := range opts {
		o(&deps, &cfg)
	}
	c, err := New(deps, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.read.keyTTL = 0 // revocations take effect at once in tests
	en.console = c
	en.e = platform.NewEcho(zerolog.Nop(), smshttp.ProblemFor)
	c.Register(en.e)
	en.srv = httptest.NewServer(en.e)
	tb.Cleanup(en.srv.Close)
	return en
}

// account creates an account with a key and returns its id and the key.
func (en *env) account(tb testing.TB, name string) (int64, string) {
	tb.Helper()
	key, _, err := en.keys.CreateKey(context.Background(), name)
	if err != nil {
		tb.Fatal(err)
	}
	id, err := en.keys.Authenticate(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return id, key
}

// send stores messages for account as the API does.
func (en *env) send(tb testing.TB, account int64, n int, recipient string) []sms.Message {
	tb.Helper()
	in := make([]sms.NewMessage, n)
	for i := range in {
		in[i] = sms.NewMessage{AccountID: account, Draft: smstest.Draft("+4915100000001", recipient, "hello from the tests")}
	}
	msgs, err := en.store.Insert(context.Background(), in)
	if err != nil {
		tb.Fatal(err)
	}
	return msgs
}

// scheduled stores a message due in an hour.
func (en *env) scheduled(tb testing.TB, account int64) sms.Message {
	tb.Helper()
	d := smstest.Draft("+4915100000001", "+4915100000099", "later")
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	d.SendAt = &at
	msgs, err := en.store.Insert(context.Background(), []sms.NewMessage{{AccountID: account, Draft: d}})
	if err != nil {
		tb.Fatal(err)
	}
	return msgs[0]
}

// report applies a delivery report as the processor's would be.
func (en *env) report(tb testing.TB, id uuid.UUID, st sms.Status, reason string) {
	tb.Helper()
	r := sms.DeliveryReport{MessageID: id, Status: st, ProcessedAt: time.Now().UTC()}
	if reason != "" {
		r.FailureReason = &reason
	}
	if _, err := en.store.ApplyReports(context.Background(), []sms.DeliveryReport{r}); err != nil {
		tb.Fatal(err)
	}
}

// failed stores a message and makes it FAILED.
func (en *env) failed(tb testing.TB, account int64) sms.Message {
	tb.Helper()
	m := en.send(tb, account, 1, "+4915100000042")[0]
	en.report(tb, m.ID, sms.StatusFailed, "exhausted: 4 attempts, last error: connection refused")
	return m
}

func (en *env) status(tb testing.TB, id uuid.UUID) sms.Status {
	tb.Helper()
	var st sms.Status
	if err := en.db.Get(&st, `SELECT status FROM sms.messages WHERE id = $1`, id); err != nil {
		tb.Fatal(err)
	}
	return st
}

// browser is an HTTP client with cookies that doesn't follow redirects.
type browser struct {
	tb   testing.TB
	base string
	hc   *http.Client
	csrf string
}

func (en *env) browser(tb testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: en.srv.Client().Transport, Jar: jar}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &browser{tb: tb, base: en.srv.URL, hc: hc}
}

type page struct {
	Status int
	Header http.Header
	// Body is the answer with HTML's character references decoded (so
	// that "+49…" is found as it reads), Raw as it came.
	Body, Raw string
	Location  string
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) do(req *http.Request) page {
	b.tb.Helper()
	resp, err := b.hc.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p := page{Status: resp.StatusCode, Header: resp.Header, Body: html.UnescapeString(string(body)), Raw: string(body),
		Location: resp.Header.Get("Location")}
	if m := csrfField.FindStringSubmatch(p.Raw); m != nil && !strings.Contains(req.URL.Path, "/login") {
		b.csrf = m[1]
	}
	return p
}

func (b *browser) get(path string) page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	if err != nil {
		b.tb.Fatal(err)
	}
	return b.do(req)
}

// post sends form; with csrf set, the last page's CSRF token is added.
func (b *browser) post(path string, form url.Values, headers ...string) page {
	b.tb.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		b.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

// withCSRF adds the browser's current CSRF token to form.
func (b *browser) withCSRF(form url.Values) url.Values {
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", b.csrf)
	return form
}

// signIn signs in with secret and returns the sign-in's answer.
func (b *browser) signIn(secret string) page {
	b.tb.Helper()
	login := b.get("/console/login")
	m := csrfField.FindStringSubmatch(login.Body)
	if m == nil {
		b.tb.Fatalf("sign-in page has no CSRF token: %d %s", login.Status, login.Body)
	}
	return b.post("/console/login", url.Values{"csrf": {m[1]}, "secret": {secret}, "next": {"/console"}})
}

// mustSignIn signs in and loads the overview (which sets the CSRF token).
func (b *browser) mustSignIn(secret string) {
	b.tb.Helper()
	if p := b.signIn(secret); p.Status != http.StatusSeeOther || p.Location != "/console" {
		b.tb.Fatalf("sign in: %d to %q, want 303 to /console\n%s", p.Status, p.Location, p.Body)
	}
	if p := b.get("/console"); p.Status != http.StatusOK {
		b.tb.Fatalf("overview after sign-in: %d", p.Status)
	}
}
