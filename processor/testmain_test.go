package processor

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: processors, reporters, Kafka clients,
// HTTP servers and database pools.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
