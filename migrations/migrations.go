// Package migrations holds the embedded SQL schema of each role and applies
// it with goose. Each role owns one schema (sms, processor) with its own
// version table, so the two can live in different databases.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed sms/*.sql processor/*.sql
var files embed.FS

// Set is one role's migrations.
type Set struct {
	// Name is the schema the set owns.
	Name string
	dir  string
	// lockID keeps concurrent runs of the same set apart (a session-level
	// advisory lock), while the two sets don't block each other.
	lockID int64
}

var (
	// SMS is the API's schema.
	SMS = Set{Name: "sms", dir: "sms", lockID: 0x736d735f6d6967}
	// Processor is the processor's schema.
	Processor = Set{Name: "processor", dir: "processor", lockID: 0x70726f635f6d6967}
)

func provider(db *sql.DB, set Set) (*goose.Provider, error) {
	sub, err := fs.Sub(files, set.dir)
	if err != nil {
		return nil, fmt.Errorf("migrations %s: %w", set.Name, err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(set.lockID))
	if err != nil {
		return nil, fmt.Errorf("migrations %s: locker: %w", set.Name, err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub,
		goose.WithSessionLocker(locker),
		goose.WithTableName("smsctl_"+set.Name+"_migrations"),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return nil, fmt.Errorf("migrations %s: %w", set.Name, err)
	}
	return p, nil
}

// Result says what a run did to one migration.
type Result struct {
	Set     string
	Version int64
	Name    string
	Applied bool
}

// Up applies every pending migration of set.
func Up(ctx context.Context, db *sql.DB, set Set) ([]Result, error) {
	p, err := provider(db, set)
	if err != nil {
		return nil, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate %s up: %w", set.Name, err)
	}
	return results(set, res, true), nil
}

// Down rolls back the last applied migration of set.
func Down(ctx context.Context, db *sql.DB, set Set) ([]Result, error) {
	p, err := provider(db, set)
	if err != nil {
		return nil, err
	}
	res, err := p.Down(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate %s down: %w", set.Name, err)
	}
	if res == nil {
		return nil, nil
	}
	return results(set, []*goose.MigrationResult{res}, false), nil
}

// Status lists every migration of set and whether it is applied.
func Status(ctx context.Context, db *sql.DB, set Set) ([]Result, error) {
	p, err := provider(db, set)
	if err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate %s status: %w", set.Name, err)
	}
	out := make([]Result, 0, len(st))
	for _, s := range st {
		out = append(out, Result{Set: set.Name, Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied})
	}
	return out, nil
}

func results(set Set, res []*goose.MigrationResult, applied bool) []Result {
	out := make([]Result, 0, len(res))
	for _, r := range res {
		out = append(out, Result{Set: set.Name, Version: r.Source.Version, Name: r.Source.Path, Applied: applied})
	}
	return out
}

// Check returns an error saying what to do unless set's schema is at the
// last migration this binary holds: a role started on an unmigrated or
// older schema would otherwise fail on every statement, and one started on
// a newer schema could misread it.
func Check(ctx context.Context, db *sql.DB, set Set) error {
	p, err := provider(db, set)
	if err != nil {
		return err
	}
	current, target, err := p.GetVersions(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("schema %s: cannot read its migration version (%w); run `smsctl migrate up`", set.Name, err)
	case current < target:
		return fmt.Errorf("schema %s is at version %d, this binary needs %d: run `smsctl migrate up`", set.Name, current, target)
	case current > target:
		return fmt.Errorf("schema %s is at version %d, newer than this binary's %d: run the smsctl release that migrated it", set.Name, current, target)
	}
	return nil
}
