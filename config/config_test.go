package config

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flags(d API) *pflag.FlagSet {
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("config", "", "")
	fs.String("log-level", d.Level, "")
	fs.String("log-format", d.Format, "")
	fs.StringSlice("kafka-brokers", d.Brokers, "")
	fs.String("kafka-topic", d.Topic, "")
	fs.String("http-addr", d.HTTPAddr, "")
	fs.String("database-url", d.DatabaseURL, "")
	fs.Duration("outbox-interval", d.OutboxInterval, "")
	fs.Float64("rate-limit", d.RateLimit, "")
	return fs
}

// TestLoadPrecedence: flags beat SMS_* variables, which beat the config
// file, which beats the defaults.
func TestLoadPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "smsctl.yaml")
	if err := os.WriteFile(file, []byte("http-addr: \":7000\"\nkafka-topic: from-file\nlog-level: warn\nrate-limit: 5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMS_CONFIG", file)
	t.Setenv("SMS_KAFKA_TOPIC", "from-env")
	t.Setenv("SMS_HTTP_ADDR", ":7001")
	t.Setenv("SMS_KAFKA_BROKERS", "a:1, b:2")
	t.Setenv("SMS_OUTBOX_INTERVAL", "750ms")
	fs := flags(DefaultAPI())
	if err := fs.Parse([]string{"--http-addr", ":7002"}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultAPI()
	if err := Load(fs, &cfg); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"flag beats env and file", cfg.HTTPAddr, ":7002"},
		{"env beats file", cfg.Topic, "from-env"},
		{"file beats default", cfg.Level, "warn"},
		{"file float", cfg.RateLimit, 5.0},
		{"default kept", cfg.Format, "json"},
		{"list from env, trimmed", strings.Join(cfg.Brokers, "|"), "a:1|b:2"},
		{"duration from env", cfg.OutboxInterval, 750 * time.Millisecond},
		{"unset key keeps the struct default", cfg.OutboxBatch, 1000},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestLoadBadValueNamesKey(t *testing.T) {
	t.Setenv("SMS_OUTBOX_INTERVAL", "soon")
	cfg := DefaultAPI()
	err := Load(flags(cfg), &cfg)
	if err == nil || !strings.Contains(err.Error(), named("outbox-interval")) {
		t.Fatalf("got %v, want an error naming SMS_OUTBOX_INTERVAL and outbox-interval", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	t.Setenv("SMS_CONFIG", filepath.Join(t.TempDir(), "nope.yaml"))
	cfg := DefaultAPI()
	if err := Load(flags(cfg), &cfg); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Fatalf("got %v, want an error naming the file", err)
	}
}

// named is how a validation error names a setting: by the environment
// variable users set, and by the key (flag and config file name). Spelt
// out here rather than taken from EnvVar, so a wrong mapping fails.
func named(key string) string {
	return "SMS_" + strings.ToUpper(strings.ReplaceAll(key, "-", "_")) + " (" + key + ")"
}

func validAPI() API {
	c := DefaultAPI()
	c.Brokers = []string{"localhost:9092"}
	c.DatabaseURL = "postgres://u:p@localhost/db"
	c.InternalToken = strings.Repeat("t", 16)
	return c
}

func validProcessor() Processor {
	c := DefaultProcessor()
	c.Brokers, c.SMSDatabaseURL, c.InternalToken = []string{"k:9092"}, "postgres://x@y/z", strings.Repeat("t", 16)
	return c.WithDefaults()
}

func TestValidateNamesEveryBadKey(t *testing.T) {
	valid := validAPI()
	if err := valid.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	tests := []struct {
		name string
		edit func(*API)
		key  string
	}{
		{"no brokers", func(c *API) { c.Brokers = nil }, "kafka-brokers"},
		{"broker without port", func(c *API) { c.Brokers = []string{"localhost"} }, "kafka-brokers"},
		{"mysql URL", func(c *API) { c.DatabaseURL = "mysql://x" }, "database-url"},
		{"short token", func(c *API) { c.InternalToken = "short" }, "internal-token"},
		{"bad addr", func(c *API) { c.HTTPAddr = "8080" }, "http-addr"},
		{"bad level", func(c *API) { c.Level = "loud" }, "log-level"},
		{"zero batch", func(c *API) { c.OutboxBatch = 0 }, "outbox-batch"},
		{"negative rate", func(c *API) { c.RateLimit = -1 }, "rate-limit"},
		{"infinite rate", func(c *API) { c.RateLimit = math.Inf(1) }, "rate-limit"},
		{"NaN rate", func(c *API) { c.RateLimit = math.NaN() }, "rate-limit"},
		{"same topics", func(c *API) { c.DLQTopic = c.Topic }, "kafka-dlq-topic"},
		// A re-queue period under one tick passed validation and then
		// panicked in time.NewTicker(0).
		{"requeue-after of 1ns", func(c *API) { c.RequeueAfter = time.Nanosecond }, "requeue-after"},
		{"requeue-after below the minimum", func(c *API) { c.RequeueAfter = MinRequeueAfter - time.Millisecond }, "requeue-after"},
		{"outbox-interval of 1ns", func(c *API) { c.OutboxInterval = time.Nanosecond }, "outbox-interval"},
		{"shutdown-timeout of 1ms", func(c *API) { c.ShutdownTimeout = time.Millisecond }, "shutdown-timeout"},
		{"no auth failures allowed", func(c *API) { c.AuthFailureBurst = 0 }, "auth-failure-burst"},
		// A webhook retry a nanosecond after a failure hammers the endpoint.
		{"webhook retry of 1ns", func(c *API) { c.RetrySchedule = "1ns" }, "webhook-retry-schedule"},
		{"one webhook retry below the minimum", func(c *API) { c.RetrySchedule = "5s,50ms,5m" }, "webhook-retry-schedule"},
		{"webhook retry not a duration", func(c *API) { c.RetrySchedule = "5s,soon" }, "webhook-retry-schedule"},
		{"trusted proxy not a range", func(c *API) { c.TrustedProxies = []string{"10.0.0.0/8", "haproxy"} }, "trusted-proxies"},
		{"trusted proxy with a bad mask", func(c *API) { c.TrustedProxies = []string{"10.0.0.0/33"} }, "trusted-proxies"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			tt.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), named(tt.key)) {
				t.Errorf("got %v, want an error naming %s", err, named(tt.key))
			}
		})
	}
}

func TestProcessorValidate(t *testing.T) {
	c := validProcessor()
	if c.DatabaseURL != c.SMSDatabaseURL {
		t.Fatalf("processor database URL should default to database-url")
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, keep := range []time.Duration{0, MinDeliveryRetention} {
		c.DeliveryRetention = keep
		if err := c.Validate(); err != nil {
			t.Errorf("delivery-retention %s refused: %v", keep, err)
		}
	}
	c.ReportBatch = MaxReportBatch
	if err := c.Validate(); err != nil {
		t.Errorf("report-batch %d refused: %v", MaxReportBatch, err)
	}
	// The API refuses report batches over MaxReportBatch, so a larger
	// report-batch would leave every report unapplied.
	c.SimMaxDelay, c.SimMinDelay, c.SimFailureRate, c.DeliveryRetention, c.ReportBatch = time.Second, 2*time.Second, 1.5, time.Hour, MaxReportBatch+1
	c.MaxAttempts, c.RetryBackoff, c.ShutdownTimeout = MaxCarrierAttempts+1, 2*MaxRetryDelay, time.Nanosecond
	err := c.Validate()
	for _, key := range []string{"sim-max-delay", "sim-failure-rate", "delivery-retention", "report-batch", "max-attempts", "retry-backoff", "shutdown-timeout"} {
		if err == nil || !strings.Contains(err.Error(), named(key)) {
			t.Errorf("got %v, want an error naming %s", err, named(key))
		}
	}
}

func TestRedact(t *testing.T) {
	got := Redact("postgres://sms:secret@db:5432/sms?sslmode=disable")
	if strings.Contains(got, "secret") || !strings.Contains(got, "sms:xxxxx@db") {
		t.Errorf("Redact: %s", got)
	}
}

// TestLoadEnvWithoutFlag: a setting the command has no flag for is still
// read from its SMS_* variable, including keys of squashed structs.
func TestLoadEnvWithoutFlag(t *testing.T) {
	t.Setenv("SMS_REPORT_BATCH", "7")
	t.Setenv("SMS_KAFKA_GROUP", "mygroup")
	t.Setenv("SMS_KAFKA_DLQ_TOPIC", "dead")
	cfg := DefaultProcessor()
	if err := Load(pflag.NewFlagSet("test", pflag.ContinueOnError), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ReportBatch != 7 || cfg.Group != "mygroup" || cfg.DLQTopic != "dead" {
		t.Errorf("report-batch %d, kafka-group %q, kafka-dlq-topic %q; want 7, mygroup, dead from the environment", cfg.ReportBatch, cfg.Group, cfg.DLQTopic)
	}
}

// TestLoadUnknownFileKey: a misspelt key in the config file is an error
// naming it, not a setting silently left at its default.
func TestLoadUnknownFileKey(t *testing.T) {
	file := filepath.Join(t.TempDir(), "smsctl.yaml")
	if err := os.WriteFile(file, []byte("http-addr: \":7000\"\nrate-limt: 5\nreport-batch: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMS_CONFIG", file)
	cfg := DefaultAPI()
	err := Load(flags(cfg), &cfg)
	if err == nil || !strings.Contains(err.Error(), "unknown keys rate-limt ") {
		t.Fatalf("got %v, want an error naming rate-limt alone (report-batch is the processor's, so allowed)", err)
	}
}

// TestRegisterFlags checks that every setting with a flag tag gets its
// flag with the default, for each role, and that registering a second
// role's struct on the same set (dev) keeps the first one's flags.
func TestRegisterFlags(t *testing.T) {
	for _, tc := range []struct {
		name     string
		defaults any
		want     map[string]string
	}{
		{"api", DefaultAPI(), map[string]string{"http-addr": ":8080", "rate-limit": "1000", "requeue-after": "5m0s", "kafka-topic": "sms.requests", "log-level": "info"}},
		{"processor", DefaultProcessor(), map[string]string{"processor-http-addr": ":8081", "sim-max-delay": "3s", "sim-ledger": "false", "kafka-group": "processor-service"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet(tc.name, pflag.ContinueOnError)
			RegisterFlags(fs, tc.defaults)
			for name, def := range tc.want {
				f := fs.Lookup(name)
				if f == nil || f.DefValue != def || f.Usage == "" {
					t.Errorf("flag %s = %+v, want default %q and a usage", name, f, def)
				}
			}
		})
	}
	fs := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	RegisterFlags(fs, DefaultAPI())
	RegisterFlags(fs, DefaultProcessor())
	if fs.Lookup("http-addr") == nil || fs.Lookup("processor-http-addr") == nil || fs.Lookup("max-in-flight") == nil {
		t.Error("dev's flag set lacks a role's flags")
	}
	if got := fs.Lookup("database-max-conns").DefValue; got != "16" {
		t.Errorf("database-max-conns default %s: the API's, registered first, should stay", got)
	}
}

// TestTrustedProxies: SMS_TRUSTED_PROXIES takes CIDR ranges and single
// addresses, IPv4 and IPv6, comma-separated.
func TestTrustedProxies(t *testing.T) {
	t.Setenv("SMS_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7,2001:db8::/32,::1")
	c := validAPI()
	if err := Load(pflag.NewFlagSet("test", pflag.ContinueOnError), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, n := range c.TrustedProxyNets() {
		got = append(got, n.String())
	}
	if want := "10.0.0.0/8 192.0.2.7/32 2001:db8::/32 ::1/128"; strings.Join(got, " ") != want {
		t.Errorf("trusted proxies %v, want %s", got, want)
	}
}
