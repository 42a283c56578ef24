package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/sms"
)

// work is a fetched record on its way to the carrier.
type work struct {
	rec *kgo.Record
	req sms.SendRequest
	st  *partition
}

// dispatch starts work on fetched records. Poison records go to the
// dead-letter topic; messages whose outcome is known are skipped. The
// store is asked beside the poll loop, not in it: the loop holds every
// rebalance until it polls again, so a store that is down must not keep it.
func (p *Processor) dispatch(ctx context.Context, records []*kgo.Record) {
	if len(records) == 0 {
		return
	}
	var todo []work
	p.mu.Lock()
	for _, rec := range records {
		st := p.parts[topicPartition{rec.Topic, rec.Partition}]
		if st == nil {
			continue // not ours any more; the owner will read it
		}
		p.slots <- struct{}{}
		st.add(rec.Offset, rec.LeaderEpoch)
		var req sms.SendRequest
		err := json.Unmarshal(rec.Value, &req)
		if err == nil {
			err = req.Validate()
		}
		if err != nil {
			p.work.Go(func() { p.deadLetter(st, rec, fmt.Errorf("poison record: %w", err)) })
			continue
		}
		if f := p.inFlight[req.MessageID]; f != nil {
			// The earlier copy is in flight: this one finishes when it is
			// recorded, or takes over if it is handed back. Finishing it now
			// could commit past it before any outcome is durable (the
			// earlier copy may belong to a partition state since lost).
			f.waiting = append(f.waiting, waiter{st: st, rec: rec, req: req})
			p.metrics.skipped.Inc()
			continue
		}
		p.inFlight[req.MessageID] = &flight{}
		todo = append(todo, work{rec: rec, req: req, st: st})
	}
	p.mu.Unlock()
	if len(todo) > 0 {
		p.work.Go(func() { p.check(ctx, todo) })
	}
}

// flight is a message being processed, with the redelivered copies of it
// that wait for its outcome instead of calling the carrier alongside it.
// Waiting copies keep their slot and their offset pending.
type flight struct {
	waiting []waiter
}

type waiter struct {
	st  *partition
	rec *kgo.Record
	req sms.SendRequest
}

// finishFlightLocked ends id's flight once its outcome is recorded: the
// copies waiting on it are done too.
func (p *Processor) finishFlightLocked(id uuid.UUID) {
	f := p.inFlight[id]
	delete(p.inFlight, id)
	if f == nil {
		return
	}
	for _, w := range f.waiting {
		p.finishLocked(w.st, w.rec.Offset)
	}
}

// handOverLocked ends id's flight after its copy was handed back. The
// first waiting copy whose partition is still ours takes over (the caller
// starts it with redeliver); the others wait on it. Copies of partitions no
// longer ours are handed back too.
func (p *Processor) handOverLocked(id uuid.UUID) *waiter {
	f := p.inFlight[id]
	delete(p.inFlight, id)
	if f == nil {
		return nil
	}
	var next *waiter
	var rest []waiter
	for i, w := range f.waiting {
		switch {
		case w.st.ctx.Err() != nil:
			w.st.abandon()
			<-p.slots
		case next == nil:
			next = &f.waiting[i]
		default:
			rest = append(rest, w)
		}
	}
	if next != nil {
		p.inFlight[id] = &flight{waiting: rest}
	}
	return next
}

// redeliver processes a copy that took over from one handed back: checked
// against the store first, like any fetched record.
func (p *Processor) redeliver(w waiter) {
	p.check(w.st.ctx, []work{{rec: w.rec, req: w.req, st: w.st}})
}

// lookupTimeout bounds one outcome lookup, and lookupMaxBackoff the wait
// between two: together well within the 5 s a revoke waits for cancelled
// work, so records of a revoked partition are handed back in time.
const (
	lookupTimeout    = 2 * time.Second
	lookupMaxBackoff = time.Second
)

// check asks the store which of the records' messages already have an
// outcome for their try, finishes those, claims the others from the API
// (which says whether each may still go: not canceled, not opted out, not
// expired) and starts those it may. While the store or the API is down it
// retries: nothing may reach the carrier unchecked. Records whose partition
// is revoked or lost meanwhile, or all of them once ctx ends, are handed
// back uncommitted for the next owner.
func (p *Processor) check(ctx context.Context, todo []work) {
	backoff := 50 * time.Millisecond
	for {
		live := todo[:0]
		for _, w := range todo {
			if ctx.Err() != nil || w.st.ctx.Err() != nil {
				p.abandon(w.st, w.req.MessageID)
				continue
			}
			live = append(live, w)
		}
		if todo = live; len(todo) == 0 {
			return
		}
		verdicts, err := p.decide(ctx, todo)
		if err == nil {
			for _, w := range todo {
				switch v := verdicts[w.req.MessageID]; v {
				case sms.VerdictSend:
					p.work.Go(func() { p.deliver(w.st, w.rec, w.req) })
				case "": // known: recorded before
					p.metrics.skipped.Inc()
					p.mu.Lock()
					p.finishFlightLocked(w.req.MessageID)
					p.finishLocked(w.st, w.rec.Offset)
					p.mu.Unlock()
				default:
					// The API settled it (or it is not to go): record that, so
					// that a redelivery is not claimed again; nothing to report.
					p.metrics.claimSkipped.WithLabelValues(string(v)).Inc()
					reason := "skipped: " + string(v)
					p.outcomes <- finished{out: Outcome{MessageID: w.req.MessageID, Retry: w.req.Retry, Status: statusSkipped,
						FailureReason: &reason, ProcessedAt: time.Now().UTC()}, tp: topicPartition{w.rec.Topic, w.rec.Partition}, offset: w.rec.Offset}
				}
			}
			return
		}
		p.log.Warn().Err(err).Int("records", len(todo)).Msg("outcome lookup or claim failed; retrying")
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, lookupMaxBackoff)
	}
}

// statusSkipped is the processor's own record of a message the API said
// not to send.
const statusSkipped sms.Status = "SKIPPED"

// decide returns, for each record not yet known, the API's verdict
// (VerdictSend for all of them when there is no claimer); records whose
// try has an outcome already are left out.
func (p *Processor) decide(ctx context.Context, todo []work) (map[uuid.UUID]sms.Verdict, error) {
	tries := make([]Try, len(todo))
	for i, w := range todo {
		tries[i] = Try{w.req.MessageID, w.req.Retry}
	}
	lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
	known, err := p.store.Known(lctx, tries)
	cancel()
	if err != nil {
		return nil, err
	}
	verdicts := make(map[uuid.UUID]sms.Verdict, len(todo))
	var claims []sms.Claim
	for _, w := range todo {
		if known[Try{w.req.MessageID, w.req.Retry}] {
			continue
		}
		claims = append(claims, sms.Claim{MessageID: w.req.MessageID, Retry: w.req.Retry})
		verdicts[w.req.MessageID] = sms.VerdictSend
	}
	if len(claims) == 0 || p.claimer == nil {
		return verdicts, nil
	}
	// One fetch can hold more records than the API takes claims in one
	// request. Claims are idempotent, so when a later chunk fails, the
	// retry of the whole set claims the earlier ones again harmlessly.
	for chunk := range slices.Chunk(claims, sms.MaxClaims) {
		cctx, cancel := context.WithTimeout(ctx, claimTimeout)
		res, err := p.claimer.Dispatch(cctx, chunk)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("claim: %w", err)
		}
		for _, r := range res {
			if _, ok := verdicts[r.MessageID]; ok {
				verdicts[r.MessageID] = r.Verdict
			}
		}
	}
	return verdicts, nil
}

// claimTimeout bounds one claim request to the API.
const claimTimeout = 10 * time.Second

func (p *Processor) finishLocked(st *partition, offset int64) {
	st.done(offset)
	<-p.slots
}

func (p *Processor) abandon(st *partition, id uuid.UUID) {
	p.mu.Lock()
	st.abandon()
	<-p.slots
	next := p.handOverLocked(id)
	p.mu.Unlock()
	if next != nil {
		p.work.Go(func() { p.redeliver(*next) })
	}
}
