package smpp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the carrier's Prometheus series, each labelled by bind.
type metrics struct {
	bindUp   *prometheus.GaugeVec
	window   *prometheus.GaugeVec
	submits  *prometheus.CounterVec
	receipts *prometheus.CounterVec
	errors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bindUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sms_smpp_bind_up", Help: "Whether the SMPP bind is bound (1) or not (0).",
		}, []string{"bind"}),
		window: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sms_smpp_window_in_use", Help: "submit_sm awaiting their submit_sm_resp on the bind.",
		}, []string{"bind"}),
		submits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_smpp_submits_total", Help: "submit_sm sent, by result: accepted, throttled, transient, permanent.",
		}, []string{"bind", "result"}),
		receipts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_smpp_receipts_total", Help: "Delivery receipts received, by status (not_final and unreadable ones included).",
		}, []string{"bind", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sms_smpp_errors_total", Help: "Error command_status received from the SMSC (submit_sm_resp, generic_nack, bind_resp), by SMPP name.",
		}, []string{"bind", "status"}),
	}
	for _, c := range []prometheus.Collector{m.bindUp, m.window, m.submits, m.receipts, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
