// Package carrier is where the processor hands messages over: the Carrier
// interface, what a carrier answers and sends back (receipts, inbound
// messages), and the carriers themselves: the simulator here, SMPP in
// carrier/smpp.
package carrier

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// Carrier hands messages to an SMSC.
type Carrier interface {
	// Submit hands req to the carrier. It returns what the carrier
	// answered once it accepted the message, an *Error when it refused
	// it, and ctx's error when ctx ended before the carrier was asked. A
	// call cut off after the carrier was asked may still have reached it:
	// the caller records the attempt before it calls.
	Submit(ctx context.Context, req sms.SendRequest, attempt int) (Accepted, error)
	// Ready reports why the carrier can take no message now (no bind up),
	// or nil.
	Ready() error
}

// Accepted is the carrier's answer to a message it took.
type Accepted struct {
	// PartIDs are the carrier's ids of the message's parts, in order, as
	// NormalizeID gives them; the first is the message's
	// carrier_message_id. Empty when the carrier gives none.
	PartIDs []string
	// Receipts says whether the carrier will send a receipt for each part;
	// without, the message stays SENT.
	Receipts bool
}

// Error is a message the carrier refused, or could not take now.
type Error struct {
	// Transient errors are worth retrying; the others end the message
	// FAILED with Reason.
	Transient bool
	// Throttled errors (ESME_RTHROTTLED, ESME_RMSGQFUL) say "slower": the
	// message is retried after RetryAfter without counting the attempt.
	Throttled  bool
	RetryAfter time.Duration
	// Reason is the failure reason, such as "permanent: ESME_RINVDSTADR
	// (0x0000000B) invalid destination address".
	Reason string
}

func (e *Error) Error() string { return e.Reason }

// Receipt is a delivery receipt for one part of a message.
type Receipt struct {
	// CarrierID is the part's id as NormalizeID gives it.
	CarrierID string
	// Status is DELIVERED, UNDELIVERED or EXPIRED.
	Status sms.Status
	// State is the carrier's own word for it (DELIVRD, UNDELIV, REJECTD,
	// EXPIRED, DELETED, UNKNOWN...), and Err its error code, as sent.
	State string
	Err   string
	// DoneAt is when the carrier says the part reached its final state,
	// or when the receipt arrived if it did not say.
	DoneAt time.Time
}

// Inbound is a message a handset sent to one of the carrier's numbers.
type Inbound struct {
	From, To, Text string
	ReceivedAt     time.Time
	// CarrierID identifies the message at the carrier (or is made up from
	// its content and time when the carrier gives none); it makes handing
	// the message over idempotent.
	CarrierID string
}

// Sink takes what a carrier receives on its own: receipts and inbound
// messages. A nil error means the item is durable, so the carrier may
// acknowledge it to the SMSC; an error makes the carrier refuse it so that
// the SMSC sends it again.
type Sink interface {
	Receipt(ctx context.Context, r Receipt) error
	Inbound(ctx context.Context, m Inbound) error
}

// NormalizeID returns the form of a carrier message id that parts are
// stored under: trimmed, upper case, without leading zeros.
func NormalizeID(id string) string {
	id = strings.ToUpper(strings.TrimSpace(id))
	if t := strings.TrimLeft(id, "0"); t != "" || id == "" {
		return t
	}
	return "0"
}

// IDForms returns the forms a carrier id is looked up by, in order: itself
// normalized first, then the same number in the other base, because SMSCs
// write an id in hex in one place and in decimal in another ("1A2B" in
// submit_sm_resp, "6699" in the receipt). Ids are stored as given, so two
// messages never share one; only a lookup that finds nothing under the
// id itself tries the other base.
func IDForms(id string) []string {
	norm := NormalizeID(id)
	forms := []string{norm}
	if n, err := strconv.ParseUint(norm, 10, 64); err == nil {
		forms = append(forms, NormalizeID(strconv.FormatUint(n, 16)))
	} else if n, err := strconv.ParseUint(norm, 16, 64); err == nil {
		forms = append(forms, strconv.FormatUint(n, 10))
	}
	return forms
}
