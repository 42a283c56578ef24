package postgres

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/sms"
)

// Keys manages accounts and API keys, and authenticates requests.
type Keys struct {
	db       *sqlx.DB
	cacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]cachedKey // by prefix, keys that exist
	// missing holds prefixes no key has, for cacheTTL too: a forged key
	// costs a query once, not on every request.
	missing map[string]time.Time
}

type cachedKey struct {
	accountID int64
	hash      []byte
	revoked   bool
	expires   time.Time
}

// maxCached bounds each cache; beyond it the cache starts over.
const maxCached = 10_000

// NewKeys returns a key manager. Verified keys, and prefixes that name no
// key, are cached for cacheTTL, so a revocation takes effect within that
// time.
func NewKeys(db *sqlx.DB, cacheTTL time.Duration) *Keys {
	return &Keys{db: db, cacheTTL: cacheTTL, cache: make(map[string]cachedKey), missing: make(map[string]time.Time)}
}

// CreateKey creates the account if needed and a new key for it, returning
// the key in full: this is the only time it can be seen.
func (k *Keys) CreateKey(ctx context.Context, account string) (string, sms.APIKey, error) {
	account, err := sms.NormalizeAccountName(account)
	if err != nil {
		return "", sms.APIKey{}, err
	}
	full, prefix, hash, err := sms.NewAPIKey()
	if err != nil {
		return "", sms.APIKey{}, err
	}
	key := sms.APIKey{Account: account, Prefix: prefix}
	err = k.db.QueryRowxContext(ctx, `
        WITH acc AS (
            INSERT INTO sms.accounts (name) VALUES ($1)
            ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
            RETURNING id
        )
        INSERT INTO sms.api_keys (account_id, prefix, hash) SELECT id, $2, $3 FROM acc
        RETURNING id, created_at`, account, prefix, hash).Scan(&key.ID, &key.CreatedAt)
	if err != nil {
		return "", sms.APIKey{}, storeErr("create api key", err)
	}
	// A request may have tried this prefix before it named a key: the
	// new key must work at once, not after the negative cache expires.
	k.mu.Lock()
	delete(k.missing, prefix)
	k.mu.Unlock()
	return full, key, nil
}

// ListKeys lists every key, newest first, without secrets.
func (k *Keys) ListKeys(ctx context.Context) ([]sms.APIKey, error) {
	var keys []sms.APIKey
	err := k.db.SelectContext(ctx, &keys, `
        SELECT k.id, a.name AS account, k.prefix, k.created_at, k.revoked_at
        FROM sms.api_keys k JOIN sms.accounts a ON a.id = k.account_id ORDER BY k.id DESC`)
	if err != nil {
		return nil, storeErr("list api keys", err)
	}
	return keys, nil
}

// RevokeKey revokes the key with id and returns when it was revoked, and
// whether that was earlier, by another call; sms.ErrNotFound if there is none.
func (k *Keys) RevokeKey(ctx context.Context, id int64) (at time.Time, already bool, err error) {
	err = k.db.QueryRowContext(ctx, `
		WITH prev AS (SELECT revoked_at FROM sms.api_keys WHERE id = $1 FOR UPDATE)
		UPDATE sms.api_keys k SET revoked_at = COALESCE(prev.revoked_at, now()) FROM prev
		WHERE k.id = $1 RETURNING k.revoked_at, prev.revoked_at IS NOT NULL`, id).Scan(&at, &already)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, sms.ErrNotFound
	}
	if err != nil {
		return time.Time{}, false, storeErr("revoke api key", err)
	}
	return at, already, nil
}

// Seen reports whether key's prefix names a key this process has cached
// (looked up before, however long ago, whatever secret came with it):
// checking it again costs at most a query per cache TTL, so it is let
// through even from an address whose failed attempts are over their limit.
func (k *Keys) Seen(key string) bool {
	prefix, ok := sms.KeyPrefix(key)
	if !ok {
		return false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	_, seen := k.cache[prefix]
	return seen
}

// Missing reports whether key is known, without a query, to name no key:
// it is malformed, or its prefix was looked up in vain within the cache
// TTL. Such a key costs nothing to refuse.
func (k *Keys) Missing(key string) bool {
	prefix, ok := sms.KeyPrefix(key)
	if !ok {
		return true
	}
	k.mu.Lock()
	until, missing := k.missing[prefix]
	k.mu.Unlock()
	return missing && time.Now().Before(until)
}

// Authenticate returns the account of a full key, or sms.ErrUnauthorized.
func (k *Keys) Authenticate(ctx context.Context, key string) (int64, error) {
	prefix, ok := sms.KeyPrefix(key)
	if !ok {
		return 0, sms.ErrUnauthorized
	}
	sum := sms.HashKey(key)
	now := time.Now()
	k.mu.Lock()
	c, hit := k.cache[prefix]
	missingUntil, missing := k.missing[prefix]
	k.mu.Unlock()
	if missing && now.Before(missingUntil) {
		return 0, sms.ErrUnauthorized
	}
	if !hit || now.After(c.expires) {
		var row struct {
			AccountID int64      `db:"account_id"`
			Hash      []byte     `db:"hash"`
			RevokedAt *time.Time `db:"revoked_at"`
		}
		err := k.db.GetContext(ctx, &row, `SELECT account_id, hash, revoked_at FROM sms.api_keys WHERE prefix = $1`, prefix)
		if errors.Is(err, sql.ErrNoRows) {
			k.mu.Lock()
			if len(k.missing) >= maxCached {
				clear(k.missing)
			}
			k.missing[prefix] = now.Add(k.cacheTTL)
			k.mu.Unlock()
			return 0, sms.ErrUnauthorized
		}
		if err != nil {
			return 0, storeErr("authenticate", err)
		}
		c = cachedKey{accountID: row.AccountID, hash: row.Hash, revoked: row.RevokedAt != nil, expires: now.Add(k.cacheTTL)}
		k.mu.Lock()
		if len(k.cache) >= maxCached {
			clear(k.cache) // only prefixes of real keys get here
		}
		k.cache[prefix] = c
		k.mu.Unlock()
	}
	if subtle.ConstantTimeCompare(c.hash, sum[:]) != 1 || c.revoked {
		return 0, sms.ErrUnauthorized
	}
	return c.accountID, nil
}
