package platform

import (
	"context"
	"errors"
	"sync"
)

// Service is a long-running part of a role (a server, a relay, a loop):
// Start launches it and returns at once; Stop ends it and waits until every
// goroutine it started has returned. Stop is safe to call twice, and before
// Start.
type Service interface {
	Start(ctx context.Context) error
	Stop()
}

// ErrStarted is returned by Start on a service that is running already.
var ErrStarted = errors.New("already started")

// Lifecycle is the start and stop of one service, to embed in it (as
// river's startstop): Start runs the service's run function in a goroutine
// with a context that Stop cancels, and Stop waits for it. A service that
// must drain on the way out (finish queued work) does so in run after its
// context ends, bounding the work itself.
type Lifecycle struct {
	mu      sync.Mutex
	cancel  context.CancelFunc
	stopped chan struct{}
	err     error
}

// Start runs run until ctx ends or Stop is called. It fails with ErrStarted
// while a previous run is still going.
func (l *Lifecycle) Start(ctx context.Context, run func(ctx context.Context) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped != nil {
		select {
		case <-l.stopped:
		default:
			return ErrStarted
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	l.cancel, l.stopped, l.err = cancel, stopped, nil
	go func() {
		defer close(stopped)
		err := run(ctx)
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
	}()
	return nil
}

// Stop cancels the run and waits for it to return; it returns what run
// returned. Calling it again, or before Start, returns at once.
func (l *Lifecycle) Stop() error {
	l.mu.Lock()
	cancel, stopped := l.cancel, l.stopped
	l.mu.Unlock()
	if stopped == nil {
		return nil
	}
	cancel()
	<-stopped
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Stopped is closed once the run has returned (by Stop or by itself); it is
// nil before Start.
func (l *Lifecycle) Stopped() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// Running reports whether a run was started and has not returned.
func (l *Lifecycle) Running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped == nil {
		return false
	}
	select {
	case <-l.stopped:
		return false
	default:
		return true
	}
}
