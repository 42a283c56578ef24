package carrier

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// SimulatorConfig sets the simulated carrier's behaviour.
type SimulatorConfig struct {
	// MinDelay and MaxDelay bound the latency of each call (uniform).
	MinDelay, MaxDelay time.Duration
	// FailureRate is the share of calls that fail, 0..1.
	FailureRate float64
	// TransientShare is the share of failures that are transient, 0..1.
	TransientShare float64
	// Ledger, when not nil, records every call in processor.carrier_calls,
	// so tests can count calls repeated after a crash (and calls
	// cancelled, outcome LedgerCancelled, which never reached the carrier).
	Ledger *sqlx.DB
	// Sink, when not nil, takes the receipts and replies the simulator
	// sends back; without one it sends none.
	Sink Sink
	// Receipts makes the simulator send a receipt for every part it
	// accepted, ReceiptMinDelay to ReceiptMaxDelay later: UNDELIVERED for
	// a share UndeliveredRate of the messages, EXPIRED for ExpiredRate,
	// DELIVERED for the rest.
	Receipts                         bool
	ReceiptMinDelay, ReceiptMaxDelay time.Duration
	UndeliveredRate, ExpiredRate     float64
	// ReplyRate is the share of recipients (of messages from a phone
	// number) who answer after ReplyDelay; StopRate the share of answers
	// that are STOP. A handset says STOP at most once to a sender, and
	// answers the STOP confirmation with START for a share StartRate.
	// Each simulator remembers its own handsets: a confirmation delivered
	// by another replica is answered as any message.
	ReplyRate, StopRate, StartRate float64
	ReplyDelay                     time.Duration
}

// Outcomes of a ledger row (SimulatorConfig.Ledger) besides the call's own
// result ("delivered" or the error's text): a call in progress, or one
// cancelled during the carrier's delay, which never reached the carrier.
const (
	LedgerStarted   = "started"
	LedgerCancelled = "cancelled"
)

// Simulator stands in for an SMS carrier: it waits, then succeeds or fails
// at the configured rates, and later sends receipts and replies to its
// sink, as an SMSC would.
type Simulator struct {
	cfg SimulatorConfig
	lc  platform.Lifecycle
	// later holds what is sent back after a delay, until Stop.
	later chan backLater
	// prefix starts every part id this simulator gives, so that replicas
	// (each counting seq from 0) never give the same id.
	prefix uint32
	seq    atomic.Uint64
	// handsets are the recipients who said STOP.
	handsets handsets
}

// backLater is a receipt or reply due at a time.
type backLater struct {
	at      time.Time
	receipt *Receipt
	reply   *Inbound
}

// NewSimulator returns a simulated carrier.
func NewSimulator(cfg SimulatorConfig) *Simulator {
	return &Simulator{cfg: cfg, later: make(chan backLater, 4096), prefix: rand.Uint32() >> 8}
}

// Start sends receipts and replies until Stop. A simulator that is not
// started sends none.
func (s *Simulator) Start(ctx context.Context) error { return s.lc.Start(ctx, s.run) }

// Stop stops sending back; what was still to come is dropped, as an SMSC
// that went away would drop it. Safe to call twice.
func (s *Simulator) Stop() { _ = s.lc.Stop() }

// sendBackWorkers is how many receipts and replies are handed to the sink
// at once: the sink commits them in groups, so one at a time would cap
// them at one per commit. With 32, receipts fell behind a processor
// sending at full speed (make bench, phase 3), as if the carrier were slow.
const sendBackWorkers = 256

// maxPending bounds what waits to be sent back; beyond it receipts and
// replies are dropped, as an overloaded SMSC drops them (the processor's
// receipt timeout covers them). At about 150 bytes each, 1<<18 hold
// under 40 MB.
const maxPending = 1 << 18

func (s *Simulator) run(ctx context.Context) error {
	due := make(chan backLater)
	var wg sync.WaitGroup
	for range sendBackWorkers {
		wg.Go(func() {
			for b := range due {
				if err := s.send(ctx, b); err != nil && ctx.Err() == nil {
					// Not taken: try again shortly, as an SMSC resends.
					b.at = time.Now().Add(time.Second)
					s.sendBack(b)
				}
			}
		})
	}
	defer wg.Wait()
	defer close(due)
	var pending backHeap
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait := time.Hour
		if len(pending) > 0 {
			wait = max(time.Until(pending[0].at), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case b := <-s.later:
			pending.add(b)
		case <-timer.C:
			// Keep taking new ones while the workers are busy: a queue left
			// unread would fill, and everything sent after would be dropped.
			for len(pending) > 0 && !pending[0].at.After(time.Now()) {
				select {
				case due <- pending[0]:
					heap.Pop(&pending)
				case b := <-s.later:
					pending.add(b)
				case <-ctx.Done():
					return nil
				}
			}
		}
	}
}

func (s *Simulator) send(ctx context.Context, b backLater) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if b.receipt != nil {
		return s.cfg.Sink.Receipt(ctx, *b.receipt)
	}
	return s.cfg.Sink.Inbound(ctx, *b.reply)
}

// sendBack queues b, or drops it when the queue is full (an overloaded
// SMSC drops receipts too; the processor's receipt timeout covers them).
func (s *Simulator) sendBack(b backLater) {
	select {
	case s.later <- b:
	default:
	}
}

// backHeap orders what is sent back by time.
type backHeap []backLater

// add queues b unless maxPending wait already.
func (h *backHeap) add(b backLater) {
	if len(*h) < maxPending {
		heap.Push(h, b)
	}
}

func (h backHeap) Len() int           { return len(h) }
func (h backHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h backHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *backHeap) Push(x any)        { *h = append(*h, x.(backLater)) }
func (h *backHeap) Pop() any {
	old := *h
	b := old[len(old)-1]
	*h = old[:len(old)-1]
	return b
}

var permanentReasons = []string{"permanent: recipient number is not in service", "permanent: recipient blocked messages from this sender", "permanent: carrier rejected the message content"}

var transientReasons = []string{"carrier timeout", "carrier throttled the request", "carrier temporarily unavailable"}

// Submit asks the carrier to deliver one message. The carrier counts as
// called when the delay has passed; a call cancelled before that never
// reached it. With a ledger, the call is written down before the delay
// (outcome LedgerStarted), so that a process killed during it still leaves
// the call counted, and completed with its outcome after it; a call
// cancelled before the delay ended keeps its row, marked LedgerCancelled,
// so that tests of graceful paths (which must cancel nothing) can see it.
func (s *Simulator) Submit(ctx context.Context, req sms.SendRequest, attempt int) (Accepted, error) {
	if err := s.deliver(ctx, req, attempt); err != nil {
		return Accepted{}, err
	}
	if s.cfg.Sink == nil || !s.cfg.Receipts {
		return Accepted{}, nil
	}
	// Part ids in hex, as many SMSCs give them: 64 bits, this
	// simulator's prefix, then a count with a random byte.
	parts := make([]string, max(req.Segments, 1))
	for i := range parts {
		parts[i] = fmt.Sprintf("%06X%010X", s.prefix, (s.seq.Add(1)<<8|rand.N[uint64](256))&(1<<40-1))
	}
	status := sms.StatusDelivered
	switch x := rand.Float64(); {
	case x < s.cfg.UndeliveredRate:
		status = sms.StatusUndelivered
	case x < s.cfg.UndeliveredRate+s.cfg.ExpiredRate:
		status = sms.StatusExpired
	}
	now := time.Now()
	for i, id := range parts {
		st := sms.StatusDelivered
		if i == len(parts)-1 {
			st = status // the last part says how the message fared
		}
		at := now.Add(s.cfg.ReceiptMinDelay + randDuration(s.cfg.ReceiptMaxDelay-s.cfg.ReceiptMinDelay))
		s.sendBack(backLater{at: at, receipt: &Receipt{CarrierID: id, Status: st, State: receiptState[st], DoneAt: at.UTC()}})
	}
	if text := s.handsets.answer(req, s.cfg); text != "" {
		at := now.Add(s.cfg.ReplyDelay)
		s.sendBack(backLater{at: at, reply: &Inbound{From: req.Recipient, To: req.Sender, Text: text, ReceivedAt: at.UTC(),
			CarrierID: fmt.Sprintf("sim-mo-%s-%d", req.MessageID, req.Retry)}})
	}
	return Accepted{PartIDs: parts, Receipts: true}, nil
}

// handsets remembers the simulated handsets that said STOP to a sender,
// so that they can later say START, and so that none says STOP twice:
// with every knob at 1, a handset that answered every confirmation would
// otherwise opt out and in for ever.
type handsets struct {
	mu sync.Mutex
	// said holds, per recipient and sender, whether the handset is opted
	// out now (true) or said START since (false).
	said map[handset]bool
}

type handset struct{ recipient, sender string }

// maxHandsets bounds the handsets remembered (about 100 bytes each); past
// it, no new handset says STOP.
const maxHandsets = 1 << 18

// answer is what the recipient of req answers, or "" for nothing. A
// handset opted out of the sender answers the next message it gets (the
// STOP confirmation) with START for a share StartRate, and else stays
// silent; any other answers for a share ReplyRate, with STOP for a share
// StopRate unless it said STOP before.
func (h *handsets) answer(req sms.SendRequest, cfg SimulatorConfig) string {
	if cfg.ReplyRate == 0 || !strings.HasPrefix(req.Sender, "+") {
		return ""
	}
	key := handset{req.Recipient, req.Sender}
	h.mu.Lock()
	defer h.mu.Unlock()
	optedOut, saidStop := h.said[key]
	switch {
	case optedOut:
		if rand.Float64() < cfg.StartRate {
			h.said[key] = false
			return "START"
		}
		return ""
	case rand.Float64() >= cfg.ReplyRate:
		return ""
	case !saidStop && len(h.said) < maxHandsets && rand.Float64() < cfg.StopRate:
		if h.said == nil {
			h.said = map[handset]bool{}
		}
		h.said[key] = true
		return "STOP"
	}
	return "Thanks!"
}

// receiptState is the SMPP word a receipt uses for each status.
var receiptState = map[sms.Status]string{sms.StatusDelivered: "DELIVRD", sms.StatusUndelivered: "UNDELIV", sms.StatusExpired: "EXPIRED"}

func randDuration(span time.Duration) time.Duration {
	if span <= 0 {
		return 0
	}
	return rand.N(span)
}

// Ready is always nil: the simulator has no connection to lose.
func (s *Simulator) Ready() error { return nil }

func (s *Simulator) deliver(ctx context.Context, req sms.SendRequest, attempt int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var entry int64
	if s.cfg.Ledger != nil {
		// Not cancelled half-way: a cancelled insert may still commit, and
		// its row would then count a call that never happened.
		if err := s.cfg.Ledger.GetContext(context.WithoutCancel(ctx), &entry,
			`INSERT INTO processor.carrier_calls (message_id, attempt, outcome) VALUES ($1, $2, $3) RETURNING id`, req.MessageID, attempt, LedgerStarted); err != nil {
			// The call was not made: a transient failure of the carrier.
			return &Error{Transient: true, Reason: fmt.Sprintf("carrier ledger: %v", err)}
		}
	}
	delay := s.cfg.MinDelay
	if span := s.cfg.MaxDelay - s.cfg.MinDelay; span > 0 {
		delay += rand.N(span)
	}
	if !platform.Sleep(ctx, delay) || ctx.Err() != nil {
		if s.cfg.Ledger != nil {
			// Kept, not deleted: a call the processor cancels (on revoke or
			// shutdown) is work handed back, and a graceful drain must
			// leave none; a deleted row would hide it.
			_, _ = s.cfg.Ledger.ExecContext(context.WithoutCancel(ctx), `UPDATE processor.carrier_calls SET outcome = $2 WHERE id = $1`, entry, LedgerCancelled)
		}
		return ctx.Err()
	}
	var err error
	outcome := "delivered"
	if rand.Float64() < s.cfg.FailureRate {
		if rand.Float64() < s.cfg.TransientShare {
			err = &Error{Transient: true, Reason: transientReasons[rand.N(len(transientReasons))]}
		} else {
			err = &Error{Reason: permanentReasons[rand.N(len(permanentReasons))]}
		}
		outcome = err.Error()
	}
	if s.cfg.Ledger != nil {
		// The call happened whatever becomes of this update; a failure to
		// record its outcome leaves it "started", still counted.
		_, _ = s.cfg.Ledger.ExecContext(context.WithoutCancel(ctx), `UPDATE processor.carrier_calls SET outcome = $2 WHERE id = $1`, entry, outcome)
	}
	return err
}
