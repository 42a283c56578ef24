package platform

import (
	"context"
	"math/rand/v2"
	"time"
)

// Gather appends to batch what arrives on ch until batch holds max values
// or linger has passed; with linger 0 it takes only what is already
// waiting. The background loops use it to turn single hand-overs into one
// statement or request per batch.
func Gather[T any](ch <-chan T, batch []T, max int, linger time.Duration) []T {
	if linger <= 0 {
		for len(batch) < max {
			select {
			case v := <-ch:
				batch = append(batch, v)
			default:
				return batch
			}
		}
		return batch
	}
	t := time.NewTimer(linger)
	defer t.Stop()
	for len(batch) < max {
		select {
		case v := <-ch:
			batch = append(batch, v)
		case <-t.C:
			return batch
		}
	}
	return batch
}

// Offer sends values to ch while it has room and drops the rest: for
// hand-overs that are a shortcut, with a slower path for what is dropped.
func Offer[T any](ch chan<- T, values []T) {
	for _, v := range values {
		select {
		case ch <- v:
		default:
			return
		}
	}
}

// Every calls fn every interval (at least a millisecond) until ctx ends.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(max(interval, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}

// Sleep waits for d, or less if ctx ends first, and reports whether the
// whole wait passed: loops use it so that their backoffs end with ctx.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Backoff is the wait before the next retry of a loop that failed: it
// doubles from 100 ms to at most 5 s. Reset it to zero after a success.
type Backoff time.Duration

// Next records a failure and returns how long to wait, with up to a
// quarter added at random so that replicas don't retry in step.
func (b *Backoff) Next() time.Duration {
	d := min(max(2*time.Duration(*b), 100*time.Millisecond), 5*time.Second)
	*b = Backoff(d)
	return d + rand.N(d/4+1)
}
