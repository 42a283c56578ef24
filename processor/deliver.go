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
// Throttling answers wait and try again without counting an attempt. A
// message whose validity ends before the carrier took it ends EXPIRED
// without another call.
func (p *Processor) deliver(st *partition, rec *kgo.Record, req sms.SendRequest) {
	ctx := st.ctx
	parent := rec.Context
	if parent == nil {
		parent = context.Background()
	}
	spanCtx, span := p.tracer.Start(parent, "sms.deliver", trace.WithAttributes(attribute.String("message_id", req.MessageID.String())))
	defer span.End()
	log := p.log.With().Str("message_id", req.MessageID.String()).Str("trace_id", span.SpanContext().TraceID().String()).Logger()
	out := Outcome{MessageID: req.MessageID, Retry: req.Retry}
	if ctx.Err() != nil {
		// Revoked while the claim was being made: the next owner has it, and
		// a carrier may not look at ctx before sending.
		p.abandon(st, req.MessageID)
		return
	}
	throttled := 0
	for attempt := 1; ; {
		if req.ValidUntil != nil && time.Now().After(*req.ValidUntil) {
			reason := "expired: the validity period ended before the carrier accepted the message"
			out.Status, out.FailureReason, out.Attempts = sms.StatusExpired, &reason, attempt-1
			break
		}
		start := time.Now()
		_, attemptSpan := p.tracer.Start(spanCtx, "carrier.attempt", trace.WithAttributes(attribute.Int("attempt", attempt)))
		// The partition's context (revoke, shutdown) with the attempt's span.
		acc, err := p.carrier.Submit(trace.ContextWithSpan(ctx, attemptSpan), req, attempt)
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
			out.addAttempt(sms.Attempt{Attempt: attempt, At: start.UTC(), Result: "accepted"})
			out.Status, out.Parts, out.ReceiptsExpected = sms.StatusSent, acc.PartIDs, acc.Receipts && len(acc.PartIDs) > 0
			if len(acc.PartIDs) > 0 {
				first := acc.PartIDs[0]
				out.CarrierMessageID = &first
			}
		case cerr != nil && cerr.Throttled && throttled < maxThrottled:
			// The carrier asks us to slow down: not the message's fault.
			p.metrics.calls.WithLabelValues("throttled").Inc()
			throttled++
			out.addAttempt(sms.Attempt{Attempt: attempt, At: start.UTC(), Result: "throttled", Error: errText(err)})
			wait := max(cerr.RetryAfter, p.cfg.RetryBackoff)
			log.Debug().Err(err).Dur("retry_in", wait).Msg("carrier throttled")
			if !platform.Sleep(ctx, wait) {
				p.abandon(st, req.MessageID)
				return
			}
			continue // the same attempt again
		case transient && attempt < p.cfg.MaxAttempts:
			p.metrics.calls.WithLabelValues("transient").Inc()
			p.metrics.retries.Inc()
			out.addAttempt(sms.Attempt{Attempt: attempt, At: start.UTC(), Result: "transient", Error: errText(err)})
			delay := retryDelay(p.cfg.RetryBackoff, attempt)
			delay = delay/2 + rand.N(delay/2+1)
			log.Debug().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("transient carrier failure")
			if !platform.Sleep(ctx, delay) {
				p.abandon(st, req.MessageID)
				return
			}
			attempt++
			continue
		case transient:
			p.metrics.calls.WithLabelValues("transient").Inc()
			out.addAttempt(sms.Attempt{Attempt: attempt, At: start.UTC(), Result: "transient", Error: errText(err)})
			reason := failureReason(fmt.Sprintf("exhausted: %d attempts, last error: %v", attempt, err))
			out.Status, out.FailureReason = sms.StatusFailed, &reason
			if !p.sendDLQ(ctx, rec, errors.New(reason)) {
				// Revoked or shutting down before the dead letter was
				// acknowledged: recording now would lose it. Hand it back.
				p.abandon(st, req.MessageID)
				return
			}
		default:
			p.metrics.calls.WithLabelValues("permanent").Inc()
			reason := cerr.Reason
			switch {
			case strings.TrimSpace(reason) == "":
				reason = "permanent: the carrier gave no reason"
			case !strings.HasPrefix(reason, "permanent:"):
				// The scheduled retry (ADR-007) leaves these alone by the prefix.
				reason = "permanent: " + reason
			}
			reason = failureReason(reason)
			out.addAttempt(sms.Attempt{Attempt: attempt, At: start.UTC(), Result: "permanent", Error: errText(err)})
			out.Status, out.FailureReason = sms.StatusFailed, &reason
		}
		out.Attempts = attempt
		break
	}
	out.ProcessedAt = time.Now().UTC()
	out.Traceparent = platform.Traceparent(spanCtx)
	span.SetAttributes(attribute.String("status", string(out.Status)))
	p.outcomes <- finished{out: out, tp: topicPartition{rec.Topic, rec.Partition}, offset: rec.Offset}
}

// maxThrottled bounds how often one message waits on throttling before
// its throttling counts as a transient failure.
const maxThrottled = 100

// addAttempt logs a carrier call in the message's history. The log keeps
// at most sms.MaxReportAttempts calls, as many as a report may carry (a
// report the API refuses would be retried forever): past that, the last
// entry gives way to the newest, so the log keeps the first calls and
// the one that decided the outcome.
func (o *Outcome) addAttempt(a sms.Attempt) {
	if len(o.AttemptLog) < sms.MaxReportAttempts {
		o.AttemptLog = append(o.AttemptLog, a)
		return
	}
	o.AttemptLog[len(o.AttemptLog)-1] = a
}

// errText is err's text cut to what an event's detail keeps.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return failureReason(err.Error())
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
			if st := p.parts[f.tp]; st != nil {
				st.done(f.offset)
			}
			<-p.slots
		}
		p.mu.Unlock()
		// Only what was stored is reported: an outcome another replica
		// recorded first is that replica's to report, and reporting ours
		// would tell the API something processor.deliveries does not say.
		// SKIPPED outcomes are the processor's own record; the API
		// already knows why it refused the claim.
		if p.reporter != nil {
			p.reporter.Enqueue(reportable(stored))
		}
	}
}

// reportable drops the outcomes the API is not told about.
func reportable(outs []Outcome) []Outcome {
	kept := outs[:0:0]
	for _, o := range outs {
		if o.Status != statusSkipped {
			kept = append(kept, o)
		}
	}
	return kept
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
