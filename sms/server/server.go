// Package server assembles the API role: the PostgreSQL store, the
// group-commit writer, the outbox relay to Kafka, the scheduler, the
// webhook dispatcher, the HTTP API and the operator console, on one
// database pool and one Kafka producer, started and stopped in order.
package server

import (
	"context"
	"errors"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/apidoc"
	"github.com/smsctl/smsctl/sms/console"
	smshttp "github.com/smsctl/smsctl/sms/http"
	"github.com/smsctl/smsctl/sms/kafka"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/webhook"
)

// Server is the API role.
type Server struct {
	cfg    config.API
	log    zerolog.Logger
	db     *sqlx.DB
	kafka  *kgo.Client
	store  *postgres.Store
	writer *postgres.Writer
	relay  *kafka.Relay
	// suppressions answers the send path's opt-out check from memory.
	suppressions *postgres.Suppressions
	webhooks     *webhook.Dispatcher
	http         *platform.HTTPListener
	internal     *platform.HTTPListener
	routes       []*echo.Route      // every route served, both listeners'
	chores       platform.Lifecycle // topics, expired idempotency keys
	closed       sync.Once
}

// New connects to PostgreSQL and Kafka, builds the API and binds its
// listeners; Start serves.
func New(ctx context.Context, cfg config.API, log zerolog.Logger, tp trace.TracerProvider) (*Server, error) {
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
	s := &Server{cfg: cfg, log: log, db: db, kafka: cl, store: postgres.NewStore(db)}
	s.relay = kafka.NewRelay(postgres.NewOutbox(db), cl, kafka.RelayConfig{
		Topic: cfg.Topic, Batch: cfg.OutboxBatch, Interval: cfg.OutboxInterval, RequeueAfter: cfg.RequeueAfter,
		StaleAfter: cfg.OutboxStaleAfter, Linger: cfg.OutboxLinger,
	}, log, reg)
	s.store.OnCommit(s.relay.Enqueue)
	s.relay.DeleteThrough(s.store)
	s.writer = postgres.NewWriter(s.store, cfg.WriterWorkers, cfg.WriterBatch, reg)
	keys := postgres.NewKeys(db, cfg.KeyCacheTTL)
	s.suppressions = postgres.NewSuppressions(db, cfg.DatabaseURL, log)
	var shared smshttp.SharedBuckets
	if cfg.RateLimitShared {
		shared = postgres.NewRateLimits(db)
	}
	h := smshttp.NewHandler(s.store, s.writer, s.relay, keys, smshttp.Config{
		InternalToken: cfg.InternalToken, MaxBacklog: cfg.OutboxMaxBacklog, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		SharedLimits: shared, RateLimitChunk: cfg.RateLimitChunk,
		AuthFailureRate: cfg.AuthFailureRate, AuthFailureBurst: cfg.AuthFailureBurst, Tracer: tp,
		OptOuts: s.suppressions,
	}, log, reg)

	httpMetrics := platform.HTTPMetrics(reg) // one set of series for both listeners
	e := platform.NewEcho(log, smshttp.ProblemFor)
	e.IPExtractor = platform.ClientIP(cfg.TrustedProxyNets()) // SMS_TRUSTED_PROXIES
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
		internal = platform.NewEcho(log, smshttp.ProblemFor)
		internal.Use(httpMetrics, platform.TraceHTTP(tp))
	}
	h.Register(e, internal)
	smshttp.NewInbound(postgres.NewInbound(s.store, s.suppressions), log, reg).
		Register(e, internal, h.ClientMiddleware(), h.InternalMiddleware())

	hooks := postgres.NewWebhooks(db)
	guard := webhook.Guard{AllowPrivate: cfg.Webhooks.AllowPrivate}
	// Stop waits for attempts in flight at most a quarter of the shutdown
	// budget; those cut off are sent again by whichever replica is next.
	s.webhooks, err = webhook.NewDispatcher(hooks, cfg.Webhooks, log, reg, webhook.Options{DrainTimeout: cfg.ShutdownTimeout / 4})
	if err != nil {
		s.close()
		return nil, err
	}
	smshttp.NewWebhooks(hooks, guard, s.webhooks.Wake).Register(e, h.ClientMiddleware()...)

	con, err := console.New(console.Deps{
		DB: db, Store: s.store, Sender: s.writer, Keys: keys, Backlog: s.relay, OptOuts: s.suppressions,
		Webhooks: hooks, URLGuard: guard, WakeWebhooks: s.webhooks.Wake,
		DeadLetters: console.NewKafkaDeadLetters(cl, cfg.Brokers, cfg.DLQTopic, cfg.Topic, log),
		Log:         log,
	}, console.Config{
		SessionKey: consoleKey(cfg), AdminToken: cfg.AdminToken, TrustForwardedProto: cfg.ConsoleTrustForwardedProto,
		MaxBacklog: cfg.OutboxMaxBacklog, ProcessorMetricsURLs: cfg.ConsoleProcessorMetrics,
	})
	if err != nil {
		s.close()
		return nil, err
	}
	con.Register(e) // on the public listener: operators reach it as clients do
	s.routes = e.Routes()
	if internal != e {
		s.routes = append(s.routes, internal.Routes()...)
	}

	if s.http, err = platform.NewHTTPListener(cfg.HTTPAddr, e, cfg.ShutdownTimeout); err != nil {
		s.close()
		return nil, err
	}
	if cfg.InternalAddr != "" {
		if s.internal, err = platform.NewHTTPListener(cfg.InternalAddr, internal, cfg.ShutdownTimeout); err != nil {
			s.http.Stop()
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// consoleKey signs console sessions: the dedicated secret when set, else a
// key derived from the tokens (which the processor's operators also hold).
func consoleKey(cfg config.API) []byte {
	if cfg.ConsoleSessionSecret != "" {
		return console.DeriveSessionKey(cfg.ConsoleSessionSecret)
	}
	return console.DeriveSessionKey(cfg.InternalToken, cfg.AdminToken)
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

// listeners are the HTTP servers, the internal one when separate.
func (s *Server) listeners() []*platform.HTTPListener {
	if s.internal != nil {
		return []*platform.HTTPListener{s.http, s.internal}
	}
	return []*platform.HTTPListener{s.http}
}

// Start starts the writer, the relay, the webhook dispatcher, the opt-out
// cache, the chores and then the listeners.
func (s *Server) Start(ctx context.Context) error {
	for _, svc := range []platform.Service{s.writer, s.relay, s.webhooks, s.suppressions} {
		if err := svc.Start(ctx); err != nil {
			s.Stop()
			return err
		}
	}
	if err := s.chores.Start(ctx, s.runChores); err != nil {
		s.Stop()
		return err
	}
	for _, l := range s.listeners() {
		if err := l.Start(ctx); err != nil {
			s.Stop()
			return err
		}
	}
	s.log.Info().Str("addr", s.http.Addr().String()).Str("internal_addr", s.InternalAddr().String()).Msg("api serving")
	return nil
}

// Stop shuts down in order: stop taking requests and finish those in
// flight, write what the writer has queued, flush the outbox to Kafka, end
// the chores, close the pools. Safe to call twice.
func (s *Server) Stop() {
	for _, l := range s.listeners() {
		l.Stop()
	}
	s.webhooks.Stop()
	s.writer.Stop()
	s.suppressions.Stop()
	s.relay.Stop()
	_ = s.chores.Stop()
	s.close()
}

// Run serves until ctx ends or a listener fails, then stops.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		return err
	}
	var failed <-chan struct{}
	if s.internal != nil {
		failed = s.internal.Stopped()
	}
	select {
	case <-ctx.Done():
	case <-s.http.Stopped():
	case <-failed:
	}
	s.Stop()
	s.log.Info().Msg("api stopped")
	var err error
	for _, l := range s.listeners() {
		err = errors.Join(err, l.Err())
	}
	return err
}

// runChores keeps the topics created, releases scheduled messages when
// they are due, retries failed ones (when configured), and forgets expired
// idempotency keys.
func (s *Server) runChores(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.ensureTopics(ctx) })
	wg.Go(func() { s.schedule(ctx) })
	if s.cfg.RetryFailedAfter > 0 {
		wg.Go(func() { platform.Every(ctx, min(s.cfg.RetryFailedAfter/4, time.Minute), s.retryFailed) })
	}
	s.forgetIdempotencyKeys(ctx)
	wg.Wait()
	return nil
}

// releaseBatch is how many due messages one release statement moves.
const releaseBatch = 1000

// schedule releases scheduled messages as they fall due: at once while
// whole batches are due, else when the next one is (looked up through the
// index on what is due), at least every second so that messages scheduled
// meanwhile by other replicas are not missed.
func (s *Server) schedule(ctx context.Context) {
	var backoff platform.Backoff
	for ctx.Err() == nil {
		n, err := s.store.ReleaseDue(ctx, releaseBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("releasing scheduled messages failed; retrying")
			}
			platform.Sleep(ctx, backoff.Next())
			continue
		}
		backoff = 0
		if n > 0 {
			s.relay.Wake()
		}
		if n == releaseBatch {
			continue
		}
		wait := time.Second
		if at, ok, err := s.store.NextDue(ctx); err == nil && ok {
			wait = min(max(time.Until(at), 10*time.Millisecond), time.Second)
		}
		platform.Sleep(ctx, wait)
	}
}

// retryFailed is one round of the scheduled retry of failed messages.
func (s *Server) retryFailed(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.store.RetryFailed(ctx, s.cfg.RetryFailedAfter, s.cfg.RetryFailedMax, releaseBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("scheduled retry of failed messages failed")
			}
			return
		}
		if n > 0 {
			s.log.Info().Int("messages", n).Msg("failed messages retried")
			s.relay.Wake()
		}
		if n < releaseBatch {
			return
		}
	}
}

// ensureTopics creates the topics, retrying while Kafka is away; the API
// accepts messages meanwhile.
func (s *Server) ensureTopics(ctx context.Context) {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		topics := slices.Collect(maps.Values(sms.PriorityTopics(s.cfg.Topic)))
		var configs map[string]*string
		if n := s.cfg.TopicMinInsync(); n > 0 {
			v := strconv.Itoa(int(n))
			configs = map[string]*string{"min.insync.replicas": &v}
		}
		err := platform.EnsureTopicsWith(tctx, s.kafka, s.cfg.Partitions, s.cfg.ReplicationFactor, configs, append(topics, s.cfg.DLQTopic)...)
		cancel()
		if err == nil {
			s.warnFewerPartitions(ctx)
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("could not create topics")
		if !platform.Sleep(ctx, backoff) {
			return
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

// forgetIdempotencyKeys deletes expired idempotency keys now and every 10
// minutes.
func (s *Server) forgetIdempotencyKeys(ctx context.Context) {
	forget := func(ctx context.Context) {
		if n, err := s.store.DeleteExpiredIdempotencyKeys(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("expiring idempotency keys failed")
		} else if n > 0 {
			s.log.Info().Int64("keys", n).Msg("expired idempotency keys deleted")
		}
	}
	forget(ctx)
	platform.Every(ctx, 10*time.Minute, forget)
}

func (s *Server) close() {
	s.closed.Do(func() {
		s.kafka.Close()
		if err := s.db.Close(); err != nil {
			s.log.Warn().Err(err).Msg("close postgres")
		}
	})
}
