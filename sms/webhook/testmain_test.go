package webhook

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test stops what it started: dispatchers, their connections, test
// servers and database pools.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
