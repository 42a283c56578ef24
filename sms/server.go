package sms

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms/apidoc"
)

// Server is the API role: HTTP handlers, the group-commit writer and the
// outbox relay, on one PostgreSQL pool and one Kafka producer.
type Server struct {
	cfg      config.API
	log      zerolog.Logger
	db       *sqlx.DB
	kafka    *kgo.Client
	writer   *Writer
	relay    *Relay
	store    *Store
	http     *platform.HTTPListener
	internal *platform.HTTPListener
}

// NewServer connects to PostgreSQL and Kafka, builds the API and opens its
// listeners; Run serves.
func NewServer(ctx context.Context, cfg config.API, log zerolog.Logger, tp trace.TracerProvider) (*Server, error) {
	db, err := platform.OpenPostgres(ctx, cfg.DatabaseURL, cfg.DatabaseMaxConns)
	if err != nil {
		return nil, err
	}
	if err := migrations.Check(ctx, db.DB, migrations.SMS); err != nil {
		db.Close()
		return nil, err
	}
	reg := platform.NewRegistry()
	cl, err := platform.NewKafkaClient(cfg.Brokers, log,
		platform.KafkaMetrics(reg),
		// Publish spans, and the trace context in each record's headers.
		kgo.WithHooks(kotel.NewKotel(kotel.WithTracer(kotel.NewTracer(
			kotel.TracerProvider(tp), kotel.TracerPropagator(platform.Propagator)))).Hooks()...),
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are franz-go's default with acks=all
		kgo.ProducerLinger(time.Millisecond),
		kgo.RecordDeliveryTimeout(10*time.Second),
		// No auto-creation: a publish that raced ensureTopics would create
		// the topic with the broker's defaults (often one partition),
		// and kafka-partitions would be ignored for good. Until the topic
		// exists, publishes fail and the outbox keeps the messages.
	)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, db: db, kafka: cl, store: NewStore(db)}
	s.relay = NewRelay(db, cl, RelayConfig{Topic: cfg.Topic, Batch: cfg.OutboxBatch, Interval: cfg.OutboxInterval, RequeueAfter: cfg.RequeueAfter}, log, reg)
	s.store.OnCommit(s.relay.Enqueue)
	s.relay.DeleteThrough(s.store)
	s.writer = NewWriter(s.store, cfg.WriterWorkers, 500, reg)
	keys := NewKeys(db, 5*time.Second)
	h := NewHandler(s.store, s.writer, s.relay, keys, HandlerConfig{
		InternalToken: cfg.InternalToken, MaxBacklog: cfg.OutboxMaxBacklog, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		AuthFailureRate: cfg.AuthFailureRate, AuthFailureBurst: cfg.AuthFailureBurst, Tracer: tp,
	}, log, reg)

	httpMetrics := platform.HTTPMetrics(reg) // one set of series for both listeners
	e := platform.NewEcho(log, ProblemFor)
	e.Use(httpMetrics, platform.TraceHTTP(tp))
	platform.RegisterHealth(e,
		map[string]platform.Check{"postgres": db.PingContext},
		// Kafka being down doesn't stop the API from accepting: the outbox holds messages.
		map[string]platform.Check{"kafka": func(ctx context.Context) error { return platform.PingKafka(ctx, cl) }})
	platform.RegisterMetrics(e, reg)
	if err := apidoc.Register(e); err != nil {
		s.close()
		return nil, err
	}
	internal := e
	if cfg.InternalAddr != "" {
		internal = platform.NewEcho(log, ProblemFor)
		internal.Use(httpMetrics, platform.TraceHTTP(tp))
	}
	h.Register(e, internal)

	if s.http, err = platform.NewHTTPListener(cfg.HTTPAddr, e); err != nil {
		s.close()
		return nil, err
	}
	if cfg.InternalAddr != "" {
		if s.internal, err = platform.NewHTTPListener(cfg.InternalAddr, internal); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// Addr is where the API listens.
func (s *Server) Addr() net.Addr { return s.http.Addr() }

// InternalAddr is where the internal endpoints listen (Addr unless separate).
func (s *Server) InternalAddr() net.Addr {
	if s.internal != nil {
		return s.internal.Addr()
	}
	return s.http.Addr()
}

// Run serves until ctx ends, then shuts down in order: stop taking requests
// and finish those in flight, write what is queued, flush the outbox, close.
func (s *Server) Run(ctx context.Context) error {
	defer s.close()
	if err := s.writer.Start(ctx); err != nil {
		return err
	}
	bg := context.WithoutCancel(ctx)
	relayCtx, stopRelay := context.WithCancel(bg)
	var relayDone sync.WaitGroup
	relayDone.Go(func() { s.relay.Run(relayCtx) })
	go s.ensureTopics(ctx)
	go s.forgetIdempotencyKeys(ctx)

	var serveErr error
	var servers sync.WaitGroup
	var errMu sync.Mutex
	for _, l := range []*platform.HTTPListener{s.http, s.internal} {
		if l == nil {
			continue
		}
		servers.Go(func() {
			if err := l.Serve(ctx, s.cfg.ShutdownTimeout); err != nil {
				errMu.Lock()
				serveErr = errors.Join(serveErr, err)
				errMu.Unlock()
			}
		})
	}
	s.log.Info().Str("addr", s.http.Addr().String()).Str("internal_addr", s.InternalAddr().String()).Msg("api serving")
	servers.Wait()
	s.writer.Stop()
	stopRelay()
	relayDone.Wait()
	s.log.Info().Msg("api stopped")
	return serveErr
}

// ensureTopics creates the topics, retrying while Kafka is away; the API
// accepts messages meanwhile.
func (s *Server) ensureTopics(ctx context.Context) {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := platform.EnsureTopics(tctx, s.kafka, s.cfg.Partitions, s.cfg.ReplicationFactor, s.cfg.Topic, s.cfg.DLQTopic)
		cancel()
		if err == nil {
			s.warnFewerPartitions(ctx)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("could not create topics")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// warnFewerPartitions says so when the topic existed with fewer partitions
// than kafka-partitions: creating topics never changes an existing one.
func (s *Server) warnFewerPartitions(ctx context.Context) {
	n, err := platform.TopicPartitions(ctx, s.kafka, s.cfg.Topic)
	if err == nil && n < int(s.cfg.Partitions) {
		s.log.Warn().Str("topic", s.cfg.Topic).Int("partitions", n).Int32("kafka_partitions", s.cfg.Partitions).
			Msg("topic has fewer partitions than kafka-partitions; add them with kafka-topics --alter, processors pick them up within 30 s")
	}
}

func (s *Server) forgetIdempotencyKeys(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		if n, err := s.store.DeleteExpiredIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("expiring idempotency keys failed")
		} else if n > 0 {
			s.log.Info().Int64("keys", n).Msg("expired idempotency keys deleted")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) close() {
	s.kafka.Close()
	if err := s.db.Close(); err != nil {
		s.log.Warn().Err(err).Msg("close postgres")
	}
}
