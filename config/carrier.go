package config

import (
	"errors"
	"net"
	"time"
)

// Carrier chooses and configures what the processor delivers through.
type Carrier struct {
	// Carrier is sim (the simulator) or smpp (an SMSC). Defaults to sim.
	Carrier string `mapstructure:"carrier" flag:"what the processor delivers through: sim or smpp"`
	SMPP    `mapstructure:",squash"`
	// SimReceipts makes the simulator send delivery receipts. Defaults to true.
	SimReceipts bool `mapstructure:"sim-receipts" flag:"simulated carrier: send delivery receipts"`
	// SimReceiptMinDelay and SimReceiptMaxDelay bound how long after a
	// message was accepted its receipt comes. Default to 100ms and 2s;
	// 0 is no delay, else at least MinSimDelay.
	SimReceiptMinDelay time.Duration `mapstructure:"sim-receipt-min-delay" flag:"simulated carrier: shortest wait for a receipt (0: none)"`
	SimReceiptMaxDelay time.Duration `mapstructure:"sim-receipt-max-delay" flag:"simulated carrier: longest wait for a receipt (0: none)"`
	// SimUndeliveredRate and SimExpiredRate are the shares of accepted
	// messages whose receipt says UNDELIVERED and EXPIRED; the rest are
	// DELIVERED. Default to 0.05 and 0.02.
	SimUndeliveredRate float64 `mapstructure:"sim-undelivered-rate" flag:"simulated carrier: share of receipts that say undelivered, 0..1"`
	SimExpiredRate     float64 `mapstructure:"sim-expired-rate" flag:"simulated carrier: share of receipts that say expired, 0..1"`
	// SimReplyRate is the share of recipients who answer a message, after
	// SimReplyDelay; SimStopRate the share of those answers that are STOP
	// (a handset says STOP once); SimStartRate the share of handsets that
	// answer the STOP confirmation with START. Default to 0, 2s, 0.1, 0.2.
	SimReplyRate  float64       `mapstructure:"sim-reply-rate" flag:"simulated carrier: share of recipients who reply, 0..1"`
	SimReplyDelay time.Duration `mapstructure:"sim-reply-delay" flag:"simulated carrier: how long a recipient takes to reply (0: at once)"`
	SimStopRate   float64       `mapstructure:"sim-stop-rate" flag:"simulated carrier: share of replies that are STOP, 0..1"`
	SimStartRate  float64       `mapstructure:"sim-start-rate" flag:"simulated carrier: share of opted-out recipients who answer the confirmation with START, 0..1"`
}

// SMPP configures the SMPP carrier.
type SMPP struct {
	// Addr is the SMSC, host:port. Required with carrier smpp.
	Addr string `mapstructure:"smpp-addr" flag:"SMSC address, host:port"`
	// SystemID and Password authenticate the binds; SystemType is sent as
	// given. SystemID is required with carrier smpp.
	SystemID   string `mapstructure:"smpp-system-id" flag:"SMPP system_id"`
	Password   string `mapstructure:"smpp-password" flag:"SMPP password"`
	SystemType string `mapstructure:"smpp-system-type" flag:"SMPP system_type"`
	// TLS connects over TLS. Defaults to false.
	TLS bool `mapstructure:"smpp-tls" flag:"connect to the SMSC over TLS"`
	// Binds is how many transceiver binds each processor keeps. Defaults to 1.
	Binds int `mapstructure:"smpp-binds" flag:"transceiver binds per processor"`
	// Window is how many submit_sm may be outstanding per bind. Defaults to 10.
	Window int `mapstructure:"smpp-window" flag:"outstanding submit_sm per bind"`
	// TPS bounds submits per second per bind; 0 is no limit. Defaults to 0.
	TPS float64 `mapstructure:"smpp-tps" flag:"submits per second per bind (0: no limit)"`
	// EnquireLink is how often an idle bind is checked. Defaults to 30s.
	EnquireLink time.Duration `mapstructure:"smpp-enquire-link" flag:"enquire_link period"`
	// ReceiptTimeout is how long a SENT message waits for its receipts
	// before it is EXPIRED (the simulator's receipts too). Defaults to 48h;
	// at least MinReceiptTimeout and, with the simulator, longer than
	// SimReceiptMaxDelay.
	ReceiptTimeout time.Duration `mapstructure:"smpp-receipt-timeout" flag:"a SENT message without its receipts after this long becomes EXPIRED (at least 10s)"`
}

func defaultCarrier() Carrier {
	return Carrier{
		Carrier: "sim", SimReceipts: true, SimReceiptMinDelay: 100 * time.Millisecond, SimReceiptMaxDelay: 2 * time.Second,
		SimUndeliveredRate: 0.05, SimExpiredRate: 0.02, SimReplyDelay: 2 * time.Second, SimStopRate: 0.1, SimStartRate: 0.2,
		SMPP: SMPP{Binds: 1, Window: 10, EnquireLink: 30 * time.Second, ReceiptTimeout: 48 * time.Hour},
	}
}

func (c Carrier) validate() error {
	var errs []error
	switch c.Carrier {
	case "sim":
		// A receipt that may come after the timeout expires a message the
		// simulator delivers.
		if c.SimReceipts && c.ReceiptTimeout <= c.SimReceiptMaxDelay {
			errs = append(errs, invalid("smpp-receipt-timeout", "must be longer than %s (sim-receipt-max-delay, %s) with carrier sim, or every message whose receipt takes that long expires; got %s",
				EnvVar("sim-receipt-max-delay"), c.SimReceiptMaxDelay, c.ReceiptTimeout))
		}
	case "smpp":
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, invalid("smpp-addr", "%q is not host:port (required with carrier smpp)", c.Addr))
		}
		if c.SystemID == "" || len(c.SystemID) > 15 {
			errs = append(errs, invalid("smpp-system-id", "is required with carrier smpp, at most 15 characters"))
		}
		if len(c.Password) > 8 {
			errs = append(errs, invalid("smpp-password", "must be at most 8 characters (SMPP 3.4)"))
		}
	default:
		errs = append(errs, invalid("carrier", "must be sim or smpp, got %q", c.Carrier))
	}
	if c.SimReceiptMaxDelay < c.SimReceiptMinDelay {
		errs = append(errs, invalid("sim-receipt-max-delay", "must be at least %s (sim-receipt-min-delay, %s), got %s", EnvVar("sim-receipt-min-delay"), c.SimReceiptMinDelay, c.SimReceiptMaxDelay))
	}
	if c.SimUndeliveredRate+c.SimExpiredRate > 1 {
		errs = append(errs, invalid("sim-expired-rate", "and %s (sim-undelivered-rate) must add up to at most 1", EnvVar("sim-undelivered-rate")))
	}
	return errors.Join(append(errs,
		fraction("sim-undelivered-rate", c.SimUndeliveredRate),
		fraction("sim-expired-rate", c.SimExpiredRate),
		fraction("sim-reply-rate", c.SimReplyRate),
		fraction("sim-stop-rate", c.SimStopRate),
		fraction("sim-start-rate", c.SimStartRate),
		zeroOrAtLeast("sim-receipt-min-delay", c.SimReceiptMinDelay, MinSimDelay, "no delay"),
		zeroOrAtLeast("sim-receipt-max-delay", c.SimReceiptMaxDelay, MinSimDelay, "no delay"),
		zeroOrAtLeast("sim-reply-delay", c.SimReplyDelay, MinSimDelay, "no delay"),
		between("smpp-binds", c.Binds, 1, 64),
		between("smpp-window", c.Window, 1, 1000),
		atLeast("smpp-enquire-link", c.EnquireLink, MinEnquireLink),
		atLeast("smpp-receipt-timeout", c.ReceiptTimeout, MinReceiptTimeout),
	)...)
}
