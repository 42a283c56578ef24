package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// cmdWarmKafka produces to and consumes from a scratch topic for a while,
// so that the broker's JIT has compiled its produce and fetch paths before
// anything is measured: a cold broker spent several times more CPU per
// record in its first minute here than once warm.
func cmdWarmKafka(args []string) error {
	fs := flag.NewFlagSet("warmkafka", flag.ExitOnError)
	brokers := fs.String("brokers", "", "seed brokers")
	topic := fs.String("topic", "bench.warmup", "scratch topic (created if missing)")
	rate := fs.Int("rate", 10000, "records per second")
	batch := fs.Int("batch", 50, "records per produce request")
	dur := fs.Duration("duration", 20*time.Second, "how long")
	_ = fs.Parse(args)
	if *brokers == "" {
		return errors.New("warmkafka: -brokers is required")
	}
	seeds := strings.Split(*brokers, ",")
	prod, err := newKafkaClient(seeds, kgo.AllowAutoTopicCreation(), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return fmt.Errorf("warmkafka producer: %w", err)
	}
	defer prod.Close()
	cons, err := newKafkaClient(seeds, kgo.ConsumeTopics(*topic), kgo.ConsumerGroup("bench-warmup"))
	if err != nil {
		return fmt.Errorf("warmkafka consumer: %w", err)
	}
	defer cons.Close()

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	value := []byte(`{"message_id":"0193a0b2-1c2d-7e3f-8a9b-0c1d2e3f4a5b","sender":"+14155550100","recipient":"+14155552671","text":"warm-up","encoding":"GSM-7","segments":1}`)
	var consumed int
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			consumed += fs.NumRecords()
			if err := cons.CommitUncommittedOffsets(context.WithoutCancel(ctx)); err != nil && ctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "warmkafka: commit:", err)
			}
		}
	})
	produced, retries := 0, 0
	tick := time.NewTicker(time.Duration(float64(time.Second) * float64(*batch) / float64(*rate)))
	defer tick.Stop()
	for ctx.Err() == nil {
		rs := make([]*kgo.Record, *batch)
		for i := range rs {
			rs[i] = &kgo.Record{Topic: *topic, Key: fmt.Appendf(nil, "+1415555%04d", (produced+i)%10000), Value: value}
		}
		if err := prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			if ctx.Err() != nil {
				break
			}
			// A topic just created automatically may take a while to get
			// its leader on a busy machine: retry what a producer retries.
			if kerr.IsRetriable(err) || errors.Is(err, kerr.UnknownTopicOrPartition) {
				retries++
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return fmt.Errorf("produce: %w", err)
		}
		produced += len(rs)
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	kv("produced", produced)
	kv("consumed", consumed)
	kv("produce_retries", retries)
	return nil
}
