package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// Writer groups concurrent sends into shared multi-row transactions: each
// caller waits until the batch holding its message is committed, so a 202
// still means stored, while PostgreSQL sees one commit per batch instead of
// one per request.
type Writer struct {
	store    *Store
	reqs     chan writeReq
	maxBatch int
	workers  int
	lc       platform.Lifecycle

	// open is true between Start and Stop; Insert queues only while it
	// holds, so that every queued message is written before Stop returns.
	mu   sync.RWMutex
	open bool

	batchSeconds prometheus.Histogram
	batchSize    prometheus.Histogram
}

type writeReq struct {
	msg   sms.NewMessage
	reply chan writeResult
}

type writeResult struct {
	msg sms.Message
	err error
}

// NewWriter returns a writer with workers concurrent batches of at most
// maxBatch messages; its metrics are registered on reg.
func NewWriter(store *Store, workers, maxBatch int, reg prometheus.Registerer) *Writer {
	w := &Writer{store: store, reqs: make(chan writeReq, workers*maxBatch), maxBatch: maxBatch, workers: workers,
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_writer_batch_seconds",
			Help: "Time to insert and commit one batch of accepted messages.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sms_writer_batch_size",
			Help: "Messages per committed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
	}
	reg.MustRegister(w.batchSeconds, w.batchSize)
	return w
}

// Insert stores one message, sharing a transaction with concurrent callers.
func (w *Writer) Insert(ctx context.Context, m sms.NewMessage) (sms.Message, error) {
	reply := make(chan writeResult, 1)
	w.mu.RLock()
	if !w.open {
		w.mu.RUnlock()
		return sms.Message{}, sms.ErrStopping
	}
	select {
	case w.reqs <- writeReq{msg: m, reply: reply}:
		w.mu.RUnlock()
	case <-ctx.Done():
		w.mu.RUnlock()
		return sms.Message{}, ctx.Err()
	}
	// Once queued, the message may be committed whatever happens to ctx,
	// so wait for the answer rather than report a failure that isn't one.
	r := <-reply
	return r.msg, r.err
}

// Start runs the workers until Stop. Only Stop ends them, not ctx: a
// message queued must be written, and Stop first closes the queue.
func (w *Writer) Start(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.lc.Start(context.WithoutCancel(ctx), w.run); err != nil {
		return err
	}
	w.open = true
	return nil
}

// Stop refuses new messages, writes every one already queued, and returns
// when the workers are done. Safe to call twice.
func (w *Writer) Stop() {
	w.mu.Lock()
	w.open = false
	w.mu.Unlock()
	_ = w.lc.Stop()
}

func (w *Writer) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range w.workers {
		wg.Go(func() { w.work(ctx) })
	}
	wg.Wait()
	// Stop closed the queue before it ended ctx: write what got in.
	for batch := platform.Gather(w.reqs, nil, w.maxBatch, 0); len(batch) > 0; batch = platform.Gather(w.reqs, nil, w.maxBatch, 0) {
		w.write(context.WithoutCancel(ctx), batch)
	}
	return nil
}

func (w *Writer) work(ctx context.Context) {
	batch := make([]writeReq, 0, w.maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-w.reqs:
			batch = append(batch, r)
		case <-ctx.Done():
			return // run drains what is queued
		}
		batch = platform.Gather(w.reqs, batch, w.maxBatch, 0)
		w.write(context.WithoutCancel(ctx), batch)
	}
}

func (w *Writer) write(ctx context.Context, batch []writeReq) {
	in := make([]sms.NewMessage, len(batch))
	for i, r := range batch {
		in[i] = r.msg
	}
	// A stuck database must not hold callers forever.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	msgs, err := w.store.Insert(ctx, in)
	w.batchSeconds.Observe(time.Since(start).Seconds())
	w.batchSize.Observe(float64(len(in)))
	for i, r := range batch {
		if err != nil {
			r.reply <- writeResult{err: err}
			continue
		}
		r.reply <- writeResult{msg: msgs[i]}
	}
}
