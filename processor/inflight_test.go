package processor

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

// gatedCarrier holds every call until release is closed. A cancelled call
// returns only once letGo is closed (a carrier slow to notice), unless
// ignoreCancel makes it finish anyway when released.
type gatedCarrier struct {
	started      chan struct{}
	release      chan struct{}
	letGo        chan struct{}
	ignoreCancel bool
	completed    atomic.Int64
}

func newGatedCarrier() *gatedCarrier {
	return &gatedCarrier{started: make(chan struct{}, 16), release: make(chan struct{}), letGo: make(chan struct{})}
}

func (g *gatedCarrier) Deliver(ctx context.Context, _ sms.SendRequest, _ int) error {
	g.started <- struct{}{}
	if g.ignoreCancel {
		<-g.release
		g.completed.Add(1)
		return nil
	}
	select {
	case <-g.release:
		g.completed.Add(1)
		return nil
	case <-ctx.Done():
		<-g.letGo
		return ctx.Err()
	}
}

// TestProcessorRedeliveredWhileInFlight drives the processor's partition
// callbacks and dispatch by hand: a partition is lost while its message is
// at the carrier, comes back to the same processor, and the same record is
// fetched again. The new copy must not let the partition commit past the
// record before an outcome for it is recorded, whether the first copy
// finishes or is handed back; and the message must not stay undone.
func TestProcessorRedeliveredWhileInFlight(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// firstFinishes: the first copy's carrier call completes despite
		// the loss (it was already on the wire); else it is handed back.
		firstFinishes bool
	}{
		{name: "first copy finishes after the loss", firstFinishes: true},
		{name: "first copy is handed back after the loss", firstFinishes: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			carrier := newGatedCarrier()
			carrier.ignoreCancel = tc.firstFinishes
			const topic = "sms.requests.inflight"
			// No broker answers here: the client never joins, so only the
			// test calls the partition callbacks.
			p, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: topic, DLQTopic: topic + ".dlq", Group: "g",
				MaxInFlight: 10, MaxAttempts: 1, DrainTimeout: time.Second}, NewStore(db), simple{carrier}, nil, testLogger(), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				go p.cl.Close() // never joined; closing must not hold the test
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go p.record(ctx)

			req := testRequest(0)
			rec := requestRecord(t, req)
			rec.Topic, rec.Partition, rec.Offset, rec.LeaderEpoch = topic, 0, 5, 1
			assign := map[string][]int32{topic: {0}}

			p.assigned(ctx, nil, assign)
			p.dispatch(ctx, []*kgo.Record{rec})
			select {
			case <-carrier.started:
			case <-time.After(waitFor):
				t.Fatal("first copy never reached the carrier")
			}
			p.lost(ctx, nil, assign)
			p.assigned(ctx, nil, assign)
			again := *rec
			p.dispatch(ctx, []*kgo.Record{&again})

			pending := func() int {
				p.mu.Lock()
				defer p.mu.Unlock()
				return p.parts[topicPartition{topic, 0}].inFlight
			}
			toCommit := func() (int64, bool) {
				p.mu.Lock()
				defer p.mu.Unlock()
				off, _, ok := p.parts[topicPartition{topic, 0}].toCommit()
				return off, ok
			}
			if off, ok := toCommit(); ok {
				t.Fatalf("the new copy lets the partition commit %d while the first copy is still at the carrier and nothing is recorded", off)
			}

			if tc.firstFinishes {
				close(carrier.release)
			} else {
				close(carrier.letGo) // the first copy returns its context error
				close(carrier.release)
			}
			eventually(t, waitFor, "outcome recorded and partition committable past the record", func() (bool, string) {
				// Committable first, then recorded: an outcome recorded in
				// between must not look like a commit ahead of its record.
				off, ok := toCommit()
				recorded := recordedOutcomes(t, db)
				_, have := recorded[req.MessageID]
				if ok && off > rec.Offset && !have {
					t.Fatalf("partition committable at %d before the message has an outcome", off)
				}
				return have && ok && off == rec.Offset+1, fmt.Sprintf("recorded %v, toCommit %d %v, in flight %d", have, off, ok, pending())
			})
			if got := carrier.completed.Load(); got != 1 {
				t.Errorf("carrier completed %d calls for the message, want 1", got)
			}
			if n := len(p.slots); n != 0 {
				t.Errorf("%d slots still taken after everything finished", n)
			}
			p.mu.Lock()
			left := len(p.inFlight)
			p.mu.Unlock()
			if left != 0 {
				t.Errorf("%d messages still marked in flight", left)
			}
		})
	}
}
