package processor

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// monitor samples what the processor can't count on its own: the group's
// lag per partition (committed offset to end offset, as Kafka sees it), and
// at scrape time the outcomes still waiting for the API.
type monitor struct {
	adm     *kadm.Client
	group   string
	topics  []string
	store   *Store
	log     zerolog.Logger
	lag     *prometheus.GaugeVec
	waiting prometheus.GaugeFunc
	// lastWaiting is the last count read, answered while the store can't
	// be read.
	lastWaiting atomic.Int64
}

func newMonitor(cl *kgo.Client, group string, topics []string, store *Store, log zerolog.Logger, reg prometheus.Registerer) *monitor {
	m := &monitor{
		adm: kadm.NewClient(cl), group: group, topics: topics, store: store, log: log,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sms_consumer_lag",
			Help: "Records between the group's committed offset and the end of each partition."}, []string{"topic", "partition"}),
	}
	// Counted when scraped, so the figure is never a sample behind (a
	// small table: the outcomes not yet acknowledged).
	m.waiting = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sms_reports_waiting",
		Help: "Recorded outcomes not yet acknowledged by the API."}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if n, err := store.Unreported(ctx); err == nil {
			m.lastWaiting.Store(n)
		}
		return float64(m.lastWaiting.Load())
	})
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
	lags, err := m.adm.Lag(ctx, m.group)
	if err != nil {
		return
	}
	for _, topic := range m.topics {
		for _, part := range lags[m.group].Lag[topic] {
			if part.Lag >= 0 {
				m.lag.WithLabelValues(topic, strconv.Itoa(int(part.Partition))).Set(float64(part.Lag))
			}
		}
	}
}
