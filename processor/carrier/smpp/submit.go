package smpp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/linxGnu/gosmpp/data"
	"github.com/linxGnu/gosmpp/pdu"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// throttledRetries is how often a throttled part after the first is sent
// again in place (after ThrottleDelay) before the message is given back to
// the processor: retrying it here keeps the parts already accepted usable.
const throttledRetries = 3

// message is one SMS ready to go: addresses, validity and the payload of
// each part.
type message struct {
	id       string
	src, dst pdu.Address
	validity string
	coding   byte
	parts    [][]byte
	ref      byte
}

// newMessage encodes and splits req. Its errors are the request's fault:
// sending it again would fail the same way.
func newMessage(req sms.SendRequest) (*message, error) {
	m := &message{id: req.MessageID.String(), ref: byte(rand.N(256))}
	var err error
	if m.src, err = sourceAddr(req.Sender); err != nil {
		return nil, fmt.Errorf("sender %q: %w", req.Sender, err)
	}
	if m.dst, err = destAddr(req.Recipient); err != nil {
		return nil, fmt.Errorf("recipient %q: %w", req.Recipient, err)
	}
	enc := req.Encoding
	if enc == "" {
		enc, _ = sms.Segments(req.Text)
	}
	if m.coding, m.parts, err = splitText(req.Text, enc); err != nil {
		return nil, err
	}
	if req.ValidUntil != nil {
		m.validity = absoluteTime(*req.ValidUntil)
	}
	return m, nil
}

// sourceAddr: an E.164 number is international (TON 1, NPI 1, without the
// plus), digits alone are left to the SMSC (TON 0, NPI 1), and anything
// else is an alphanumeric sender ID (TON 5, NPI 0).
func sourceAddr(sender string) (pdu.Address, error) {
	switch {
	case strings.HasPrefix(sender, "+") && allDigits(sender[1:]):
		return pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, sender[1:])
	case allDigits(sender):
		return pdu.NewAddressWithTonNpiAddr(data.GSM_TON_UNKNOWN, data.GSM_NPI_E164, sender)
	case sender == "" || len(sender) > 11:
		return pdu.Address{}, errors.New("alphanumeric sender must be 1 to 11 characters")
	}
	return pdu.NewAddressWithTonNpiAddr(data.GSM_TON_ALPHANUMERIC, data.GSM_NPI_UNKNOWN, sender)
}

// destAddr: recipients are E.164, sent international without the plus.
func destAddr(recipient string) (pdu.Address, error) {
	digits := strings.TrimPrefix(recipient, "+")
	if !allDigits(digits) {
		return pdu.Address{}, errors.New("not an E.164 number")
	}
	return pdu.NewAddressWithTonNpiAddr(data.GSM_TON_INTERNATIONAL, data.GSM_NPI_E164, digits)
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// absoluteTime is t in SMPP's absolute time format YYMMDDhhmmsstnnp (t:
// tenths of a second, nn: quarter hours from UTC, p: + or -), written in
// UTC.
func absoluteTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s%d00+", t.Format("060102150405"), t.Nanosecond()/100_000_000)
}

// pdu builds part i (0-based) as a new submit_sm, with a sequence number
// of its own: gosmpp's writer marshals a PDU after Submit returns, so a
// PDU is never reused or changed once handed over.
func (m *message) pdu(i int) *pdu.SubmitSM {
	p := pdu.NewSubmitSM().(*pdu.SubmitSM)
	p.SourceAddr, p.DestAddr = m.src, m.dst
	p.RegisteredDelivery = data.SM_SMSC_RECEIPT_REQUESTED
	p.ValidityPeriod = m.validity
	// The encoding only gives data_coding; the octets are ours.
	enc := data.GSM7BIT
	if m.coding == codingUCS2 {
		enc = data.UCS2
	}
	_ = p.Message.SetMessageDataWithEncoding(m.parts[i], enc) // at most 153 or 134 octets
	if len(m.parts) > 1 {
		p.Message.SetUDH(pdu.UDH{pdu.NewIEConcatMessage(byte(len(m.parts)), byte(i+1), m.ref)})
		p.EsmClass |= data.SM_UDH_GSM
	}
	return p
}

// Submit sends req as one submit_sm per part and returns the SMSC's ids of
// the parts once it accepted every one; receipts follow for each.
//
// While no bind is up (or every window is full) it waits, until ctx ends,
// and then returns ctx's error: the SMSC was not asked, so the caller
// spends no attempt on the outage.
//
// Parts are sent in order and each waits for its submit_sm_resp. When a
// part fails after earlier ones were accepted, the message fails with that
// part's error; the accepted parts stay at the SMSC and may reach the
// handset, which cannot complete the message from them (a retry sends
// every part again under a new reference), and their receipts name ids
// the caller never learnt, so it ignores them. A throttled part after the
// first is sent again here a few times before that happens.
//
// A submit_sm whose response never came (timeout, connection lost, ctx
// ended after it was sent) gives a transient error, but the SMSC may have
// accepted it: retrying it may deliver the message twice. That is the
// duplicate window of at-least-once delivery over SMPP.
func (c *Carrier) Submit(ctx context.Context, req sms.SendRequest, attempt int) (carrier.Accepted, error) {
	m, err := newMessage(req)
	if err != nil {
		return carrier.Accepted{}, &carrier.Error{Reason: "permanent: " + err.Error()}
	}
	if req.Segments > 0 && req.Segments != len(m.parts) {
		// Only when the request's encoding disagrees with its text.
		c.log.Warn().Str("message_id", m.id).Int("segments", req.Segments).Int("parts", len(m.parts)).
			Msg("message split into a different number of parts than counted")
	}
	ids := make([]string, len(m.parts))
	for i := range m.parts {
		id, err := c.submitPart(ctx, m, i)
		if err != nil {
			var cerr *carrier.Error
			if len(m.parts) > 1 && errors.As(err, &cerr) {
				cerr.Reason += fmt.Sprintf(" (part %d of %d)", i+1, len(m.parts))
			}
			return carrier.Accepted{}, err
		}
		ids[i] = carrier.NormalizeID(id)
	}
	return carrier.Accepted{PartIDs: ids, Receipts: true}, nil
}

// submitPart sends part i until the SMSC answers it (or it is given up),
// moving to another bind when the chosen one goes down before sending.
func (c *Carrier) submitPart(ctx context.Context, m *message, i int) (string, error) {
	throttled := 0
	for {
		b, s, err := c.acquire(ctx)
		if err != nil {
			return "", err
		}
		a, sent := c.send(ctx, b, s, m, i)
		c.release(b)
		if !sent {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			continue
		}
		id, err := c.outcome(b, a)
		var cerr *carrier.Error
		if i > 0 && errors.As(err, &cerr) && cerr.Throttled && throttled < throttledRetries {
			throttled++
			if !platform.Sleep(ctx, cerr.RetryAfter) {
				return "", err
			}
			continue
		}
		return id, err
	}
}

// send submits part i on s and waits for its answer; sent is false when it
// never left (the bind went down, or ctx ended while waiting for the rate
// limit), so it may be sent elsewhere or later.
func (c *Carrier) send(ctx context.Context, b *bind, s *session, m *message, i int) (a answer, sent bool) {
	r := b.limiter.Reserve()
	if d := r.Delay(); d > 0 && !platform.Sleep(ctx, d) {
		r.Cancel()
		return answer{}, false
	}
	p := m.pdu(i)
	seq := p.GetSequenceNumber()
	ch, ok := s.register(seq)
	if !ok {
		return answer{}, false
	}
	if !s.send(p) {
		s.unregister(seq)
		return answer{}, false
	}
	_, span := c.tracer.Start(ctx, "smpp.submit_sm", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("message_id", m.id), attribute.Int("part", i+1), attribute.Int("sequence", int(seq))))
	defer func() {
		if a.err != nil {
			span.SetStatus(codes.Error, a.err.Error())
		} else {
			span.SetAttributes(attribute.String("command_status", statusName(a.status)))
			if a.status != data.ESME_ROK {
				span.SetStatus(codes.Error, statusText(a.status))
			}
		}
		span.End()
	}()
	t := time.NewTimer(c.cfg.SubmitTimeout)
	defer t.Stop()
	select {
	case a = <-ch:
	case <-t.C:
		s.unregister(seq)
		a = answer{err: errSubmitTimeout}
	case <-ctx.Done():
		s.unregister(seq)
		a = answer{err: fmt.Errorf("gave up waiting for submit_sm_resp: %w (the SMSC may have accepted it)", ctx.Err())}
	}
	return a, true
}

// outcome turns the answer to a submit_sm into its id or the carrier error
// it means, and counts it.
func (c *Carrier) outcome(b *bind, a answer) (string, error) {
	if a.err != nil {
		c.m.submits.WithLabelValues(b.name, "transient").Inc()
		b.log.Warn().Err(a.err).Msg("submit_sm without answer")
		return "", &carrier.Error{Transient: true, Reason: "transient: " + a.err.Error()}
	}
	if a.status != data.ESME_ROK {
		c.m.errors.WithLabelValues(b.name, statusName(a.status)).Inc()
	}
	switch classify(a.status) {
	case classAccepted:
		c.m.submits.WithLabelValues(b.name, "accepted").Inc()
		return a.id, nil
	case classThrottled:
		c.m.submits.WithLabelValues(b.name, "throttled").Inc()
		c.pause(b)
		return "", &carrier.Error{Transient: true, Throttled: true, RetryAfter: c.cfg.ThrottleDelay,
			Reason: "throttled: " + statusText(a.status)}
	case classTransient:
		c.m.submits.WithLabelValues(b.name, "transient").Inc()
		return "", &carrier.Error{Transient: true, Reason: "transient: " + statusText(a.status)}
	}
	c.m.submits.WithLabelValues(b.name, "permanent").Inc()
	return "", &carrier.Error{Reason: "permanent: " + statusText(a.status)}
}
