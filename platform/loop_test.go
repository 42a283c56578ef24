package platform

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestGather(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 5 {
		ch <- i
	}
	if got := Gather(ch, []int{-1}, 3, 0); !slices.Equal(got, []int{-1, 0, 1}) {
		t.Errorf("Gather up to 3 = %v, want [-1 0 1]", got)
	}
	if got := Gather(ch, nil, 10, 0); !slices.Equal(got, []int{2, 3, 4}) {
		t.Errorf("Gather without linger = %v, want what was waiting: [2 3 4]", got)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		ch <- 5
	}()
	if got := Gather(ch, nil, 1, time.Minute); !slices.Equal(got, []int{5}) {
		t.Errorf("Gather with a linger = %v, want [5], sent 20 ms in", got)
	}
	start := time.Now()
	if got := Gather(ch, nil, 10, 30*time.Millisecond); len(got) != 0 || time.Since(start) < 30*time.Millisecond {
		t.Errorf("Gather on an empty channel = %v after %v, want nothing after the linger", got, time.Since(start))
	}
}

func TestOffer(t *testing.T) {
	ch := make(chan int, 2)
	Offer(ch, []int{1, 2, 3})
	close(ch)
	var got []int
	for v := range ch {
		got = append(got, v)
	}
	if !slices.Equal(got, []int{1, 2}) {
		t.Errorf("Offer to a channel with room for 2 sent %v, want [1 2] and the rest dropped", got)
	}
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int64
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func(context.Context) {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("fn called %d times, want 3 (none after the context ended)", n)
	}
}

func TestBackoff(t *testing.T) {
	var b Backoff
	var base []time.Duration
	for range 8 {
		d := b.Next()
		if d < time.Duration(b) || d > time.Duration(b)+time.Duration(b)/4 {
			t.Fatalf("wait %v outside [%v, %v]", d, time.Duration(b), time.Duration(b)*5/4)
		}
		base = append(base, time.Duration(b))
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(base, want) {
		t.Errorf("backoff steps %v, want %v", base, want)
	}
}

// TestEveryTinyInterval checks that an interval under one tick runs rather
// than panicking in time.NewTicker.
func TestEveryTinyInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	Every(ctx, 0, func(context.Context) {
		if calls++; calls == 3 {
			cancel()
		}
	})
	if calls != 3 {
		t.Errorf("fn called %d times, want 3", calls)
	}
}
