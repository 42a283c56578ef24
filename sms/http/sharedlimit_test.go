package http

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms/postgres"
)

// Two replicas hammering one key through their own SharedLimiter on one
// database grant about the one bucket's worth, within the documented
// bound, not twice it.
func TestSharedLimiterAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	const rate, burst, chunk = 200.0, 100, 10
	// A timeout no loaded test database reaches: the fallback is tested
	// on its own.
	cfg := SharedLimitConfig{Rate: rate, Burst: burst, Chunk: chunk, Timeout: time.Minute}
	replicas := []*SharedLimiter{NewSharedLimiter(postgres.NewRateLimits(db), cfg, zerolog.Nop()), NewSharedLimiter(postgres.NewRateLimits(db), cfg, zerolog.Nop())}

	// The bucket starts full when a replica first asks for the key: ask
	// once before the clock starts.
	if ok, _, _ := replicas[0].allow("sms_sharedkey"); !ok {
		t.Fatal("the first request was refused")
	}
	var created time.Time
	if err := db.Get(&created, `SELECT refreshed_at FROM sms.rate_limits WHERE key = 'sms_sharedkey'`); err != nil {
		t.Fatal(err)
	}
	var accepted, refused atomic.Int64
	accepted.Add(1)
	start := time.Now()
	deadline := start.Add(1500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			l := replicas[i%len(replicas)]
			for time.Now().Before(deadline) {
				ok, _, retry := l.allow("sms_sharedkey")
				if ok {
					accepted.Add(1)
					continue
				}
				refused.Add(1)
				if retry <= 0 {
					t.Error("refused without a retry time")
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	// Tokens taken from the shared bucket: spent, or still held by a
	// replica (they would be spent next). That is what one bucket allows.
	held := 0
	for _, l := range replicas {
		l.mu.Lock()
		if b := l.keys["sms_sharedkey"]; b != nil {
			b.mu.Lock()
			held += b.tokens
			b.mu.Unlock()
		}
		l.mu.Unlock()
	}
	// The shared bucket's last refill: what it held then, and when.
	var row struct {
		Tokens float64   `db:"tokens"`
		At     time.Time `db:"refreshed_at"`
	}
	if err := db.Get(&row, `SELECT tokens, refreshed_at FROM sms.rate_limits WHERE key = 'sms_sharedkey'`); err != nil {
		t.Fatal(err)
	}
	got := float64(accepted.Load())
	taken := got + float64(held)
	// What one bucket supplied from its creation to its last refill: the
	// burst, and the rate since (the database's clock).
	supply := burst + rate*row.At.Sub(created).Seconds()
	t.Logf("accepted %.0f, held %d, refused %d in %.2fs; one bucket supplied %.0f until its last refill, %.0f left in it; one local bucket per replica would have allowed %.0f",
		got, held, refused.Load(), elapsed, supply, row.Tokens, float64(len(replicas))*(burst+rate*elapsed))
	// No token is spent twice ...
	if taken > supply+1 {
		t.Errorf("replicas took %.0f tokens (accepted %.0f, held %d), more than one bucket supplied (%.0f)", taken, got, held, supply)
	}
	// ... and few are wasted (the bucket overflowing while no replica took
	// from it): taken and left add up to what the bucket supplied.
	if taken+row.Tokens < 0.95*supply {
		t.Errorf("replicas took %.0f tokens and %.0f were left, under 95%% of the %.0f supplied: tokens were wasted", taken, row.Tokens, supply)
	}
	if got < 0.7*(burst+rate*elapsed) {
		t.Errorf("accepted %.0f, under 70%% of one bucket's %.0f", got, burst+rate*elapsed)
	}
	if refused.Load() == 0 {
		t.Error("nothing was refused: the load did not reach the limit")
	}
}

// Keys have their own buckets; a batch takes all its tokens or none; more
// than the burst at once is refused without a query.
func TestSharedLimiterKeysAndBatches(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	l := NewSharedLimiter(postgres.NewRateLimits(db), SharedLimitConfig{Rate: 0.001, Burst: 10, Chunk: 4, Timeout: time.Minute}, zerolog.Nop())
	ctx := context.Background()
	if ok, _, _ := l.AllowN(ctx, "a", 8); !ok {
		t.Fatal("8 of a burst of 10: refused")
	}
	if ok, _, retry := l.AllowN(ctx, "a", 3); ok || retry <= 0 {
		t.Fatalf("3 more with 2 left: ok=%v retry=%s, want refused with a retry time", ok, retry)
	}
	if ok, _, _ := l.AllowN(ctx, "b", 10); !ok {
		t.Fatal("another key: refused")
	}
	if ok, _, retry := l.AllowN(ctx, "c", 11); ok || retry < time.Hour {
		t.Fatalf("more than the burst: ok=%v retry=%s", ok, retry)
	}
	// A second replica sees what the first took.
	other := NewSharedLimiter(postgres.NewRateLimits(db), SharedLimitConfig{Rate: 0.001, Burst: 10, Chunk: 4, Timeout: time.Minute}, zerolog.Nop())
	ok, remaining, _ := other.AllowN(ctx, "a", 2)
	if !ok {
		t.Fatal("the last 2 tokens of key a, from another replica: refused")
	}
	if ok, _, _ := other.AllowN(ctx, "a", 1); ok {
		t.Fatalf("key a is spent across replicas, yet another replica granted one more (remaining said %d)", remaining)
	}
	var rows int
	if err := db.Get(&rows, `SELECT count(*) FROM sms.rate_limits`); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Errorf("%d bucket rows, want 2 (a and b; c never reached the database)", rows)
	}
}

// With the database gone the limiter falls back to a local bucket: it
// neither fails requests nor blocks longer than its timeout.
func TestSharedLimiterFallsBack(t *testing.T) {
	t.Parallel()
	db, err := sql.Open("postgres", "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	l := NewSharedLimiter(postgres.NewRateLimits(sqlx.NewDb(db, "postgres")), SharedLimitConfig{Rate: 1, Burst: 3, Timeout: 200 * time.Millisecond}, zerolog.Nop())
	start := time.Now()
	for i := range 3 {
		if ok, _, _ := l.allow("k"); !ok {
			t.Fatalf("request %d within the local burst: refused", i)
		}
	}
	if ok, _, retry := l.allow("k"); ok || retry <= 0 {
		t.Fatalf("past the local burst: ok=%v retry=%s", ok, retry)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("four decisions took %s with the database down", d)
	}
}
