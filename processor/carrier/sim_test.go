package carrier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

// testRequest returns a valid send request; i varies the recipient.
func testRequest(i int) sms.SendRequest {
	return sms.SendRequest{MessageID: uuid.New(), Sender: "+4915112345678", Recipient: fmt.Sprintf("+49151%08d", i),
		Text: "hello", Encoding: sms.EncodingGSM7, Segments: 1, CreatedAt: time.Now().UTC()}
}

func testRequestWithID(id uuid.UUID) sms.SendRequest {
	r := testRequest(0)
	r.MessageID = id
	return r
}

// TestSimulatorOutcomes checks that the failure knobs at their extremes
// produce exactly the outcomes they name, with the error types the
// processor tells apart.
func TestSimulatorOutcomes(t *testing.T) {
	t.Parallel()
	const calls = 200
	cases := []struct {
		name      string
		cfg       SimulatorConfig
		check     func(error) bool
		wantClass string
	}{
		{
			name:      "failure rate 0 always delivers",
			cfg:       SimulatorConfig{FailureRate: 0, TransientShare: 1},
			check:     func(err error) bool { return err == nil },
			wantClass: "nil",
		},
		{
			name: "failure rate 1 with transient share 1 always fails transiently",
			cfg:  SimulatorConfig{FailureRate: 1, TransientShare: 1},
			check: func(err error) bool {
				var ce *Error
				return errors.As(err, &ce) && ce.Transient && slices.Contains(transientReasons, ce.Reason)
			},
			wantClass: "transient *Error with a known reason",
		},
		{
			name: "failure rate 1 with transient share 0 always fails permanently",
			cfg:  SimulatorConfig{FailureRate: 1, TransientShare: 0},
			check: func(err error) bool {
				var ce *Error
				return errors.As(err, &ce) && !ce.Transient && strings.HasPrefix(ce.Reason, "permanent: ") && ce.Error() == ce.Reason
			},
			wantClass: "permanent *Error, reason prefixed \"permanent: \"",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sim := NewSimulator(tc.cfg)
			for i := range calls {
				err := deliverErr(sim.Submit(context.Background(), testRequest(i), 1))
				if !tc.check(err) {
					t.Fatalf("call %d returned %#v (%v), want %s", i, err, err, tc.wantClass)
				}
			}
		})
	}
}

// TestSimulatorDelay checks that a call takes at least MinDelay.
func TestSimulatorDelay(t *testing.T) {
	t.Parallel()
	sim := NewSimulator(SimulatorConfig{MinDelay: 30 * time.Millisecond, MaxDelay: 40 * time.Millisecond})
	start := time.Now()
	if err := deliverErr(sim.Submit(context.Background(), testRequest(0), 1)); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	// A lower bound only: the simulator must not answer before its delay.
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("Deliver returned after %v, before MinDelay", d)
	}
}

// TestSimulatorCancellation checks that a call cancelled before its delay
// ends returns the context's error, whatever outcome the call would have
// had, and that the ledger keeps it marked cancelled (never reached the
// carrier, but visible: a graceful drain must cancel nothing, and a
// deleted row would hide a call the processor handed back). A call whose
// context ended before it started leaves no row.
func TestSimulatorCancellation(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	cases := []struct {
		name string
		cfg  SimulatorConfig
		// ctx is the call's context; cancelStarted is called once its
		// ledger row is written (nil: the context ends by itself).
		ctx     func() (ctx context.Context, cancelStarted, cleanup context.CancelFunc)
		wantErr error
		wantRow string // the row's outcome; "" for no row
	}{
		{
			name: "cancelled during the delay",
			cfg:  SimulatorConfig{MinDelay: time.Minute, MaxDelay: time.Minute},
			ctx: func() (context.Context, context.CancelFunc, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				return ctx, cancel, cancel
			},
			wantErr: context.Canceled,
			wantRow: LedgerCancelled,
		},
		{
			// The row is written whatever the deadline does meanwhile (its
			// insert is not cancelled), so the deadline needs no waiting.
			name: "deadline during the delay",
			cfg:  SimulatorConfig{MinDelay: time.Minute, MaxDelay: time.Minute, FailureRate: 1},
			ctx: func() (context.Context, context.CancelFunc, context.CancelFunc) {
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				return ctx, nil, cancel
			},
			wantErr: context.DeadlineExceeded,
			wantRow: LedgerCancelled,
		},
		{
			name: "already cancelled with no delay",
			cfg:  SimulatorConfig{},
			ctx: func() (context.Context, context.CancelFunc, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx, nil, cancel
			},
			wantErr: context.Canceled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Ledger = db
			req := testRequest(0)
			ctx, cancelStarted, cleanup := tc.ctx()
			defer cleanup()
			done := make(chan error, 1)
			go func() { done <- deliverErr(NewSimulator(cfg).Submit(ctx, req, 1)) }()
			if cancelStarted != nil {
				// Cancelled only once the call started: cancelled earlier,
				// it would never have been written down at all.
				platformtest.Eventually(t, time.Minute, 5*time.Millisecond, "the call's ledger row", func() (bool, string) {
					rows := ledgerRows(t, db, req)
					return len(rows) > 0, fmt.Sprint(rows)
				})
				cancelStarted()
			}
			select {
			case err := <-done:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Deliver = %v, want %v", err, tc.wantErr)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Deliver did not return after its context ended")
			}
			rows := ledgerRows(t, db, req)
			switch {
			case tc.wantRow == "" && len(rows) != 0:
				t.Fatalf("a call that never started left ledger rows %v, want none", rows)
			case tc.wantRow != "" && (len(rows) != 1 || rows[0] != tc.wantRow):
				t.Fatalf("a call cancelled during the delay left ledger rows %v, want one %q", rows, tc.wantRow)
			}
		})
	}
}

// ledgerRows returns the outcomes of the ledger rows of req, in order.
func ledgerRows(t testing.TB, db *sqlx.DB, req sms.SendRequest) []string {
	t.Helper()
	var rows []string
	if err := db.Select(&rows, `SELECT outcome FROM processor.carrier_calls WHERE message_id = $1 ORDER BY id`, req.MessageID); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestSimulatorLedger checks that with a ledger every completed call is
// written down with its attempt and the outcome the caller saw, and that
// without one nothing is.
func TestSimulatorLedger(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	sim := NewSimulator(SimulatorConfig{FailureRate: 0.5, TransientShare: 0.5, Ledger: db})
	type call struct {
		id      uuid.UUID
		attempt int
		outcome string
	}
	var want []call
	for i := range 60 {
		req := testRequest(i)
		attempt := i%3 + 1
		err := deliverErr(sim.Submit(context.Background(), req, attempt))
		outcome := "delivered"
		if err != nil {
			outcome = err.Error()
		}
		want = append(want, call{req.MessageID, attempt, outcome})
	}
	// The same message called again is a second row, not an overwrite.
	again := want[0]
	if err := deliverErr(sim.Submit(context.Background(), testRequestWithID(again.id), 2)); err != nil {
		want = append(want, call{again.id, 2, err.Error()})
	} else {
		want = append(want, call{again.id, 2, "delivered"})
	}

	var got []struct {
		ID      uuid.UUID `db:"message_id"`
		Attempt int       `db:"attempt"`
		Outcome string    `db:"outcome"`
	}
	if err := db.Select(&got, `SELECT message_id, attempt, outcome FROM processor.carrier_calls ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("ledger has %d rows, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.id || g.Attempt != w.attempt || g.Outcome != w.outcome {
			t.Errorf("ledger row %d = {%s %d %q}, want {%s %d %q}", i, g.ID, g.Attempt, g.Outcome, w.id, w.attempt, w.outcome)
		}
	}

	// Without a ledger, calls leave no trace.
	plain := NewSimulator(SimulatorConfig{})
	req := testRequest(1000)
	if err := deliverErr(plain.Submit(context.Background(), req, 1)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Get(&n, `SELECT count(*) FROM processor.carrier_calls WHERE message_id = $1`, req.MessageID); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("a simulator without a ledger wrote %d rows", n)
	}
}

// TestSimulatorLedgerCountsCallsInProgress checks that a call is in the
// ledger from the moment it starts: a process killed during the carrier's
// delay has still called it, and a fault test must count that call.
func TestSimulatorLedgerCountsCallsInProgress(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	sim := NewSimulator(SimulatorConfig{MinDelay: time.Hour, MaxDelay: time.Hour, Ledger: db})
	req := testRequest(0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- deliverErr(sim.Submit(ctx, req, 1)) }()
	platformtest.Eventually(t, time.Minute, 10*time.Millisecond, "the call in progress is in the ledger", func() (bool, string) {
		var outcome string
		err := db.Get(&outcome, `SELECT outcome FROM processor.carrier_calls WHERE message_id = $1`, req.MessageID)
		return err == nil && outcome == "started", fmt.Sprint(outcome, err)
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %v, want context.Canceled", err)
	}
}

// deliverErr keeps the error of a Submit.
func deliverErr(_ Accepted, err error) error { return err }

// collectSink keeps what a simulator sends back.
type collectSink struct {
	receipts chan Receipt
	replies  chan Inbound
}

func (c collectSink) Receipt(_ context.Context, r Receipt) error { c.receipts <- r; return nil }
func (c collectSink) Inbound(_ context.Context, m Inbound) error { c.replies <- m; return nil }

// TestSimulatorReceiptsAndReplies: the receipt knobs at their extremes
// give every message the status they name, one receipt per part, under the
// part ids Submit returned; the reply knobs make every recipient answer,
// STOP or not, from the recipient to the sender.
func TestSimulatorReceiptsAndReplies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                     string
		undelivered, expired     float64
		replyRate, stopRate      float64
		wantStatus               sms.Status
		wantState, wantReplyText string
	}{
		{"all delivered, no replies", 0, 0, 0, 0, sms.StatusDelivered, "DELIVRD", ""},
		{"all undelivered, every reply STOP", 1, 0, 1, 1, sms.StatusUndelivered, "UNDELIV", "STOP"},
		{"all expired, every reply not STOP", 0, 1, 1, 0, sms.StatusExpired, "EXPIRED", "Thanks!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sink := collectSink{receipts: make(chan Receipt, 100), replies: make(chan Inbound, 100)}
			sim := NewSimulator(SimulatorConfig{Sink: sink, Receipts: true, UndeliveredRate: tc.undelivered, ExpiredRate: tc.expired,
				ReplyRate: tc.replyRate, StopRate: tc.stopRate})
			if err := sim.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sim.Stop)
			const messages = 5
			want := map[string]sms.Status{} // part id -> status
			for i := range messages {
				req := testRequest(i)
				req.Segments = 2
				acc, err := sim.Submit(context.Background(), req, 1)
				if err != nil || !acc.Receipts || len(acc.PartIDs) != 2 {
					t.Fatalf("Submit: %+v, %v; want two part ids with receipts", acc, err)
				}
				want[acc.PartIDs[0]] = sms.StatusDelivered // only the last part says how it fared
				want[acc.PartIDs[1]] = tc.wantStatus
			}
			for range 2 * messages {
				select {
				case r := <-sink.receipts:
					status, ok := want[r.CarrierID]
					if !ok || r.Status != status || (status == tc.wantStatus && r.State != tc.wantState) {
						t.Errorf("receipt %+v: want part of %v with status %s", r, want, status)
					}
					delete(want, r.CarrierID)
				case <-time.After(30 * time.Second):
					t.Fatalf("receipts still missing for %v", want)
				}
			}
			wantReplies := 0
			if tc.replyRate > 0 {
				wantReplies = messages
			}
			for range wantReplies {
				select {
				case m := <-sink.replies:
					if m.Text != tc.wantReplyText || m.To != "+4915112345678" || !strings.HasPrefix(m.From, "+49151") {
						t.Errorf("reply %+v: want %q from the recipient to the sender", m, tc.wantReplyText)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("a reply is missing")
				}
			}
			if tc.replyRate == 0 {
				// Replies are sent at the same time as receipts: with every
				// receipt in, a reply would have been too.
				select {
				case m := <-sink.replies:
					t.Errorf("reply %+v with ReplyRate 0", m)
				default:
				}
			}
		})
	}
}

// TestSimulatorHandsetsStopOnceAndStart: with every knob at 1 a handset
// says STOP to the first message, START to the next (the confirmation),
// and after that never STOP again, so that it and the platform's
// confirmations cannot answer each other for ever. With StartRate 0 an
// opted-out handset stays silent. Each sender is a handset of its own.
func TestSimulatorHandsetsStopOnceAndStart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		startRate float64
		want      []string // the answers to five messages in a row
	}{
		{"start rate 1", 1, []string{"STOP", "START", "Thanks!", "Thanks!", "Thanks!"}},
		{"start rate 0", 0, []string{"STOP", "", "", "", ""}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := SimulatorConfig{ReplyRate: 1, StopRate: 1, StartRate: tc.startRate}
			var h handsets
			for _, sender := range []string{"+4915112345678", "+4915187654321"} {
				req := testRequest(0)
				req.Sender = sender
				for i, want := range tc.want {
					if got := h.answer(req, cfg); got != want {
						t.Errorf("sender %s, message %d: answer %q, want %q", sender, i+1, got, want)
					}
				}
			}
		})
	}
}

// blockedSink takes nothing until released, then counts receipts and
// closes all when it has want of them.
type blockedSink struct {
	release  chan struct{}
	want     int64
	receipts atomic.Int64
	all      chan struct{}
}

func (b *blockedSink) Receipt(ctx context.Context, _ Receipt) error {
	select {
	case <-b.release:
		if b.receipts.Add(1) == b.want {
			close(b.all)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *blockedSink) Inbound(context.Context, Inbound) error { return nil }

// TestSimulatorKeepsReceiptsWhileSinkIsBusy: while every sender waits on
// the sink, new receipts are still taken and queued, not dropped. The
// simulator used to stop reading its queue then, and once that filled
// (under a processor at full speed) every later receipt was lost.
func TestSimulatorKeepsReceiptsWhileSinkIsBusy(t *testing.T) {
	t.Parallel()
	const n = 3 * 4096 // three times the simulator's queue
	sink := &blockedSink{release: make(chan struct{}), want: n, all: make(chan struct{})}
	sim := NewSimulator(SimulatorConfig{Sink: sink, Receipts: true})
	if err := sim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Stop)
	for i := range n {
		if _, err := sim.Submit(context.Background(), testRequest(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	close(sink.release)
	select {
	case <-sink.all:
	case <-time.After(time.Minute):
		t.Errorf("%d receipts reached the sink in a minute, want all %d", sink.receipts.Load(), n)
	}
}
