package processor

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// TestProcessorKafkaClientRefreshesMetadata checks that the consumer is
// built by the project's one Kafka constructor: with the library's default
// (5 minutes) partitions added to the topic go unconsumed for minutes.
func TestProcessorKafkaClientRefreshesMetadata(t *testing.T) {
	t.Parallel()
	env := newKafkaEnv(t, 1)
	p, err := New(testConfig(env), NewStore(platformtest.NewDB(t)), simple{newCountingCarrier(0)}, nil, testLogger(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Client().Close()
	if got := p.Client().OptValue(kgo.MetadataMaxAge); got != 30*time.Second {
		t.Errorf("processor's Kafka client refreshes metadata every %v, want 30s", got)
	}
}

// downStore is a store whose lookups fail while down is set, as when
// PostgreSQL is unreachable; it counts the failed lookups.
type downStore struct {
	*Store
	down   atomic.Bool
	failed atomic.Int64
}

func (s *downStore) Known(ctx context.Context, ids []Try) (map[Try]bool, error) {
	if s.down.Load() {
		s.failed.Add(1)
		return nil, errors.New("connect: connection refused")
	}
	return s.Store.Known(ctx, ids)
}

// TestProcessorStoreDownDoesNotHoldRebalance checks that records waiting
// for a store that is down do not hold the consumer group: a second
// replica joins and gets partitions while the first one's lookups fail,
// the first one hands its records back, and once the store is back every
// message is delivered exactly once. Before, the lookup ran inside the poll
// loop, which holds rebalances (BlockRebalanceOnPoll) until Kafka evicts
// the member after its rebalance timeout (here two minutes).
func TestProcessorStoreDownDoesNotHoldRebalance(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 4)
	cfg := testConfig(env)
	cfg.DrainTimeout = time.Second
	long := append(testKafkaOpts(), kgo.RebalanceTimeout(2*time.Minute))
	carrier := newCountingCarrier(0)

	store := &downStore{Store: NewStore(db)}
	store.down.Store(true)
	first, err := New(cfg, store, simple{carrier}, nil, testLogger(), prometheus.NewRegistry(), long...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, first)
	reqs := testRequests(40)
	env.produceRequests(t, reqs...)
	eventually(t, waitFor, "the first replica is stuck on its lookups", func() (bool, string) {
		return store.failed.Load() >= 2, fmt.Sprintf("%d failed lookups", store.failed.Load())
	})

	second, err := New(cfg, NewStore(db), simple{carrier}, nil, testLogger(), prometheus.NewRegistry(), long...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, second)
	// Owned partitions, not Joined alone: a member's first assignment in a
	// cooperative rebalance may be empty.
	eventually(t, waitFor, "the second replica is assigned partitions while the store is down", func() (bool, string) {
		second.mu.Lock()
		owned := len(second.parts)
		second.mu.Unlock()
		return owned > 0, fmt.Sprintf("%d partitions owned, %d failed lookups so far", owned, store.failed.Load())
	})
	if store.failed.Load() == 0 || !store.down.Load() {
		t.Fatal("the store was not down during the rebalance: the test proves nothing")
	}
	store.down.Store(false)
	waitOutcomes(t, db, len(reqs))
	env.waitCommittedToEnd(t)
	checkOnceEach(t, db, carrier, reqs)
}

// rivalCarrier delivers, but while it does another replica records a
// different outcome for the same message first: the race two replicas
// that both got a message (a rebalance, a redelivery) can run.
type rivalCarrier struct {
	store  *Store
	reason string
}

func (c *rivalCarrier) Deliver(ctx context.Context, req sms.SendRequest, _ int) error {
	_, err := c.store.Record(ctx, []Outcome{failedOutcome(req.MessageID, c.reason, time.Now().UTC())})
	return err
}

// TestProcessorReportsOnlyRecordedOutcome checks that a replica whose
// outcome lost the race to another replica's reports nothing of its own:
// the API hears only the outcome processor.deliveries holds. Before, each
// replica reported what it computed, so the API could record SENT while
// the processor's store said FAILED.
func TestProcessorReportsOnlyRecordedOutcome(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	env := newKafkaEnv(t, 1)
	store := NewStore(db)
	api := newFakeAPI()
	// The rival's outcome waits in processor.unreported like any other:
	// the sweep reports it after StaleAfter.
	reporter := runReporter(t, store, api, ReporterConfig{Batch: 10, StaleAfter: 200 * time.Millisecond})
	const reason = "permanent: recorded by the other replica"
	p, err := New(testConfig(env), store, simple{&rivalCarrier{store: NewStore(db), reason: reason}}, reporter, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	runProcessor(t, p)
	reqs := testRequests(5)
	env.produceRequests(t, reqs...)
	env.waitCommittedToEnd(t)
	eventually(t, waitFor, "every message reported", func() (bool, string) {
		return api.distinct() == len(reqs), fmt.Sprintf("%d of %d", api.distinct(), len(reqs))
	})
	outs := recordedOutcomes(t, db)
	for _, r := range reqs {
		if o := outs[r.MessageID]; o.Status != sms.StatusFailed {
			t.Fatalf("stored outcome of %s is %s, want the rival's FAILED", r.MessageID, o.Status)
		}
		for _, rep := range api.reports(r.MessageID) {
			if rep.Status != sms.StatusFailed || rep.FailureReason == nil || *rep.FailureReason != reason {
				t.Errorf("API told %s %v for %s, but processor.deliveries holds FAILED %q", rep.Status, deref(rep.FailureReason), r.MessageID, reason)
			}
		}
	}
}

// blindCarrier accepts every call and counts them, without looking at
// ctx, as a carrier whose bind is free at once may not.
type blindCarrier struct{ calls atomic.Int32 }

func (c *blindCarrier) Submit(context.Context, sms.SendRequest, int) (carrier.Accepted, error) {
	c.calls.Add(1)
	return carrier.Accepted{}, nil
}

func (*blindCarrier) Ready() error { return nil }

// TestDeliverAfterRevokeHandsBack: a message whose partition was revoked
// while its claim was being made goes back unsent, its slot freed, even
// to a carrier that does not look at ctx: the next owner sends it.
func TestDeliverAfterRevokeHandsBack(t *testing.T) {
	t.Parallel()
	env := newKafkaEnv(t, 1)
	car := &blindCarrier{}
	p, err := New(testConfig(env), NewStore(platformtest.NewDB(t)), car, nil, testLogger(), prometheus.NewRegistry(), testKafkaOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	st := newPartition(context.Background())
	st.add(0, 0)
	p.slots <- struct{}{} // as dispatch takes one
	st.cancel()           // revoked during the claim
	p.deliver(st, &kgo.Record{Topic: env.topic, Offset: 0}, testRequest(1))
	if n := car.calls.Load(); n != 0 {
		t.Errorf("the carrier was called %d times for a revoked partition's message", n)
	}
	if len(p.slots) != 0 || st.inFlight != 0 {
		t.Errorf("%d slots taken, %d in flight on the partition: the message was not handed back", len(p.slots), st.inFlight)
	}
}
