package platform

import (
	"runtime/debug"
	"testing"
)

func TestDefaultGCPercent(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want int
	}{
		{"no GOGC: the default is taken", "", 250},
		{"GOGC set: it is left alone", "123", 123},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.env)
			orig := debug.SetGCPercent(123) // as if the runtime had read GOGC=123
			t.Cleanup(func() { debug.SetGCPercent(orig) })
			DefaultGCPercent(250)
			if got := debug.SetGCPercent(orig); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
