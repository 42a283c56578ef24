package e2e

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/smsctl/smsctl/sms/postgres"
)

func mustUUID(t testing.TB, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func pqArray(v []string) any { return pq.Array(v) }

func openDBURL(t testing.TB, url string) *sqlx.DB {
	t.Helper()
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func createKey(t testing.TB, db *sqlx.DB, account string) string {
	t.Helper()
	key, _, err := postgres.NewKeys(db, 0).CreateKey(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
