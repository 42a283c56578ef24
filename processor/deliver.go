package processor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
)

// retryDelay is first doubled once per attempt after the first, at most
// config.MaxRetryDelay: doubling without a cap would hold a message (and
// its in-flight slot) for hours after a dozen attempts, and overflow.
func retryDelay(first time.Duration, attempt int) time.Duration {
	d := first
	for i := 1; i < attempt && d < config.MaxRetryDelay; i++ {
		d *= 2
	}
	return min(d, config.MaxRetryDelay)
}

// deliver calls the carrier, retrying transient failures with exponential
// backoff and jitter in this goroutine, so the partition keeps flowing.
func (p *Processor) deliver(st *partition, rec *kgo.Record, req sms.SendRequest) {
	ctx := st.ctx
	parent := rec.Context
	if parent == nil {
		parent = context.Background()
	}
	spanCtx, span := p.tracer.Start(parent, "sms.deliver", trace.WithAttributes(attribute.String("message_id", req.MessageID.String())))
	defer span.End()
	log := p.log.With().Str("message_id", req.MessageID.String()).Str("trace_id", span.SpanContext().TraceID().String()).Logger()
	var out Outcome
	for attempt := 1; ; attempt++ {
		start := time.Now()
		_, attemptSpan := p.tracer.Start(spanCtx, "carrier.attempt", trace.WithAttributes(attribute.Int("attempt", attempt)))
		_, err := p.carrier.Submit(ctx, req, attempt)
		if err != nil {
			attemptSpan.SetStatus(codes.Error, err.Error())
		}
		attemptSpan.End()
		var cerr *carrier.Error
		if err != nil && ctx.Err() != nil && !errors.As(err, &cerr) {
			// Revoked, lost or shutting down before the carrier answered:
			// the next owner redoes it. A call the carrier did answer is
			// recorded below even now, or the next owner would repeat it.
			p.abandon(st, req.MessageID)
			return
		}
		p.metrics.attempt.Observe(time.Since(start).Seconds())
		transient := err != nil && (!errors.As(err, &cerr) || cerr.Transient)
		switch {
		case err == nil:
			p.metrics.calls.WithLabelValues("delivered").Inc()
			out = Outcome{Status: sms.StatusSent}
		case transient && attempt < p.cfg.MaxAttempts:
			p.metrics.calls.WithLabelValues("transient").Inc()
			p.metrics.retries.Inc()
			delay := retryDelay(p.cfg.RetryBackoff, attempt)
			delay = delay/2 + rand.N(delay/2+1)
			log.Debug().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("transient carrier failure")
			select {
			case <-time.After(delay):
				continue
			case <-ctx.Done():
				p.abandon(st, req.MessageID)
				return
			}
		case transient:
			p.metrics.calls.WithLabelValues("transient").Inc()
			reason := failureReason(fmt.Sprintf("exhausted: %d attempts, last error: %v", attempt, err))
			out = Outcome{Status: sms.StatusFailed, FailureReason: &reason}
			if !p.sendDLQ(ctx, rec, errors.New(reason)) {
				// Revoked or shutting down before the dead letter was
				// acknowledged: recording now would lose it. Hand it back.
				p.abandon(st, req.MessageID)
				return
			}
		default:
			p.metrics.calls.WithLabelValues("permanent").Inc()
			reason := cerr.Reason
			if strings.TrimSpace(reason) == "" {
				reason = "permanent: the carrier gave no reason"
			}
			reason = failureReason(reason)
			out = Outcome{Status: sms.StatusFailed, FailureReason: &reason}
		}
		out.MessageID, out.Attempts, out.ProcessedAt = req.MessageID, attempt, time.Now().UTC()
		out.Traceparent = platform.Traceparent(spanCtx)
		span.SetAttributes(attribute.String("status", string(out.Status)))
		break
	}
	p.outcomes <- finished{out: out, partition: rec.Partition, offset: rec.Offset}
}

// failureReason cuts reason to what the API accepts (sms.MaxFailureReason
// characters): a report it rejects would be retried forever and hold up
// every report behind it.
func failureReason(reason string) string {
	if utf8.RuneCountInString(reason) <= sms.MaxFailureReason {
		return reason
	}
	const ellipsis = "…"
	runes := []rune(reason)
	return string(runes[:sms.MaxFailureReason-1]) + ellipsis
}

// record writes outcomes in batches; only then are their offsets done.
func (p *Processor) record(ctx context.Context) {
	batch := make([]finished, 0, 1000)
	for {
		batch = batch[:0]
		select {
		case f := <-p.outcomes:
			batch = append(batch, f)
		case <-ctx.Done():
			return
		}
		batch = platform.Gather(p.outcomes, batch, cap(batch), 0)
		outs := make([]Outcome, len(batch))
		for i, f := range batch {
			outs[i] = f.out
		}
		var backoff platform.Backoff
		var stored []Outcome
		for {
			var err error
			if stored, err = p.store.Record(ctx, outs); err == nil {
				break
			}
			p.log.Warn().Err(err).Int("outcomes", len(outs)).Msg("recording outcomes failed; retrying")
			if !platform.Sleep(ctx, backoff.Next()) {
				return
			}
		}
		p.mu.Lock()
		for _, f := range batch {
			p.finishFlightLocked(f.out.MessageID)
			if st := p.parts[f.partition]; st != nil {
				st.done(f.offset)
			}
			<-p.slots
		}
		p.mu.Unlock()
		// Only what was stored is reported: an outcome another replica
		// recorded first is that replica's to report, and reporting ours
		// would tell the API something processor.deliveries does not say.
		if p.reporter != nil {
			p.reporter.Enqueue(stored)
		}
	}
}

// deadLetter sends a poison record to the dead-letter topic, then lets its
// offset be committed.
func (p *Processor) deadLetter(st *partition, rec *kgo.Record, cause error) {
	p.log.Warn().Err(cause).Int32("partition", rec.Partition).Int64("offset", rec.Offset).Msg("poison record sent to dead-letter topic")
	if !p.sendDLQ(st.ctx, rec, cause) {
		p.mu.Lock()
		st.abandon()
		p.mu.Unlock()
		<-p.slots
		return
	}
	p.mu.Lock()
	p.finishLocked(st, rec.Offset)
	p.mu.Unlock()
}

// sendDLQ produces rec's copy to the dead-letter topic with the error and
// its origin in headers, retrying until it is acknowledged or ctx ends.
func (p *Processor) sendDLQ(ctx context.Context, rec *kgo.Record, cause error) bool {
	dl := &kgo.Record{Topic: p.cfg.DLQTopic, Key: rec.Key, Value: rec.Value, Headers: append(append([]kgo.RecordHeader(nil), rec.Headers...),
		kgo.RecordHeader{Key: "error", Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: "original_topic", Value: []byte(rec.Topic)},
		kgo.RecordHeader{Key: "original_partition", Value: []byte(strconv.Itoa(int(rec.Partition)))},
		kgo.RecordHeader{Key: "original_offset", Value: []byte(strconv.FormatInt(rec.Offset, 10))},
	)}
	backoff := 100 * time.Millisecond
	for {
		err := p.cl.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			p.metrics.dlq.Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		p.log.Warn().Err(err).Msg("dead-letter produce failed; retrying")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return false
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
