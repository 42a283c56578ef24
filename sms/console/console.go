package console

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/webhook"
)

// Store is what the console reads and moves through the message store, the
// same calls the API makes; *postgres.Store is the implementation.
type Store interface {
	Events(ctx context.Context, accountID int64, id uuid.UUID) ([]sms.Event, error)
	Stats(ctx context.Context, accountID int64) (sms.Stats, error)
	Cancel(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error)
	Retry(ctx context.Context, accountID int64, id uuid.UUID) (sms.Message, error)
}

// Sender stores one accepted message; *postgres.Writer is the
// implementation, the one POST /v1/messages uses.
type Sender interface {
	Insert(ctx context.Context, m sms.NewMessage) (sms.Message, error)
}

// Keys authenticates API keys and creates them; *postgres.Keys is the
// implementation.
type Keys interface {
	Authenticate(ctx context.Context, key string) (int64, error)
	CreateKey(ctx context.Context, account string) (string, sms.APIKey, error)
}

// Backlog is the outbox relay: how many accepted messages wait for Kafka
// (on this replica's last sample), and a nudge after a retry queued one;
// *kafka.Relay is the implementation.
type Backlog interface {
	Backlog() int64
	Wake()
}

// WebhookStore keeps an account's webhook endpoints and their delivery log;
// *postgres.Webhooks is the implementation. Every method is scoped to the
// account: another account's endpoint is sms.ErrNotFound.
type WebhookStore interface {
	CreateEndpoint(ctx context.Context, accountID int64, in webhook.EndpointInput) (webhook.Endpoint, error)
	Endpoint(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error)
	Endpoints(ctx context.Context, accountID int64) ([]webhook.Endpoint, error)
	UpdateEndpoint(ctx context.Context, accountID int64, id uuid.UUID, in webhook.EndpointInput) (webhook.Endpoint, error)
	DeleteEndpoint(ctx context.Context, accountID int64, id uuid.UUID) error
	RotateSecret(ctx context.Context, accountID int64, id uuid.UUID) (webhook.Endpoint, error)
	QueueTest(ctx context.Context, accountID int64, id uuid.UUID) (uuid.UUID, error)
	Attempts(ctx context.Context, accountID int64, id uuid.UUID, f webhook.AttemptFilter) (webhook.AttemptPage, error)
	Replay(ctx context.Context, accountID int64, id uuid.UUID, since time.Time) (int64, error)
}

// OptOuts says whether a recipient opted out of an account's messages:
// sms.OptedOut (422) when so; *postgres.Suppressions is the
// implementation, the check POST /v1/messages makes.
type OptOuts interface {
	Check(ctx context.Context, accountID int64, phone string) error
}

// URLChecker says whether a webhook URL may be called (https, not an
// internal address); webhook.Guard is the implementation.
type URLChecker interface {
	CheckURL(ctx context.Context, raw string) error
}

// Deps are the console's dependencies. DB, Store, Sender and Keys are
// required; a nil optional one leaves its part out, with a note saying so.
type Deps struct {
	// DB is the API's pool on schema sms: the console's own read queries
	// (lists across accounts, keys of an account, charts) run on it.
	DB     *sqlx.DB
	Store  Store
	Sender Sender
	Keys   Keys
	// Backlog, optional, shows the outbox backlog and wakes the relay
	// after a retry.
	Backlog Backlog
	// OptOuts, optional, refuses sends to recipients who opted out, as the
	// API does.
	OptOuts OptOuts
	// Webhooks, optional, with URLGuard (required with it) and
	// WakeWebhooks (optional: the dispatcher's Wake), serves the webhook
	// endpoints screens.
	Webhooks     WebhookStore
	URLGuard     URLChecker
	WakeWebhooks func()
	// DeadLetters, optional, serves the operators' dead-letter view
	// (*KafkaDeadLetters).
	DeadLetters DeadLetters
	Log         zerolog.Logger
}

// Config holds the console's settings.
type Config struct {
	// SessionKey signs session cookies and CSRF tokens. It must be the same
	// on every API replica, and at least 32 bytes; DeriveSessionKey makes
	// one from configured secrets. Required.
	SessionKey []byte
	// AdminToken signs an operator in across every account
	// (SMS_ADMIN_TOKEN). Defaults to empty: no operator sign-in. Changing
	// it ends every operator session.
	AdminToken string
	// IdleTimeout ends a session not used for this long (live refreshes
	// don't count as use). Defaults to 1h.
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in. Defaults to 12h.
	MaxAge time.Duration
	// TrustForwardedProto takes X-Forwarded-Proto: https as a TLS request
	// (the cookie is then Secure). Set it only behind a proxy that sets the
	// header. Defaults to false: only a TLS connection to this server counts.
	TrustForwardedProto bool
	// RefreshInterval is how often the live parts of a page ask for news.
	// Defaults to 2s.
	RefreshInterval time.Duration
	// MaxBacklog refuses sends from the console while more messages wait
	// for Kafka, as outbox-max-backlog does for the API. Defaults to 0: no
	// limit.
	MaxBacklog int64
	// ProcessorMetricsURLs are the /metrics URLs of the processors, scraped
	// for consumer lag, reports waiting and carrier binds on the overview.
	// Defaults to none: the overview says where to set them.
	ProcessorMetricsURLs []string
	// LoginRate and LoginBurst bound failed sign-ins per client address.
	// Default to one every 3 seconds after a burst of 10.
	LoginRate  float64
	LoginBurst int
	// Now is the clock. Defaults to time.Now.
	Now func() time.Time
}

// WithDefaults returns c with every unset field at its default.
func (c Config) WithDefaults() Config {
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = time.Hour
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 12 * time.Hour
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 2 * time.Second
	}
	if c.LoginRate <= 0 {
		c.LoginRate = 1.0 / 3
	}
	if c.LoginBurst <= 0 {
		c.LoginBurst = 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// MinSessionKey is the shortest session key accepted, in bytes.
const MinSessionKey = 32

func (c Config) validate() error {
	if len(c.SessionKey) < MinSessionKey {
		return fmt.Errorf("console: session key must be at least %d bytes, got %d", MinSessionKey, len(c.SessionKey))
	}
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		return errors.New("console: admin token must be at least 16 characters when set")
	}
	return nil
}

// DeriveSessionKey derives a session key from secrets every API replica is
// configured with (e.g. a dedicated console secret, or the internal and
// admin tokens), so that a cookie signed by one replica is good on all.
// Any secret changing ends every session.
func DeriveSessionKey(secrets ...string) []byte {
	mac := hmac.New(sha256.New, []byte("smsctl console session key v1"))
	for _, s := range secrets {
		fmt.Fprintf(mac, "%d:%s;", len(s), s)
	}
	return mac.Sum(nil)
}

// Console serves the operator console.
type Console struct {
	d        Deps
	cfg      Config
	log      zerolog.Logger
	read     *reader
	pages    *pages
	logins   *limiter
	procs    *procScraper
	charts   *chartCache
	assetTag string
}

// New returns the console; Register mounts it.
func New(d Deps, cfg Config) (*Console, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if d.DB == nil || d.Store == nil || d.Sender == nil || d.Keys == nil {
		return nil, errors.New("console: DB, Store, Sender and Keys are required")
	}
	if d.Webhooks != nil && d.URLGuard == nil {
		return nil, errors.New("console: Webhooks needs URLGuard")
	}
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	return &Console{
		d: d, cfg: cfg, log: d.Log.With().Str("component", "console").Logger(),
		read: newReader(d.DB), pages: p, logins: newLimiter(cfg.LoginRate, cfg.LoginBurst),
		procs: newProcScraper(cfg.ProcessorMetricsURLs), charts: newChartCache(), assetTag: assetTag(),
	}, nil
}

// Register mounts the console under /console on e. Every response under
// /console carries the console's security headers, its own HTML error
// pages included.
func (c *Console) Register(e *echo.Echo) {
	h := c.headers
	pub := []echo.MiddlewareFunc{h}
	page := []echo.MiddlewareFunc{h, c.authenticate(false)}
	live := []echo.MiddlewareFunc{h, c.authenticate(true)}
	post := []echo.MiddlewareFunc{h, c.authenticate(false), c.csrf}
	op := []echo.MiddlewareFunc{h, c.authenticate(false), c.operatorOnly}
	opPost := []echo.MiddlewareFunc{h, c.authenticate(false), c.operatorOnly, c.csrf}

	platform.GET(e, "/console/static/:name", c.static, pub...)
	platform.GET(e, "/console/login", c.loginPage, pub...)
	e.POST("/console/login", c.login, pub...)
	e.POST("/console/logout", c.logout, post...)

	platform.GET(e, "/console", c.overview, page...)
	platform.GET(e, "/console/", c.overview, page...)
	platform.GET(e, "/console/live/overview", c.overviewLive, live...)
	e.POST("/console/scope", c.setScope, opPost...)

	platform.GET(e, "/console/messages", c.messages, page...)
	platform.GET(e, "/console/messages/:id", c.message, page...)
	platform.GET(e, "/console/live/messages/:id", c.messageLive, live...)
	e.POST("/console/messages/:id/retry", c.retryOne, post...)
	e.POST("/console/messages/:id/cancel", c.cancelOne, post...)
	platform.GET(e, "/console/send", c.sendPage, page...)
	e.POST("/console/send", c.send, post...)
	platform.GET(e, "/console/scheduled", c.scheduled, page...)
	e.POST("/console/scheduled/cancel", c.cancelMany, post...)
	platform.GET(e, "/console/failed", c.failed, page...)
	e.POST("/console/failed/retry", c.retryMany, post...)

	platform.GET(e, "/console/keys", c.keys, page...)
	e.POST("/console/keys", c.createKey, post...)
	e.POST("/console/keys/:id/revoke", c.revokeKey, post...)

	platform.GET(e, "/console/webhooks", c.webhooks, page...)
	e.POST("/console/webhooks", c.createWebhook, post...)
	platform.GET(e, "/console/webhooks/:id", c.webhookPage, page...)
	e.POST("/console/webhooks/:id/:action", c.webhookAction, post...)

	platform.GET(e, "/console/numbers", c.numbers, page...)
	platform.GET(e, "/console/suppressions", c.suppressions, page...)
	platform.GET(e, "/console/inbound", c.inbound, page...)

	platform.GET(e, "/console/accounts", c.accounts, op...)
	platform.GET(e, "/console/dead-letters", c.deadLetters, op...)
	e.POST("/console/dead-letters/redrive", c.redrive, opPost...)

	// Anything else under /console is an HTML 404 with the same headers.
	e.Any("/console/*", c.notFound, pub...)
	others := []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions}
	e.Match(others, "/console", c.notFound, pub...)
	e.Match(others, "/console/", c.notFound, pub...)
}

// now is the console's clock.
func (c *Console) now() time.Time { return c.cfg.Now() }

// secure reports whether the request came over TLS.
func (c *Console) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	return c.cfg.TrustForwardedProto && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}
