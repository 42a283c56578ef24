package platform

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
)

// NewKafkaClient returns a franz-go client for brokers that logs through
// logger at warn and above. Extra options (producer or consumer settings)
// are appended.
func NewKafkaClient(brokers []string, logger zerolog.Logger, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.WithLogger(NewKafkaLogger(logger.With().Str("component", "kafka").Logger())),
		// Partitions added to a topic are seen within 30 s instead of the
		// default 5 minutes, by the producer and by the group's consumers.
		kgo.MetadataMaxAge(30 * time.Second),
	}
	cl, err := kgo.NewClient(append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// EnsureTopics creates topics that do not exist yet, and returns once every
// partition of those it created takes records (see waitTopicsReady). Topics
// that existed are neither changed nor waited for.
func EnsureTopics(ctx context.Context, cl *kgo.Client, partitions int32, replication int16, topics ...string) error {
	return EnsureTopicsWith(ctx, cl, partitions, replication, nil, topics...)
}

// EnsureTopicsWith is EnsureTopics with topic configs (such as
// min.insync.replicas) for the topics it creates.
func EnsureTopicsWith(ctx context.Context, cl *kgo.Client, partitions int32, replication int16, configs map[string]*string, topics ...string) error {
	adm := kadm.NewClient(cl)
	resp, err := adm.CreateTopics(ctx, partitions, replication, configs, topics...)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var created []string
	for _, t := range resp.Sorted() {
		switch {
		case t.Err == nil:
			created = append(created, t.Topic)
		case !errors.Is(t.Err, kerr.TopicAlreadyExists):
			return fmt.Errorf("create topic %s: %w", t.Topic, t.Err)
		}
	}
	return waitTopicsReady(ctx, adm, created)
}

// waitTopicsReady waits until the leader of every partition of topics
// answers for it. A broker answers CreateTopics before the topic reaches its
// metadata, and a leader lists a partition in its metadata before it hosts
// the log: a record produced in between fails with UNKNOWN_TOPIC_OR_PARTITION
// ("This server does not host this topic-partition").
func waitTopicsReady(ctx context.Context, adm *kadm.Client, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	for {
		err := topicsReady(ctx, adm, topics)
		if err == nil {
			return nil
		}
		if !Sleep(ctx, 100*time.Millisecond) {
			return fmt.Errorf("created topics not ready: %w", err)
		}
	}
}

func topicsReady(ctx context.Context, adm *kadm.Client, topics []string) error {
	td, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return err
	}
	if err := unled(td, topics); err != nil {
		return err
	}
	// ListOffsets goes to each partition's leader, which answers only for
	// a log it hosts.
	lo, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	if err := lo.Error(); err != nil {
		return err
	}
	for _, name := range topics {
		if got, want := len(lo[name]), len(td[name].Partitions); got != want {
			return fmt.Errorf("topic %s: %d of %d partitions answered", name, got, want)
		}
	}
	return nil
}

// unled names the first of topics that is missing or has a partition
// without a leader.
func unled(td kadm.TopicDetails, topics []string) error {
	for _, name := range topics {
		d, ok := td[name]
		switch {
		case !ok:
			return fmt.Errorf("topic %s: not in metadata", name)
		case d.Err != nil:
			return fmt.Errorf("topic %s: %w", name, d.Err)
		case len(d.Partitions) == 0:
			return fmt.Errorf("topic %s: no partitions", name)
		}
		for _, p := range d.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return fmt.Errorf("topic %s partition %d: no leader", name, p.Partition)
			}
		}
	}
	return nil
}

// TopicPartitions returns how many partitions topic has.
func TopicPartitions(ctx context.Context, cl *kgo.Client, topic string) (int, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, err)
	}
	d, ok := td[topic]
	if !ok {
		return 0, fmt.Errorf("describe topic %s: not found", topic)
	}
	if d.Err != nil {
		return 0, fmt.Errorf("describe topic %s: %w", topic, d.Err)
	}
	return len(d.Partitions), nil
}

// PingKafka checks that at least one broker answers.
func PingKafka(ctx context.Context, cl *kgo.Client) error {
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	return nil
}

// NewKafkaLogger adapts logger for franz-go, at warn and above.
func NewKafkaLogger(logger zerolog.Logger) kgo.Logger { return kgoLogger{logger} }

type kgoLogger struct{ l zerolog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var ev *zerolog.Event
	switch level {
	case kgo.LogLevelError:
		ev = k.l.Error()
	case kgo.LogLevelWarn:
		ev = k.l.Warn()
	case kgo.LogLevelInfo:
		ev = k.l.Info()
	default:
		ev = k.l.Debug()
	}
	for i := 0; i+1 < len(keyvals); i += 2 {
		key := fmt.Sprint(keyvals[i])
		// Interface would marshal an error as JSON, which is {} for most.
		if err, ok := keyvals[i+1].(error); ok {
			ev = ev.AnErr(key, err)
			continue
		}
		ev = ev.Interface(key, keyvals[i+1])
	}
	ev.Msg(msg)
}

// KafkaMetrics exports franz-go's client metrics (kprom) on reg, under the
// kafka_ namespace.
func KafkaMetrics(reg prometheus.Registerer) kgo.Opt {
	return kgo.WithHooks(kprom.NewMetrics("kafka", kprom.Registerer(reg)))
}
