package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
)

// DeadLetters reads the dead-letter topic and re-drives its records;
// *KafkaDeadLetters is the implementation.
type DeadLetters interface {
	// Recent returns up to limit of the newest records, newest first.
	Recent(ctx context.Context, limit int) (DeadLetterPage, error)
	// Redrive republishes the record at partition and offset to the
	// request topic it came from, and returns that topic;
	// sms.ErrNotFound when there is no such record (any more).
	Redrive(ctx context.Context, partition int32, offset int64) (string, error)
}

// DeadLetterPage is the newest records of the dead-letter topic.
type DeadLetterPage struct {
	Topic string
	// Total counts the records the topic holds, on every partition.
	Total   int64
	Records []DeadLetter
	// Partial says the read ended before reaching every partition's end.
	Partial bool
}

// DeadLetter is one record of the dead-letter topic.
type DeadLetter struct {
	Partition int32
	Offset    int64
	Time      time.Time
	Key       string
	// Error and the original_* values come from the headers the processor
	// sets (processor/deliver.go, sendDLQ).
	Error             string
	OriginalTopic     string
	OriginalPartition string
	OriginalOffset    string
	Headers           []Header
	// Value is the record's value, cut to maxValueShown bytes.
	Value string
	// MessageID is the message of a value that reads as a send request
	// (HasMessage).
	MessageID  uuid.UUID
	HasMessage bool
}

// Header is a record header as text.
type Header struct{ Key, Value string }

const maxValueShown = 2048

// KafkaDeadLetters reads the dead-letter topic with short-lived consumers
// (no group: nothing is committed) and re-drives through the API's
// producer.
type KafkaDeadLetters struct {
	producer *kgo.Client
	brokers  []string
	dlq      string
	base     string
	log      zerolog.Logger
	opts     []kgo.Opt
	// ReadTimeout bounds one read of the topic. Defaults to 5s.
	ReadTimeout time.Duration
}

// NewKafkaDeadLetters reads dlqTopic on brokers and re-drives to the
// request topics of requestTopic (sms.PriorityTopics) through producer
// (the API's client: acks=all, idempotent). consumerOpts are added to the
// short-lived consumers (TLS, SASL).
func NewKafkaDeadLetters(producer *kgo.Client, brokers []string, dlqTopic, requestTopic string, log zerolog.Logger, consumerOpts ...kgo.Opt) *KafkaDeadLetters {
	return &KafkaDeadLetters{producer: producer, brokers: brokers, dlq: dlqTopic, base: requestTopic,
		log: log, opts: consumerOpts, ReadTimeout: 5 * time.Second}
}

func (k *KafkaDeadLetters) requestTopic(name string) bool {
	for _, t := range sms.PriorityTopics(k.base) {
		if t == name {
			return true
		}
	}
	return false
}

// consume reads from the given start offsets until each partition reaches
// its end (exclusive) or the read times out; keep is called per record.
func (k *KafkaDeadLetters) consume(ctx context.Context, from, end map[int32]int64, keep func(*kgo.Record)) (partial bool, err error) {
	if len(from) == 0 {
		return false, nil
	}
	offsets := make(map[int32]kgo.Offset, len(from))
	for p, o := range from {
		offsets[p] = kgo.NewOffset().At(o)
	}
	cl, err := platform.NewKafkaClient(k.brokers, k.log, append(slices.Clone(k.opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{k.dlq: offsets}), kgo.FetchMaxWait(250*time.Millisecond))...)
	if err != nil {
		return false, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, k.ReadTimeout)
	defer cancel()
	left := maps.Clone(end)
	for len(left) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return true, nil
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, e error) { ferr = errors.Join(ferr, e) })
		if ferr != nil {
			return false, fmt.Errorf("read %s: %w", k.dlq, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			e, ok := left[r.Partition]
			if !ok || r.Offset >= e {
				return
			}
			keep(r)
			if r.Offset >= e-1 {
				delete(left, r.Partition)
			}
		})
	}
	return false, nil
}

// Recent reads the newest records of each partition and returns the newest
// limit of them.
func (k *KafkaDeadLetters) Recent(ctx context.Context, limit int) (DeadLetterPage, error) {
	page := DeadLetterPage{Topic: k.dlq}
	adm := kadm.NewClient(k.producer)
	starts, err := adm.ListStartOffsets(ctx, k.dlq)
	if err != nil {
		return page, fmt.Errorf("list offsets of %s: %w", k.dlq, err)
	}
	ends, err := adm.ListEndOffsets(ctx, k.dlq)
	if err != nil {
		return page, fmt.Errorf("list offsets of %s: %w", k.dlq, err)
	}
	from, end := map[int32]int64{}, map[int32]int64{}
	var listErr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			listErr = errors.Join(listErr, o.Err)
			return
		}
		start := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			start = s.Offset
		}
		page.Total += o.Offset - start
		if o.Offset > start {
			from[o.Partition] = max(start, o.Offset-int64(limit))
			end[o.Partition] = o.Offset
		}
	})
	if listErr != nil {
		return page, fmt.Errorf("list offsets of %s: %w", k.dlq, listErr)
	}
	var recs []*kgo.Record
	page.Partial, err = k.consume(ctx, from, end, func(r *kgo.Record) { recs = append(recs, r) })
	if err != nil {
		return page, err
	}
	sort.Slice(recs, func(i, j int) bool {
		if !recs[i].Timestamp.Equal(recs[j].Timestamp) {
			return recs[i].Timestamp.After(recs[j].Timestamp)
		}
		return recs[i].Offset > recs[j].Offset
	})
	if len(recs) > limit {
		recs = recs[:limit]
	}
	for _, r := range recs {
		page.Records = append(page.Records, deadLetterOf(r))
	}
	return page, nil
}

func deadLetterOf(r *kgo.Record) DeadLetter {
	d := DeadLetter{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Key: printable(r.Key, 200)}
	for _, h := range r.Headers {
		v := printable(h.Value, 2000)
		switch h.Key {
		case "error":
			d.Error = v
		case "original_topic":
			d.OriginalTopic = v
		case "original_partition":
			d.OriginalPartition = v
		case "original_offset":
			d.OriginalOffset = v
		}
		d.Headers = append(d.Headers, Header{Key: printable([]byte(h.Key), 200), Value: v})
	}
	d.Value = printable(r.Value, maxValueShown)
	var req sms.SendRequest
	if json.Unmarshal(r.Value, &req) == nil && req.MessageID != uuid.Nil {
		d.MessageID, d.HasMessage = req.MessageID, true
	}
	return d
}

// printable shows b as text, cut to n bytes; bytes that aren't UTF-8 as hex.
func printable(b []byte, n int) string {
	cut := len(b) > n
	if cut {
		b = b[:n]
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = fmt.Sprintf("%x", b)
	}
	if cut {
		s += "…"
	}
	return s
}

// Redrive republishes one record to its request topic: the original_topic
// header when it names one of the request topics, else the normal lane. The
// copy keeps the key, the value and the headers other than the error ones,
// and says where it came from in redriven_from. The processor dedupes: a
// message whose try already has an outcome is not sent again (retry the
// message for a new try).
func (k *KafkaDeadLetters) Redrive(ctx context.Context, partition int32, offset int64) (string, error) {
	adm := kadm.NewClient(k.producer)
	starts, err := adm.ListStartOffsets(ctx, k.dlq)
	if err != nil {
		return "", sms.Unavailable("list offsets of "+k.dlq, err)
	}
	ends, err := adm.ListEndOffsets(ctx, k.dlq)
	if err != nil {
		return "", sms.Unavailable("list offsets of "+k.dlq, err)
	}
	s, ok1 := starts.Lookup(k.dlq, partition)
	e, ok2 := ends.Lookup(k.dlq, partition)
	if !ok1 || !ok2 || s.Err != nil || e.Err != nil || offset < s.Offset || offset >= e.Offset {
		return "", sms.ErrNotFound // no such partition, or the record is gone or never was
	}
	var rec *kgo.Record
	_, err = k.consume(ctx, map[int32]int64{partition: offset}, map[int32]int64{partition: offset + 1}, func(r *kgo.Record) {
		if r.Offset == offset {
			rec = r
		}
	})
	if err != nil {
		return "", err
	}
	if rec == nil {
		return "", sms.ErrNotFound
	}
	topic := k.base
	var headers []kgo.RecordHeader
	for _, h := range rec.Headers {
		switch h.Key {
		case "original_topic":
			if k.requestTopic(string(h.Value)) {
				topic = string(h.Value)
			}
			continue
		case "error", "original_partition", "original_offset", "redriven_from":
			continue
		}
		headers = append(headers, h)
	}
	headers = append(headers, kgo.RecordHeader{Key: "redriven_from",
		Value: []byte(k.dlq + "/" + strconv.Itoa(int(partition)) + "/" + strconv.FormatInt(offset, 10))})
	out := &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: headers}
	if err := k.producer.ProduceSync(ctx, out).FirstErr(); err != nil {
		return "", sms.Unavailable("re-drive to "+topic, err)
	}
	return topic, nil
}
