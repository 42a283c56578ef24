// Package config holds the typed configuration of each smsctl role. Viper
// fills these structs from flags, SMS_* environment variables and an optional
// config file, in that order of precedence; Validate names the bad key.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/smsctl/smsctl/sms"
)

// Log configures logging for every command.
type Log struct {
	// Level is the minimum level logged: debug, info, warn or error. Defaults to info.
	Level string `mapstructure:"log-level" flag:"minimum log level: debug, info, warn, error"`
	// Format is json (one event per line) or console. Defaults to json.
	Format string `mapstructure:"log-format" flag:"log format: json or console"`
}

// Kafka configures the Kafka client of both roles.
type Kafka struct {
	// Brokers is the list of seed brokers, host:port. Required except in dev,
	// where an empty list starts an in-process broker.
	Brokers []string `mapstructure:"kafka-brokers" flag:"Kafka seed brokers, host:port, comma-separated"`
	// Topic carries send requests. Defaults to sms.requests.
	Topic string `mapstructure:"kafka-topic" flag:"topic carrying send requests"`
	// DLQTopic receives poison records and exhausted retries. Defaults to sms.requests.dlq.
	DLQTopic string `mapstructure:"kafka-dlq-topic" flag:"dead-letter topic for poison records and exhausted retries"`
	// Partitions is the partition count used when the topic is created. Defaults to 6.
	Partitions int32 `mapstructure:"kafka-partitions" flag:"partitions when the API creates the topics"`
	// ReplicationFactor is used when the topic is created. Defaults to 1.
	ReplicationFactor int16 `mapstructure:"kafka-replication-factor" flag:"replication factor when the API creates the topics"`
	// MinInsyncReplicas is the topics' min.insync.replicas when the API
	// creates them: with acks=all, a write is acknowledged once this many
	// replicas have it. Defaults to 0: the replication factor minus one
	// when it is 3 or more (one broker may die without losing an
	// acknowledged record, and writes go on), else the brokers' default.
	MinInsyncReplicas int16 `mapstructure:"kafka-min-insync-replicas" flag:"min.insync.replicas when the API creates the topics (0: replication factor - 1 from a factor of 3)"`
}

// API configures `smsctl serve api`.
type API struct {
	Log      `mapstructure:",squash"`
	Kafka    `mapstructure:",squash"`
	Webhooks `mapstructure:",squash"`
	Retries  `mapstructure:",squash"`
	// AdminToken signs an operator in to the console across every account.
	// Defaults to empty: no operator sign-in. At least 16 characters.
	AdminToken string `mapstructure:"admin-token" flag:"operator sign-in to the console, across accounts (at least 16 characters)"`
	// ConsoleSessionSecret signs console sessions; the same on every
	// replica, at least 32 characters. Defaults to empty: the key is
	// derived from internal-token and admin-token, so whoever holds the
	// processor's token could forge a session: set it in production.
	ConsoleSessionSecret string `mapstructure:"console-session-secret" flag:"secret that signs console sessions, the same on every replica (at least 32 characters)"`
	// ConsoleProcessorMetrics are the processors' /metrics URLs, where the
	// console reads consumer lag and carrier binds. Defaults to none.
	ConsoleProcessorMetrics []string `mapstructure:"console-processor-metrics" flag:"processors' /metrics URLs, comma-separated, for the console's overview"`
	// ConsoleTrustForwardedProto marks the console's cookie Secure when a
	// TLS-terminating proxy sets X-Forwarded-Proto: https. Defaults to false.
	ConsoleTrustForwardedProto bool `mapstructure:"console-trust-forwarded-proto" flag:"trust X-Forwarded-Proto from a TLS-terminating proxy for the console's cookie"`
	// HTTPAddr is where clients reach the API. Defaults to :8080.
	HTTPAddr string `mapstructure:"http-addr" flag:"address of the public API"`
	// InternalAddr, when set, serves the internal delivery-report endpoints on
	// their own listener so they never face the internet. Defaults to empty
	// (served on HTTPAddr).
	InternalAddr string `mapstructure:"internal-addr" flag:"separate address for the internal endpoints (default: same as http-addr)"`
	// DatabaseURL is the PostgreSQL URL of schema sms. Required.
	DatabaseURL string `mapstructure:"database-url" flag:"PostgreSQL URL, e.g. postgres://smsctl:smsctl@127.0.0.1:5432/smsctl?sslmode=disable"`
	// DatabaseMaxConns bounds the connection pool. Defaults to 16.
	DatabaseMaxConns int `mapstructure:"database-max-conns" flag:"PostgreSQL connection pool size"`
	// InternalToken is the credential the processor presents on the internal
	// endpoints. Required, at least 16 characters.
	InternalToken string `mapstructure:"internal-token" flag:"credential of the processor on the API's internal endpoints (at least 16 characters)"`
	// WriterWorkers is how many insert transactions may be in flight at
	// once; concurrent requests share them. Defaults to 2: PostgreSQL
	// flushes one commit's WAL at a time, so fewer, larger transactions
	// commit more messages per flush (figures in bench/README.md).
	WriterWorkers int `mapstructure:"writer-workers" flag:"insert transactions in flight at once, shared by concurrent requests"`
	// WriterBatch is the most messages one insert transaction holds.
	// Defaults to 500.
	WriterBatch int `mapstructure:"writer-batch" flag:"most messages in one insert transaction"`
	// KeyCacheTTL is how long a verified API key (or a prefix that names
	// none) is remembered; a revocation takes effect within it. Defaults
	// to 5s, at least MinKeyCacheTTL.
	KeyCacheTTL time.Duration `mapstructure:"key-cache-ttl" flag:"how long verified API keys, and prefixes naming none, are cached (a revocation takes effect within it; at least 100ms)"`
	// OutboxBatch is how many outbox entries the relay publishes per round. Defaults to 1000.
	OutboxBatch int `mapstructure:"outbox-batch" flag:"outbox entries published per round"`
	// OutboxInterval is how often the relay looks for work when not woken. Defaults to 200ms.
	OutboxInterval time.Duration `mapstructure:"outbox-interval" flag:"how often the outbox relay looks for work when idle"`
	// OutboxMaxBacklog answers 503 to new messages while more entries wait. Defaults to 1000000.
	OutboxMaxBacklog int64 `mapstructure:"outbox-max-backlog" flag:"answer 503 to new messages while this many wait for Kafka"`
	// OutboxStaleAfter is how old an outbox row must be before the sweep
	// publishes it; younger rows are on their way from memory. Shorter
	// publishes more messages twice after a slow hand-over. Defaults to 5s.
	OutboxStaleAfter time.Duration `mapstructure:"outbox-stale-after" flag:"age at which the relay's sweep publishes an outbox row memory did not"`
	// OutboxLinger is how long the relay waits for more committed batches
	// before it produces: the broker's cost is per request more than per
	// record. Defaults to 20ms.
	OutboxLinger time.Duration `mapstructure:"outbox-linger" flag:"how long the relay waits for more batches before it produces"`
	// RequeueAfter re-queues a message still PENDING after this age. Defaults to 5m.
	RequeueAfter time.Duration `mapstructure:"requeue-after" flag:"re-queue messages still PENDING after this long"`
	// RateLimit is the sustained requests per second allowed per API key. Defaults to 1000.
	RateLimit float64 `mapstructure:"rate-limit" flag:"requests per second allowed per API key (sustained)"`
	// RateBurst is the burst allowed per API key. Defaults to 2000.
	RateBurst int `mapstructure:"rate-burst" flag:"requests allowed per API key in a burst"`
	// RateLimitShared keeps each key's bucket in PostgreSQL for every API
	// replica (a client spreading requests over replicas gets its limit,
	// not a multiple); false keeps one bucket per replica. Defaults to true.
	RateLimitShared bool `mapstructure:"rate-limit-shared" flag:"share each API key's rate limit across API replicas through PostgreSQL"`
	// RateLimitChunk is how many tokens a replica takes from a shared
	// bucket at once (0: rate-limit/20, at most rate-burst/10).
	RateLimitChunk int `mapstructure:"rate-limit-chunk" flag:"tokens an API replica takes from a shared rate-limit bucket at once (0: automatic)"`
	// AuthFailureRate is how many failed authentications per second a
	// client address may sustain once past AuthFailureBurst; beyond it,
	// what is known to name no key gets 429 without a database lookup, and
	// keys the API knows neither way are looked up within a second budget
	// of the same size (sms/http's authenticate). Defaults to 1.
	AuthFailureRate float64 `mapstructure:"auth-failure-rate" flag:"failed authentications per second allowed per client address, after the burst"`
	// AuthFailureBurst is how many failed authentications a client address
	// may make at once. Defaults to 20.
	AuthFailureBurst int `mapstructure:"auth-failure-burst" flag:"failed authentications allowed per client address in a burst"`
	// TrustedProxies are the proxies in front of the API (addresses or
	// CIDR ranges) whose X-Forwarded-For is believed: a request from one
	// of them comes from the nearest address in that header outside these
	// ranges. Defaults to none: the client is the connection's peer and
	// X-Forwarded-For is ignored, as anyone can write it.
	TrustedProxies []string `mapstructure:"trusted-proxies" flag:"proxies in front of the API whose X-Forwarded-For names the client: addresses or CIDR ranges, comma-separated"`
	// ShutdownTimeout bounds the graceful shutdown. Defaults to 20s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown-timeout" flag:"time allowed for a graceful shutdown"`
}

// TopicMinInsync is the min.insync.replicas the API gives the topics it
// creates, or 0 for the brokers' default.
func (k Kafka) TopicMinInsync() int16 {
	switch {
	case k.MinInsyncReplicas > 0:
		return k.MinInsyncReplicas
	case k.ReplicationFactor >= 3:
		return k.ReplicationFactor - 1
	}
	return 0
}

// DefaultAPI returns the API configuration with every default filled in.
func DefaultAPI() API {
	return API{
		Log:              defaultLog(),
		Kafka:            defaultKafka(),
		Webhooks:         defaultWebhooks(),
		Retries:          defaultRetries(),
		HTTPAddr:         ":8080",
		DatabaseMaxConns: 16,
		WriterWorkers:    2,
		WriterBatch:      500,
		KeyCacheTTL:      5 * time.Second,
		OutboxStaleAfter: 5 * time.Second,
		OutboxLinger:     20 * time.Millisecond,
		OutboxBatch:      1000,
		OutboxInterval:   200 * time.Millisecond,
		OutboxMaxBacklog: 1_000_000,
		RequeueAfter:     5 * time.Minute,
		RateLimit:        1000,
		RateBurst:        2000,
		RateLimitShared:  true,
		AuthFailureRate:  1,
		AuthFailureBurst: 20,
		ShutdownTimeout:  20 * time.Second,
	}
}

// Validate reports the first bad setting, naming its key.
func (c API) Validate() error {
	var adminErr error
	if c.AdminToken != "" && len(c.AdminToken) < 16 {
		adminErr = invalid("admin-token", "must be at least 16 characters when set")
	}
	if c.ConsoleSessionSecret != "" && len(c.ConsoleSessionSecret) < 32 {
		adminErr = errors.Join(adminErr, invalid("console-session-secret", "must be at least 32 characters when set"))
	}
	for _, u := range c.ConsoleProcessorMetrics {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			adminErr = errors.Join(adminErr, invalid("console-processor-metrics", "%q is not an http(s) URL such as http://processor:8081/metrics", u))
		}
	}
	return errors.Join(
		c.Log.validate(),
		c.Kafka.validate(true),
		c.Webhooks.validate(),
		c.Retries.validate(),
		adminErr,
		validateAddr("http-addr", c.HTTPAddr, true),
		validateAddr("internal-addr", c.InternalAddr, false),
		validatePostgresURL("database-url", c.DatabaseURL),
		positive("database-max-conns", c.DatabaseMaxConns),
		validateToken(c.InternalToken),
		positive("writer-workers", c.WriterWorkers),
		positive("writer-batch", c.WriterBatch),
		atLeast("key-cache-ttl", c.KeyCacheTTL, MinKeyCacheTTL),
		atLeast("outbox-stale-after", c.OutboxStaleAfter, time.Second),
		atLeast("outbox-linger", c.OutboxLinger, MinOutboxLinger),
		positive("outbox-batch", c.OutboxBatch),
		atLeast("outbox-interval", c.OutboxInterval, MinOutboxInterval),
		positive("outbox-max-backlog", int(c.OutboxMaxBacklog)),
		atLeast("requeue-after", c.RequeueAfter, MinRequeueAfter),
		positiveFloat("rate-limit", c.RateLimit),
		positive("rate-burst", c.RateBurst),
		between("rate-limit-chunk", c.RateLimitChunk, 0, max(c.RateBurst, 1)),
		positiveFloat("auth-failure-rate", c.AuthFailureRate),
		positive("auth-failure-burst", c.AuthFailureBurst),
		validateProxies(c.TrustedProxies),
		atLeast("shutdown-timeout", c.ShutdownTimeout, MinShutdownTimeout),
	)
}

// TrustedProxyNets is TrustedProxies parsed; entries Validate refuses are
// left out.
func (c API) TrustedProxyNets() []*net.IPNet {
	var out []*net.IPNet
	for _, p := range c.TrustedProxies {
		if n, err := parseProxy(p); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// parseProxy reads a CIDR range, or one address as a range of one.
func parseProxy(s string) (*net.IPNet, error) {
	if _, n, err := net.ParseCIDR(s); err == nil {
		return n, nil
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil, fmt.Errorf("%q is not an address or a CIDR range", s)
	}
	if ip4 := ip.To4(); ip4 != nil {
		return &net.IPNet{IP: ip4, Mask: net.CIDRMask(32, 32)}, nil
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)}, nil
}

func validateProxies(proxies []string) error {
	var errs []error
	for _, p := range proxies {
		if _, err := parseProxy(p); err != nil {
			errs = append(errs, invalid("trusted-proxies", "%q is not an address or a CIDR range such as 10.0.0.0/8", p))
		}
	}
	return errors.Join(errs...)
}

// Processor configures `smsctl serve processor`.
type Processor struct {
	Log     `mapstructure:",squash"`
	Kafka   `mapstructure:",squash"`
	Carrier `mapstructure:",squash"`
	// HTTPAddr serves /healthz, /readyz and /metrics. Defaults to :8081.
	HTTPAddr string `mapstructure:"processor-http-addr" flag:"address of the processor's /healthz, /readyz and /metrics"`
	// DatabaseURL is the PostgreSQL URL of schema processor. Defaults to SMS_DATABASE_URL.
	DatabaseURL string `mapstructure:"processor-database-url" flag:"PostgreSQL URL for schema processor (default: database-url)"`
	// SMSDatabaseURL is only a fallback for DatabaseURL; the processor never reads schema sms.
	SMSDatabaseURL string `mapstructure:"database-url" flag:"PostgreSQL URL, e.g. postgres://smsctl:smsctl@127.0.0.1:5432/smsctl?sslmode=disable"`
	// DatabaseMaxConns bounds the connection pool. Defaults to 8.
	DatabaseMaxConns int `mapstructure:"database-max-conns" flag:"PostgreSQL connection pool size"`
	// APIURL is where delivery reports go. Defaults to http://localhost:8080.
	APIURL string `mapstructure:"api-url" flag:"the API's base URL (the processor reports there)"`
	// InternalToken authenticates delivery reports. Required, at least 16 characters.
	InternalToken string `mapstructure:"internal-token" flag:"credential of the processor on the API's internal endpoints (at least 16 characters)"`
	// Group is the consumer group. Defaults to processor-service.
	Group string `mapstructure:"kafka-group" flag:"consumer group"`
	// MaxInFlight bounds messages being processed at once by this replica,
	// across all its partitions; each costs about 11 KB while it lasts (its
	// goroutine, record and timers), so the default keeps a processor that
	// starts on a large backlog under 300 MB. Defaults to 20000.
	MaxInFlight int `mapstructure:"max-in-flight" flag:"messages processed at once by this replica"`
	// SimMinDelay and SimMaxDelay bound the simulated carrier latency. Default to 1s and 3s.
	// 0 is no delay, else at least MinSimDelay.
	SimMinDelay time.Duration `mapstructure:"sim-min-delay" flag:"simulated carrier: shortest delivery time (0: none)"`
	SimMaxDelay time.Duration `mapstructure:"sim-max-delay" flag:"simulated carrier: longest delivery time (0: none)"`
	// SimFailureRate is the share of carrier calls that fail, 0..1. Defaults to 0.1.
	SimFailureRate float64 `mapstructure:"sim-failure-rate" flag:"simulated carrier: share of calls that fail, 0..1"`
	// SimTransientShare is the share of failures that are transient (retried), 0..1. Defaults to 0.5.
	SimTransientShare float64 `mapstructure:"sim-transient-share" flag:"simulated carrier: share of failures that are transient (retried), 0..1"`
	// MaxAttempts is how many carrier calls a message gets before it fails,
	// 1 to MaxCarrierAttempts. Defaults to 4.
	MaxAttempts int `mapstructure:"max-attempts" flag:"carrier calls per message before it fails"`
	// RetryBackoff is the first retry delay; it doubles per attempt, with
	// jitter, up to MaxRetryDelay. Defaults to 500ms.
	RetryBackoff time.Duration `mapstructure:"retry-backoff" flag:"first retry delay after a transient failure (doubles, with jitter)"`
	// SimLedger records every simulated carrier call in processor.carrier_calls,
	// for counting repeated calls in tests. Defaults to false.
	SimLedger bool `mapstructure:"sim-ledger" flag:"record every simulated carrier call in processor.carrier_calls (for tests)"`
	// ReportBatch is how many delivery reports go in one request to the API,
	// at most MaxReportBatch. Defaults to 500.
	ReportBatch int `mapstructure:"report-batch" flag:"delivery reports per request to the API, 1 to 1000"`
	// ReportConcurrency is how many report requests may be in flight. Defaults to 4.
	ReportConcurrency int `mapstructure:"report-concurrency" flag:"report requests in flight at once"`
	// ShutdownTimeout bounds the graceful shutdown. Defaults to 20s.
	ShutdownTimeout time.Duration `mapstructure:"shutdown-timeout" flag:"time allowed for a graceful shutdown"`
	// DeliveryRetention is how long a reported outcome is kept in
	// processor.deliveries, where it stops a redelivered record from
	// reaching the carrier again. It must outlast the topic's retention.ms
	// (Kafka's default: 7 days). 0 keeps outcomes forever. Defaults to 30 days.
	DeliveryRetention time.Duration `mapstructure:"delivery-retention" flag:"how long reported outcomes are kept to stop redelivered records (0: forever; at least 24h, and longer than the topic's retention.ms)"`
}

// MaxReportBatch is the most delivery reports the API accepts in one
// request (sms.MaxReportBatch), so the largest report-batch allowed.
const MaxReportBatch = sms.MaxReportBatch

// MaxRetryDelay is the longest wait between two carrier attempts, however
// many came before; also the largest retry-backoff.
const MaxRetryDelay = time.Minute

// MaxCarrierAttempts is the largest max-attempts.
const MaxCarrierAttempts = 20

// MinDeliveryRetention is the shortest delivery-retention accepted: shorter
// would let a record redelivered after a long outage reach the carrier twice.
const MinDeliveryRetention = 24 * time.Hour

// DefaultProcessor returns the processor configuration with every default filled in.
func DefaultProcessor() Processor {
	return Processor{
		Log:               defaultLog(),
		Kafka:             defaultKafka(),
		Carrier:           defaultCarrier(),
		HTTPAddr:          ":8081",
		DatabaseMaxConns:  8,
		APIURL:            "http://localhost:8080",
		Group:             "processor-service",
		MaxInFlight:       20000,
		SimMinDelay:       time.Second,
		SimMaxDelay:       3 * time.Second,
		SimFailureRate:    0.1,
		SimTransientShare: 0.5,
		MaxAttempts:       4,
		RetryBackoff:      500 * time.Millisecond,
		ReportBatch:       500,
		ReportConcurrency: 4,
		ShutdownTimeout:   20 * time.Second,
		DeliveryRetention: 30 * 24 * time.Hour,
	}
}

// WithDefaults fills derived settings.
func (c Processor) WithDefaults() Processor {
	if c.DatabaseURL == "" {
		c.DatabaseURL = c.SMSDatabaseURL
	}
	return c
}

// Validate reports every bad setting, naming its key.
func (c Processor) Validate() error {
	var errs []error
	if c.SimMaxDelay < c.SimMinDelay {
		errs = append(errs, invalid("sim-max-delay", "must be at least %s (sim-min-delay, %s), got %s", EnvVar("sim-min-delay"), c.SimMinDelay, c.SimMaxDelay))
	}
	if c.Group == "" {
		errs = append(errs, invalid("kafka-group", "must not be empty"))
	}
	if c.RetryBackoff > MaxRetryDelay {
		errs = append(errs, invalid("retry-backoff", "must be at most %s, got %s", MaxRetryDelay, c.RetryBackoff))
	}
	dbKey := "processor-database-url"
	if c.DatabaseURL == "" {
		dbKey = "database-url"
	}
	return errors.Join(append(errs,
		c.Log.validate(),
		c.Kafka.validate(true),
		c.Carrier.validate(),
		validateAddr("processor-http-addr", c.HTTPAddr, true),
		validatePostgresURL(dbKey, c.DatabaseURL),
		positive("database-max-conns", c.DatabaseMaxConns),
		validateHTTPURL("api-url", c.APIURL),
		validateToken(c.InternalToken),
		positive("max-in-flight", c.MaxInFlight),
		fraction("sim-failure-rate", c.SimFailureRate),
		fraction("sim-transient-share", c.SimTransientShare),
		between("max-attempts", c.MaxAttempts, 1, MaxCarrierAttempts),
		zeroOrAtLeast("sim-min-delay", c.SimMinDelay, MinSimDelay, "no delay"),
		zeroOrAtLeast("sim-max-delay", c.SimMaxDelay, MinSimDelay, "no delay"),
		atLeast("retry-backoff", c.RetryBackoff, MinRetryBackoff),
		zeroOrAtLeast("delivery-retention", c.DeliveryRetention, MinDeliveryRetention, "keep forever"),
		between("report-batch", c.ReportBatch, 1, MaxReportBatch),
		positive("report-concurrency", c.ReportConcurrency),
		atLeast("shutdown-timeout", c.ShutdownTimeout, MinShutdownTimeout),
	)...)
}

// Client configures the commands that call the API as a client (send).
type Client struct {
	Log `mapstructure:",squash"`
	// APIURL is the API's base URL. Defaults to http://localhost:8080.
	APIURL string `mapstructure:"api-url" flag:"the API's base URL (the processor reports there)"`
	// APIKey authenticates the client. Required.
	APIKey string `mapstructure:"api-key" flag:"API key (SMS_API_KEY); create one with: smsctl apikey create --account NAME"`
}

// DefaultClient returns the client configuration with defaults.
func DefaultClient() Client {
	return Client{Log: defaultLog(), APIURL: "http://localhost:8080"}
}

// Validate reports every bad setting, naming its key.
func (c Client) Validate() error {
	var errKey error
	if c.APIKey == "" {
		errKey = invalid("api-key", "is required (or the flag --api-key); create one with `smsctl apikey create`")
	}
	return errors.Join(c.Log.validate(), validateHTTPURL("api-url", c.APIURL), errKey)
}

// Database configures commands that only need PostgreSQL (migrate, apikey).
type Database struct {
	Log `mapstructure:",squash"`
	// DatabaseURL is the PostgreSQL URL of schema sms. Required.
	DatabaseURL string `mapstructure:"database-url" flag:"PostgreSQL URL, e.g. postgres://smsctl:smsctl@127.0.0.1:5432/smsctl?sslmode=disable"`
	// ProcessorDatabaseURL holds schema processor. Defaults to DatabaseURL.
	ProcessorDatabaseURL string `mapstructure:"processor-database-url" flag:"PostgreSQL URL for schema processor (default: database-url)"`
}

// Validate reports every bad setting, naming its key.
func (c Database) Validate() error {
	errs := []error{c.Log.validate(), validatePostgresURL("database-url", c.DatabaseURL)}
	if c.ProcessorDatabaseURL != "" {
		errs = append(errs, validatePostgresURL("processor-database-url", c.ProcessorDatabaseURL))
	}
	return errors.Join(errs...)
}

func defaultLog() Log { return Log{Level: "info", Format: "json"} }

func defaultKafka() Kafka {
	return Kafka{Topic: "sms.requests", DLQTopic: "sms.requests.dlq", Partitions: 6, ReplicationFactor: 1}
}

func (l Log) validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, invalid("log-level", "must be debug, info, warn or error, got %q", l.Level))
	}
	switch l.Format {
	case "json", "console":
	default:
		errs = append(errs, invalid("log-format", "must be json or console, got %q", l.Format))
	}
	return errors.Join(errs...)
}

func (k Kafka) validate(brokersRequired bool) error {
	var errs []error
	if brokersRequired && len(k.Brokers) == 0 {
		errs = append(errs, invalid("kafka-brokers", "is required, a comma-separated list of host:port"))
	}
	for _, b := range k.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, invalid("kafka-brokers", "%q is not host:port", b))
		}
	}
	if k.Topic == "" {
		errs = append(errs, invalid("kafka-topic", "must not be empty"))
	}
	if k.DLQTopic == "" || k.DLQTopic == k.Topic {
		errs = append(errs, invalid("kafka-dlq-topic", "must be set and differ from %s (kafka-topic)", EnvVar("kafka-topic")))
	}
	if k.Partitions < 1 {
		errs = append(errs, invalid("kafka-partitions", "must be at least 1, got %d", k.Partitions))
	}
	if k.MinInsyncReplicas < 0 || k.MinInsyncReplicas > k.ReplicationFactor {
		errs = append(errs, invalid("kafka-min-insync-replicas", "must be 0 (automatic) to the replication factor (%d), got %d", k.ReplicationFactor, k.MinInsyncReplicas))
	}
	if k.ReplicationFactor < 1 {
		errs = append(errs, invalid("kafka-replication-factor", "must be at least 1, got %d", k.ReplicationFactor))
	}
	return errors.Join(errs...)
}

func validateAddr(key, addr string, required bool) error {
	if addr == "" && !required {
		return nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return invalid(key, "%q is not host:port (for example :8080)", addr)
	}
	return nil
}

func validatePostgresURL(key, raw string) error {
	if raw == "" {
		return invalid(key, "is required (for example postgres://smsctl:smsctl@127.0.0.1:5432/smsctl?sslmode=disable, what scripts/postgres.sh and make dev use)")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return invalid(key, "must be a postgres:// URL")
	}
	return nil
}

func validateHTTPURL(key, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(key, "must be an http:// or https:// URL, got %q", raw)
	}
	return nil
}

func validateToken(token string) error {
	if len(token) < 16 {
		return invalid("internal-token", "is required, at least 16 characters")
	}
	return nil
}

func positive(key string, n int) error {
	if n < 1 {
		return invalid(key, "must be at least 1, got %d", n)
	}
	return nil
}

func between(key string, n, lo, hi int) error {
	if n < lo || n > hi {
		return invalid(key, "must be from %d to %d, got %d", lo, hi, n)
	}
	return nil
}

func positiveFloat(key string, f float64) error {
	if !(f > 0) || math.IsInf(f, 1) {
		return invalid(key, "must be a finite number greater than 0, got %v", f)
	}
	return nil
}

// The shortest durations accepted. Shorter ones make no sense for what
// they time, and some (a ticker of zero) would fail at run time instead.
// A setting may take 0 only where its flag's usage says what 0 means;
// TestEveryDurationHasAMinimum holds every time.Duration setting to this.
const (
	// MinKeyCacheTTL: the cache of known and unknown key prefixes is what
	// makes a forged key cost one lookup, not one per request.
	MinKeyCacheTTL = 100 * time.Millisecond
	// MinOutboxInterval: the relay's sweep would otherwise spin.
	MinOutboxInterval = 10 * time.Millisecond
	// MinOutboxLinger: the relay takes 0 for its default of 20ms.
	MinOutboxLinger = time.Millisecond
	// MinRequeueAfter: a message is re-queued only once it has had time to
	// reach the carrier; shorter would publish messages still on their way.
	MinRequeueAfter = 10 * time.Second
	// MinShutdownTimeout: in-flight requests and messages need time to drain.
	MinShutdownTimeout = time.Second
	// MinRetryBackoff: the first wait before a carrier retry.
	MinRetryBackoff = time.Millisecond
	// MinSimDelay: the simulator's delays are 0 (none) or at least this.
	MinSimDelay = time.Millisecond
	// MinReceiptTimeout: a SENT message without its receipts is EXPIRED
	// after smpp-receipt-timeout; shorter than a carrier's receipts take
	// would expire messages that were delivered. Real carriers take
	// seconds to days (hence the 48h default); the fault tests run
	// against an SMSC on this machine with 20s.
	MinReceiptTimeout = 10 * time.Second
	// MinEnquireLink: an idle bind is checked at most this often.
	MinEnquireLink = time.Second
	// MinWebhookTimeout: one webhook delivery attempt needs time for a
	// connection and an answer.
	MinWebhookTimeout = time.Second
	// MinWebhookRetry: the shortest wait before a webhook retry, so a
	// schedule cannot hammer a failing endpoint (the end-to-end tests
	// retry after 100ms, 200ms, ...; the default starts at 5s).
	MinWebhookRetry = 100 * time.Millisecond
	// MinRetryFailedAfter: scheduled retries of failed messages are for
	// carriers' outages, not for the processor's own retries.
	MinRetryFailedAfter = time.Minute
)

// EnvVar is the environment variable that sets key (the name of its flag
// and config file key), as Load reads it: SMS_, then the key upper case
// with '-' as '_'.
func EnvVar(key string) string {
	return "SMS_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_"))
}

// invalid is the error for a bad setting. It names the environment
// variable, what most deployments set, and the key, which is also the
// flag and the config file's name for it.
func invalid(key, format string, args ...any) error {
	return fmt.Errorf("%s (%s) %s", EnvVar(key), key, fmt.Sprintf(format, args...))
}

func atLeast(key string, d, least time.Duration) error {
	if d < least {
		return invalid(key, "must be a duration of at least %s, got %s", least, d)
	}
	return nil
}

// zeroOrAtLeast is atLeast for a setting where 0 means what off says.
func zeroOrAtLeast(key string, d, least time.Duration, off string) error {
	if d != 0 && d < least {
		return invalid(key, "must be 0 (%s) or a duration of at least %s, got %s", off, least, d)
	}
	return nil
}

func fraction(key string, f float64) error {
	if !(f >= 0 && f <= 1) {
		return invalid(key, "must be between 0 and 1, got %v", f)
	}
	return nil
}

// Redact hides the password of a URL so it can be logged or printed.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable>"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
