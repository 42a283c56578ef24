package processor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// Service is the processor role: the consumer, the reporter and the
// health/metrics listener.
type Service struct {
	cfg       config.Processor
	log       zerolog.Logger
	db        *sqlx.DB
	store     *Store
	processor *Processor
	reporter  *Reporter
	receiver  *Receiver
	carrier   carrierService
	monitor   *monitor
	pruner    *pruner
	http      *platform.HTTPListener
	chores    platform.Lifecycle // lag monitor, pruner, receipt timeout
	closed    sync.Once
}

// NewService connects to PostgreSQL and Kafka and builds the processor;
// Run processes. extra Kafka options go to the consumer client.
func NewService(ctx context.Context, cfg config.Processor, log zerolog.Logger, tp trace.TracerProvider, extra ...kgo.Opt) (*Service, error) {
	db, err := platform.OpenPostgres(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return nil, err
	}
	if err := migrations.Check(ctx, db.DB, migrations.Processor); err != nil {
		db.Close()
		return nil, err
	}
	reg := platform.NewRegistry()
	store := NewStore(db)
	api := client.NewInternal(cfg.APIURL, cfg.InternalToken, 10*time.Second)
	reporter := NewReporter(store, ReporterConfig{APIURL: cfg.APIURL, Token: cfg.InternalToken, Batch: cfg.ReportBatch, Concurrency: cfg.ReportConcurrency}, log, reg)
	receiver := NewReceiver(store, reporter, api, log, reg)
	car, err := newCarrier(cfg, db, receiver, log, reg, tp)
	if err != nil {
		db.Close()
		return nil, err
	}
	topics := sms.PriorityTopics(cfg.Topic)
	lanes := []string{topics[sms.PriorityHigh], topics[sms.PriorityNormal], topics[sms.PriorityLow]}
	p, err := New(Config{
		Brokers: cfg.Brokers, Topic: cfg.Topic, DLQTopic: cfg.DLQTopic, Group: cfg.Group, Lanes: lanes,
		MaxInFlight: cfg.MaxInFlight, MaxAttempts: cfg.MaxAttempts, RetryBackoff: cfg.RetryBackoff, DrainTimeout: cfg.ShutdownTimeout / 2,
		Tracer: tp, Claimer: api,
	}, store, car, reporter, log, reg, append([]kgo.Opt{platform.KafkaMetrics(reg)}, extra...)...)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Service{cfg: cfg, log: log, db: db, store: store, processor: p, reporter: reporter, receiver: receiver, carrier: car,
		monitor: newMonitor(p.Client(), cfg.Group, lanes, store, log, reg),
		pruner:  newPruner(store, cfg.DeliveryRetention, topicRetention(p.Client(), cfg.Topic), log, reg)}
	e := platform.NewEcho(log, func(error) *platform.Problem { return nil })
	e.Use(platform.HTTPMetrics(reg))
	platform.RegisterHealth(e, map[string]platform.Check{
		"postgres": db.PingContext,
		// No bind up: not ready, and messages wait without spending attempts.
		"carrier": func(context.Context) error { return car.Ready() },
		"kafka":   func(ctx context.Context) error { return platform.PingKafka(ctx, p.Client()) },
		"group": func(context.Context) error {
			if !p.Joined() {
				return errors.New("not joined yet")
			}
			return nil
		},
	}, nil)
	platform.RegisterMetrics(e, reg)
	if s.http, err = platform.NewHTTPListener(cfg.HTTPAddr, e, cfg.ShutdownTimeout); err != nil {
		p.Client().Close()
		db.Close()
		return nil, err
	}
	return s, nil
}

// Addr is where health and metrics are served.
func (s *Service) Addr() net.Addr { return s.http.Addr() }

// Start starts the reporter, the chores (lag monitor, pruner), the health
// listener and then the consumer.
func (s *Service) Start(ctx context.Context) error {
	for _, svc := range []platform.Service{s.reporter, s.receiver, s.carrier} {
		if err := svc.Start(ctx); err != nil {
			s.Stop()
			return err
		}
	}
	if err := s.chores.Start(ctx, s.runChores); err != nil {
		s.Stop()
		return err
	}
	for _, svc := range []platform.Service{s.http, s.processor} {
		if err := svc.Start(ctx); err != nil {
			s.Stop()
			return err
		}
	}
	s.log.Info().Str("addr", s.http.Addr().String()).Str("group", s.cfg.Group).Msg("processor running")
	return nil
}

// Stop drains: in-flight messages finish or are handed back, offsets are
// committed, the group is left; then recorded outcomes get a last chance
// to be reported, and the health listener and pools close. Safe to call
// twice.
func (s *Service) Stop() {
	s.processor.Stop()
	s.carrier.Stop()
	s.receiver.Stop()
	s.reporter.Stop()
	_ = s.chores.Stop()
	s.http.Stop()
	s.closed.Do(func() { s.db.Close() })
}

// Run processes until ctx ends or the consumer stops, then stops.
func (s *Service) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-s.processor.Stopped():
	case <-s.http.Stopped():
	}
	s.Stop()
	s.log.Info().Msg("processor stopped")
	return s.http.Err()
}

func (s *Service) runChores(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.monitor.run(ctx, 5*time.Second) })
	wg.Go(func() { s.pruner.run(ctx, time.Hour) })
	wg.Go(func() {
		// Receipts that never came: EXPIRED after the receipt timeout.
		platform.Every(ctx, min(s.cfg.ReceiptTimeout/10, time.Minute), func(ctx context.Context) {
			for ctx.Err() == nil {
				n, err := s.store.ExpireUnreceipted(ctx, s.cfg.ReceiptTimeout, 1000)
				if err != nil && ctx.Err() == nil {
					s.log.Warn().Err(err).Msg("expiring messages without receipts failed")
				}
				if n > 0 {
					s.reporter.Wake()
				}
				if err != nil || n < 1000 {
					return
				}
			}
		})
	})
	wg.Wait()
	return nil
}

// kafkaDefaultRetention is log.retention.hours' default, for a topic whose
// description doesn't give retention.ms.
const kafkaDefaultRetention = 7 * 24 * time.Hour

// topicRetention returns a function that reads topic's retention.ms.
func topicRetention(cl *kgo.Client, topic string) func(context.Context) (time.Duration, error) {
	adm := kadm.NewClient(cl)
	return func(ctx context.Context) (time.Duration, error) {
		configs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return 0, fmt.Errorf("describe topic %s: %w", topic, err)
		}
		rc, err := configs.On(topic, nil)
		if err != nil {
			return 0, fmt.Errorf("describe topic %s: %w", topic, err)
		}
		if rc.Err != nil {
			return 0, fmt.Errorf("describe topic %s: %w", topic, rc.Err)
		}
		for _, c := range rc.Configs {
			if c.Key == "retention.ms" && c.Value != nil {
				ms, err := strconv.ParseInt(*c.Value, 10, 64)
				if err != nil {
					return 0, fmt.Errorf("topic %s: retention.ms %q: %w", topic, *c.Value, err)
				}
				if ms < 0 {
					return -1, nil
				}
				return time.Duration(ms) * time.Millisecond, nil
			}
		}
		return kafkaDefaultRetention, nil
	}
}

// carrierService is a carrier with a lifecycle.
type carrierService interface {
	carrier.Carrier
	platform.Service
}

// newCarrier builds the carrier cfg names, sending what it receives to sink.
func newCarrier(cfg config.Processor, db *sqlx.DB, sink carrier.Sink, log zerolog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (carrierService, error) {
	switch cfg.Carrier.Carrier {
	case "smpp":
		return newSMPPCarrier(cfg, sink, log, reg, tp)
	}
	sim := carrier.SimulatorConfig{MinDelay: cfg.SimMinDelay, MaxDelay: cfg.SimMaxDelay, FailureRate: cfg.SimFailureRate,
		TransientShare: cfg.SimTransientShare, Sink: sink, Receipts: cfg.SimReceipts,
		ReceiptMinDelay: cfg.SimReceiptMinDelay, ReceiptMaxDelay: cfg.SimReceiptMaxDelay,
		UndeliveredRate: cfg.SimUndeliveredRate, ExpiredRate: cfg.SimExpiredRate,
		ReplyRate: cfg.SimReplyRate, StopRate: cfg.SimStopRate, StartRate: cfg.SimStartRate, ReplyDelay: cfg.SimReplyDelay}
	if cfg.SimLedger {
		sim.Ledger = db
	}
	return carrier.NewSimulator(sim), nil
}
