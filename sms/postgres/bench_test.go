package postgres

import (
	"context"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

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

	draft := sms.Draft{Sender: "+14155550100", Recipient: "+14155552671", Text: "hello", Encoding: sms.EncodingGSM7, Segments: 1}
	b.SetParallelism(32) // × GOMAXPROCS senders
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := w.Insert(context.Background(), sms.NewMessage{AccountID: 1, Draft: draft}); err != nil {
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
