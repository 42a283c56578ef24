package postgres

import (
	"context"

	"github.com/jmoiron/sqlx"
)

// RateLimits are token buckets shared by every API replica, one per key,
// in sms.rate_limits (migration 00009): sms/http.SharedLimiter takes
// tokens from them in chunks.
type RateLimits struct {
	db *sqlx.DB
}

// NewRateLimits returns the shared buckets on db.
func NewRateLimits(db *sqlx.DB) *RateLimits { return &RateLimits{db: db} }

// Take refills key's bucket (rate tokens a second, at most burst, by the
// database's clock), then takes up to want tokens if at least need are
// there, else none; it returns what it took and what is left.
func (r *RateLimits) Take(ctx context.Context, key string, rate, burst float64, want, need int) (granted int, available float64, err error) {
	err = r.db.QueryRowContext(ctx, `SELECT granted, available FROM sms.take_tokens($1, $2, $3, $4, $5)`, key, rate, burst, want, need).
		Scan(&granted, &available)
	if err != nil {
		return 0, 0, storeErr("take rate-limit tokens", err)
	}
	return granted, available, nil
}
