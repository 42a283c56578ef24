package sms

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
)

// BenchmarkValidate measures decoding and validating one send request.
func BenchmarkValidate(b *testing.B) {
	body := []byte(`{"sender":"+1 (415) 555-0100","recipient":"+44 20 7946 0958","text":"Your code is 123456. It expires in 10 minutes."}`)
	b.ReportAllocs()
	for b.Loop() {
		var in SendInput
		if err := DecodeJSON(body, &in); err != nil {
			b.Fatal(err)
		}
		if _, err := in.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriter measures committed messages per second through the
// group-commit writer on real PostgreSQL, with 64 concurrent senders.
func BenchmarkWriter(b *testing.B) {
	db := platformtest.NewDB(b)
	store := NewStore(db)
	w := NewWriter(store, config.DefaultAPI().WriterWorkers, 500, prometheus.NewRegistry())
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)

	draft := Draft{Sender: "+14155550100", Recipient: "+14155552671", Text: "hello", Encoding: EncodingGSM7, Segments: 1}
	b.SetParallelism(32) // × GOMAXPROCS senders
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Insert(context.Background(), NewMessage{AccountID: 1, Draft: draft}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	var stored int
	if err := db.Get(&stored, `SELECT count(*) FROM sms.messages`); err != nil {
		b.Fatal(err)
	}
	if stored != b.N {
		b.Fatal(fmt.Sprintf("%d inserts acknowledged, %d stored", b.N, stored))
	}
}
