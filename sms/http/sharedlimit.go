package http

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// keyLimiter is a token bucket per API key: the local limiter (one bucket
// per key in this process) or SharedLimiter (one bucket per key for every
// API replica on the database).
type keyLimiter interface {
	allow(key string) (ok bool, remaining int, retryAfter time.Duration)
	allowN(key string, n int) (ok bool, remaining int, retryAfter time.Duration)
}

var (
	_ keyLimiter = (*limiter)(nil)
	_ keyLimiter = (*SharedLimiter)(nil)
)

// SharedLimitConfig tunes a SharedLimiter.
type SharedLimitConfig struct {
	// Rate is the sustained requests per second per key, across replicas.
	Rate float64
	// Burst is the bucket's size.
	Burst int
	// Chunk is how many tokens a replica takes from the shared bucket at
	// once and then spends without asking the database. Larger chunks cost
	// fewer queries and allow a larger error (see SharedLimiter). Defaults
	// to Rate/20 (a refill every 50 ms at the full rate), at most Burst/10,
	// at least 1.
	Chunk int
	// Timeout bounds one query; past it, or on any database error, the
	// key's requests are limited by a local bucket for FallbackFor.
	// Defaults to 1s.
	Timeout time.Duration
	// FallbackFor is how long the local buckets stand in after the
	// database failed, before it is tried again. Defaults to 1s.
	FallbackFor time.Duration
	// IdleAfter forgets a key's local state (and the few tokens it holds)
	// once unused this long, to bound memory. Defaults to 1 minute.
	IdleAfter time.Duration
}

func (c SharedLimitConfig) withDefaults() SharedLimitConfig {
	if c.Chunk <= 0 {
		c.Chunk = int(c.Rate / 20)
		if b := c.Burst / 10; c.Chunk > b {
			c.Chunk = b
		}
		c.Chunk = max(c.Chunk, 1)
	}
	c.Chunk = min(c.Chunk, max(c.Burst, 1))
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.FallbackFor <= 0 {
		c.FallbackFor = time.Second
	}
	if c.IdleAfter <= 0 {
		c.IdleAfter = time.Minute
	}
	return c
}

// SharedLimiter keeps one token bucket per API key in PostgreSQL
// (sms.rate_limits, a row per key) for every API replica at once, so that
// a client spreading its requests over N replicas gets its limit, not N
// times it.
//
// Each replica takes tokens from the key's row in chunks (Chunk tokens in
// one statement, sms.take_tokens, which refills the bucket by the time
// elapsed since its last refill, by the database's clock) and spends them
// locally: at the full rate, a replica queries the database once per
// Chunk requests of a key, not once per request. When the shared bucket
// holds fewer tokens than a request needs, the replica refuses that key's
// requests locally until a chunk has had time to accumulate, so a client
// far over its limit costs one query per chunk interval per replica, not
// one per refused request.
//
// A refill takes up to Chunk tokens, or up to what the key earns in two
// refill round trips (2 × Rate × RTT) when that is more, so that a slow
// database neither caps a key at Chunk tokens per round trip nor lets the
// shared bucket overflow while replicas wait for their answers.
//
// Error bound. Tokens leave the shared bucket only once, so over any
// interval T a key is granted at most Burst + Rate×T tokens. What a
// replica took but has not spent yet is held back from the others: at
// most H = max(Chunk, 2 × Rate × RTT) tokens per replica, where RTT is
// the refill's round trip (under a millisecond on a healthy database, so
// H = Chunk). Hence, with R replicas:
//   - over-admission: in any interval, accepted ≤ Burst + Rate×T + R×H
//     (tokens taken before the interval and spent in it);
//   - under-admission: a request can be refused while at most (R−1)×H
//     tokens sit unspent in other replicas, and a replica that stops
//     seeing a key drops what it holds after IdleAfter (at most H).
//     Tokens not taken meanwhile stay in the shared bucket, so a client
//     held back by a refill wait gets them later.
//
// With the defaults (Rate 1000/s, Burst 2000: Chunk 50) and three
// replicas the error is at most 150 requests, 7.5% of the burst or 0.15 s
// at the full rate.
//
// Cost: one UPDATE of one row (an UNLOGGED table: no WAL) per Chunk
// requests per key per replica; at 10,000 requests/s over all keys with
// Chunk 50, about 200 statements a second. A hot key's row is a point of
// contention only among the replicas refilling it (R at most at once).
//
// If the database cannot be reached, or a refill takes longer than
// Timeout, each replica falls back to a local bucket with the full limit
// (the per-replica behaviour: at most R times the limit) for FallbackFor,
// then tries again; requests are never refused because the limiter
// failed. The bounds above hold while the database answers within
// Timeout; a warning is logged (at most every 10 s) while it does not.
type SharedLimiter struct {
	buckets  SharedBuckets
	cfg      SharedLimitConfig
	fallback *limiter
	log      zerolog.Logger

	mu       sync.Mutex
	keys     map[string]*leased
	down     time.Time // the database failed: local buckets until then
	warned   time.Time
	lastTidy time.Time
}

// leased is one key's state in this replica.
type leased struct {
	mu sync.Mutex
	// tokens were taken from the shared bucket and not spent yet.
	tokens int
	// shared is what the shared bucket held after the last refill.
	shared float64
	// waitUntil: the shared bucket was short; ask again only then.
	waitUntil time.Time
	// retryAt: when the shared bucket will have the tokens last asked for.
	retryAt time.Time
	used    time.Time
	// rtt is how long the last refill took.
	rtt time.Duration
}

// SharedBuckets holds token buckets every API replica sees;
// *postgres.RateLimits is the implementation.
type SharedBuckets interface {
	// Take refills key's bucket (rate tokens a second, at most burst),
	// then takes up to want tokens if at least need are there, else none;
	// it returns what it took and what is left.
	Take(ctx context.Context, key string, rate, burst float64, want, need int) (granted int, available float64, err error)
}

// NewSharedLimiter returns a limiter on the shared buckets.
func NewSharedLimiter(buckets SharedBuckets, cfg SharedLimitConfig, log zerolog.Logger) *SharedLimiter {
	cfg = cfg.withDefaults()
	return &SharedLimiter{buckets: buckets, cfg: cfg, fallback: newLimiter(cfg.Rate, cfg.Burst),
		log: log.With().Str("component", "ratelimit").Logger(), keys: make(map[string]*leased)}
}

func (s *SharedLimiter) allow(key string) (bool, int, time.Duration) { return s.allowN(key, 1) }

func (s *SharedLimiter) allowN(key string, n int) (bool, int, time.Duration) {
	return s.AllowN(context.Background(), key, n)
}

// AllowN takes n tokens for key, or none; when it cannot, it says how long
// until the shared bucket has them. remaining is about what is left to
// this key across replicas.
func (s *SharedLimiter) AllowN(ctx context.Context, key string, n int) (ok bool, remaining int, retryAfter time.Duration) {
	if n > s.cfg.Burst {
		return false, 0, s.timeFor(float64(n))
	}
	now := time.Now()
	s.mu.Lock()
	if now.Before(s.down) {
		s.mu.Unlock()
		return s.fallback.allowN(key, n)
	}
	s.tidy(now)
	b := s.keys[key]
	if b == nil {
		b = &leased{used: now}
		s.keys[key] = b
	}
	s.mu.Unlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	b.used = now
	if b.tokens >= n {
		b.tokens -= n
		return true, b.remaining(), 0
	}
	if now.Before(b.waitUntil) {
		return false, b.remaining(), max(b.retryAt.Sub(now), time.Millisecond)
	}
	need := n - b.tokens
	chunk := max(need, s.cfg.Chunk)
	// Up to what the key earns in two round trips, when that is more: at
	// most one refill per round trip per replica must keep up with the
	// rate, or the shared bucket would fill up and waste tokens.
	want := max(chunk, min(int(math.Ceil(2*s.cfg.Rate*b.rtt.Seconds())), s.cfg.Burst))
	asked := time.Now()
	qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	granted, shared, err := s.take(qctx, key, want, need)
	cancel()
	if err != nil {
		s.failed(err)
		return s.fallback.allowN(key, n)
	}
	b.rtt = time.Since(asked)
	b.shared = shared
	if granted >= need {
		b.tokens += granted - n
		return true, b.remaining(), 0
	}
	// Short: refuse this key here until the bucket can give a chunk, and
	// tell the client when one request would pass.
	b.retryAt = now.Add(s.timeFor(float64(need) - shared))
	b.waitUntil = now.Add(s.timeFor(float64(chunk) - shared))
	return false, b.remaining(), max(b.retryAt.Sub(now), time.Millisecond)
}

func (b *leased) remaining() int { return b.tokens + int(b.shared) }

// timeFor is how long the bucket takes to refill tokens.
func (s *SharedLimiter) timeFor(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(tokens / s.cfg.Rate * float64(time.Second)))
}

func (s *SharedLimiter) take(ctx context.Context, key string, want, need int) (granted int, available float64, err error) {
	return s.buckets.Take(ctx, key, s.cfg.Rate, float64(s.cfg.Burst), want, need)
}

// failed switches to the local buckets for a while.
func (s *SharedLimiter) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.down = now.Add(s.cfg.FallbackFor)
	if now.Sub(s.warned) >= 10*time.Second {
		s.warned = now
		s.log.Warn().Err(err).Dur("for", s.cfg.FallbackFor).Msg("shared rate limits unavailable; limiting per replica")
	}
}

// tidy forgets keys idle for IdleAfter, at most once per IdleAfter; s.mu
// is held.
func (s *SharedLimiter) tidy(now time.Time) {
	if now.Sub(s.lastTidy) < s.cfg.IdleAfter && len(s.keys) <= 100_000 {
		return
	}
	s.lastTidy = now
	for k, b := range s.keys {
		if b.mu.TryLock() {
			if now.Sub(b.used) >= s.cfg.IdleAfter {
				delete(s.keys, k)
			}
			b.mu.Unlock()
		}
	}
}
