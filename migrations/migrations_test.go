package migrations_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform/platformtest"
)

// TestCheck: a role refuses to start unless its schema is exactly at the
// binary's last migration, and the error says what to run.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	db := platformtest.NewDB(t)
	for _, set := range []migrations.Set{migrations.SMS, migrations.Processor} {
		if err := migrations.Check(ctx, db.DB, set); err != nil {
			t.Fatalf("migrated schema %s: %v", set.Name, err)
		}
	}
	if _, err := migrations.Down(ctx, db.DB, migrations.SMS); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, db.DB, migrations.SMS); err == nil || !strings.Contains(err.Error(), "run `smsctl migrate up`") {
		t.Errorf("schema one migration behind: %v, want an error saying to run migrate up", err)
	}
	if _, err := db.Exec(`INSERT INTO smsctl_processor_migrations (version_id, is_applied) VALUES (99999, true)`); err != nil {
		t.Fatal(err)
	}
	if err := migrations.Check(ctx, db.DB, migrations.Processor); err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("schema ahead of the binary: %v, want an error saying so", err)
	}

	empty := platformtest.NewDB(t)
	for _, set := range []migrations.Set{migrations.SMS, migrations.Processor} {
		if _, err := empty.Exec(`DROP SCHEMA ` + set.Name + ` CASCADE; DROP TABLE smsctl_` + set.Name + `_migrations`); err != nil {
			t.Fatal(err)
		}
	}
	if err := migrations.Check(ctx, empty.DB, migrations.SMS); err == nil || !strings.Contains(err.Error(), "run `smsctl migrate up`") {
		t.Errorf("never migrated: %v, want an error saying to run migrate up", err)
	}
}

// TestCounterShardsDownKeepsCounts: rolling back the counter shards folds
// every account's shards into one row instead of dropping all but shard 0.
func TestCounterShardsDownKeepsCounts(t *testing.T) {
	ctx := context.Background()
	db := platformtest.NewDB(t)
	if _, err := db.Exec(`INSERT INTO sms.account_counters (account_id, shard, pending, sent, failed)
		VALUES (1, 0, 1, 2, 3), (1, 3, 10, 20, 30), (2, 5, 4, 5, 6)`); err != nil {
		t.Fatal(err)
	}
	for {
		st, err := migrations.Status(ctx, db.DB, migrations.SMS)
		if err != nil {
			t.Fatal(err)
		}
		applied := 0
		for _, m := range st {
			if m.Applied {
				applied++
			}
		}
		if applied == 1 { // only the initial schema: shards are gone
			break
		}
		if _, err := migrations.Down(ctx, db.DB, migrations.SMS); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	if err := db.Select(&got, `SELECT format('%s:%s/%s/%s', account_id, pending, sent, failed) FROM sms.account_counters ORDER BY account_id`); err != nil {
		t.Fatal(err)
	}
	if want := []string{"1:11/22/33", "2:4/5/6"}; !slices.Equal(got, want) {
		t.Errorf("counters after rolling back the shards: %v, want %v", got, want)
	}
}
