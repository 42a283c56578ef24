package console

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/time/rate"
)

// ContentSecurityPolicy is sent with every console response: scripts,
// styles, fetches and forms only from this origin, nothing inline, no
// plugins, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// headers sets the security headers on every console response.
func (c *Console) headers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		h := ec.Response().Header()
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		// Pages hold account data: never kept by the browser or a proxy.
		// Static assets override this.
		h.Set("Cache-Control", "no-store")
		return next(ec)
	}
}

const ctxSession = "console.session"

func sessionOf(ec echo.Context) *session {
	s, _ := ec.Get(ctxSession).(*session)
	return s
}

// authenticate lets a request with a valid session through. A page without
// one goes to the sign-in page (and back after it); a live fragment gets
// 401, which tells the page's script to stop. Pages (not live fragments)
// count as use and push the idle limit back.
func (c *Console) authenticate(live bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(ec echo.Context) error {
			r := ec.Request()
			s, err := c.readSession(r)
			if err == nil {
				err = c.checkSession(ec, s)
			}
			switch {
			case errors.Is(err, errBadSession):
				if ck, _ := r.Cookie(c.sessionCookie(r, "", 0).Name); ck != nil {
					c.clearSession(ec.Response(), r)
				}
				if live {
					return ec.NoContent(http.StatusUnauthorized)
				}
				to := "/console/login"
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					to += "?next=" + url.QueryEscape(r.URL.RequestURI())
				}
				return ec.Redirect(http.StatusSeeOther, to)
			case err != nil:
				return c.fail(ec, err)
			}
			now := c.now().Unix()
			if !live && now-s.Seen >= 60 {
				s.Seen = now
				if err := c.writeSession(ec.Response(), r, s); err != nil {
					return c.fail(ec, err)
				}
			}
			ec.Set(ctxSession, s)
			return next(ec)
		}
	}
}

// checkSession checks what a signed cookie can't: an account session's key
// is still valid (not revoked), an operator session's token still the
// configured one.
func (c *Console) checkSession(ec echo.Context, s *session) error {
	if s.operator() {
		if c.cfg.AdminToken == "" || subtle.ConstantTimeCompare([]byte(s.TokenMark), []byte(c.tokenMark())) != 1 {
			return errBadSession
		}
		return nil
	}
	account, active, err := c.read.keyAccount(ec.Request().Context(), s.KeyPrefix)
	if err != nil {
		return err
	}
	if !active || account != s.Account {
		return errBadSession
	}
	return nil
}

// maxFormBytes bounds a console form's body.
const maxFormBytes = 256 << 10

// crossOrigin refuses requests a browser says came from another site
// (Sec-Fetch-Site, else Origin against Host).
var crossOrigin = http.NewCrossOriginProtection()

// csrf refuses a state-changing request without the session's CSRF token,
// or that a browser says came from another origin.
func (c *Console) csrf(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		r := ec.Request()
		s := sessionOf(ec)
		r.Body = http.MaxBytesReader(ec.Response(), r.Body, maxFormBytes)
		if err := crossOrigin.Check(r); err != nil || s == nil || !c.validCSRF(s, r.PostFormValue("csrf")) {
			c.log.Warn().Str("route", ec.Path()).Str("ip", ec.RealIP()).Msg("console form refused: CSRF token or origin check failed")
			return c.errorPage(ec, http.StatusForbidden, "This form has expired or came from another site",
				"Nothing was changed. Go back, reload the page and try again.")
		}
		return next(ec)
	}
}

// operatorOnly hides operator views from account sessions (404: they don't
// exist for an account).
func (c *Console) operatorOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(ec echo.Context) error {
		if s := sessionOf(ec); s == nil || !s.operator() {
			return c.notFound(ec)
		}
		return next(ec)
	}
}

// localPath returns next if it is a path of the console, else the overview:
// the sign-in page's next parameter must not send anyone elsewhere.
func localPath(next string) string {
	if !strings.HasPrefix(next, "/console") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, "/console/live/") || strings.HasPrefix(next, "/console/login") {
		return "/console"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/console"
	}
	return next
}

// limiter bounds failed sign-ins per client address.
type limiter struct {
	mu    sync.Mutex
	rate  rate.Limit
	burst int
	by    map[string]*rate.Limiter
}

func newLimiter(r float64, burst int) *limiter {
	return &limiter{rate: rate.Limit(r), burst: burst, by: make(map[string]*rate.Limiter)}
}

func (l *limiter) get(key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.by[key]
	if !ok {
		if len(l.by) >= 10_000 {
			clear(l.by)
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.by[key] = lim
	}
	return lim
}

// blocked reports whether key has no failures left, and for how long.
func (l *limiter) blocked(key string, now time.Time) (bool, time.Duration) {
	lim := l.get(key)
	if lim.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - lim.TokensAt(now)) / float64(l.rate) * float64(time.Second))
}

// failed spends one of key's failures.
func (l *limiter) failed(key string, now time.Time) { l.get(key).AllowN(now, 1) }
