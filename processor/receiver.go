package processor

import (
	"context"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// InboundSink hands an inbound message to the API; *client.Internal is
// the implementation.
type InboundSink interface {
	PostInbound(ctx context.Context, m sms.InboundReport) error
}

// Receiver takes what a carrier receives on its own (carrier.Sink):
// receipts are recorded in the store in shared transactions (concurrent
// receipts from every bind commit together) and the reporter is woken to
// report what they settled; inbound messages go to the API at once. A
// receipt or inbound message is acknowledged to the SMSC only once durable.
type Receiver struct {
	store    *Store
	reporter *Reporter
	inbound  InboundSink
	log      zerolog.Logger
	lc       platform.Lifecycle
	queue    chan receiptReq

	receipts *prometheus.CounterVec
	inbounds *prometheus.CounterVec
}

type receiptReq struct {
	r    carrier.Receipt
	done chan error
}

// NewReceiver returns a receiver; inbound may be nil (inbound messages are
// then refused, so the SMSC keeps them). Its metrics are registered on reg.
func NewReceiver(store *Store, reporter *Reporter, inbound InboundSink, log zerolog.Logger, reg prometheus.Registerer) *Receiver {
	r := &Receiver{store: store, reporter: reporter, inbound: inbound, log: log.With().Str("component", "receiver").Logger(),
		queue: make(chan receiptReq, 4096),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_receipts_total",
			Help: "Delivery receipts recorded, by the status they give the part."}, []string{"status"}),
		inbounds: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_inbound_total",
			Help: "Inbound messages handed to the API (result taken), or dropped because it refused them for good (refused)."}, []string{"result"}),
	}
	reg.MustRegister(r.receipts, r.inbounds)
	return r
}

// ErrReceiverStopped refuses receipts while the receiver is not running;
// the carrier answers the SMSC with a temporary error, and it resends.
var ErrReceiverStopped = errors.New("receiver stopped")

// Receipt records r; it returns once r is durable.
func (r *Receiver) Receipt(ctx context.Context, rc carrier.Receipt) error {
	if !r.lc.Running() {
		return ErrReceiverStopped
	}
	req := receiptReq{r: rc, done: make(chan error, 1)}
	select {
	case r.queue <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Inbound hands m to the API; it returns once the API has it.
func (r *Receiver) Inbound(ctx context.Context, m carrier.Inbound) error {
	if r.inbound == nil {
		return errors.New("inbound messages are not taken here")
	}
	err := r.inbound.PostInbound(ctx, sms.InboundReport{From: m.From, To: m.To, Text: m.Text, ReceivedAt: m.ReceivedAt, CarrierMessageID: m.CarrierID})
	var apiErr *client.APIError
	switch {
	case err == nil:
		r.inbounds.WithLabelValues("taken").Inc()
	case errors.As(err, &apiErr) && refusedForGood(apiErr.Problem.Status):
		// The same message would be refused again: acknowledge it to the
		// SMSC, which would otherwise resend it forever.
		r.inbounds.WithLabelValues("refused").Inc()
		r.log.Warn().Err(err).Str("carrier_id", m.CarrierID).Msg("inbound message refused by the API; dropped")
		return nil
	}
	return err
}

// refusedForGood tells a 4xx that no retry changes (a malformed message)
// from one that passes (timeouts, rate limits).
func refusedForGood(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests &&
		status != http.StatusUnauthorized // a wrong token is the operator's to fix; the SMSC keeps the message meanwhile
}

// Start records receipts until Stop.
func (r *Receiver) Start(ctx context.Context) error { return r.lc.Start(ctx, r.run) }

// Stop records what is queued and stops. Safe to call twice.
func (r *Receiver) Stop() { _ = r.lc.Stop() }

func (r *Receiver) run(ctx context.Context) error {
	batch := make([]receiptReq, 0, 500)
	for {
		select {
		case q := <-r.queue:
			batch = append(batch[:0], q)
		case <-ctx.Done():
			for q := range drain(r.queue) {
				q.done <- ErrReceiverStopped
			}
			return nil
		}
		batch = platform.Gather(r.queue, batch, cap(batch), 0)
		rs := make([]carrier.Receipt, len(batch))
		for i, q := range batch {
			rs[i] = q.r
		}
		err := r.store.RecordReceipts(context.WithoutCancel(ctx), rs)
		if err != nil {
			r.log.Warn().Err(err).Int("receipts", len(rs)).Msg("recording receipts failed; the carrier will be asked to resend them")
		} else {
			for _, rc := range rs {
				r.receipts.WithLabelValues(string(rc.Status)).Inc()
			}
			if r.reporter != nil {
				r.reporter.Wake()
			}
		}
		for _, q := range batch {
			q.done <- err
		}
	}
}

// drain yields what is waiting on ch without blocking.
func drain[T any](ch chan T) func(func(T) bool) {
	return func(yield func(T) bool) {
		for {
			select {
			case v := <-ch:
				if !yield(v) {
					return
				}
			default:
				return
			}
		}
	}
}

var _ carrier.Sink = (*Receiver)(nil)
