package platform

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestHTTPMetricsBoundsMethods: made-up methods share one label value, so
// a client cannot grow the series count without bound.
func TestHTTPMetricsBoundsMethods(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := echo.New()
	e.Use(HTTPMetrics(reg))
	e.GET("/", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	for _, m := range []string{http.MethodGet, "ZZ1", "ZZ2", "ZZ3"} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(m, "/", nil))
	}
	// GET 200, and one "other" series for the three made-up methods' 405.
	if n := testutil.CollectAndCount(reg, "http_requests_total"); n != 2 {
		t.Errorf("%d http_requests_total series, want 2", n)
	}
	want := `
# HELP http_requests_total HTTP requests by route, method and status code.
# TYPE http_requests_total counter
http_requests_total{code="200",method="GET",route="/"} 1
http_requests_total{code="405",method="other",route="/"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "http_requests_total"); err != nil {
		t.Error(err)
	}
}
