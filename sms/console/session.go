package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Roles a session has.
const (
	roleAccount  = "account"
	roleOperator = "operator"
)

// session is what the signed cookie holds. It holds no secret: an account
// session names its key by prefix (so that revoking the key ends it), an
// operator session holds a fingerprint of the admin token (so that a new
// token ends it).
type session struct {
	// ID ties the CSRF token to this sign-in.
	ID   string `json:"sid"`
	Role string `json:"r"`
	// Account is the account of an account session, or the account an
	// operator is looking at (0: every account).
	Account   int64  `json:"a,omitempty"`
	KeyPrefix string `json:"k,omitempty"`
	TokenMark string `json:"t,omitempty"`
	// Issued is when the session began and Seen when it was last used, in
	// Unix seconds.
	Issued int64 `json:"i"`
	Seen   int64 `json:"s"`
}

func (s *session) operator() bool { return s.Role == roleOperator }

// scope is the account the session's views are limited to, 0 for every
// account (operators only).
func (s *session) scope() int64 { return s.Account }

var errBadSession = errors.New("no valid session")

// sign returns the MAC of msg under the session key, for purpose.
func (c *Console) sign(purpose, msg string) []byte {
	mac := hmac.New(sha256.New, c.cfg.SessionKey)
	mac.Write([]byte(purpose))
	mac.Write([]byte{0})
	mac.Write([]byte(msg))
	return mac.Sum(nil)
}

var b64 = base64.RawURLEncoding

func (c *Console) encodeSession(s *session) (string, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	payload := b64.EncodeToString(raw)
	return payload + "." + b64.EncodeToString(c.sign("session", payload)), nil
}

func (c *Console) decodeSession(value string) (*session, error) {
	payload, mac, ok := strings.Cut(value, ".")
	if !ok || len(value) > 2048 {
		return nil, errBadSession
	}
	got, err := b64.DecodeString(mac)
	if err != nil || !hmac.Equal(got, c.sign("session", payload)) {
		return nil, errBadSession
	}
	raw, err := b64.DecodeString(payload)
	if err != nil {
		return nil, errBadSession
	}
	var s session
	if err := json.Unmarshal(raw, &s); err != nil || s.ID == "" {
		return nil, errBadSession
	}
	switch s.Role {
	case roleAccount:
		if s.Account <= 0 || s.KeyPrefix == "" {
			return nil, errBadSession
		}
	case roleOperator:
	default:
		return nil, errBadSession
	}
	now := c.now().Unix()
	if now-s.Issued > int64(c.cfg.MaxAge/time.Second) || now-s.Seen > int64(c.cfg.IdleTimeout/time.Second) || s.Issued > now+60 {
		return nil, errBadSession
	}
	return &s, nil
}

// tokenMark fingerprints the admin token: an operator session is good only
// while the token it signed in with is the configured one.
func (c *Console) tokenMark() string {
	return b64.EncodeToString(c.sign("admin-token", c.cfg.AdminToken)[:12])
}

// csrfToken is the session's CSRF token: a MAC of its id, so it changes
// with every sign-in and needs no storage.
func (c *Console) csrfToken(s *session) string {
	return b64.EncodeToString(c.sign("csrf", s.ID))
}

func (c *Console) validCSRF(s *session, token string) bool {
	want := c.csrfToken(s)
	return subtle.ConstantTimeCompare([]byte(want), []byte(token)) == 1
}

// loginToken is the CSRF token of the sign-in form, tied to a nonce cookie
// set with the form (a signed double submit): another site can't sign a
// browser in to an account of its choosing.
func (c *Console) loginToken(nonce string) string {
	return b64.EncodeToString(c.sign("login", nonce))
}

func randomID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return b64.EncodeToString(b)
}

// Cookie names: __Host- (Secure, Path=/, no Domain: no subdomain can set
// or read it) over TLS; a plain name limited to /console otherwise.
const (
	cookieSecure  = "__Host-smsctl_console"
	cookiePlain   = "smsctl_console"
	cookieLogin   = "smsctl_console_login"
	loginNonceAge = time.Hour
)

func (c *Console) sessionCookie(r *http.Request, value string, maxAge int) *http.Cookie {
	ck := &http.Cookie{Name: cookiePlain, Value: value, Path: "/console", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: maxAge}
	if c.secure(r) {
		ck.Name, ck.Path, ck.Secure = cookieSecure, "/", true
	}
	return ck
}

// readSession returns the request's session, or errBadSession.
func (c *Console) readSession(r *http.Request) (*session, error) {
	name := cookiePlain
	if c.secure(r) {
		name = cookieSecure
	}
	ck, err := r.Cookie(name)
	if err != nil {
		return nil, errBadSession
	}
	return c.decodeSession(ck.Value)
}

func (c *Console) writeSession(w http.ResponseWriter, r *http.Request, s *session) error {
	v, err := c.encodeSession(s)
	if err != nil {
		return err
	}
	http.SetCookie(w, c.sessionCookie(r, v, int(c.cfg.MaxAge/time.Second)))
	return nil
}

func (c *Console) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, c.sessionCookie(r, "", -1))
}
