package kafka

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: relays, Kafka clients and clusters, database pools.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
