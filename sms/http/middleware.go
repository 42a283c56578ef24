package http

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/smsctl/smsctl/sms"
)

func accountOf(c echo.Context) int64 {
	id, _ := c.Get("account").(int64)
	return id
}

func bearer(c echo.Context) (string, bool) {
	scheme, token, ok := strings.Cut(c.Request().Header.Get(echo.HeaderAuthorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return strings.TrimSpace(token), true
}

// authenticate finds the request's account, keeping failed attempts cheap.
//
// Failed attempts are counted per client address (clientAddr) in
// h.failures, and only failures: a valid key never uses up its address's
// budget, however many requests a cold cache sends to the store at once.
// A key whose prefix this process has cached (Seen) is always checked:
// from the cache, or with one query per cache TTL for a prefix that names
// a real key.
//
// Once an address is over its limit, what is known to name no key
// (malformed, or a prefix looked up in vain within the cache TTL) gets 429
// without a query, and so does a request without a key. A key neither
// cache knows may be a valid one used for the first time here (a new
// key, a restart, another replica's client), so it is still looked up,
// within a second budget per address of the same size that only the
// failures of such lookups spend. A flood of junk or of one forged key
// therefore cannot lock a new valid key out; only fresh forged prefixes
// use up that budget, each at the cost of its query. In all, forged keys
// cost an address about twice the failure budget in queries, plus one
// for each request of theirs in flight when a budget runs out, never one
// per request.
func (h *Handler) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		addr := clientAddr(c.RealIP())
		key, ok := bearer(c)
		if !ok {
			if blocked, retry := h.failures.exhausted(addr); blocked {
				return tooManyFailures(retry)
			}
			h.failures.allow(addr)
			return sms.Unauthorized("missing Authorization: Bearer <api key>")
		}
		account, err := h.verify(c.Request().Context(), addr, key)
		if err != nil {
			return err
		}
		c.Set("account", account)
		c.Set("api_key", key[:min(len(key), 12)])
		return next(c)
	}
}

// missingKeys is implemented by an Authenticator that knows, without a
// query, keys that name no key (*postgres.Keys).
type missingKeys interface{ Missing(key string) bool }

// lookupBucket names an address's second bucket in h.failures: lookups of
// keys no cache knows while the address is over its limit.
func lookupBucket(addr string) string { return "lookup " + addr }

// verify authenticates key for a request from addr (see authenticate).
func (h *Handler) verify(ctx context.Context, addr, key string) (int64, error) {
	bucket := addr
	if !h.auth.Seen(key) {
		if blocked, retry := h.failures.exhausted(addr); blocked {
			if m, ok := h.auth.(missingKeys); ok && m.Missing(key) {
				return 0, tooManyFailures(retry)
			}
			if blocked, _ := h.failures.exhausted(lookupBucket(addr)); blocked {
				return 0, tooManyFailures(retry)
			}
			bucket = lookupBucket(addr)
		}
	}
	account, err := h.auth.Authenticate(ctx, key)
	if errors.Is(err, sms.ErrUnauthorized) {
		h.failures.allow(bucket)
	}
	return account, err
}

func tooManyFailures(retry time.Duration) error {
	return sms.RateLimited("authentication-failures", "too many failed authentications from this address; retry after the time in Retry-After", ceilSecond(retry))
}

// clientAddr is what failed authentications are counted by: the client's
// address, or for IPv6 its /64, which one subscriber or host usually holds
// whole (counting each of its 2^64 addresses apart would limit nothing).
func clientAddr(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (h *Handler) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		key, _ := c.Get("api_key").(string)
		ok, remaining, retry := h.limits.allow(key)
		hdr := c.Response().Header()
		hdr.Set("RateLimit-Limit", strconv.Itoa(h.cfg.RateBurst))
		hdr.Set("RateLimit-Remaining", strconv.Itoa(remaining))
		if !ok {
			retry = ceilSecond(retry)
			hdr.Set("RateLimit-Reset", strconv.Itoa(int(retry.Seconds())))
			return sms.RateLimited("", "rate limit exceeded for this API key; retry after the time in Retry-After", retry)
		}
		return next(c)
	}
}

func (h *Handler) internalOnly(next echo.HandlerFunc) echo.HandlerFunc {
	want := sha256.Sum256([]byte(h.cfg.InternalToken))
	return func(c echo.Context) error {
		token, ok := bearer(c)
		got := sha256.Sum256([]byte(token))
		if !ok || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
			return sms.Unauthorized("the internal endpoints need the internal token")
		}
		return next(c)
	}
}

// ceilSecond rounds d up to whole seconds, the unit of Retry-After.
func ceilSecond(d time.Duration) time.Duration {
	return time.Duration(math.Ceil(d.Seconds())) * time.Second
}
