package http

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"math"
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

// authenticate finds the request's account. Failed attempts are counted
// per client address: past AuthFailureBurst, a key this process has not
// verified before is refused with 429 before any lookup, so a flood of
// forged keys costs the database nothing, while known keys go on working.
func (h *Handler) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ip := c.RealIP()
		key, ok := bearer(c)
		if blocked, retry := h.failures.exhausted(ip); blocked && !(ok && h.auth.Seen(key)) {
			return sms.RateLimited("authentication-failures", "too many failed authentications from this address; retry after the time in Retry-After", ceilSecond(retry))
		}
		if !ok {
			h.failures.allow(ip)
			return sms.Unauthorized("missing Authorization: Bearer <api key>")
		}
		account, err := h.auth.Authenticate(c.Request().Context(), key)
		if err != nil {
			if errors.Is(err, sms.ErrUnauthorized) {
				h.failures.allow(ip)
			}
			return err
		}
		c.Set("account", account)
		c.Set("api_key", key[:min(len(key), 12)])
		return next(c)
	}
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
