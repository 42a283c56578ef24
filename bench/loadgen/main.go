// Command loadgen is the benchmark's measuring tool (bench/run.sh drives it).
//
//	loadgen run        open-loop load at a fixed offered rate; latency from each
//	                   request's intended send time (no coordinated omission);
//	                   optionally samples end-to-end progress while it runs
//	loadgen lag        consumer-group lag: committed offsets vs end offsets (kadm)
//	loadgen waitready  poll a /readyz URL every 5 ms; time since a given instant
//	loadgen drain      wait until no message is PENDING; how long it took
//	loadgen counts     stored messages per sender and by status (the loss check)
//	loadgen warmkafka  produce to and consume from a scratch topic (broker JIT warm-up)
//	loadgen batch      closed-loop POST /v1/messages/batch; messages accepted per second
//	loadgen track      post a few messages of each priority, time each until final
//	loadgen sched      watch scheduled messages being released (stats by_status)
//	loadgen waitsql    poll a counting query until it is low enough
//	loadgen topics     the API's topics: brokers, replication, min.insync.replicas
//
// Every subcommand prints its results as key=value lines on stdout, for the
// script, and progress on stderr.
package main

import (
	"fmt"
	"os"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "run":
		err = cmdRun(args)
	case "lag":
		err = cmdLag(args)
	case "waitready":
		err = cmdWaitReady(args)
	case "drain":
		err = cmdDrain(args)
	case "counts":
		err = cmdCounts(args)
	case "warmkafka":
		err = cmdWarmKafka(args)
	case "batch":
		err = cmdBatch(args)
	case "track":
		err = cmdTrack(args)
	case "sched":
		err = cmdSched(args)
	case "waitsql":
		err = cmdWaitSQL(args)
	case "topics":
		err = cmdTopics(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen run|lag|waitready|drain|counts|warmkafka|batch|track|sched|waitsql|topics [flags]  (-h for each)")
	os.Exit(2)
}

// newKafkaClient is the project's one Kafka client constructor (its
// metadata refresh and logging) with opts added; the client's warnings go to
// stderr with the rest of the progress.
func newKafkaClient(brokers []string, opts ...kgo.Opt) (*kgo.Client, error) {
	logger := zerolog.New(os.Stderr).With().Timestamp().Str("tool", "loadgen").Logger()
	return platform.NewKafkaClient(brokers, logger, opts...)
}

// kv prints one result line.
func kv(key string, value any) {
	switch v := value.(type) {
	case float64:
		fmt.Printf("%s=%.3f\n", key, v)
	default:
		fmt.Printf("%s=%v\n", key, v)
	}
}
