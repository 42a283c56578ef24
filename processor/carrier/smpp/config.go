package smpp

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is how the carrier reaches its SMSC. Zero values take the defaults
// named on each field.
type Config struct {
	// Addr is the SMSC's host:port. Required.
	Addr string
	// SystemID and Password identify the account at the SMSC (at most 15
	// and 8 characters, as SMPP 3.4 allows). SystemID is required.
	SystemID string
	Password string
	// SystemType is sent in the bind when the SMSC wants one. Defaults to
	// empty.
	SystemType string
	// TLS connects over TLS. Defaults to false.
	TLS bool
	// TLSConfig is used when TLS is on. Defaults to a config that checks
	// the SMSC's certificate against Addr's host, TLS 1.2 at least.
	TLSConfig *tls.Config
	// Binds is the number of transceiver binds this processor opens; each
	// has its own window and rate. Defaults to 1.
	Binds int
	// Window is how many submit_sm may await their submit_sm_resp on one
	// bind at a time. Defaults to 10.
	Window int
	// TPS is the most submit_sm per second on one bind; 0 means no limit.
	// Defaults to 0.
	TPS float64
	// EnquireLink is how often a bind sends enquire_link. A bind that hears
	// nothing from the SMSC for twice this long is taken for dead and
	// reconnected. Defaults to 30s.
	EnquireLink time.Duration
	// SubmitTimeout is how long a submit_sm waits for its submit_sm_resp
	// before it counts as a transient failure (which the SMSC may still
	// have accepted). Defaults to 30s.
	SubmitTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the backoff between attempts to
	// bind; it doubles from min to max, with jitter. A bind refused for
	// its credentials waits ReconnectMax every time. Default to 1s and 60s.
	ReconnectMin, ReconnectMax time.Duration
	// BindTimeout bounds connecting and waiting for bind_resp. Defaults to
	// 10s.
	BindTimeout time.Duration
	// ThrottleDelay is how long a bind takes no new submit_sm after the
	// SMSC answered ESME_RTHROTTLED or ESME_RMSGQFUL, and the RetryAfter
	// such an answer gives. Defaults to 1s.
	ThrottleDelay time.Duration
	// SinkTimeout bounds one hand-over of a receipt or inbound message to
	// the sink; on timeout the SMSC is told to send it again. Defaults to
	// 10s.
	SinkTimeout time.Duration
	// InboundPartTimeout is how long the parts of an incomplete
	// concatenated inbound message are kept waiting for the rest. Defaults
	// to 10m.
	InboundPartTimeout time.Duration
}

// withDefaults returns cfg with its zero values replaced by the defaults.
func (cfg Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.Binds == 0 {
		cfg.Binds = 1
	}
	if cfg.Window == 0 {
		cfg.Window = 10
	}
	def(&cfg.EnquireLink, 30*time.Second)
	def(&cfg.SubmitTimeout, 30*time.Second)
	def(&cfg.ReconnectMin, time.Second)
	def(&cfg.ReconnectMax, 60*time.Second)
	def(&cfg.BindTimeout, 10*time.Second)
	def(&cfg.ThrottleDelay, time.Second)
	def(&cfg.SinkTimeout, 10*time.Second)
	def(&cfg.InboundPartTimeout, 10*time.Minute)
	return cfg
}

// validate names the first bad field, as the SMS_SMPP_* setting it comes from.
func (cfg Config) validate() error {
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return fmt.Errorf("smpp addr (SMS_SMPP_ADDR) %q: want host:port", cfg.Addr)
	}
	switch {
	case cfg.SystemID == "" || len(cfg.SystemID) > 15:
		return errors.New("smpp system id (SMS_SMPP_SYSTEM_ID): must be 1 to 15 characters")
	case len(cfg.Password) > 8:
		return errors.New("smpp password (SMS_SMPP_PASSWORD): must be at most 8 characters")
	case len(cfg.SystemType) > 12:
		return errors.New("smpp system type (SMS_SMPP_SYSTEM_TYPE): must be at most 12 characters")
	case cfg.Binds < 1 || cfg.Binds > 64:
		return errors.New("smpp binds (SMS_SMPP_BINDS): must be 1 to 64")
	case cfg.Window < 1 || cfg.Window > 1000:
		return errors.New("smpp window (SMS_SMPP_WINDOW): must be 1 to 1000")
	case cfg.TPS < 0:
		return errors.New("smpp tps (SMS_SMPP_TPS): must not be negative")
	case cfg.EnquireLink < 0 || cfg.SubmitTimeout < 0 || cfg.BindTimeout < 0 || cfg.ThrottleDelay < 0 ||
		cfg.SinkTimeout < 0 || cfg.InboundPartTimeout < 0:
		return errors.New("smpp: durations must not be negative")
	case cfg.ReconnectMin < 0 || cfg.ReconnectMax < cfg.ReconnectMin:
		return errors.New("smpp reconnect backoff: want 0 <= min <= max")
	}
	return nil
}
