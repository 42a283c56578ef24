// Package http is smsctl's HTTP API: the routes of shared/design.md, their
// JSON bodies, authentication and rate limits, and the one table that turns
// the domain's errors into RFC 7807 problems.
package http

import (
	"context"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// MaxBodyBytes is the largest request body accepted.
const MaxBodyBytes = 64 << 10

// MaxReportBatchBytes is the largest body of a batch of delivery reports
// (see sms.MaxReportBatchBytes).
const MaxReportBatchBytes = sms.MaxReportBatchBytes

// Store is what the handlers read and write; *postgres.Store is the
// implementation.
type Store interface {
	InsertIdempotent(ctx context.Context, m sms.NewMessage, key string) (msg sms.Message, replayed bool, err error)
	// Replayed returns what an earlier, identical request under key stored.
	Replayed(ctx context.Context, m sms.NewMessage, key string) (msg sms.Message, ok bool, err error)
	Get(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error)
	List(ctx context.Context, accountID int64, f sms.Filter) (sms.Page, error)
	Stats(ctx context.Context, accountID int64) (sms.Stats, error)
	ApplyReports(ctx context.Context, reports []sms.DeliveryReport) ([]sms.AppliedReport, error)
	// Insert stores messages in one statement (a batch request).
	Insert(ctx context.Context, in []sms.NewMessage) ([]sms.Message, error)
	// InsertBatchIdempotent stores a batch under an Idempotency-Key and
	// keeps its answer (respond's), or replays the answer kept for the key.
	InsertBatchIdempotent(ctx context.Context, accountID int64, in []sms.NewMessage, key string, hash []byte,
		respond func([]sms.Message) ([]byte, error)) (response []byte, replayed bool, err error)
	Events(ctx context.Context, accountID int64, id uuid.UUID) ([]sms.Event, error)
	Cancel(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error)
	Retry(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error)
	Dispatch(ctx context.Context, claims []sms.Claim) ([]sms.ClaimResult, error)
}

// Sender stores one accepted message, sharing a commit with concurrent
// ones; *postgres.Writer is the implementation.
type Sender interface {
	Insert(ctx context.Context, m sms.NewMessage) (sms.Message, error)
}

// Backlog says how many accepted messages wait for Kafka; *kafka.Relay is
// the implementation.
type Backlog interface {
	Backlog() int64
	// Wake tells the relay that the outbox has new rows.
	Wake()
}

// Authenticator maps an API key to its account; *postgres.Keys is the
// implementation.
type Authenticator interface {
	Authenticate(ctx context.Context, key string) (int64, error)
	// Seen reports whether the key's prefix names a key already cached,
	// so cheap to check again.
	Seen(key string) bool
}

// Config holds what the handlers need besides their dependencies.
type Config struct {
	// InternalToken authenticates the processor on the internal endpoints.
	InternalToken string
	// MaxBacklog answers 503 to new messages while more wait for Kafka.
	MaxBacklog int64
	// RateLimit and RateBurst bound requests per API key.
	RateLimit float64
	RateBurst int
	// SharedLimits, when set, keeps the per-key buckets where every API
	// replica takes from them (SharedLimiter); nil keeps them in this
	// process.
	SharedLimits SharedBuckets
	// RateLimitChunk is SharedLimitConfig.Chunk (0: its default).
	RateLimitChunk int
	// AuthFailureRate and AuthFailureBurst bound failed authentications
	// per client address: past the burst, keys known to name no key get
	// 429 without a lookup, and unknown ones are looked up within a second
	// budget as large (see Handler.authenticate).
	AuthFailureRate  float64
	AuthFailureBurst int
	// Tracer records spans for applied reports; nil records nothing.
	Tracer trace.TracerProvider
	// OptOuts refuses sends to recipients who opted out (422, problem type
	// .../opted-out). Nil checks nothing at acceptance; the processor's
	// claim still ends such messages FAILED opted_out.
	OptOuts OptOuts
}

// OptOuts says whether an account's recipient opted out (replied STOP, or
// is on the account's suppression list); *postgres.Suppressions is the
// implementation, answering from memory.
type OptOuts interface {
	// Check returns an error matching sms.ErrOptedOut when the recipient
	// opted out, nil when not, or the store's error.
	Check(ctx context.Context, accountID int64, phone string) error
}

// Handler serves the SMS API.
type Handler struct {
	tracer  trace.Tracer
	phones  *sms.PhoneCache
	store   Store
	sender  Sender
	backlog Backlog
	auth    Authenticator
	limits  keyLimiter
	// failures counts failed authentications per client address.
	failures *limiter
	cfg      Config
	log      zerolog.Logger
	metrics  apiMetrics
}

type apiMetrics struct {
	// reached counts messages that a report moved to a status, by status.
	reached   *prometheus.CounterVec
	sent      prometheus.Counter
	failed    *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	accepted  prometheus.Counter
	duplicate prometheus.Counter
}

// NewHandler returns the API handlers; metrics are registered on reg.
func NewHandler(store Store, sender Sender, backlog Backlog, auth Authenticator, cfg Config, log zerolog.Logger, reg prometheus.Registerer) *Handler {
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider()
	}
	h := &Handler{store: store, sender: sender, backlog: backlog, auth: auth, cfg: cfg, log: log,
		limits: newLimiter(cfg.RateLimit, cfg.RateBurst), failures: newLimiter(cfg.AuthFailureRate, cfg.AuthFailureBurst),
		tracer: cfg.Tracer.Tracer("github.com/smsctl/smsctl/sms"), phones: sms.NewPhoneCache(100_000)}
	if cfg.SharedLimits != nil {
		h.limits = NewSharedLimiter(cfg.SharedLimits, SharedLimitConfig{Rate: cfg.RateLimit, Burst: cfg.RateBurst, Chunk: cfg.RateLimitChunk}, log)
	}
	h.metrics = apiMetrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_accepted_total", Help: "Messages accepted (202) and committed."}),
		sent:     prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_sent_total", Help: "Messages that reached SENT."}),
		reached: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_reports_applied_total",
			Help: "Messages a delivery report moved, by the status it moved them to."}, []string{"status"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sms_failed_total", Help: "Messages that reached FAILED, by reason class."},
			[]string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sms_processing_duration_seconds", Help: "Time from acceptance to final status.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60, 300},
		}, []string{"status"}),
		duplicate: prometheus.NewCounter(prometheus.CounterOpts{Name: "sms_reports_duplicate_total", Help: "Delivery reports for messages already final (changed nothing)."}),
	}
	reg.MustRegister(h.metrics.accepted, h.metrics.reached, h.metrics.sent, h.metrics.failed, h.metrics.duration, h.metrics.duplicate)
	return h
}

// ClientMiddleware authenticates a request with its API key (AccountOf
// then tells its account) and applies the key's rate limit: every client
// route uses it, including those other handlers of this package mount.
func (h *Handler) ClientMiddleware() []echo.MiddlewareFunc {
	return []echo.MiddlewareFunc{h.authenticate, h.rateLimit}
}

// InternalMiddleware lets only the internal token through.
func (h *Handler) InternalMiddleware() echo.MiddlewareFunc { return h.internalOnly }

// AccountOf is the account ClientMiddleware authenticated.
func AccountOf(c echo.Context) int64 { return accountOf(c) }

// Register mounts the public routes on e and, when internal is not nil,
// the internal routes on internal (which may be e itself).
func (h *Handler) Register(e *echo.Echo, internal *echo.Echo) {
	client := h.ClientMiddleware()
	e.POST("/v1/messages", h.send, client...)
	e.POST("/v1/messages/batch", h.sendBatch, client...)
	platform.GET(e, "/v1/messages", h.list, client...)
	platform.GET(e, "/v1/messages/stats", h.stats, client...)
	platform.GET(e, "/v1/messages/failed", h.failed, client...)
	platform.GET(e, "/v1/messages/:id", h.get, client...)
	platform.GET(e, "/v1/messages/:id/events", h.events, client...)
	e.POST("/v1/messages/:id/cancel", h.cancel, client...)
	e.POST("/v1/messages/:id/retry", h.retry, client...)
	platform.GET(e, "/v1/users/:phone/messages", h.userMessages, client...)
	if internal != nil {
		internal.POST("/v1/internal/delivery-report", h.deliveryReport, h.internalOnly)
		internal.POST("/v1/internal/delivery-reports", h.deliveryReports, h.internalOnly)
		internal.POST("/v1/internal/dispatch", h.dispatch, h.internalOnly)
	}
}
