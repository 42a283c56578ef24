package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/processor"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
	"github.com/smsctl/smsctl/sms/server"
)

// TestOneTracePerMessage runs both roles in this process with an in-memory
// span exporter and checks that one message yields one connected trace:
// the POST, the outbox publish, the Kafka receive, the delivery with its
// carrier attempt, and the application of its report in the API.
func TestOneTracePerMessage(t *testing.T) {
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	defer tp.Shutdown(context.Background())

	dbURL := platformtest.NewDatabase(t)
	topic := platformtest.UniqueTopic("sms.requests")
	brokers := platformtest.KafkaBrokers(t, topic, topic+".dlq")
	kafka := config.Kafka{Brokers: brokers, Topic: topic, DLQTopic: topic + ".dlq", Partitions: 2, ReplicationFactor: 1}
	const token = "trace-test-internal-token"

	apiCfg := config.DefaultAPI()
	apiCfg.Kafka, apiCfg.DatabaseURL, apiCfg.InternalToken, apiCfg.HTTPAddr = kafka, dbURL, token, "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv, err := server.New(ctx, apiCfg, zerolog.Nop(), tp)
	if err != nil {
		t.Fatal(err)
	}
	procCfg := config.DefaultProcessor()
	procCfg.Kafka, procCfg.DatabaseURL, procCfg.InternalToken = kafka, dbURL, token
	procCfg.HTTPAddr, procCfg.APIURL = "127.0.0.1:0", "http://"+srv.InternalAddr().String()
	procCfg.Group = platformtest.UniqueTopic("processor-service")
	procCfg.SimMinDelay, procCfg.SimMaxDelay, procCfg.SimFailureRate = 0, 0, 0
	svc, err := processor.NewService(ctx, procCfg, zerolog.Nop(), tp)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()

	db := openDBURL(t, dbURL)
	key := createKey(t, db, "trace")
	sender := client.New("http://"+srv.Addr().String(), key)
	msg, err := sender.Send(ctx, sms.SendInput{Sender: "+14155550100", Recipient: "+14155552671", Text: "traced"}, "")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if _, err := sender.Wait(wctx, msg.ID, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	var root sdktrace.ReadOnlySpan
	eventually(t, 10*time.Second, "the report's span in the message's trace", func() (bool, string) {
		root = nil
		for _, s := range recorder.Ended() {
			if s.Name() == "POST /v1/messages" {
				root = s
			}
		}
		if root == nil {
			return false, "no POST span"
		}
		names := map[string]bool{}
		for _, s := range recorder.Ended() {
			if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
				names[s.Name()] = true
			}
		}
		return names["sms.apply_report"], "spans so far: " + joinKeys(names)
	})

	trace := map[string]sdktrace.ReadOnlySpan{}
	byID := map[string]bool{}
	for _, s := range recorder.Ended() {
		if s.SpanContext().TraceID() == root.SpanContext().TraceID() {
			trace[s.Name()] = s
			byID[s.SpanContext().SpanID().String()] = true
		}
	}
	for _, name := range []string{"POST /v1/messages", topic + " publish", topic + " receive", "sms.deliver", "carrier.attempt", "sms.apply_report"} {
		if trace[name] == nil {
			t.Errorf("span %q missing from the message's trace (have %s)", name, joinKeys(keysOf(trace)))
		}
	}
	// Connected: every span but the POST has its parent in the trace.
	for name, s := range trace {
		if name == "POST /v1/messages" {
			continue
		}
		if !byID[s.Parent().SpanID().String()] {
			t.Errorf("span %q has a parent outside the message's trace: the trace is broken there", name)
		}
	}
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func joinKeys(m map[string]bool) string {
	s := ""
	for k := range m {
		s += k + "; "
	}
	return s
}
