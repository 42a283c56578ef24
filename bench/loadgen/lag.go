package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// lagMeter computes a consumer group's lag on one topic: for every
// partition, the end offset (high watermark) minus the group's committed
// offset (the start offset when the group has committed nothing).
type lagMeter struct {
	adm   *kadm.Client
	cl    *kgo.Client
	group string
	topic string
}

func newLagMeter(brokers, group, topic string) (*lagMeter, error) {
	cl, err := newKafkaClient(strings.Split(brokers, ","))
	if err != nil {
		return nil, fmt.Errorf("lag meter: %w", err)
	}
	return &lagMeter{adm: kadm.NewClient(cl), cl: cl, group: group, topic: topic}, nil
}

func (m *lagMeter) Close() { m.cl.Close() }

type lagResult struct {
	Lag, End, Committed int64
	Partitions          int
	PerPartition        map[int32]int64
}

func (m *lagMeter) Measure(ctx context.Context) (lagResult, error) {
	res := lagResult{PerPartition: map[int32]int64{}}
	ends, err := m.adm.ListEndOffsets(ctx, m.topic)
	if err != nil {
		return res, fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := m.adm.ListStartOffsets(ctx, m.topic)
	if err != nil {
		return res, fmt.Errorf("list start offsets: %w", err)
	}
	committed, err := m.adm.FetchOffsets(ctx, m.group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return res, fmt.Errorf("fetch offsets of group %s: %w", m.group, err)
	}
	var firstErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("end offset of %s/%d: %w", o.Topic, o.Partition, o.Err)
			}
			return
		}
		at := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil && s.Offset > 0 {
			at = s.Offset
		}
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok && c.Err == nil && c.At >= 0 {
			at = c.At
		}
		lag := max(o.Offset-at, 0)
		res.Lag += lag
		res.End += o.Offset
		res.Committed += at
		res.Partitions++
		res.PerPartition[o.Partition] = lag
	})
	return res, firstErr
}

func cmdLag(args []string) error {
	fs := flag.NewFlagSet("lag", flag.ExitOnError)
	brokers := fs.String("brokers", os.Getenv("SMS_KAFKA_BROKERS"), "Kafka seed brokers, comma-separated")
	group := fs.String("group", "processor-service", "consumer group")
	topic := fs.String("topic", "sms.requests", "topic")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after")
	_ = fs.Parse(args)
	if *brokers == "" {
		return errors.New("lag: -brokers is required")
	}
	m, err := newLagMeter(*brokers, *group, *topic)
	if err != nil {
		return err
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := m.Measure(ctx)
	if err != nil {
		return err
	}
	kv("lag", r.Lag)
	kv("end_offsets", r.End)
	kv("committed_offsets", r.Committed)
	kv("partitions", r.Partitions)
	return nil
}
