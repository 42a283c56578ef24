package processor

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// monitor samples what the processor can't count on its own: the group's
// lag per partition (committed offset to end offset, as Kafka sees it) and
// the outcomes still waiting for the API.
type monitor struct {
	adm     *kadm.Client
	group   string
	topic   string
	store   *Store
	log     zerolog.Logger
	lag     *prometheus.GaugeVec
	waiting prometheus.Gauge
}

func newMonitor(cl *kgo.Client, group, topic string, store *Store, log zerolog.Logger, reg prometheus.Registerer) *monitor {
	m := &monitor{
		adm: kadm.NewClient(cl), group: group, topic: topic, store: store, log: log,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sms_consumer_lag",
			Help: "Records between the group's committed offset and the end of each partition."}, []string{"partition"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sms_reports_waiting",
			Help: "Recorded outcomes not yet acknowledged by the API."}),
	}
	reg.MustRegister(m.lag, m.waiting)
	return m
}

func (m *monitor) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		m.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *monitor) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if n, err := m.store.Unreported(ctx); err == nil {
		m.waiting.Set(float64(n))
	}
	lags, err := m.adm.Lag(ctx, m.group)
	if err != nil {
		return
	}
	for _, part := range lags[m.group].Lag[m.topic] {
		if part.Lag >= 0 {
			m.lag.WithLabelValues(strconv.Itoa(int(part.Partition))).Set(float64(part.Lag))
		}
	}
}
