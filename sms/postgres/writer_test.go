package postgres

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/smstest"
)

// insertWithin calls Insert and fails the test if it does not return
// within d: an Insert on a stopped writer used to block forever.
func insertWithin(t *testing.T, w *Writer, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := w.Insert(context.Background(), sms.NewMessage{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")})
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Insert did not return within %v", d)
		return nil
	}
}

// TestWriterStopped checks that a writer not running refuses messages with
// ErrStopping at once, before Start and after Stop, and that Stop is
// safe to call twice.
func TestWriterStopped(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	w := NewWriter(NewStore(db), 2, 10, prometheus.NewRegistry())
	if err := insertWithin(t, w, 10*time.Second); !errors.Is(err, sms.ErrStopping) {
		t.Fatalf("Insert before Start: %v, want ErrStopping", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := insertWithin(t, w, 10*time.Second); err != nil {
		t.Fatalf("Insert while running: %v", err)
	}
	w.Stop()
	w.Stop()
	if err := insertWithin(t, w, 10*time.Second); !errors.Is(err, sms.ErrStopping) {
		t.Fatalf("Insert after Stop: %v, want ErrStopping", err)
	}
	if n := countMessages(t, db); n != 1 {
		t.Errorf("%d messages stored, want the 1 accepted while running", n)
	}
}

// TestWriterStopUnderLoad stops the writer while senders keep inserting:
// every Insert returns, each either stored or refused with
// ErrStopping, and the stored ones are exactly those acknowledged.
func TestWriterStopUnderLoad(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	w := NewWriter(NewStore(db), 2, 10, prometheus.NewRegistry())
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stored, refused int
	var wg sync.WaitGroup
	started := make(chan struct{})
	var once sync.Once
	for range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				_, err := w.Insert(context.Background(), sms.NewMessage{AccountID: 1, Draft: smstest.Draft("Acme", "+14155552671", "x")})
				if i == 5 {
					once.Do(func() { close(started) })
				}
				mu.Lock()
				switch {
				case err == nil:
					stored++
				case errors.Is(err, sms.ErrStopping):
					refused++
				default:
					t.Errorf("Insert: %v", err)
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	<-started
	w.Stop()
	wg.Wait()
	if refused != 16 {
		t.Errorf("%d senders were refused, want all 16 once the writer stopped", refused)
	}
	if n := countMessages(t, db); n != stored {
		t.Errorf("%d messages acknowledged, %d stored", stored, n)
	}
}

func countMessages(t *testing.T, db interface {
	Get(dest any, query string, args ...any) error
}) int {
	t.Helper()
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM sms.messages`); err != nil {
		t.Fatal(err)
	}
	return n
}
