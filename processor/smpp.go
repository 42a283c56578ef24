package processor

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/processor/carrier"
)

// newSMPPCarrier builds the SMPP carrier.
func newSMPPCarrier(cfg config.Processor, sink carrier.Sink, log zerolog.Logger, reg prometheus.Registerer, tp trace.TracerProvider) (carrierService, error) {
	return nil, errors.New("carrier smpp: not built into this binary yet")
}
