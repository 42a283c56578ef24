package http

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter keeps one token bucket per API key.
type limiter struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(perSecond float64, burst int) *limiter {
	return &limiter{limit: rate.Limit(perSecond), burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// exhausted reports whether key's bucket has no token left, and how long
// until it has one, without taking any.
func (l *limiter) exhausted(key string) (bool, time.Duration) {
	l.mu.Lock()
	b, found := l.buckets[key]
	l.mu.Unlock()
	if !found {
		return false, 0
	}
	now := time.Now()
	if b.TokensAt(now) >= 1 {
		return false, 0
	}
	r := b.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return true, d
}

// allow takes a token for key; when none is left it says how long to wait.
func (l *limiter) allow(key string) (ok bool, remaining int, retryAfter time.Duration) {
	return l.allowN(key, 1)
}

// allowN takes n tokens for key at once, or none.
func (l *limiter) allowN(key string, n int) (ok bool, remaining int, retryAfter time.Duration) {
	l.mu.Lock()
	b, found := l.buckets[key]
	if !found {
		if len(l.buckets) > 100_000 {
			clear(l.buckets) // bounds memory
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[key] = b
	}
	l.mu.Unlock()
	now := time.Now()
	r := b.ReserveN(now, n)
	if !r.OK() {
		return false, 0, time.Duration(float64(n) / float64(l.limit) * float64(time.Second))
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, 0, d
	}
	return true, int(b.TokensAt(now)), 0
}
