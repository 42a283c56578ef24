package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

//go:embed templates/*.html static/*
var assets embed.FS

// pageNames are the templates under templates/, each defining "content"
// (and "live" for a page with a live part) for layout.html.
var pageNames = []string{"login", "error", "overview", "messages", "message", "send", "scheduled", "failed", "keys",
	"webhooks", "webhook", "table", "suppressions", "accounts", "deadletters", "choose"}

type pages struct {
	by map[string]*template.Template
}

func loadPages() (*pages, error) {
	p := &pages{by: make(map[string]*template.Template, len(pageNames))}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.by[name] = t
	}
	return p, nil
}

// assetTag versions the static assets' URLs, so they can be cached for
// good.
func assetTag() string {
	h := sha256.New()
	_ = fs.WalkDir(assets, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := assets.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// view is what every page template gets.
type view struct {
	Title string
	// Nav names the navigation entry the page belongs to.
	Nav      string
	Signed   bool
	Operator bool
	// Who says who is signed in: the account's name, or "operator".
	Who string
	// Scope is the account the views are limited to (0: every account),
	// ScopeName its name.
	Scope     int64
	ScopeName string
	CSRF      string
	Asset     string
	// Refresh is the live parts' polling interval in milliseconds;
	// SlowRefresh the overview's (twice as long: it costs more).
	Refresh, SlowRefresh int
	// Notice says what a form did; Error what went wrong.
	Notice string
	Error  string
	Data   any
}

// newView fills the parts every page has from the request's session.
func (c *Console) newView(ec echo.Context, title, nav string, data any) (*view, error) {
	v := c.liveView(ec, data)
	v.Title, v.Nav = title, nav
	if !v.Signed {
		return v, nil
	}
	if v.Scope != 0 {
		name, err := c.read.accountName(ec.Request().Context(), v.Scope)
		if err != nil && !errors.Is(err, sms.ErrNotFound) {
			return nil, err
		}
		v.ScopeName = name
	}
	v.Who = v.ScopeName
	if v.Operator {
		v.Who = "operator"
		if v.Scope == 0 {
			v.ScopeName = "all accounts"
		}
	}
	v.Notice = notices[ec.QueryParam("done")]
	return v, nil
}

// liveView is the view of a live part: what its forms and polling need,
// without the page's header (no lookups on every refresh).
func (c *Console) liveView(ec echo.Context, data any) *view {
	ms := int(c.cfg.RefreshInterval / time.Millisecond)
	v := &view{Asset: c.assetTag, Refresh: ms, SlowRefresh: 2 * ms, Data: data}
	if s := sessionOf(ec); s != nil {
		v.Signed, v.Operator, v.Scope, v.CSRF = true, s.operator(), s.scope(), c.csrfToken(s)
	}
	return v
}

// notices are what a redirect after a form says (?done=...): fixed texts,
// so nothing from the URL is echoed.
var notices = map[string]string{
	"sent":      "Message accepted.",
	"retried":   "Message queued again for another try.",
	"canceled":  "Message canceled.",
	"revoked":   "Key revoked. Requests with it are refused within seconds.",
	"tested":    "Test event queued.",
	"replayed":  "Replay queued.",
	"enabled":   "Endpoint enabled.",
	"disabled":  "Endpoint disabled.",
	"deleted":   "Endpoint deleted.",
	"redriven":  "Record republished to its request topic.",
	"scoped":    "Now showing the chosen account.",
	"signedout": "You are signed out.",
}

// render writes page name with v.
func (c *Console) render(ec echo.Context, status int, name string, v *view) error {
	return c.execute(ec, status, name, "layout", v)
}

// renderLive writes the live part of page name alone.
func (c *Console) renderLive(ec echo.Context, name string, v *view) error {
	return c.execute(ec, http.StatusOK, name, "live", v)
}

func (c *Console) execute(ec echo.Context, status int, name, tmpl string, v *view) error {
	t := c.pages.by[name]
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, tmpl, v); err != nil {
		c.log.Error().Err(err).Str("page", name).Msg("console template failed")
		return ec.String(http.StatusInternalServerError, "internal error")
	}
	return ec.HTMLBlob(status, buf.Bytes())
}

// page renders a page, building its view first.
func (c *Console) page(ec echo.Context, name, title, nav string, data any) error {
	v, err := c.newView(ec, title, nav, data)
	if err != nil {
		return c.fail(ec, err)
	}
	return c.render(ec, http.StatusOK, name, v)
}

// errorPage renders an error with a title and what to do.
func (c *Console) errorPage(ec echo.Context, status int, title, detail string) error {
	v, err := c.newView(ec, title, "", map[string]string{"Detail": detail})
	if err != nil {
		v = &view{Title: title, Asset: c.assetTag, Data: map[string]string{"Detail": detail}}
	}
	return c.render(ec, status, "error", v)
}

func (c *Console) notFound(ec echo.Context) error {
	return c.errorPage(ec, http.StatusNotFound, "Not found", "There is nothing here, or nothing you may see.")
}

// fail answers err as a page: the domain's errors say what they are;
// anything else is an internal error whose cause is logged, not shown.
func (c *Console) fail(ec echo.Context, err error) error {
	switch sms.ErrorCode(err) {
	case sms.CodeNotFound:
		return c.notFound(ec)
	case sms.CodeUnavailable:
		c.log.Warn().Err(err).Str("route", ec.Path()).Msg("console: dependency unavailable")
		return c.errorPage(ec, http.StatusServiceUnavailable, "Temporarily unavailable", "A service the console needs is unavailable. Retry in a moment.")
	case sms.CodeInternal:
		c.log.Error().Err(err).Str("route", ec.Path()).Msg("console request failed")
		return c.errorPage(ec, http.StatusInternalServerError, "Something went wrong", "The error was logged. Retry, or tell the operators.")
	}
	status := http.StatusBadRequest
	switch sms.ErrorCode(err) {
	case sms.CodeConflict:
		status = http.StatusConflict
	case sms.CodeUnprocessable:
		status = http.StatusUnprocessableEntity
	case sms.CodeRateLimited:
		status = http.StatusTooManyRequests
	}
	return c.errorPage(ec, status, "Not done", userMessage(err))
}

// userMessage is what an error may tell the user: the violations of a
// validation error, the message of a domain error; nothing of a fault.
func userMessage(err error) string {
	var ve *sms.ValidationError
	var e *sms.Error
	switch {
	case errors.As(err, &ve):
		parts := make([]string, len(ve.Violations))
		for i, v := range ve.Violations {
			parts[i] = v.Field + ": " + v.Message
		}
		return strings.Join(parts, "; ")
	case errors.As(err, &e) && e.Code != sms.CodeInternal:
		return e.Message
	}
	return "internal error"
}

// fieldErrors maps a validation error's violations by field.
func fieldErrors(err error) map[string]string {
	var ve *sms.ValidationError
	if !errors.As(err, &ve) {
		return nil
	}
	out := map[string]string{}
	for _, v := range ve.Violations {
		out[v.Field] = v.Message
	}
	return out
}

// static serves the embedded assets, cached for good: their URLs carry a
// tag that changes with their content.
func (c *Console) static(ec echo.Context) error {
	name := ec.Param("name")
	if strings.ContainsAny(name, "/\\") {
		return c.notFound(ec)
	}
	b, err := assets.ReadFile("static/" + name)
	if err != nil {
		return c.notFound(ec)
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	ec.Response().Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	return ec.Blob(http.StatusOK, ctype, b)
}

var funcs = template.FuncMap{
	"time":       fmtTime,
	"timep":      func(t *time.Time) string { return fmtTimePtr(t) },
	"clock":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"iso":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"str":        func(s *string) string { return deref(s) },
	"intp":       func(p *int) string { return intText(p) },
	"statusKind": statusKind,
	"short":      func(id uuid.UUID) string { return id.String()[:8] },
	"pct":        func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "%" },
	"num":        num,
	"num64":      func(n float64) string { return num(int64(n)) },
	"dec":        func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"detail":     detailPairs,
	"reasonHelp": reasonHelp,
	"statuses":   func() []sms.Status { return sms.Statuses },
	"trunc": func(s string, n int) string {
		if utf8.RuneCountInString(s) <= n {
			return s
		}
		return string([]rune(s)[:n]) + "…"
	},
	"add": func(a, b int) int { return a + b },
	"contains": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	},
	"since": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return time.Since(t).Round(time.Second).String()
	},
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05") + " UTC"
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return fmtTime(*t)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func intText(p *int) string {
	if p == nil {
		return ""
	}
	return strconv.Itoa(*p)
}

// statusKind is the colour class of a status; the status is always
// written out too, so colour is never the only sign.
func statusKind(s sms.Status) string {
	switch {
	case s.Succeeded():
		return "ok"
	case s.Unsuccessful():
		return "bad"
	case s == sms.StatusCanceled:
		return "gone"
	}
	return "wait"
}

// num writes n with thin separators every three digits.
func num(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteRune(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// pair is one key and value of an event's detail.
type pair struct{ Key, Value string }

// detailPairs shows an event's detail as key and value lines; nested
// values as compact JSON.
func detailPairs(d sms.JSON) []pair {
	if len(d) == 0 || string(d) == "null" {
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(d, &obj); err != nil {
		return []pair{{"detail", string(d)}}
	}
	out := make([]pair, 0, len(obj))
	for k, v := range obj {
		out = append(out, pair{k, jsonText(v)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// reasonHelp explains a failure reason in a sentence, for the operator who
// asks why a message failed.
func reasonHelp(reason *string) string {
	r := deref(reason)
	class, _, _ := strings.Cut(r, ":")
	switch {
	case r == "":
		return ""
	case r == "opted_out":
		return "The recipient opted out (STOP) of this account's messages. Retrying won't send it until they opt in again (START)."
	case class == "exhausted":
		return "The carrier failed with temporary errors on every attempt. Retry once the carrier is healthy; the timeline shows each attempt's error."
	case class == "permanent":
		return "The carrier refused the message for good (for example an invalid or barred number). Fix the cause before retrying."
	case class == "invalid":
		return "The message could not be sent as it is. Check the recipient and text."
	case class == "expired":
		return "Its validity period ended before it could be delivered. Retry gives it a fresh validity period."
	}
	return "The carrier's reason is shown as it was reported; the timeline has the details."
}
