// Package cmd is smsctl's command tree. Each command fills its typed
// configuration, validates it, builds its components and runs them.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/platform"
)

// exitError carries a specific exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// Execute runs smsctl and returns the process exit code.
func Execute(version string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, newRoot(version), os.Args[1:], os.Stdout, os.Stderr)
}

// run executes root with args and maps its error to the exit code: an
// *exitError's own code, 1 for any other error. It is Execute without the
// process, so tests see the exit code a user would.
func run(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "smsctl:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return 1
	}
	return 0
}

func newRoot(version string) *cobra.Command {
	root := &cobra.Command{
		Use:   "smsctl",
		Short: "An SMS messaging platform: API, processor, migrations and a test client in one binary",
		Long: `smsctl accepts SMS messages over HTTP, stores them in PostgreSQL, hands them
to a processor over Kafka, and records whether each was SENT or FAILED.

Configuration comes from flags, SMS_* environment variables (the flag name in
upper case with _ for -, e.g. --database-url is SMS_DATABASE_URL) and an
optional config file (--config or SMS_CONFIG; YAML, TOML or JSON with the flag
names as keys), in that order of precedence.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
	}
	root.PersistentFlags().String("config", "", "config file (YAML, TOML or JSON) with flag names as keys (SMS_CONFIG)")
	root.AddCommand(newServe(), newMigrate(), newSend(), newRetry(), newCancel(), newDev(), newAPIKey(), newNumber(), newWebhook(), newVersion(version), newHealth())
	return root
}

// group makes cmd one that only groups subcommands fail, exit 1, on a
// missing or unknown subcommand; cobra would print its help and exit 0, so
// a typo in a container's command ("serve apl") would look like success.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var names []string
		for _, c := range cmd.Commands() {
			if c.IsAvailableCommand() {
				names = append(names, c.Name())
			}
		}
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q (one of: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		}
		return fmt.Errorf("%q needs a command: one of %s (see %s --help)", cmd.CommandPath(), strings.Join(names, ", "), cmd.CommandPath())
	}
	return cmd
}

// load fills dst from the command's flags, environment and config file,
// then validates it.
func load[T interface{ Validate() error }](cmd *cobra.Command, dst *T) error {
	if err := config.Load(cmd.Flags(), dst); err != nil {
		return err
	}
	if err := (*dst).Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	return nil
}

func newLogger(cmd *cobra.Command, l config.Log) (zerolog.Logger, error) {
	return platform.NewLogger(cmd.ErrOrStderr(), l.Level, l.Format)
}
