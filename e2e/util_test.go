package e2e

import (
	"testing"

	"github.com/google/uuid"
	"github.com/lib/pq"
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
