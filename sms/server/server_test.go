package server

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms/apidoc"
)

// TestServerDoesNotAutoCreateTopics: the API's producer must not create a
// topic by publishing to it. A publish that raced ensureTopics would create
// sms.requests with the broker's defaults and kafka-partitions would never
// apply. kfake (and Kafka by default) create topics on request, so only
// the client's setting stands between.
func TestServerDoesNotAutoCreateTopics(t *testing.T) {
	t.Parallel()
	brokers := platformtest.KafkaBrokers(t)
	cfg := config.DefaultAPI()
	cfg.Brokers, cfg.DatabaseURL, cfg.InternalToken, cfg.HTTPAddr = brokers, platformtest.NewDatabase(t), "server-test-internal-token", "127.0.0.1:0"
	s, err := New(context.Background(), cfg, zerolog.Nop(), noop.NewTracerProvider())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	topic := platformtest.UniqueTopic("never.created")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = s.kafka.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr()
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Errorf("publish to a missing topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}
	topics, err := kadm.NewClient(s.kafka).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if topics.Has(topic) {
		t.Errorf("publishing created topic %s", topic)
	}
}

// TestEveryRouteIsDocumented: each /v1 route the API serves is an
// operation of sms/apidoc/openapi.yaml, and each operation there is
// served. The contract test (scripts/schemathesis.sh) only tries what the
// document lists, so a route left out of it would go untested.
func TestEveryRouteIsDocumented(t *testing.T) {
	t.Parallel()
	cfg := config.DefaultAPI()
	cfg.Brokers, cfg.DatabaseURL, cfg.InternalToken, cfg.HTTPAddr = platformtest.KafkaBrokers(t), platformtest.NewDatabase(t), "server-test-internal-token", "127.0.0.1:0"
	s, err := New(context.Background(), cfg, zerolog.Nop(), noop.NewTracerProvider())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)

	doc, err := openapi3.NewLoader().LoadFromData(apidoc.Spec())
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	served := map[string]bool{}
	param := regexp.MustCompile(`:([a-z_]+)`)
	for _, r := range s.routes {
		// HEAD is answered wherever GET is (RFC 9110), and the batch
		// route's GET only answers 405: neither is an operation.
		if !strings.HasPrefix(r.Path, "/v1/") || r.Method == http.MethodHead ||
			r.Method == echo.RouteNotFound || (r.Path == "/v1/messages/batch" && r.Method == http.MethodGet) {
			continue
		}
		served[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	// HEAD wherever GET, on every route the server has: the console, the
	// document's assets, health and metrics as well as /v1.
	head := map[string]bool{}
	for _, r := range s.routes {
		if r.Method == http.MethodHead {
			head[r.Path] = true
		}
	}
	for _, r := range s.routes {
		if r.Method == http.MethodGet && !head[r.Path] {
			t.Errorf("GET %s is served without HEAD", r.Path)
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("%s is served but not in openapi.yaml", op)
		}
	}
	for op := range documented {
		if strings.Contains(op, " /v1/") && !served[op] {
			t.Errorf("%s is in openapi.yaml but not served", op)
		}
	}
	if len(served) < 30 {
		t.Errorf("only %d routes found: %v", len(served), served)
	}
}
