package carrier

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	// so tests can count calls repeated after a crash.
	Ledger *sqlx.DB
}

// Simulator stands in for an SMS carrier: it waits, then succeeds or fails
// at the configured rates.
type Simulator struct {
	cfg SimulatorConfig
}

// NewSimulator returns a simulated carrier.
func NewSimulator(cfg SimulatorConfig) *Simulator {
	return &Simulator{cfg: cfg}
}

var permanentReasons = []string{"permanent: recipient number is not in service", "permanent: recipient blocked messages from this sender", "permanent: carrier rejected the message content"}

var transientReasons = []string{"carrier timeout", "carrier throttled the request", "carrier temporarily unavailable"}

// Submit asks the carrier to deliver one message. The carrier counts as
// called when the delay has passed; a call cancelled before that never
// reached it. With a ledger, the call is written down before the delay
// (outcome "started"), so that a process killed during it still leaves the
// call counted, and completed with its outcome after it; a call cancelled
// before the delay ended is struck off again.
func (s *Simulator) Submit(ctx context.Context, req sms.SendRequest, attempt int) (Accepted, error) {
	if err := s.deliver(ctx, req, attempt); err != nil {
		return Accepted{}, err
	}
	return Accepted{}, nil
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
			`INSERT INTO processor.carrier_calls (message_id, attempt, outcome) VALUES ($1, $2, 'started') RETURNING id`, req.MessageID, attempt); err != nil {
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
			_, _ = s.cfg.Ledger.ExecContext(context.WithoutCancel(ctx), `DELETE FROM processor.carrier_calls WHERE id = $1`, entry)
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
