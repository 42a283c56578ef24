package postgres

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

// TestCreateKeyForgetsItsPrefixWasMissing: a prefix tried before any key
// had it is remembered as naming none; the key then created with it must
// work at once, not once the negative cache expires (an hour here).
//
// Not parallel: the key's random prefix is drawn again from a seeded
// crypto/rand, which is the whole process's.
func TestCreateKeyForgetsItsPrefixWasMissing(t *testing.T) {
	db := platformtest.NewDB(t)
	keys := NewKeys(db, time.Hour)
	ctx := context.Background()
	if err := db.PingContext(ctx); err != nil { // connect before the seeded draws
		t.Fatal(err)
	}

	cryptotest.SetGlobalRandom(t, 11)
	_, prefix, _, err := sms.NewAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	forged := "sms_" + prefix + "_" + strings.Repeat("0", 48)
	if _, err := keys.Authenticate(ctx, forged); !errors.Is(err, sms.ErrUnauthorized) {
		t.Fatalf("key with a prefix no key has: %v, want ErrUnauthorized", err)
	}
	if !keys.Missing(forged) {
		t.Fatal("Missing: the prefix just looked up in vain is not remembered")
	}

	cryptotest.SetGlobalRandom(t, 11) // the same stream: CreateKey draws the same prefix
	full, created, err := keys.CreateKey(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if created.Prefix != prefix {
		t.Fatalf("created prefix %s, want %s again from the seeded random stream", created.Prefix, prefix)
	}
	if keys.Missing(full) {
		t.Error("Missing: the new key's prefix is still remembered as naming no key")
	}
	if _, err := keys.Authenticate(ctx, full); err != nil {
		t.Errorf("the new key: %v, want it to authenticate at once", err)
	}
	if !keys.Missing("not-a-key") {
		t.Error("Missing: a malformed key should be known to name no key")
	}
}
