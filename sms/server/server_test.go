package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
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
