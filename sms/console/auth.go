package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

type loginData struct {
	Next  string
	Token string
	// Operators says whether the admin token is accepted here.
	Operators bool
}

func (c *Console) loginPage(ec echo.Context) error {
	r := ec.Request()
	if s, err := c.readSession(r); err == nil && c.checkSession(ec, s) == nil {
		return ec.Redirect(http.StatusSeeOther, localPath(ec.QueryParam("next")))
	}
	return c.showLogin(ec, http.StatusOK, "")
}

// showLogin renders the sign-in form with a fresh nonce cookie.
func (c *Console) showLogin(ec echo.Context, status int, problem string) error {
	r := ec.Request()
	nonce := randomID()
	http.SetCookie(ec.Response(), &http.Cookie{Name: cookieLogin, Value: nonce, Path: "/console/login", HttpOnly: true,
		Secure: c.secure(r), SameSite: http.SameSiteStrictMode, MaxAge: int(loginNonceAge / time.Second)})
	next := ec.QueryParam("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	v, err := c.newView(ec, "Sign in", "", loginData{Next: localPath(next), Token: c.loginToken(nonce), Operators: c.cfg.AdminToken != ""})
	if err != nil {
		return c.fail(ec, err)
	}
	v.Error = problem
	return c.render(ec, status, "login", v)
}

// login signs in with an API key (that account) or the admin token (every
// account). Failures are limited per client address, and all look alike.
func (c *Console) login(ec echo.Context) error {
	r := ec.Request()
	r.Body = http.MaxBytesReader(ec.Response(), r.Body, maxFormBytes)
	nonce, _ := r.Cookie(cookieLogin)
	if crossOrigin.Check(r) != nil || nonce == nil ||
		subtle.ConstantTimeCompare([]byte(c.loginToken(nonce.Value)), []byte(r.PostFormValue("csrf"))) != 1 {
		return c.showLogin(ec, http.StatusForbidden, "The sign-in form expired. Try again.")
	}
	now := c.now()
	ip := ec.RealIP()
	if blocked, wait := c.logins.blocked(ip, now); blocked {
		ec.Response().Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		return c.showLogin(ec, http.StatusTooManyRequests, "Too many failed sign-ins from this address. Wait a little and try again.")
	}
	secret := strings.TrimSpace(r.PostFormValue("secret"))
	s := &session{ID: randomID(), Issued: now.Unix(), Seen: now.Unix()}
	switch {
	case c.cfg.AdminToken != "" && equalSecret(secret, c.cfg.AdminToken):
		s.Role, s.TokenMark = roleOperator, c.tokenMark()
	default:
		prefix, ok := sms.KeyPrefix(secret)
		if !ok {
			return c.loginFailed(ec, ip, now)
		}
		account, err := c.d.Keys.Authenticate(r.Context(), secret)
		if errors.Is(err, sms.ErrUnauthorized) {
			return c.loginFailed(ec, ip, now)
		}
		if err != nil {
			return c.fail(ec, err)
		}
		s.Role, s.Account, s.KeyPrefix = roleAccount, account, prefix
		c.read.forgetKey(prefix)
	}
	if err := c.writeSession(ec.Response(), r, s); err != nil {
		return c.fail(ec, err)
	}
	http.SetCookie(ec.Response(), &http.Cookie{Name: cookieLogin, Path: "/console/login", MaxAge: -1, HttpOnly: true,
		Secure: c.secure(r), SameSite: http.SameSiteStrictMode})
	ev := c.log.Info().Str("role", s.Role).Str("ip", ip)
	if s.Role == roleAccount {
		ev = ev.Int64("account_id", s.Account).Str("key_prefix", s.KeyPrefix)
	}
	ev.Msg("console sign-in")
	return ec.Redirect(http.StatusSeeOther, localPath(r.PostFormValue("next")))
}

func (c *Console) loginFailed(ec echo.Context, ip string, now time.Time) error {
	c.logins.failed(ip, now)
	c.log.Warn().Str("ip", ip).Msg("console sign-in failed")
	return c.showLogin(ec, http.StatusUnauthorized, "That API key or admin token is not valid.")
}

// equalSecret compares in constant time, whatever the lengths.
func equalSecret(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}

// logout ends the session in this browser. The cookie is stateless: a copy
// taken before stays good until its idle or absolute limit (see the
// package's notes).
func (c *Console) logout(ec echo.Context) error {
	c.clearSession(ec.Response(), ec.Request())
	c.log.Info().Str("role", sessionOf(ec).Role).Msg("console sign-out")
	return ec.Redirect(http.StatusSeeOther, "/console/login?done=signedout")
}

// setScope lets an operator look at one account, or at every account.
func (c *Console) setScope(ec echo.Context) error {
	s := sessionOf(ec)
	raw := ec.FormValue("account")
	var id int64
	if raw != "" && raw != "0" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || n <= 0 {
			return c.notFound(ec)
		}
		if _, err := c.read.accountName(ec.Request().Context(), n); err != nil {
			return c.fail(ec, err)
		}
		id = n
	}
	s.Account = id
	if err := c.writeSession(ec.Response(), ec.Request(), s); err != nil {
		return c.fail(ec, err)
	}
	next := localPath(ec.FormValue("next"))
	sep := "?"
	if strings.Contains(next, "?") {
		sep = "&"
	}
	return ec.Redirect(http.StatusSeeOther, next+sep+"done=scoped")
}
