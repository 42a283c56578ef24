package processor

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
)

// pruner deletes outcomes older than the retention, so that
// processor.deliveries holds about retention × rate rows instead of
// growing forever. An outcome is only needed while Kafka may still
// redeliver its record; after the report, the API never re-queues the
// message either.
type pruner struct {
	store     *Store
	retention time.Duration
	// topicRetention reads how long Kafka keeps the topic's records
	// (negative: forever).
	topicRetention func(context.Context) (time.Duration, error)
	batch          int
	log            zerolog.Logger
	pruned         prometheus.Counter
}

func newPruner(store *Store, retention time.Duration, topicRetention func(context.Context) (time.Duration, error), log zerolog.Logger, reg prometheus.Registerer) *pruner {
	p := &pruner{store: store, retention: retention, topicRetention: topicRetention, batch: 5000, log: log.With().Str("component", "pruner").Logger(),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_deliveries_pruned_total",
			Help: "Reported outcomes deleted from processor.deliveries after the delivery retention."})}
	reg.MustRegister(p.pruned)
	return p
}

// run prunes at start and then every interval until ctx ends; retention 0
// keeps everything.
func (p *pruner) run(ctx context.Context, interval time.Duration) {
	if p.retention <= 0 {
		return
	}
	p.prune(ctx)
	platform.Every(ctx, interval, p.prune)
}

// prune deletes in batches, so that no transaction holds many row locks or
// runs long next to the record and report statements.
func (p *pruner) prune(ctx context.Context) {
	// An outcome deleted while Kafka still holds its record would let a
	// redelivery (a reset group, a replayed partition) call the carrier
	// again: never prune inside the topic's retention.
	kept, err := p.topicRetention(ctx)
	switch {
	case err != nil:
		p.log.Warn().Err(err).Msg("cannot read the topic's retention.ms; not pruning delivery outcomes this round")
		return
	case kept < 0 || kept >= p.retention:
		p.log.Warn().Dur("delivery_retention", p.retention).Dur("topic_retention", kept).
			Msg("Kafka keeps records at least as long as delivery-retention (negative: forever); not pruning delivery outcomes: raise delivery-retention")
		return
	}
	cutoff := time.Now().Add(-p.retention)
	var total int64
	for ctx.Err() == nil {
		n, err := p.store.Prune(ctx, cutoff, p.batch)
		total += n
		p.pruned.Add(float64(n))
		if err != nil {
			if ctx.Err() == nil {
				p.log.Warn().Err(err).Int64("deleted", total).Msg("pruning delivery outcomes failed; next round retries")
			}
			return
		}
		if n < int64(p.batch) {
			break
		}
	}
	if total > 0 {
		p.log.Info().Int64("deleted", total).Time("reported_before", cutoff).Msg("pruned delivery outcomes")
	}
}
