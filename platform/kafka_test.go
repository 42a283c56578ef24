package platform

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform/platformtest"
)

// TestKafkaLoggerKeepsErrors: franz-go passes errors as key-value pairs;
// logged as JSON values they came out as {}.
func TestKafkaLoggerKeepsErrors(t *testing.T) {
	var buf bytes.Buffer
	NewKafkaLogger(zerolog.New(&buf)).Log(kgo.LogLevelWarn, "group manage loop errored", "err", errors.New("broker closed the connection"), "group", "g")
	if out := buf.String(); !strings.Contains(out, `"err":"broker closed the connection"`) || !strings.Contains(out, `"group":"g"`) {
		t.Errorf("logged %s, want the error's text and the other fields", out)
	}
}

func TestTopicPartitions(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "three"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := NewKafkaClient(c.ListenAddrs(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if n, err := TopicPartitions(context.Background(), cl, "three"); err != nil || n != 3 {
		t.Errorf("TopicPartitions(three) = %d, %v; want 3", n, err)
	}
	if _, err := TopicPartitions(context.Background(), cl, "missing"); err == nil {
		t.Error("TopicPartitions of a missing topic: no error")
	}
}

// TestEnsureTopicsReadyToProduce: a real broker answers CreateTopics before
// the partitions' leaders host their logs; a record produced at once failed
// with UNKNOWN_TOPIC_OR_PARTITION (TestDeadLetters, in a make test run).
// With no unknown-topic retries, the first produce after EnsureTopics must
// land. On a real broker under disk load, 6 of 30 runs failed without the
// wait.
func TestEnsureTopicsReadyToProduce(t *testing.T) {
	topics := []string{platformtest.UniqueTopic("ensure"), platformtest.UniqueTopic("ensure")}
	brokers := platformtest.KafkaBrokers(t)
	cl, err := NewKafkaClient(brokers, zerolog.Nop(), kgo.UnknownTopicRetries(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := EnsureTopics(ctx, cl, 3, 1, topics...); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for _, topic := range topics {
		for p := range int32(3) {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce right after EnsureTopics: %v", err)
	}
	// Existing topics are left alone and not waited for.
	if err := EnsureTopics(ctx, cl, 3, 1, topics...); err != nil {
		t.Errorf("EnsureTopics of existing topics: %v", err)
	}
}

func TestUnled(t *testing.T) {
	led := kadm.TopicDetail{Topic: "a", Partitions: kadm.PartitionDetails{0: {Partition: 0, Leader: 1}}}
	for _, c := range []struct {
		name string
		td   kadm.TopicDetails
		want string
	}{
		{"ready", kadm.TopicDetails{"a": led}, ""},
		{"missing", kadm.TopicDetails{}, "topic a: not in metadata"},
		{"unknown", kadm.TopicDetails{"a": {Topic: "a", Err: kerr.UnknownTopicOrPartition}}, "UNKNOWN_TOPIC_OR_PARTITION"},
		{"no partitions", kadm.TopicDetails{"a": {Topic: "a"}}, "no partitions"},
		{"leaderless", kadm.TopicDetails{"a": {Topic: "a", Partitions: kadm.PartitionDetails{0: {Partition: 0, Leader: 1}, 1: {Partition: 1, Leader: -1}}}}, "partition 1: no leader"},
	} {
		err := unled(c.td, []string{"a"})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: unled = %v, want %q", c.name, err, c.want)
		}
	}
}
