package cmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
)

func addDatabaseFlags(cmd *cobra.Command) {
	config.RegisterFlags(cmd.Flags(), config.Database{Log: config.DefaultClient().Log})
}

func newMigrate() *cobra.Command {
	m := group(&cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or list schema migrations (schemas sms and processor)",
		Long: `Migrations are embedded in the binary and applied with goose. Each role owns
its schema: sms (the API) and processor. Running migrate from several
processes at once is safe: a PostgreSQL advisory lock serializes them.`,
	})
	var schema string
	run := func(name string, fn func(context.Context, *platform.DB, migrations.Set) ([]migrations.Result, error)) *cobra.Command {
		cmd := &cobra.Command{
			Use:  name,
			Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				var cfg config.Database
				if err := load(cmd, &cfg); err != nil {
					return err
				}
				targets, err := migrationTargets(cfg, schema)
				if err != nil {
					return err
				}
				for _, t := range targets {
					db, err := platform.OpenPostgres(cmd.Context(), t.url, 2)
					if err != nil {
						return err
					}
					res, err := fn(cmd.Context(), db, t.set)
					db.Close()
					if err != nil {
						return err
					}
					if len(res) == 0 && name != "status" {
						fmt.Fprintf(cmd.OutOrStdout(), "%s: nothing to do\n", t.set.Name)
					}
					for _, r := range res {
						state := map[bool]string{true: "applied", false: "pending"}[r.Applied]
						if name == "down" {
							state = "rolled back"
						}
						fmt.Fprintf(cmd.OutOrStdout(), "%s: %05d %s %s\n", r.Set, r.Version, r.Name, state)
					}
				}
				return nil
			},
		}
		addDatabaseFlags(cmd)
		cmd.Flags().StringVar(&schema, "schema", "all", "which schema: sms, processor or all")
		return cmd
	}
	up := run("up", func(ctx context.Context, db *platform.DB, s migrations.Set) ([]migrations.Result, error) {
		return migrations.Up(ctx, db.DB, s)
	})
	up.Short = "Apply every pending migration"
	down := run("down", func(ctx context.Context, db *platform.DB, s migrations.Set) ([]migrations.Result, error) {
		return migrations.Down(ctx, db.DB, s)
	})
	down.Short = "Roll back the last migration of each schema (destroys data)"
	status := run("status", func(ctx context.Context, db *platform.DB, s migrations.Set) ([]migrations.Result, error) {
		return migrations.Status(ctx, db.DB, s)
	})
	status.Short = "List migrations and whether they are applied"
	m.AddCommand(up, down, status)
	return m
}

type migrationTarget struct {
	set migrations.Set
	url string
}

func migrationTargets(cfg config.Database, schema string) ([]migrationTarget, error) {
	procURL := cfg.ProcessorDatabaseURL
	if procURL == "" {
		procURL = cfg.DatabaseURL
	}
	switch schema {
	case "all":
		return []migrationTarget{{migrations.SMS, cfg.DatabaseURL}, {migrations.Processor, procURL}}, nil
	case "sms":
		return []migrationTarget{{migrations.SMS, cfg.DatabaseURL}}, nil
	case "processor":
		return []migrationTarget{{migrations.Processor, procURL}}, nil
	}
	return nil, fmt.Errorf("schema: must be sms, processor or all, got %q", schema)
}
