package platform

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent sets the garbage collector's target (GOGC) to percent,
// unless the GOGC environment variable already chose one. A role whose
// live heap is small trades some memory for less collection work.
func DefaultGCPercent(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}
