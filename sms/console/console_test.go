package console

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
	"github.com/smsctl/smsctl/sms/webhook"
)

// loginRequest runs the sign-in form through the handler directly, with
// edit applied to both requests (TLS, proxy headers), and returns the
// answer to the POST.
func loginRequest(t *testing.T, en *env, secret string, edit func(*http.Request)) *http.Response {
	t.Helper()
	get := httptest.NewRequest(http.MethodGet, "/console/login", nil)
	edit(get)
	rec := httptest.NewRecorder()
	en.e.ServeHTTP(rec, get)
	m := csrfField.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("no CSRF token on the sign-in page: %d", rec.Code)
	}
	form := url.Values{"csrf": {m[1]}, "secret": {secret}, "next": {"/console"}}
	post := httptest.NewRequest(http.MethodPost, "/console/login", strings.NewReader(form.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, ck := range rec.Result().Cookies() {
		post.AddCookie(ck)
	}
	edit(post)
	rec = httptest.NewRecorder()
	en.e.ServeHTTP(rec, post)
	return rec.Result()
}

func cookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, ck := range resp.Cookies() {
		if ck.Name == name {
			return ck
		}
	}
	return nil
}

func TestSessionCookieFlags(t *testing.T) {
	t.Parallel()
	plain := newEnv(t)
	proxied := newEnv(t, func(_ *Deps, c *Config) { c.TrustForwardedProto = true })
	_, key := plain.account(t, "acme")
	_, key2 := proxied.account(t, "acme")
	tlsConn := func(r *http.Request) { r.TLS = &tls.ConnectionState{} }
	forwarded := func(r *http.Request) { r.Header.Set("X-Forwarded-Proto", "https") }
	cases := []struct {
		name   string
		en     *env
		key    string
		edit   func(*http.Request)
		cookie string
		secure bool
		path   string
	}{
		{"plain HTTP", plain, key, func(*http.Request) {}, cookiePlain, false, "/console"},
		{"TLS", plain, key, tlsConn, cookieSecure, true, "/"},
		{"X-Forwarded-Proto not trusted", plain, key, forwarded, cookiePlain, false, "/console"},
		{"X-Forwarded-Proto trusted", proxied, key2, forwarded, cookieSecure, true, "/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := loginRequest(t, tc.en, tc.key, tc.edit)
			if resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("sign-in answered %d, want 303", resp.StatusCode)
			}
			ck := cookieNamed(resp, tc.cookie)
			if ck == nil {
				t.Fatalf("no %s cookie in %v", tc.cookie, resp.Header["Set-Cookie"])
			}
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != tc.secure || ck.Path != tc.path {
				t.Errorf("cookie %s: HttpOnly=%v SameSite=%v Secure=%v Path=%q; want HttpOnly, Strict, Secure=%v, Path %q",
					ck.Name, ck.HttpOnly, ck.SameSite, ck.Secure, ck.Path, tc.secure, tc.path)
			}
			if ck.MaxAge <= 0 || ck.MaxAge > int((12*time.Hour).Seconds()) {
				t.Errorf("cookie Max-Age %d, want within the session's 12 h", ck.MaxAge)
			}
			if strings.Contains(ck.Value, tc.key) || strings.Contains(ck.Value, testAdminToken) {
				t.Error("the session cookie holds the secret it signed in with")
			}
		})
	}
}

func TestSignInRefusals(t *testing.T) {
	t.Parallel()
	en := newEnv(t, func(_ *Deps, c *Config) { c.LoginBurst, c.LoginRate = 3, 0.001 })
	_, key := en.account(t, "acme")
	_, revoked := en.account(t, "acme")
	if _, err := en.db.Exec(`UPDATE sms.api_keys SET revoked_at = now() WHERE id = (SELECT max(id) FROM sms.api_keys)`); err != nil {
		t.Fatal(err)
	}
	b := en.browser(t)
	for _, secret := range []string{"sms_00000000_" + strings.Repeat("0", 48), "not a key", revoked} {
		p := b.signIn(secret)
		if p.Status != http.StatusUnauthorized || !strings.Contains(p.Body, "not valid") {
			t.Errorf("sign-in with %.12s…: %d, want 401 saying it is not valid", secret, p.Status)
		}
		if p.Header.Get("Set-Cookie") != "" && strings.Contains(strings.Join(p.Header["Set-Cookie"], ";"), cookiePlain+"=") {
			t.Errorf("a failed sign-in set a session cookie: %v", p.Header["Set-Cookie"])
		}
	}
	// Three failures spent the burst: even the right key waits now.
	if p := b.signIn(key); p.Status != http.StatusTooManyRequests || p.Header.Get("Retry-After") == "" {
		t.Errorf("sign-in past the failure burst: %d (Retry-After %q), want 429 with Retry-After", p.Status, p.Header.Get("Retry-After"))
	}

	// The sign-in form needs its nonce cookie and token.
	fresh := en.browser(t)
	p := fresh.post("/console/login", url.Values{"secret": {key}, "csrf": {"forged"}})
	if p.Status != http.StatusForbidden {
		t.Errorf("sign-in without the form's token: %d, want 403", p.Status)
	}
	// No operator sign-in without an admin token configured.
	noAdmin := newEnv(t, func(_ *Deps, c *Config) { c.AdminToken = "" })
	if p := noAdmin.browser(t).signIn(testAdminToken); p.Status != http.StatusUnauthorized {
		t.Errorf("admin token on a console without one: %d, want 401", p.Status)
	}
}

func TestPagesNeedASession(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	m := en.send(t, acc, 1, "+4915100000002")[0]
	paths := []string{"/console", "/console/messages", "/console/messages/" + m.ID.String(), "/console/send", "/console/scheduled",
		"/console/failed", "/console/keys", "/console/webhooks", "/console/numbers", "/console/suppressions", "/console/inbound",
		"/console/accounts", "/console/dead-letters"}
	anon := en.browser(t)
	for _, p := range paths {
		got := anon.get(p)
		if got.Status != http.StatusSeeOther || !strings.HasPrefix(got.Location, "/console/login?next=") {
			t.Errorf("GET %s without a session: %d to %q, want 303 to the sign-in page", p, got.Status, got.Location)
		}
	}
	for _, p := range []string{"/console/live/overview", "/console/live/messages/" + m.ID.String()} {
		if got := anon.get(p); got.Status != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401", p, got.Status)
		}
	}
	if got := anon.post("/console/messages/"+m.ID.String()+"/cancel", url.Values{}); got.Status != http.StatusSeeOther || en.status(t, m.ID) != sms.StatusPending {
		t.Errorf("POST cancel without a session: %d, status %s; want 303 to sign in and nothing canceled", got.Status, en.status(t, m.ID))
	}

	b := en.browser(t)
	b.mustSignIn(key)
	if got := b.get("/console/messages"); got.Status != http.StatusOK {
		t.Fatalf("messages with a session: %d", got.Status)
	}
	// The sign-in page sends a signed-in browser on.
	if got := b.get("/console/login?next=/console/keys"); got.Status != http.StatusSeeOther || got.Location != "/console/keys" {
		t.Errorf("sign-in page when signed in: %d to %q, want 303 to /console/keys", got.Status, got.Location)
	}
	// Idle too long: out. (Live refreshes don't count as use.)
	en.clock.Advance(59 * time.Minute)
	if got := b.get("/console/live/overview"); got.Status != http.StatusOK {
		t.Fatalf("live part within the idle limit: %d", got.Status)
	}
	en.clock.Advance(2 * time.Minute)
	if got := b.get("/console"); got.Status != http.StatusSeeOther {
		t.Errorf("page after 61 idle minutes: %d, want 303 to sign in", got.Status)
	}

	// Used all along, but past the absolute limit: out.
	en.clock.Set(0)
	b2 := en.browser(t)
	b2.mustSignIn(key)
	for i := 0; i < 13; i++ { // 11 h 55 min of use, never idle
		en.clock.Advance(55 * time.Minute)
		if got := b2.get("/console"); got.Status != http.StatusOK {
			t.Fatalf("page %d after %v of use: %d", i, time.Duration(en.clock.offset.Load()), got.Status)
		}
	}
	en.clock.Advance(10 * time.Minute)
	if got := b2.get("/console"); got.Status != http.StatusSeeOther {
		t.Errorf("page 12 h 5 min after sign-in: %d, want 303 to sign in", got.Status)
	}
}

func TestNextNeverLeavesTheConsole(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"/console/keys": "/console/keys", "/console/messages?status=FAILED": "/console/messages?status=FAILED",
		"//evil.example/": "/console", "https://evil.example/": "/console", "/console\\@evil": "/console",
		"/console/live/overview": "/console", "/console/login?next=x": "/console", "": "/console", "/v1/messages": "/console",
		"/console/x\r\nSet-Cookie: a=b": "/console",
	} {
		if got := localPath(next); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestNewChecksItsConfig(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	deps := en.console.d
	for name, cfg := range map[string]Config{
		"short session key": {SessionKey: []byte("short")},
		"short admin token": {SessionKey: DeriveSessionKey("x"), AdminToken: "short"},
	} {
		if _, err := New(deps, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	noGuard := deps
	noGuard.URLGuard = nil
	if _, err := New(noGuard, Config{SessionKey: DeriveSessionKey("x")}); err == nil {
		t.Error("webhooks without a URL guard: accepted")
	}
	if a, b := DeriveSessionKey("a", "bc"), DeriveSessionKey("ab", "c"); string(a) == string(b) || len(a) < MinSessionKey {
		t.Error("DeriveSessionKey: secrets run together, or the key is short")
	}
}

func TestTamperedSessionIsRefused(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	other, _ := en.account(t, "other")
	b := en.browser(t)
	b.mustSignIn(key)
	value := sessionValue(t, b)
	s, err := en.console.decodeSession(value)
	if err != nil || s.Account != acc {
		t.Fatalf("own cookie: %v, account %d", err, s.Account)
	}
	// The same payload for another account, or as an operator, signed with
	// a guessed key.
	s.Account = other
	forged := &Console{cfg: Config{SessionKey: DeriveSessionKey("a guess")}.WithDefaults()}
	bad, _ := forged.encodeSession(s)
	payload, _, _ := strings.Cut(bad, ".")
	_, mac, _ := strings.Cut(value, ".")
	for name, v := range map[string]string{"wrong key": bad, "payload swapped": payload + "." + mac, "no MAC": payload, "garbage": "x.y"} {
		if _, err := en.console.decodeSession(v); err == nil {
			t.Errorf("%s: accepted", name)
		}
		req := httptest.NewRequest(http.MethodGet, "/console", nil)
		req.AddCookie(&http.Cookie{Name: cookiePlain, Value: v})
		rec := httptest.NewRecorder()
		en.e.ServeHTTP(rec, req)
		if rec.Code != http.StatusSeeOther {
			t.Errorf("%s: GET /console answered %d, want 303 to sign in", name, rec.Code)
		}
	}
}

func TestRevokedKeyOrNewAdminTokenEndsSession(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	_, key := en.account(t, "acme")
	b := en.browser(t)
	b.mustSignIn(key)
	prefix, _ := sms.KeyPrefix(key)
	if _, err := en.db.Exec(`UPDATE sms.api_keys SET revoked_at = now() WHERE prefix = $1`, prefix); err != nil {
		t.Fatal(err)
	}
	if got := b.get("/console/messages"); got.Status != http.StatusSeeOther {
		t.Errorf("page after the session's key was revoked: %d, want 303 to sign in", got.Status)
	}

	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	// Another replica with the same session key but a new admin token.
	rotated := newEnv(t, func(_ *Deps, c *Config) { c.AdminToken = "a-new-admin-token-0123456789" })
	for _, target := range []*env{en, rotated} {
		req := httptest.NewRequest(http.MethodGet, "/console/accounts", nil)
		req.AddCookie(&http.Cookie{Name: cookiePlain, Value: sessionValue(t, op)})
		rec := httptest.NewRecorder()
		target.e.ServeHTTP(rec, req)
		want := http.StatusOK
		if target == rotated {
			want = http.StatusSeeOther
		}
		if rec.Code != want {
			t.Errorf("operator session on a console whose admin token is %s: %d, want %d", target.console.cfg.AdminToken[:5], rec.Code, want)
		}
	}
}

// sessionValue is the browser's session cookie.
func sessionValue(t *testing.T, b *browser) string {
	t.Helper()
	u, _ := url.Parse(b.base + "/console")
	for _, ck := range b.hc.Jar.Cookies(u) {
		if ck.Name == cookiePlain {
			return ck.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

var (
	scriptTag   = regexp.MustCompile(`(?i)<script[^>]*>`)
	inlineStyle = regexp.MustCompile(`(?i)<style|\sstyle=`)
	inlineEvent = regexp.MustCompile(`(?i)\son[a-z]+=`)
)

func TestSecurityHeadersAndNoInlineCode(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	m := en.failed(t, acc)
	anon := en.browser(t)
	b := en.browser(t)
	b.mustSignIn(key)
	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	type req struct {
		who  *browser
		path string
	}
	reqs := []req{{anon, "/console/login"}, {anon, "/console/static/console.css"}, {anon, "/console/static/console.js"},
		{anon, "/console/nope"}, {anon, "/console/static/nope.js"}, {anon, "/console"}}
	for _, p := range []string{"/console", "/console/messages", "/console/messages/" + m.ID.String(), "/console/live/overview",
		"/console/live/messages/" + m.ID.String(), "/console/send", "/console/scheduled", "/console/failed", "/console/keys",
		"/console/webhooks", "/console/numbers", "/console/suppressions", "/console/inbound", "/console/messages/" + uuid.NewString(),
		"/console/accounts"} {
		reqs = append(reqs, req{b, p})
	}
	for _, p := range []string{"/console", "/console/accounts", "/console/dead-letters", "/console/messages", "/console/keys", "/console/send"} {
		reqs = append(reqs, req{op, p})
	}
	for _, r := range reqs {
		p := r.who.get(r.path)
		h := p.Header
		if h.Get("Content-Security-Policy") != ContentSecurityPolicy {
			t.Errorf("GET %s (%d): CSP %q", r.path, p.Status, h.Get("Content-Security-Policy"))
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") == "" {
			t.Errorf("GET %s: missing security headers: %v", r.path, h)
		}
		if !strings.HasPrefix(r.path, "/console/static/") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", r.path, h.Get("Cache-Control"))
		}
		if strings.HasPrefix(h.Get("Content-Type"), "text/html") {
			for _, tag := range scriptTag.FindAllString(p.Raw, -1) {
				if !strings.Contains(tag, " src=") {
					t.Errorf("GET %s: inline script %q", r.path, tag)
				}
			}
			if loc := inlineStyle.FindString(p.Raw); loc != "" {
				t.Errorf("GET %s: inline style %q", r.path, loc)
			}
			if loc := inlineEvent.FindString(p.Raw); loc != "" {
				t.Errorf("GET %s: inline event handler %q", r.path, loc)
			}
		}
	}
	// Assets carry their types (a script served as text/plain is refused
	// under nosniff).
	for path, want := range map[string]string{"/console/static/console.css": "text/css", "/console/static/console.js": "text/javascript"} {
		if got := anon.get(path).Header.Get("Content-Type"); !strings.HasPrefix(got, want) {
			t.Errorf("GET %s: Content-Type %q, want %s", path, got, want)
		}
	}
	if got := anon.get("/console/nope"); got.Status != http.StatusNotFound || !strings.Contains(got.Header.Get("Content-Type"), "text/html") {
		t.Errorf("unknown console path: %d %s, want an HTML 404", got.Status, got.Header.Get("Content-Type"))
	}
}

func TestFormsNeedTheirCSRFToken(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	m := en.failed(t, acc)
	b := en.browser(t)
	b.mustSignIn(key)
	other := en.browser(t)
	other.mustSignIn(key) // the same account, another sign-in: another token
	if other.csrf == b.csrf {
		t.Fatal("two sign-ins share a CSRF token")
	}
	retry := "/console/messages/" + m.ID.String() + "/retry"
	cases := []struct {
		name    string
		form    url.Values
		headers []string
	}{
		{"no token", url.Values{}, nil},
		{"wrong token", url.Values{"csrf": {"AAAA"}}, nil},
		{"another session's token", url.Values{"csrf": {other.csrf}}, nil},
		{"right token, cross-site", url.Values{"csrf": {b.csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"right token, foreign Origin", url.Values{"csrf": {b.csrf}}, []string{"Origin", "https://evil.example"}},
	}
	for _, tc := range cases {
		p := b.post(retry, tc.form, tc.headers...)
		if p.Status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, p.Status)
		}
		if st := en.status(t, m.ID); st != sms.StatusFailed {
			t.Fatalf("%s: the message is %s, want FAILED (untouched)", tc.name, st)
		}
	}
	for _, path := range []string{"/console/logout", "/console/keys", "/console/send", "/console/failed/retry", "/console/scheduled/cancel"} {
		if p := b.post(path, url.Values{"csrf": {"nope"}}); p.Status != http.StatusForbidden {
			t.Errorf("POST %s with a wrong token: %d, want 403", path, p.Status)
		}
	}
	p := b.post(retry, b.withCSRF(nil), "Sec-Fetch-Site", "same-origin")
	if p.Status != http.StatusSeeOther || en.status(t, m.ID) != sms.StatusPending {
		t.Fatalf("retry with the token: %d, status %s; want 303 and PENDING", p.Status, en.status(t, m.ID))
	}
	if en.backlog.wakes.Load() == 0 {
		t.Error("a retry did not wake the outbox relay")
	}
	// Sign-out needs the token too, and ends the session in this browser.
	if p := b.post("/console/logout", b.withCSRF(nil)); p.Status != http.StatusSeeOther {
		t.Fatalf("sign out: %d", p.Status)
	}
	if p := b.get("/console"); p.Status != http.StatusSeeOther {
		t.Errorf("page after sign-out: %d, want 303 to sign in", p.Status)
	}
}

func TestAccountsSeeOnlyTheirOwn(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	a, keyA := en.account(t, "alpha")
	bID, keyB := en.account(t, "bravo")
	mineA := en.send(t, a, 3, "+4915100000111")
	failedB := en.failed(t, bID)
	schedB := en.scheduled(t, bID)
	otherB := en.send(t, bID, 2, "+4915100000222")
	if _, err := en.db.Exec(`INSERT INTO sms.suppressions (account_id, phone, reason) VALUES ($1, '+4915100000333', 'STOP a'), ($2, '+4915100000444', 'STOP b')`, a, bID); err != nil {
		t.Fatal(err)
	}
	epB, err := en.webhooks.CreateEndpoint(t.Context(), bID, endpointInput("http://127.0.0.1:9/b"))
	if err != nil {
		t.Fatal(err)
	}
	prefixB, _ := sms.KeyPrefix(keyB)

	ba := en.browser(t)
	ba.mustSignIn(keyA)
	bOnly := []string{failedB.ID.String(), schedB.ID.String(), otherB[0].ID.String(), "+4915100000222", "+4915100000444", prefixB, "bravo", epB.ID.String()}
	for _, path := range []string{"/console", "/console/messages", "/console/messages?status=FAILED", "/console/failed", "/console/scheduled",
		"/console/keys", "/console/suppressions", "/console/webhooks", "/console/live/overview"} {
		p := ba.get(path)
		if p.Status != http.StatusOK {
			t.Errorf("GET %s: %d", path, p.Status)
			continue
		}
		for _, s := range bOnly {
			if strings.Contains(p.Body, s) {
				t.Errorf("GET %s as alpha shows bravo's %s", path, s)
			}
		}
	}
	// Bravo's recipient as a filter finds nothing of bravo's.
	if p := ba.get("/console/messages?phone=%2B4915100000222"); len(msgLink.FindAllString(p.Raw, -1)) != 0 {
		t.Error("filtering by bravo's recipient lists messages to alpha")
	}
	if p := ba.get("/console/messages"); !strings.Contains(p.Body, mineA[0].ID.String()) {
		t.Error("alpha's own message is not listed")
	}
	for _, path := range []string{"/console/messages/" + failedB.ID.String(), "/console/live/messages/" + failedB.ID.String(),
		"/console/webhooks/" + epB.ID.String(), "/console/accounts", "/console/dead-letters"} {
		if p := ba.get(path); p.Status != http.StatusNotFound {
			t.Errorf("GET %s as alpha: %d, want 404", path, p.Status)
		}
	}
	if p := ba.get("/console/messages?q=" + failedB.ID.String()); p.Status != http.StatusSeeOther {
		t.Errorf("search by bravo's id: %d, want a redirect to its (404) page", p.Status)
	}
	// Writes on bravo's things change nothing.
	posts := []struct {
		path string
		form url.Values
	}{
		{"/console/messages/" + failedB.ID.String() + "/retry", nil},
		{"/console/messages/" + schedB.ID.String() + "/cancel", nil},
		{"/console/keys/" + keyID(t, en, prefixB) + "/revoke", nil},
		{"/console/webhooks/" + epB.ID.String() + "/delete", nil},
		{"/console/webhooks/" + epB.ID.String() + "/rotate", nil},
		{"/console/scope", url.Values{"account": {itoa(bID)}}},
	}
	for _, p := range posts {
		if got := ba.post(p.path, ba.withCSRF(p.form)); got.Status != http.StatusNotFound {
			t.Errorf("POST %s as alpha: %d, want 404", p.path, got.Status)
		}
	}
	for _, p := range []string{"/console/failed/retry", "/console/scheduled/cancel"} {
		got := ba.post(p, ba.withCSRF(url.Values{"ids": {failedB.ID.String(), schedB.ID.String()}}))
		if got.Status != http.StatusSeeOther || !strings.Contains(got.Location, "n=0") {
			t.Errorf("bulk POST %s with bravo's ids: %d to %q, want nothing done", p, got.Status, got.Location)
		}
	}
	if en.status(t, failedB.ID) != sms.StatusFailed || en.status(t, schedB.ID) != sms.StatusScheduled {
		t.Errorf("bravo's messages moved: %s, %s", en.status(t, failedB.ID), en.status(t, schedB.ID))
	}
	if _, err := en.keys.Authenticate(t.Context(), keyB); err != nil {
		t.Errorf("bravo's key after alpha's attempts: %v", err)
	}
	if _, err := en.webhooks.Endpoint(t.Context(), bID, epB.ID); err != nil {
		t.Errorf("bravo's endpoint after alpha's attempts: %v", err)
	}
	// A key created in the console belongs to the session's account,
	// whatever the form says.
	if p := ba.post("/console/keys", ba.withCSRF(url.Values{"account": {"bravo"}})); p.Status != http.StatusOK {
		t.Fatalf("create key: %d", p.Status)
	}
	var n int
	if err := en.db.Get(&n, `SELECT count(*) FROM sms.api_keys WHERE account_id = $1`, bID); err != nil || n != 1 {
		t.Errorf("bravo has %d keys after alpha created one (err %v), want 1", n, err)
	}

	// The operator sees both, and one when looking at one.
	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	all := op.get("/console/messages")
	for _, id := range []uuid.UUID{mineA[0].ID, failedB.ID} {
		if !strings.Contains(all.Body, id.String()) {
			t.Errorf("operator's list of every account lacks %s", id)
		}
	}
	if p := op.post("/console/scope", op.withCSRF(url.Values{"account": {itoa(bID)}, "next": {"/console/messages"}})); p.Status != http.StatusSeeOther {
		t.Fatalf("operator picks bravo: %d", p.Status)
	}
	only := op.get("/console/messages")
	if strings.Contains(only.Body, mineA[0].ID.String()) || !strings.Contains(only.Body, failedB.ID.String()) {
		t.Error("operator looking at bravo: the list is not bravo's alone")
	}
	if p := op.post("/console/messages/"+failedB.ID.String()+"/retry", op.withCSRF(nil)); p.Status != http.StatusSeeOther || en.status(t, failedB.ID) != sms.StatusPending {
		t.Errorf("operator retry of bravo's message: %d, %s", p.Status, en.status(t, failedB.ID))
	}
}

func keyID(t *testing.T, en *env, prefix string) string {
	t.Helper()
	var id int64
	if err := en.db.Get(&id, `SELECT id FROM sms.api_keys WHERE prefix = $1`, prefix); err != nil {
		t.Fatal(err)
	}
	return itoa(id)
}

func TestSendFromTheConsole(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	b := en.browser(t)
	b.mustSignIn(key)
	b.get("/console/send")

	bad := b.post("/console/send", b.withCSRF(url.Values{"sender": {"+4915100000001"}, "recipient": {"12"}, "text": {" "}}))
	if bad.Status != http.StatusBadRequest || !strings.Contains(bad.Body, `id="recipient-err"`) || !strings.Contains(bad.Body, `id="text-err"`) ||
		!strings.Contains(bad.Body, `aria-invalid="true"`) {
		t.Fatalf("invalid send: %d, want 400 naming recipient and text", bad.Status)
	}
	if n := smstest.Count(t, en.db, "messages"); n != 0 {
		t.Fatalf("an invalid send stored %d messages", n)
	}

	ok := b.post("/console/send", b.withCSRF(url.Values{"sender": {"+4915100000001"}, "recipient": {"+49 151 12345678"}, "text": {"hi from the console"},
		"priority": {"high"}, "validity_period": {"600"}}))
	if ok.Status != http.StatusSeeOther || !strings.HasPrefix(ok.Location, "/console/messages/") {
		t.Fatalf("send: %d to %q", ok.Status, ok.Location)
	}
	id := uuid.MustParse(strings.TrimSuffix(strings.TrimPrefix(ok.Location, "/console/messages/"), "?done=sent"))
	m, err := en.store.Get(t.Context(), acc, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != sms.StatusPending || m.Recipient != "+4915112345678" || m.Priority != sms.PriorityHigh || m.ValidityPeriod == nil || *m.ValidityPeriod != 600 {
		t.Errorf("stored %+v", m)
	}
	if out := smstest.Outboxed(t, en.db); len(out) != 1 || out[0] != id {
		t.Errorf("outbox holds %v, want the message", out)
	}
	page := b.get(ok.Location)
	if !strings.Contains(page.Body, "Message accepted.") || !strings.Contains(page.Body, "message.accepted") || !strings.Contains(page.Body, "data-live=") {
		t.Error("the message page after sending lacks the notice, the first event or its live part")
	}

	at := time.Now().Add(2 * time.Hour).UTC().Format(formTime)
	later := b.post("/console/send", b.withCSRF(url.Values{"sender": {"ACME"}, "recipient": {"+4915112345678"}, "text": {"later"}, "send_at": {at}}))
	if later.Status != http.StatusSeeOther {
		t.Fatalf("scheduled send: %d %s", later.Status, later.Body)
	}
	sid := uuid.MustParse(strings.TrimSuffix(strings.TrimPrefix(later.Location, "/console/messages/"), "?done=sent"))
	if st := en.status(t, sid); st != sms.StatusScheduled {
		t.Errorf("a send with send_at is %s, want SCHEDULED", st)
	}

	// Opted-out recipients are refused as on the API.
	optedOut := newEnv(t, func(d *Deps, _ *Config) { d.OptOuts = stopped{"+4915199990000": true} })
	_, key3 := optedOut.account(t, "acme")
	ob := optedOut.browser(t)
	ob.mustSignIn(key3)
	p := ob.post("/console/send", ob.withCSRF(url.Values{"sender": {"ACME"}, "recipient": {"+4915199990000"}, "text": {"x"}}))
	if p.Status != http.StatusBadRequest || !strings.Contains(p.Body, "opted out") || smstest.Count(t, optedOut.db, "messages") != 0 {
		t.Errorf("send to an opted-out recipient: %d, want 400 saying so and nothing stored", p.Status)
	}

	// The outbox backlog limit applies as on the API.
	full := newEnv(t, func(_ *Deps, c *Config) { c.MaxBacklog = 10 })
	full.backlog.n.Store(10)
	_, key2 := full.account(t, "acme")
	fb := full.browser(t)
	fb.mustSignIn(key2)
	if p := fb.post("/console/send", fb.withCSRF(url.Values{"sender": {"ACME"}, "recipient": {"+4915112345678"}, "text": {"x"}})); p.Status != http.StatusServiceUnavailable {
		t.Errorf("send over the backlog limit: %d, want 503", p.Status)
	}
}

func TestMessagePageFollowsTheMessage(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	m := en.send(t, acc, 1, "+4915100000005")[0]
	b := en.browser(t)
	b.mustSignIn(key)
	live := "/console/live/messages/" + m.ID.String()
	p := b.get(live)
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `data-live="`+live+`"`) || strings.Contains(p.Body, "<html") {
		t.Fatalf("live part of a PENDING message: %d, want a fragment that keeps polling\n%s", p.Status, p.Body)
	}
	if !strings.Contains(p.Body, `id="cancel"`) || strings.Contains(p.Body, `id="retry"`) {
		t.Error("a PENDING message should offer cancel, not retry")
	}
	en.report(t, m.ID, sms.StatusSent, "")
	en.report(t, m.ID, sms.StatusUndelivered, "receipt: UNDELIV err=011")
	p = b.get(live)
	if strings.Contains(p.Body, "data-live=") || !strings.Contains(p.Body, "UNDELIVERED") || !strings.Contains(p.Body, "message.undelivered") {
		t.Errorf("live part of an UNDELIVERED message should show it and stop polling:\n%s", p.Body)
	}
	if !strings.Contains(p.Body, "receipt: UNDELIV err=011") || !strings.Contains(p.Body, `id="retry"`) || strings.Contains(p.Body, `id="cancel"`) {
		t.Error("an UNDELIVERED message should say why and offer retry, not cancel")
	}
	// A conflict is explained, not a 500.
	p = b.post("/console/messages/"+m.ID.String()+"/cancel", b.withCSRF(nil))
	if p.Status != http.StatusConflict || !strings.Contains(p.Body, "can be canceled") {
		t.Errorf("cancel of a final message: %d, want 409 saying what can be canceled", p.Status)
	}
}

func TestListsFilterAndPage(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	a, keyA := en.account(t, "alpha")
	bID, _ := en.account(t, "bravo")
	var ids []uuid.UUID
	for i := 0; i < 120; i++ { // one per insert: distinct created_at
		ids = append(ids, en.send(t, a, 1, "+4915100000700")[0].ID)
	}
	other := en.send(t, a, 1, "+4915100000701")[0]
	en.report(t, other.ID, sms.StatusFailed, "permanent: unknown subscriber")
	bMsg := en.send(t, bID, 1, "+4915100000700")[0]

	b := en.browser(t)
	b.mustSignIn(keyA)
	seen := map[string]bool{}
	path := "/console/messages?phone=%2B4915100000700"
	pages := 0
	for path != "" {
		p := b.get(path)
		if p.Status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, p.Status)
		}
		pages++
		rows := msgLink.FindAllStringSubmatch(p.Body, -1)
		var prev string
		for _, r := range rows {
			if seen[r[1]] {
				t.Errorf("message %s on two pages", r[1])
			}
			seen[r[1]] = true
			if prev != "" && r[1] > prev {
				t.Errorf("not newest first: %s after %s", r[1], prev) // ids are UUIDv7: ordered by time
			}
			prev = r[1]
		}
		path = ""
		if m := olderLink.FindStringSubmatch(p.Body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if pages != 3 || len(seen) != 120 || seen[other.ID.String()] || seen[bMsg.ID.String()] {
		t.Errorf("phone filter paged %d pages, %d messages (other phone listed: %v, other account: %v); want 3 pages of the 120",
			pages, len(seen), seen[other.ID.String()], seen[bMsg.ID.String()])
	}
	p := b.get("/console/messages?status=FAILED")
	if rows := msgLink.FindAllStringSubmatch(p.Body, -1); len(rows) != 1 || rows[0][1] != other.ID.String() {
		t.Errorf("status filter listed %v, want the failed message", rows)
	}
	future := time.Now().Add(time.Hour).UTC().Format(formTime)
	if rows := msgLink.FindAllStringSubmatch(b.get("/console/messages?from="+future).Body, -1); len(rows) != 0 {
		t.Errorf("from an hour ahead listed %d messages", len(rows))
	}
	if rows := msgLink.FindAllStringSubmatch(b.get("/console/messages?to="+future).Body, -1); len(rows) != pageSize {
		t.Errorf("before an hour ahead listed %d messages, want a full page", len(rows))
	}
	if p := b.get("/console/messages?status=sent"); !strings.Contains(p.Body, "status must be one of") {
		t.Error("a bad status filter is not explained")
	}
	if p := b.get("/console/messages?q=" + ids[5].String()); p.Location != "/console/messages/"+ids[5].String() {
		t.Errorf("search by id: %d to %q", p.Status, p.Location)
	}

	// The operator's list of every account merges them newest first.
	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	rows := msgLink.FindAllStringSubmatch(op.get("/console/messages").Body, -1)
	if len(rows) != pageSize || rows[0][1] != bMsg.ID.String() || rows[1][1] != other.ID.String() {
		t.Errorf("operator's first page: %d rows starting %v, want bravo's newest first", len(rows), rows[:min(2, len(rows))])
	}
}

var (
	msgLink   = regexp.MustCompile(`<a href="/console/messages/([0-9a-f-]{36})" class="msg-link">`)
	olderLink = regexp.MustCompile(`<a href="([^"]+)" rel="next" id="older">`)
)

func TestBulkRetryAndCancel(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	f1, f2 := en.failed(t, acc), en.failed(t, acc)
	exp := en.send(t, acc, 1, "+4915100000800")[0]
	en.report(t, exp.ID, sms.StatusExpired, "expired: no receipt")
	s1, s2 := en.scheduled(t, acc), en.scheduled(t, acc)
	b := en.browser(t)
	b.mustSignIn(key)
	p := b.get("/console/failed")
	for _, m := range []sms.Message{f1, f2, exp} {
		if !strings.Contains(p.Body, m.ID.String()) {
			t.Errorf("failed page lacks %s", m.ID)
		}
	}
	if p := b.get("/console/failed?status=EXPIRED"); strings.Contains(p.Body, f1.ID.String()) || !strings.Contains(p.Body, exp.ID.String()) {
		t.Error("the EXPIRED tab shows other statuses")
	}
	got := b.post("/console/failed/retry", b.withCSRF(url.Values{"ids": {f1.ID.String(), exp.ID.String(), s1.ID.String()}}))
	if got.Status != http.StatusSeeOther || !strings.Contains(got.Location, "n=2") || !strings.Contains(got.Location, "skipped=1") {
		t.Errorf("bulk retry: %d to %q, want 2 retried and 1 refused", got.Status, got.Location)
	}
	if en.status(t, f1.ID) != sms.StatusPending || en.status(t, exp.ID) != sms.StatusPending || en.status(t, f2.ID) != sms.StatusFailed {
		t.Error("bulk retry moved the wrong messages")
	}
	if p := b.get(got.Location); !strings.Contains(p.Body, "2 queued again; 1 could not be") {
		t.Error("the bulk retry's result is not shown")
	}
	got = b.post("/console/failed/retry", b.withCSRF(url.Values{"id": {f2.ID.String()}, "ids": {s2.ID.String()}}))
	if !strings.Contains(got.Location, "n=1") || en.status(t, f2.ID) != sms.StatusPending || en.status(t, s2.ID) != sms.StatusScheduled {
		t.Errorf("a row's own button retries that row only: %q", got.Location)
	}
	got = b.post("/console/scheduled/cancel", b.withCSRF(url.Values{"ids": {s1.ID.String(), s2.ID.String()}}))
	if !strings.Contains(got.Location, "n=2") || en.status(t, s1.ID) != sms.StatusCanceled || en.status(t, s2.ID) != sms.StatusCanceled {
		t.Errorf("bulk cancel: %q, %s, %s", got.Location, en.status(t, s1.ID), en.status(t, s2.ID))
	}
	many := url.Values{}
	for range maxSelected + 1 {
		many.Add("ids", uuid.NewString())
	}
	if got := b.post("/console/failed/retry", b.withCSRF(many)); got.Status != http.StatusBadRequest {
		t.Errorf("retry of %d messages at once: %d, want 400", maxSelected+1, got.Status)
	}
}

func TestKeysCreatedOnceAndRevoked(t *testing.T) {
	t.Parallel()
	en := newEnv(t)
	acc, key := en.account(t, "acme")
	b := en.browser(t)
	b.mustSignIn(key)
	b.get("/console/keys")
	p := b.post("/console/keys", b.withCSRF(nil))
	full := regexp.MustCompile(`value="(sms_[0-9a-f]{8}_[0-9a-f]{48})"`).FindStringSubmatch(p.Body)
	if p.Status != http.StatusOK || full == nil {
		t.Fatalf("create key: %d, no key shown", p.Status)
	}
	got, err := en.keys.Authenticate(t.Context(), full[1])
	if err != nil || got != acc {
		t.Fatalf("the new key authenticates as %d (%v), want %d", got, err, acc)
	}
	if strings.Contains(b.get("/console/keys").Body, full[1]) {
		t.Error("the key list shows a key in full")
	}
	prefix, _ := sms.KeyPrefix(full[1])
	if r := b.post("/console/keys/"+keyID(t, en, prefix)+"/revoke", b.withCSRF(nil)); r.Status != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.Status)
	}
	if _, err := en.keys.Authenticate(t.Context(), full[1]); err == nil {
		t.Error("the revoked key still authenticates")
	}
	if p := b.get("/console/keys"); !strings.Contains(p.Body, "revoked") {
		t.Error("the key list does not show the revocation")
	}

	// Operators on every account name the account (created if new).
	op := en.browser(t)
	op.mustSignIn(testAdminToken)
	op.get("/console/keys")
	if p := op.post("/console/keys", op.withCSRF(url.Values{"account": {"  "}})); p.Status != http.StatusBadRequest {
		t.Errorf("operator key without an account name: %d, want 400", p.Status)
	}
	if p := op.post("/console/keys", op.withCSRF(url.Values{"account": {"newco"}})); p.Status != http.StatusOK || !strings.Contains(p.Body, "New key for newco") {
		t.Errorf("operator key for a new account: %d", p.Status)
	}
}

// stopped stands for the suppression list: these recipients opted out.
type stopped map[string]bool

func (s stopped) Check(_ context.Context, _ int64, phone string) error {
	if s[phone] {
		return &sms.Error{Code: sms.CodeUnprocessable, Kind: "opted-out", Message: "the recipient opted out of this account's messages"}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func endpointInput(u string) webhook.EndpointInput {
	return webhook.EndpointInput{URL: &u}
}
