// Command pprofwrap is smsctl with net/http/pprof on the side, for
// profiling the roles under benchmark load without touching their code:
// it runs the very same command tree (cmd.Execute) and, when
// BENCH_PPROF_ADDR is set, serves /debug/pprof/ there.
//
//	BENCH_PROFILE=1 bench/run.sh     # builds and uses it, saves CPU profiles
package main

import (
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"

	"github.com/smsctl/smsctl/cmd"
)

var version = "pprof"

func main() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(100_000) // one sample per 100µs blocked
		go func() {
			if err := http.ListenAndServe(addr, nil); err != nil {
				fmt.Fprintln(os.Stderr, "pprofwrap:", err)
			}
		}()
	}
	os.Exit(cmd.Execute(version))
}
