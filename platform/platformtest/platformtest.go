// Package platformtest gives tests the real dependencies: a fresh
// PostgreSQL database per test (from SMS_TEST_DATABASE_URL, migrated), and
// Kafka brokers (SMS_TEST_KAFKA_BROKERS, or an in-process kfake cluster).
package platformtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // driver
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/smsctl/smsctl/migrations"
)

// DatabaseURL returns SMS_TEST_DATABASE_URL, failing the test when unset:
// run tests through `make test`, which starts PostgreSQL.
func DatabaseURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("SMS_TEST_DATABASE_URL")
	if u == "" {
		tb.Fatal("SMS_TEST_DATABASE_URL is not set: run `make test`, or export SMS_TEST_DATABASE_URL=$(scripts/postgres.sh --test)")
	}
	return u
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// NewDatabase creates a database for this test from a migrated template,
// returns its URL, and drops it when the test ends.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	base := DatabaseURL(tb)
	admin, err := sql.Open("postgres", base)
	if err != nil {
		tb.Fatalf("open %s: %v", base, err)
	}
	defer admin.Close()
	templateOnce.Do(func() { templateName, templateErr = makeTemplate(base) })
	if templateErr != nil {
		tb.Fatalf("template database: %v", templateErr)
	}
	name := "smsctl_t_" + randomHex(6)
	if _, err := admin.Exec(`CREATE DATABASE ` + name + ` TEMPLATE ` + templateName); err != nil {
		tb.Fatalf("create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		db, err := sql.Open("postgres", base)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec(`DROP DATABASE IF EXISTS ` + name + ` WITH (FORCE)`)
	})
	return withDatabase(base, name)
}

// NewDB is NewDatabase opened as a pool, closed when the test ends.
func NewDB(tb testing.TB) *sqlx.DB {
	tb.Helper()
	db, err := sqlx.Open("postgres", NewDatabase(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// makeTemplate creates (once per process) a migrated database that tests
// copy; copying is much faster than migrating each time.
func makeTemplate(base string) (string, error) {
	admin, err := sql.Open("postgres", base)
	if err != nil {
		return "", err
	}
	defer admin.Close()
	name := "smsctl_tmpl_" + randomHex(6)
	if _, err := admin.Exec(`CREATE DATABASE ` + name); err != nil {
		return "", fmt.Errorf("create template: %w", err)
	}
	db, err := sql.Open("postgres", withDatabase(base, name))
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, set := range []migrations.Set{migrations.SMS, migrations.Processor} {
		if _, err := migrations.Up(ctx, db, set); err != nil {
			db.Close()
			return "", err
		}
	}
	db.Close()
	// scripts/test.sh drops templates and databases left by earlier runs.
	return name, nil
}

func withDatabase(base, name string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.Path = "/" + name
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RealKafka reports whether tests run against a real broker
// (SMS_TEST_KAFKA_BROKERS).
func RealKafka() bool { return os.Getenv("SMS_TEST_KAFKA_BROKERS") != "" }

// KafkaBrokers returns SMS_TEST_KAFKA_BROKERS, or starts an in-process
// kfake cluster for this test.
func KafkaBrokers(tb testing.TB, topics ...string) []string {
	tb.Helper()
	if env := os.Getenv("SMS_TEST_KAFKA_BROKERS"); env != "" {
		return strings.Split(env, ",")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(6), kfake.SeedTopics(6, topics...))
	if err != nil {
		tb.Fatalf("kfake: %v", err)
	}
	tb.Cleanup(c.Close)
	return c.ListenAddrs()
}

// UniqueTopic returns a topic name no other test uses, so tests can share
// one real broker.
func UniqueTopic(prefix string) string { return prefix + "." + randomHex(4) }

// Eventually polls cond every interval until it holds, failing the test
// with what and cond's last detail when within passes.
func Eventually(tb testing.TB, within, interval time.Duration, what string, cond func() (ok bool, detail string)) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not reached within %s (last state: %s)", what, within, detail)
		}
		time.Sleep(interval)
	}
}
