package cmd

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/postgres"
)

// newNumber is `smsctl number`: which account owns which phone number.
// Inbound messages to a number belong to its account; those to a number
// nobody owns are kept as unrouted, and `number unrouted` shows where they
// went.
func newNumber() *cobra.Command {
	root := group(&cobra.Command{Use: "number", Short: "Give phone numbers to accounts (inbound messages to a number are its account's)"})
	withStore := func(cmd *cobra.Command, fn func(*postgres.Inbound) error) error {
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
		return fn(postgres.NewInbound(postgres.NewStore(db), nil))
	}
	number := func(raw string) (string, error) {
		n, err := sms.NormalizePhone(raw)
		if err != nil {
			return "", fmt.Errorf("NUMBER %q %v", raw, err)
		}
		return n, nil
	}

	var addAccount string
	add := &cobra.Command{
		Use:   "add --account NAME NUMBER",
		Short: "Give a number (international format, +country code) to an account; a number has one account",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := number(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd, func(in *postgres.Inbound) error {
				got, added, err := in.AddNumber(cmd.Context(), addAccount, n)
				if err != nil {
					return err
				}
				if !added {
					fmt.Fprintf(cmd.OutOrStdout(), "number %s already belongs to account %q (since %s)\n", got.Number, got.Account, got.CreatedAt.Format(time.RFC3339))
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "number %s now belongs to account %q\n", got.Number, got.Account)
				return nil
			})
		},
	}
	add.Flags().StringVar(&addAccount, "account", "", "account name (required)")
	_ = add.MarkFlagRequired("account")

	var listAccount string
	list := &cobra.Command{
		Use:   "list [--account NAME]",
		Short: "List numbers and their accounts (one account's with --account)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd, func(in *postgres.Inbound) error {
				ns, err := in.ListNumbers(cmd.Context(), listAccount)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NUMBER\tACCOUNT\tADDED")
				for _, n := range ns {
					fmt.Fprintf(w, "%s\t%s\t%s\n", n.Number, n.Account, n.CreatedAt.Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	list.Flags().StringVar(&listAccount, "account", "", "only this account's numbers")

	var removeAccount string
	remove := &cobra.Command{
		Use:   "remove --account NAME NUMBER",
		Short: "Take a number from an account; inbound messages to it are unrouted from then on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := number(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd, func(in *postgres.Inbound) error {
				if err := in.RemoveNumber(cmd.Context(), removeAccount, n); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "number %s no longer belongs to account %q\n", n, removeAccount)
				return nil
			})
		},
	}
	remove.Flags().StringVar(&removeAccount, "account", "", "account name (required)")
	_ = remove.MarkFlagRequired("account")

	var limit int
	unrouted := &cobra.Command{
		Use:   "unrouted",
		Short: "List numbers nobody owns that received messages (kept as unrouted), busiest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit must be at least 1")
			}
			return withStore(cmd, func(in *postgres.Inbound) error {
				ns, err := in.UnroutedNumbers(cmd.Context(), limit)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "NUMBER\tMESSAGES\tLAST RECEIVED")
				for _, n := range ns {
					fmt.Fprintf(w, "%s\t%d\t%s\n", n.Number, n.Messages, n.LastReceived.Format(time.RFC3339))
				}
				return w.Flush()
			})
		},
	}
	unrouted.Flags().IntVar(&limit, "limit", 50, "most numbers listed")

	for _, c := range []*cobra.Command{add, list, remove, unrouted} {
		addDatabaseFlags(c)
	}
	root.AddCommand(add, list, remove, unrouted)
	return root
}
