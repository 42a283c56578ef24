package console

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
)

// chromiumPath finds the browser the tests drive: SMS_CHROMIUM, else
// chromium on PATH. Missing, the test fails: CI installs it with
// scripts/chromium.sh.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("SMS_CHROMIUM"), "chromium", "chromium-browser"} {
		if c == "" {
			continue
		}
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	t.Fatal("chromium not found: run scripts/chromium.sh (it installs Debian's chromium and prints its path; CI runs it), or set SMS_CHROMIUM")
	return ""
}

// screenshotDir is where the screenshots go: docs/screenshots when
// SMS_CONSOLE_SCREENSHOTS=1 (the README shows them), another directory
// when it names one, else the test's temporary directory.
func screenshotDir(t *testing.T) string {
	switch d := os.Getenv("SMS_CONSOLE_SCREENSHOTS"); d {
	case "":
		return t.TempDir()
	case "1":
		return filepath.Join("..", "..", "docs", "screenshots")
	default:
		return d
	}
}

// chrome is a headless Chromium for one test, with what the page wrote to
// its console collected.
type chrome struct {
	t    *testing.T
	ctx  context.Context
	mu   sync.Mutex
	logs []chromedp.ConsoleMessage
	shot string
}

func newChrome(t *testing.T) *chrome {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	c := &chrome{t: t, ctx: ctx, shot: screenshotDir(t)}
	if err := chromedp.Do(ctx); err != nil { // start the browser and open the tab
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	var wg sync.WaitGroup
	messages := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, cdppage.JavascriptDialogOpening)
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			c.mu.Lock()
			c.logs = append(c.logs, m)
			c.mu.Unlock()
		}
	})
	// Confirmations (data-confirm) are accepted, as a user would.
	wg.Go(func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			go func() {
				_, _ = chromedp.Call(ctx, cdppage.HandleJavaScriptDialog, cdppage.HandleJavaScriptDialogParams{Accept: true})
			}()
		}
	})
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		wg.Wait()
	})
	return c
}

// step runs actions under a deadline, failing the test with what.
func (c *chrome) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := chromedp.Do(ctx, actions...); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	c.t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

// eval returns the value of a JavaScript expression.
func eval[T any](c *chrome, expr string) T {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		c.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript condition, as a user watching the page would.
func (c *chrome) waitFor(what, cond string, within time.Duration) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, within+5*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		c.t.Fatalf("%s: not seen within %s: %v", what, within, err)
	}
	c.t.Logf("%s: %s", what, time.Since(start).Round(time.Millisecond))
}

func (c *chrome) text(sel string) string {
	c.t.Helper()
	return eval[string](c, `(document.querySelector(`+jsString(sel)+`) || {textContent: ""}).textContent`)
}

func jsString(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `'`, `\'`) + "'"
}

// screenshot saves the viewport (1280×800) as name.png.
func (c *chrome) screenshot(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { c.t.Logf("screenshot %s: %s", name, time.Since(start).Round(time.Millisecond)) }()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		c.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(c.shot, 0o755); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.shot, name+".png"), png, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// problems are what the page logged that a console free of faults never
// logs: CSP violations, script errors, failed loads (but the 404s the test
// asked for).
func (c *chrome) problems(expected404 ...string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, m := range c.logs {
		wanted := false
		for _, u := range expected404 {
			wanted = wanted || (strings.HasSuffix(m.URL, u) && strings.Contains(m.Text, "404"))
		}
		if wanted {
			continue
		}
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || strings.Contains(m.Text, "Content Security Policy") {
			out = append(out, m.String()+" ("+m.URL+")")
		}
	}
	return out
}

// seedHour gives account an hour of history, so that the screens look like
// a day at work: 240 messages spread over the last hour, most delivered.
func seedHour(t *testing.T, en *env, account int64) {
	t.Helper()
	in := make([]sms.NewMessage, 240)
	for i := range in {
		in[i] = sms.NewMessage{AccountID: account, Draft: smstest.Draft("ACME", fmt.Sprintf("+49151%08d", 10000000+i*7919%9000000),
			[]string{"Your code is 482913", "Your order has shipped", "Reminder: appointment tomorrow at 10:00"}[i%3])}
	}
	msgs, err := en.store.Insert(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	var sent, final []sms.DeliveryReport
	for i, m := range msgs {
		switch r := i % 50; {
		case r < 44:
			sent = append(sent, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusSent, ProcessedAt: now})
			switch {
			case r < 38:
				final = append(final, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusDelivered, ProcessedAt: now})
			case r < 40:
				reason := "receipt: UNDELIV err=011"
				final = append(final, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusUndelivered, ProcessedAt: now, FailureReason: &reason})
			}
		case r < 48:
			reason := "permanent: unknown subscriber"
			sent = append(sent, sms.DeliveryReport{MessageID: m.ID, Status: sms.StatusFailed, ProcessedAt: now, FailureReason: &reason})
		}
	}
	for _, batch := range [][]sms.DeliveryReport{sent, final} {
		if _, err := en.store.ApplyReports(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	// Spread over the hour, busier lately.
	if _, err := en.db.Exec(`UPDATE sms.messages SET created_at = now() - make_interval(secs => 3500 * power(random(), 1.6))
        WHERE account_id = $1 AND status <> 'PENDING'`, account); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser drives the console in headless Chromium as an account would:
// sign in, send a message and watch it reach its final status without a
// reload, open its timeline, retry a failed message, cancel a scheduled
// one, create and revoke a key, and never see another account's data; then
// at phone width and from the keyboard. It saves screenshots of the main
// screens.
func TestBrowser(t *testing.T) {
	start := time.Now()
	en := newEnv(t, func(_ *Deps, c *Config) { c.RefreshInterval = 250 * time.Millisecond })
	alpha, keyA := en.account(t, "alpha")
	bravo, _ := en.account(t, "bravo")
	seedHour(t, en, alpha)
	failed := en.failed(t, alpha)
	later := en.scheduled(t, alpha)
	bravoMsg := en.send(t, bravo, 1, "+4915199999999")[0]

	t.Logf("seeded: %s", time.Since(start).Round(time.Millisecond))
	c := newChrome(t)
	t.Logf("chromium started: %s", time.Since(start).Round(time.Millisecond))
	base := en.srv.URL

	// Sign in: the overview of alpha.
	c.step("sign in",
		chromedp.EmulateViewport(1280, 800),
		chromedp.Navigate(base+"/console"),
		chromedp.WaitVisible(chromedp.ID("secret")),
		chromedp.SendKeys(chromedp.ID("secret"), keyA),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("overview-live")),
	)
	if who := c.text("#who"); who != "alpha" {
		t.Fatalf("signed in as %q, want alpha", who)
	}
	if got := c.text("#count-DELIVERED"); got != "190" {
		t.Fatalf("the overview counts %q delivered, want 190", got)
	}
	// The overview follows without a reload.
	eval[bool](c, `window.__sameDocument = true`)
	var pending uuid.UUID
	if err := en.db.Get(&pending, `SELECT id FROM sms.messages WHERE account_id = $1 AND status = 'PENDING' LIMIT 1`, alpha); err != nil {
		t.Fatal(err)
	}
	en.report(t, pending, sms.StatusSent, "")
	en.report(t, pending, sms.StatusDelivered, "")
	c.waitFor("the overview's live refresh", `document.querySelector('#count-DELIVERED').textContent === '191' && window.__sameDocument === true`, 5*time.Second)
	c.screenshot("overview")

	// Send a message from the console and watch it reach its final status
	// without a reload: the reports stand in for the processor.
	c.step("send a message",
		chromedp.Navigate(base+"/console/send"),
		chromedp.WaitVisible(chromedp.ID("recipient")),
		chromedp.SendKeys(chromedp.ID("sender"), "ACME"),
		chromedp.SendKeys(chromedp.ID("recipient"), "+49 151 2222 3333"),
		chromedp.SendKeys(chromedp.ID("text"), "Your code is 123456"),
		chromedp.Click(chromedp.ID("send")),
		chromedp.WaitVisible(chromedp.ID("message-id")),
	)
	id, err := uuid.Parse(c.text("#message-id"))
	if err != nil {
		t.Fatalf("message page shows id %q: %v", c.text("#message-id"), err)
	}
	if st := c.text("#status"); !strings.Contains(st, "PENDING") {
		t.Fatalf("a sent message shows %q, want PENDING", st)
	}
	eval[bool](c, `window.__sameDocument = true`)
	// The processor's outcome: a timeout, then the carrier took it.
	msg, err := en.store.Get(t.Context(), alpha, id)
	if err != nil {
		t.Fatal(err)
	}
	at := msg.CreatedAt
	if _, err := en.store.ApplyReports(t.Context(), []sms.DeliveryReport{{MessageID: id, Status: sms.StatusSent, ProcessedAt: at.Add(1300 * time.Millisecond),
		CarrierMessageID: "7f3a9c01", Attempts: []sms.Attempt{
			{Attempt: 1, At: at.Add(40 * time.Millisecond), Result: "transient", Error: "submit_sm: timeout after 1s"},
			{Attempt: 2, At: at.Add(1250 * time.Millisecond), Result: "accepted"}}}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("SENT shown without a reload", `document.getElementById('status').textContent.includes('SENT')`, 5*time.Second)
	if _, err := en.store.ApplyReports(t.Context(), []sms.DeliveryReport{{MessageID: id, Status: sms.StatusDelivered, ProcessedAt: at.Add(3900 * time.Millisecond)}}); err != nil {
		t.Fatal(err)
	}
	c.waitFor("DELIVERED shown without a reload", `document.getElementById('status').textContent.includes('DELIVERED')`, 5*time.Second)
	if !eval[bool](c, `window.__sameDocument === true`) {
		t.Fatal("the page reloaded to show the new status")
	}
	if tl := c.text("#timeline"); !strings.Contains(tl, "message.accepted") || !strings.Contains(tl, "message.sent") || !strings.Contains(tl, "message.delivered") {
		t.Errorf("timeline shows %q, want accepted, sent, delivered", tl)
	}
	if eval[bool](c, `document.getElementById('message-live').hasAttribute('data-live')`) {
		t.Error("a DELIVERED message's page keeps polling")
	}
	if got := c.text("#announcer"); !strings.Contains(got, "DELIVERED") {
		t.Errorf("screen readers were told %q, want the new status", got)
	}
	c.screenshot("message")

	// The list: newest first, alpha's only.
	c.step("messages", chromedp.Navigate(base+"/console/messages"), chromedp.WaitVisible(chromedp.CSS("table.list")))
	first := eval[string](c, `document.querySelector('a.msg-link').getAttribute('href')`)
	if first != "/console/messages/"+id.String() {
		t.Errorf("the list starts with %s, want the message just sent", first)
	}
	c.screenshot("messages")
	body := eval[string](c, `document.body.textContent`)
	if strings.Contains(body, bravoMsg.ID.String()) || strings.Contains(body, "+4915199999999") {
		t.Error("alpha's list shows bravo's message")
	}

	// Find a message in two clicks: the search in every page's header.
	c.step("search by id",
		chromedp.SendKeys(chromedp.ID("find"), failed.ID.String()+"\n"),
		chromedp.WaitVisible(chromedp.ID("failure-reason")),
	)
	if why := c.text("#failure-reason"); !strings.Contains(why, "exhausted") {
		t.Errorf("the failed message says %q", why)
	}
	// Retry it.
	c.step("retry", chromedp.Click(chromedp.ID("retry")), chromedp.WaitVisible(chromedp.ID("notice")))
	if st := en.status(t, failed.ID); st != sms.StatusPending {
		t.Errorf("after retry the message is %s, want PENDING", st)
	}
	if st := c.text("#status"); !strings.Contains(st, "PENDING") {
		t.Errorf("after retry the page shows %q", st)
	}

	// Cancel the scheduled one (the confirmation is accepted).
	c.step("cancel",
		chromedp.Navigate(base+"/console/messages/"+later.ID.String()),
		chromedp.WaitVisible(chromedp.ID("cancel")),
		chromedp.Click(chromedp.ID("cancel")),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if st := en.status(t, later.ID); st != sms.StatusCanceled {
		t.Errorf("after cancel the message is %s, want CANCELED", st)
	}

	// Create a key (shown once) and revoke it.
	c.step("create a key",
		chromedp.Navigate(base+"/console/keys"),
		chromedp.WaitVisible(chromedp.ID("create")),
		chromedp.Click(chromedp.ID("create")),
		chromedp.WaitVisible(chromedp.ID("new-key")),
	)
	newKey := eval[string](c, `document.getElementById('new-key').value`)
	if acc, err := en.keys.Authenticate(t.Context(), newKey); err != nil || acc != alpha {
		t.Fatalf("the key the console showed authenticates as %d (%v), want alpha", acc, err)
	}
	c.screenshot("keys")
	prefix, _ := sms.KeyPrefix(newKey)
	c.step("revoke the key",
		chromedp.Click(chromedp.ID("revoke-"+prefix)),
		chromedp.WaitVisible(chromedp.ID("notice")),
	)
	if _, err := en.keys.Authenticate(t.Context(), newKey); err == nil {
		t.Error("the revoked key still authenticates")
	}
	if row := c.text("#key-" + prefix); !strings.Contains(row, "revoked") {
		t.Errorf("the key's row reads %q, want revoked", row)
	}

	// Bravo's message is nowhere to be found.
	c.step("another account's message", chromedp.Navigate(base+"/console/messages/"+bravoMsg.ID.String()), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := c.text("h1"); h != "Not found" {
		t.Errorf("alpha opening bravo's message sees %q, want Not found", h)
	}
	if strings.Contains(eval[string](c, `document.body.textContent`), "+4915199999999") {
		t.Error("bravo's recipient shows on alpha's screen")
	}

	// Keyboard: the first Tab reaches the skip link, which leads to main.
	c.step("keyboard", chromedp.Navigate(base+"/console/failed"), chromedp.WaitVisible(chromedp.ID("main")), chromedp.KeyEvent("\t"))
	if cls := eval[string](c, `document.activeElement.className`); cls != "skip" {
		t.Errorf("the first Tab focuses %q, want the skip link", cls)
	}
	// Phone width: nothing wider than the screen.
	c.step("phone width", chromedp.EmulateViewport(390, 844), chromedp.Navigate(base+"/console"), chromedp.WaitVisible(chromedp.ID("overview-live")))
	if w := eval[int](c, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("the overview is %d px wide at phone width (390)", w)
	}
	c.screenshot("overview-phone")
	for _, path := range []string{"/console/messages/" + id.String(), "/console/send", "/console/keys"} {
		c.step("phone width "+path, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.ID("main")))
		if w := eval[int](c, `document.documentElement.scrollWidth`); w > 390 {
			wide := eval[string](c, `Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > 392 || e.tagName === 'MAIN' || e.className === 'scroll').slice(0, 8).map(e => e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(e.getBoundingClientRect().right)).join(', ')`)
			t.Errorf("%s is %d px wide at phone width (390): %s", path, w, wide)
		}
	}

	if p := c.problems("/console/messages/" + bravoMsg.ID.String()); len(p) > 0 {
		t.Errorf("the browser logged problems (CSP, script errors):\n%s", strings.Join(p, "\n"))
	}
	t.Logf("browser test took %s; screenshots in %s", time.Since(start).Round(100*time.Millisecond), c.shot)
}
