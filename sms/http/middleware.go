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
	"golang.org/x/time/rate"

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
// h.failures. A key whose prefix this process has verified before (Seen)
// is always checked: from the cache, or with one query per cache TTL for
// a prefix that names a real key. Any other key may cost a query, so it
// takes a token from its address's bucket before the lookup (concurrent
// requests cannot all pass a check of the budget) and gives it back if
// the key turns out good: valid keys never use up an address's budget.
//
// Once an address is over its limit, what is known to name no key
// (malformed, or a prefix looked up in vain within the cache TTL) gets 429
// without a query, and so does a request without a key. A key neither
// cache knows may be a valid one used for the first time here (a new
// key, a restart, another replica's client), so it is still looked up,
// within a second bucket per address of the same size that only such
// lookups use and that good keys give back. A flood of junk or of one
// forged key therefore cannot lock a new valid key out; only fresh forged
// prefixes use up that bucket, and each costs the query it was allowed.
// In all, forged keys cost an address at most twice the failure budget in
// queries, never one per request.
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
	if h.auth.Seen(key) {
		account, err := h.auth.Authenticate(ctx, key)
		if errors.Is(err, sms.ErrUnauthorized) {
			h.failures.allow(addr) // counted, but a known prefix is never held back
		}
		return account, err
	}
	tok, retry := h.failures.take(addr)
	if tok == nil {
		if m, ok := h.auth.(missingKeys); ok && m.Missing(key) {
			return 0, tooManyFailures(retry)
		}
		if tok, _ = h.failures.take(lookupBucket(addr)); tok == nil {
			return 0, tooManyFailures(retry)
		}
	}
	account, err := h.auth.Authenticate(ctx, key)
	if !errors.Is(err, sms.ErrUnauthorized) {
		tok.giveBack() // a good key, or the store failed: not a failed attempt
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

// token is one taken from a bucket of a limiter, to be given back if it
// was not spent.
type token struct {
	r  *rate.Reservation
	at time.Time
}

// take takes a token from key's bucket, or returns nil and how long until
// there is one.
func (l *limiter) take(key string) (*token, time.Duration) {
	l.mu.Lock()
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) > 100_000 {
			clear(l.buckets) // bounds memory, as allowN does
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	now := time.Now()
	r := b.ReserveN(now, 1)
	if !r.OK() {
		return nil, time.Duration(float64(time.Second) / float64(l.limit))
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return nil, d
	}
	return &token{r: r, at: now}, 0
}

// giveBack returns the token to its bucket. Cancelled as of when it was
// taken, the reservation restores the token and counts the refill since
// then once, whatever the bucket did in between.
func (t *token) giveBack() { t.r.CancelAt(t.at) }

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
