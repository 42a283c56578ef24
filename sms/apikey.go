package sms

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Account owns messages, API keys and (wave 2) numbers and endpoints.
type Account struct {
	ID   int64  `db:"id"`
	Name string `db:"name"`
}

// APIKey describes a key without its secret.
type APIKey struct {
	ID        int64      `db:"id" json:"id"`
	Account   string     `db:"account" json:"account"`
	Prefix    string     `db:"prefix" json:"prefix"`
	CreatedAt time.Time  `db:"created_at" json:"created_at"`
	RevokedAt *time.Time `db:"revoked_at" json:"revoked_at,omitempty"`
}

// Keys are "sms_<prefix>_<secret>": the prefix finds the key and tells keys
// apart in listings; only a SHA-256 of the whole key is stored.
const keyScheme = "sms_"

// NewAPIKey returns a new key in full (shown once), its prefix, and the
// hash to store.
func NewAPIKey() (full, prefix string, hash []byte, err error) {
	p, secret := make([]byte, 4), make([]byte, 24)
	if _, err := rand.Read(p); err != nil {
		return "", "", nil, fmt.Errorf("generate key: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return "", "", nil, fmt.Errorf("generate key: %w", err)
	}
	prefix = hex.EncodeToString(p)
	full = keyScheme + prefix + "_" + hex.EncodeToString(secret)
	sum := HashKey(full)
	return full, prefix, sum[:], nil
}

// HashKey is what is stored of a key.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(key)) }

// KeyPrefix returns the prefix of a well-formed key.
func KeyPrefix(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, keyScheme)
	prefix, _, ok2 := strings.Cut(rest, "_")
	if !ok || !ok2 || len(prefix) != 8 || len(key) > 100 {
		return "", false
	}
	return prefix, true
}

// NormalizeAccountName trims name and checks it: 1 to 100 characters.
func NormalizeAccountName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", Invalid("account", "required, at most 100 characters")
	}
	return name, nil
}
