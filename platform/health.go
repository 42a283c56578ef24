package platform

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check reports whether a dependency is usable.
type Check func(ctx context.Context) error

// RegisterHealth mounts GET /healthz (the process is alive) and GET /readyz
// (every required check passes; informational ones are reported but don't
// fail readiness). Neither needs credentials nor says anything about
// messages.
func RegisterHealth(e *echo.Echo, required, informational map[string]Check) {
	checks := make(map[string]Check, len(required)+len(informational))
	for name, c := range informational {
		checks[name] = c
	}
	for name, c := range required {
		checks[name] = c
	}
	GET(e, "/healthz", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]any{"status": "ok"})
	})
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	sort.Strings(names)
	GET(e, "/readyz", func(c echo.Context) error {
		ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
		defer cancel()
		results := make(map[string]string, len(checks))
		status, code := "ok", http.StatusOK
		for _, name := range names {
			if err := checks[name](ctx); err != nil {
				results[name] = err.Error()
				if _, req := required[name]; req {
					status, code = "unavailable", http.StatusServiceUnavailable
				}
				continue
			}
			results[name] = "ok"
		}
		return c.JSON(code, map[string]any{"status": status, "checks": results})
	})
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// RegisterMetrics mounts GET /metrics for reg.
func RegisterMetrics(e *echo.Echo, reg *prometheus.Registry) {
	GET(e, "/metrics", echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
}

// HTTPMetrics counts requests by route, method and code and observes their
// latency. Routes are echo's patterns, so ids don't explode the label set.
func HTTPMetrics(reg prometheus.Registerer) echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "http_requests_total", Help: "HTTP requests by route, method and status code.",
	}, []string{"route", "method", "code"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "http_request_duration_seconds", Help: "HTTP request latency by route and method.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"route", "method"})
	reg.MustRegister(requests, latency)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			method := methodLabel(c.Request().Method)
			requests.WithLabelValues(route, method, strconv.Itoa(c.Response().Status)).Inc()
			latency.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
			return nil
		}
	}
}

// methodLabel keeps the label set bounded: any client can send a made-up
// method, and each would otherwise be a new series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}
