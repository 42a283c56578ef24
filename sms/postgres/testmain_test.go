package postgres

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: writers and database pools.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
