package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cmdWaitReady polls a readiness URL every -interval and prints the time
// from -since (a Unix time in seconds with a fraction, bash's
// $EPOCHREALTIME taken just before the exec) to the first 200.
func cmdWaitReady(args []string) error {
	fs := flag.NewFlagSet("waitready", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:18080/readyz", "readiness URL")
	since := fs.String("since", "", "start instant, Unix seconds with fraction (default: now)")
	interval := fs.Duration("interval", 5*time.Millisecond, "poll interval")
	timeout := fs.Duration("timeout", 60*time.Second, "give up after")
	pid := fs.Int("pid", 0, "fail at once if this process exits")
	_ = fs.Parse(args)

	start := time.Now()
	if *since != "" {
		f, err := strconv.ParseFloat(strings.ReplaceAll(*since, ",", "."), 64)
		if err != nil {
			return fmt.Errorf("waitready: -since %q: %w", *since, err)
		}
		start = time.Unix(0, int64(f*1e9))
	}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(*timeout)
	polls := 0
	for time.Now().Before(deadline) {
		polls++
		resp, err := client.Get(*url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				kv("ready_ms", float64(time.Since(start).Microseconds())/1000)
				kv("polls", polls)
				return nil
			}
		}
		if *pid > 0 && syscall.Kill(*pid, 0) != nil {
			return fmt.Errorf("waitready: process %d exited before %s answered 200", *pid, *url)
		}
		time.Sleep(*interval)
	}
	return errors.New("waitready: " + *url + " not ready within " + timeout.String())
}
