package cmd

import (
	"errors"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
)

func newAPIKey() *cobra.Command {
	root := group(&cobra.Command{Use: "apikey", Short: "Create, list and revoke API keys"})
	withKeys := func(cmd *cobra.Command, fn func(*postgres.Keys) error) error {
		var cfg config.Database
		if err := load(cmd, &cfg); err != nil {
			return err
		}
		db, err := platform.OpenPostgres(cmd.Context(), cfg.DatabaseURL, 2)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := migrations.Check(cmd.Context(), db.DB, migrations.SMS); err != nil {
			return err
		}
		return fn(postgres.NewKeys(db, 0))
	}
	var account string
	create := &cobra.Command{
		Use:   "create --account NAME",
		Short: "Create a key (and the account if new); the key is printed once, alone on the last line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(cmd, func(k *postgres.Keys) error {
				full, key, err := k.CreateKey(cmd.Context(), account)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created key %d (prefix %s) for account %q; store it now, it is not shown again:\n%s\n", key.ID, key.Prefix, key.Account, full)
				return nil
			})
		},
	}
	create.Flags().StringVar(&account, "account", "", "account name (required)")
	_ = create.MarkFlagRequired("account")
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys (without secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withKeys(cmd, func(k *postgres.Keys) error {
				keys, err := k.ListKeys(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tACCOUNT\tPREFIX\tCREATED\tREVOKED")
				for _, key := range keys {
					revoked := "-"
					if key.RevokedAt != nil {
						revoked = key.RevokedAt.Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%d\t%s\tsms_%s_…\t%s\t%s\n", key.ID, key.Account, key.Prefix, key.CreatedAt.Format(time.RFC3339), revoked)
				}
				return w.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a key by id (takes effect within 5 seconds on running APIs)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("ID: %q is not a key id (see `smsctl apikey list`)", args[0])
			}
			return withKeys(cmd, func(k *postgres.Keys) error {
				at, already, err := k.RevokeKey(cmd.Context(), id)
				if errors.Is(err, sms.ErrNotFound) {
					return fmt.Errorf("no key with id %d", id)
				}
				if err != nil {
					return err
				}
				if already {
					fmt.Fprintf(cmd.OutOrStdout(), "key %d was already revoked at %s\n", id, at.Format(time.RFC3339))
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked key %d\n", id)
				return nil
			})
		},
	}
	for _, c := range []*cobra.Command{create, list, revoke} {
		addDatabaseFlags(c)
	}
	root.AddCommand(create, list, revoke)
	return root
}
