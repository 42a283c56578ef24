package processor

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/processor/carrier"
	"github.com/smsctl/smsctl/processor/carrier/smpp"
)

// newSMPPCarrier builds the SMPP carrier from the SMS_SMPP_* settings.
func newSMPPCarrier(cfg config.Processor, sink carrier.Sink, log zerolog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (carrierService, error) {
	s := cfg.Carrier.SMPP
	return smpp.New(smpp.Config{Addr: s.Addr, SystemID: s.SystemID, Password: s.Password, SystemType: s.SystemType,
		TLS: s.TLS, Binds: s.Binds, Window: s.Window, TPS: s.TPS, EnquireLink: s.EnquireLink}, sink, log, reg, tp)
}
