// Package carrier is where the processor hands messages over: the Carrier
// interface, the error a carrier answers with, and the carriers themselves
// (the simulator here; SMPP in carrier/smpp).
package carrier

import (
	"context"

	"github.com/smsctl/smsctl/sms"
)

// Carrier delivers one message. It returns nil once the carrier has
// accepted it, an *Error when the carrier refused it, and ctx's error when
// ctx ended before the carrier was asked.
type Carrier interface {
	Deliver(ctx context.Context, req sms.SendRequest, attempt int) error
}

// Error is a delivery the carrier refused. Transient ones are worth
// retrying; the others end the message FAILED with Reason.
type Error struct {
	Transient bool
	Reason    string
}

func (e *Error) Error() string { return e.Reason }
