package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// cmdTopics waits until the given topics exist and prints how they are
// replicated: the brokers in the cluster, and per topic its partitions, the
// replication factor (smallest over the partitions), the smallest in-sync
// replica set and min.insync.replicas. The benchmark checks with it that the
// API created the topics as the cluster mode intends (RF 3, min ISR 2).
func cmdTopics(args []string) error {
	fs := flag.NewFlagSet("topics", flag.ExitOnError)
	brokers := fs.String("brokers", os.Getenv("SMS_KAFKA_BROKERS"), "Kafka seed brokers, comma-separated")
	topics := fs.String("topics", "sms.requests.high,sms.requests,sms.requests.low,sms.requests.dlq", "topics, comma-separated")
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for the topics to exist")
	_ = fs.Parse(args)
	if *brokers == "" {
		return errors.New("topics: -brokers is required")
	}
	names := strings.Split(*topics, ",")
	cl, err := newKafkaClient(strings.Split(*brokers, ","))
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), *wait)
	defer cancel()

	var td kadm.TopicDetails
	for {
		td, err = adm.ListTopics(ctx, names...)
		if err == nil && td.Error() == nil && len(td) == len(names) {
			break
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = td.Error()
			}
			return fmt.Errorf("topics %s not all there after %s: %v", *topics, *wait, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	bd, err := adm.ListBrokers(ctx)
	if err != nil {
		return fmt.Errorf("list brokers: %w", err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	kv("brokers", len(bd))
	rfMin, isrMin, misrs := -1, -1, []string{}
	for _, name := range names {
		d := td[name]
		rf, isr := -1, -1
		for _, p := range d.Partitions {
			if rf < 0 || len(p.Replicas) < rf {
				rf = len(p.Replicas)
			}
			if isr < 0 || len(p.ISR) < isr {
				isr = len(p.ISR)
			}
		}
		misr := "?"
		if rc, err := rcs.On(name, nil); err == nil && rc.Err == nil {
			for _, c := range rc.Configs {
				if c.Key == "min.insync.replicas" && c.Value != nil {
					misr = *c.Value
				}
			}
		}
		kv("topic_"+name+"_partitions", len(d.Partitions))
		kv("topic_"+name+"_replication", rf)
		kv("topic_"+name+"_isr_min", isr)
		kv("topic_"+name+"_min_insync", misr)
		if rfMin < 0 || rf < rfMin {
			rfMin = rf
		}
		if isrMin < 0 || isr < isrMin {
			isrMin = isr
		}
		if !slices.Contains(misrs, misr) {
			misrs = append(misrs, misr)
		}
	}
	kv("replication_min", rfMin)
	kv("isr_min", isrMin)
	kv("min_insync", strings.Join(misrs, "/"))
	return nil
}
