package platform

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// TestLifecycle checks the contract every long-running part relies on:
// Stop before Start and twice is safe, Stop waits for the run to return
// and reports its error, a second Start while running is refused, and a
// stopped service can start again.
func TestLifecycle(t *testing.T) {
	var l Lifecycle
	if err := l.Stop(); err != nil || l.Running() {
		t.Fatalf("Stop before Start = %v, running %v", err, l.Running())
	}
	var finished atomic.Bool
	started := make(chan struct{})
	boom := errors.New("boom")
	run := func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond) // draining
		finished.Store(true)
		return boom
	}
	if err := l.Start(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := l.Start(context.Background(), run); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	if !l.Running() {
		t.Fatal("not running after Start")
	}
	if err := l.Stop(); !errors.Is(err, boom) || !finished.Load() {
		t.Fatalf("Stop = %v, finished %v: want the run's error after it returned", err, finished.Load())
	}
	if err := l.Stop(); !errors.Is(err, boom) {
		t.Fatalf("second Stop = %v", err)
	}
	select {
	case <-l.Stopped():
	default:
		t.Fatal("Stopped not closed after Stop")
	}
	started = make(chan struct{})
	if err := l.Start(context.Background(), run); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	<-started
	_ = l.Stop()
}

// TestLifecycleEndsWithContext checks that ending Start's context ends the
// run, as Stop does.
func TestLifecycleEndsWithContext(t *testing.T) {
	var l Lifecycle
	ctx, cancel := context.WithCancel(context.Background())
	if err := l.Start(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-l.Stopped()
	if l.Running() {
		t.Fatal("running after its context ended")
	}
}
