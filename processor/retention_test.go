package processor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/smsctl/smsctl/platform/platformtest"
	"github.com/smsctl/smsctl/sms"
)

// messageIDAt is a UUIDv7 of a message created at t; n tells apart ids of
// the same millisecond.
func messageIDAt(t time.Time, n int) uuid.UUID {
	floor := sms.UUIDv7Floor(t)
	return uuid.MustParse(floor[:len(floor)-12] + fmt.Sprintf("%012x", n))
}

// deliveryAt stores an outcome for id processed at processed, acknowledged
// by the API or not.
func deliveryAt(tb testing.TB, db *sqlx.DB, id uuid.UUID, processed time.Time, reported bool) {
	tb.Helper()
	if _, err := db.Exec(`INSERT INTO processor.deliveries (message_id, status, attempts, processed_at)
        VALUES ($1, 'SENT', 1, $2)`, id, processed); err != nil {
		tb.Fatal(err)
	}
	if !reported {
		if _, err := db.Exec(`INSERT INTO processor.unreported (message_id, processed_at) VALUES ($1, $2)`, id, processed); err != nil {
			tb.Fatal(err)
		}
	}
}

func remainingDeliveries(tb testing.TB, db *sqlx.DB) []string {
	tb.Helper()
	var ids []string
	if err := db.Select(&ids, `SELECT message_id::text FROM processor.deliveries`); err != nil {
		tb.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

func TestStorePrune(t *testing.T) {
	t.Parallel()
	db := platformtest.NewDB(t)
	store := NewStore(db)
	now := time.Now()
	cutoff := now.Add(-30 * 24 * time.Hour)
	old, longAgo, recently := now.Add(-40*24*time.Hour), now.Add(-35*24*time.Hour), now.Add(-time.Hour)

	var expired []uuid.UUID
	for i := range 5 {
		id := messageIDAt(old, i)
		deliveryAt(t, db, id, longAgo, true)
		expired = append(expired, id)
	}
	keep := map[string]uuid.UUID{
		"old message, never reported":     messageIDAt(old, 100),
		"old message, processed recently": messageIDAt(old, 101),
		"new message, reported":           messageIDAt(recently, 0),
		"new message, not reported":       messageIDAt(recently, 1),
	}
	deliveryAt(t, db, keep["old message, never reported"], longAgo, false)
	deliveryAt(t, db, keep["old message, processed recently"], recently, true)
	deliveryAt(t, db, keep["new message, reported"], recently, true)
	deliveryAt(t, db, keep["new message, not reported"], recently, false)

	// The limit bounds each round.
	n, err := store.Prune(context.Background(), cutoff, 3)
	if err != nil || n != 3 {
		t.Fatalf("Prune(limit 3) = %d, %v; want 3 deleted", n, err)
	}
	n, err = store.Prune(context.Background(), cutoff, 3)
	if err != nil || n != 2 {
		t.Fatalf("second Prune(limit 3) = %d, %v; want the other 2", n, err)
	}
	if n, err := store.Prune(context.Background(), cutoff, 3); err != nil || n != 0 {
		t.Fatalf("third Prune = %d, %v; want 0", n, err)
	}
	var want []string
	for _, id := range keep {
		want = append(want, id.String())
	}
	sort.Strings(want)
	if got := remainingDeliveries(t, db); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("left %v, want only %v (%v)", got, want, keep)
	}
}

// The pruner never deletes outcomes Kafka may still redeliver records of.
func TestPrunerRespectsTopicRetention(t *testing.T) {
	t.Parallel()
	const retention = 30 * 24 * time.Hour
	for _, tc := range []struct {
		name      string
		topic     time.Duration
		err       error
		wantPrune bool
	}{
		{"topic keeps records 7 days", 7 * 24 * time.Hour, nil, true},
		{"topic keeps records forever", -1, nil, false},
		{"topic keeps records longer than the outcomes", 60 * 24 * time.Hour, nil, false},
		{"topic retention as long as the outcomes'", retention, nil, false},
		{"topic retention unreadable", 0, errors.New("broker down"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := platformtest.NewDB(t)
			longAgo := time.Now().Add(-40 * 24 * time.Hour)
			id := messageIDAt(longAgo, 0)
			deliveryAt(t, db, id, longAgo, true)
			p := newPruner(NewStore(db), retention, func(context.Context) (time.Duration, error) { return tc.topic, tc.err },
				testLogger(), prometheus.NewRegistry())
			p.prune(context.Background())
			pruned := len(remainingDeliveries(t, db)) == 0
			if pruned != tc.wantPrune {
				t.Errorf("pruned = %v, want %v", pruned, tc.wantPrune)
			}
		})
	}
}

// topicRetention reads retention.ms from the broker (kfake, or the real one
// in the Kafka lane), including a topic that keeps records forever.
func TestTopicRetentionReadsTheBroker(t *testing.T) {
	t.Parallel()
	e := newKafkaEnv(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{{"86400000", 24 * time.Hour}, {"-1", -1}} {
		if _, err := e.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &tc.value}}, e.topic); err != nil {
			t.Fatalf("set retention.ms=%s: %v", tc.value, err)
		}
		eventually(t, 10*time.Second, "retention.ms "+tc.value, func() (bool, string) {
			got, err := topicRetention(e.cl, e.topic)(ctx)
			return err == nil && got == tc.want, fmt.Sprintf("got %v, %v; want %v", got, err, tc.want)
		})
	}
	if _, err := topicRetention(e.cl, e.topic+".missing")(ctx); err == nil {
		t.Error("a missing topic gave no error")
	}
}

// TestMonitorCountsWaitingReportsWhenScraped checks that
// sms_reports_waiting is true at the moment it is read: it was sampled
// every few seconds, so a scrape right after outcomes were recorded or
// acknowledged read a stale figure.
func TestMonitorCountsWaitingReportsWhenScraped(t *testing.T) {
	t.Parallel()
	env := newKafkaEnv(t, 1)
	store := NewStore(platformtest.NewDB(t))
	m := newMonitor(env.cl, env.group, []string{env.topic}, store, testLogger(), prometheus.NewRegistry())
	if got := testutil.ToFloat64(m.waiting); got != 0 {
		t.Fatalf("sms_reports_waiting = %v before any outcome, want 0", got)
	}
	outs := recordMixed(t, store, 3)
	if got := testutil.ToFloat64(m.waiting); got != 3 {
		t.Fatalf("sms_reports_waiting = %v right after 3 outcomes were recorded, want 3", got)
	}
	if err := markReported(context.Background(), store.db, outs); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.waiting); got != 0 {
		t.Fatalf("sms_reports_waiting = %v right after they were acknowledged, want 0", got)
	}
}
