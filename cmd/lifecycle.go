package cmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

// newMessageAction builds `smsctl retry` and `smsctl cancel`: the action
// on the messages named by id, or on those a filter selects.
func newMessageAction(name, short string, defaultStatus sms.Status,
	act func(context.Context, *client.Client, uuid.UUID) (sms.Message, error)) *cobra.Command {
	var status string
	var since time.Duration
	var dryRun bool
	cmd := &cobra.Command{
		Use:   name + " [ID...] | " + name + " --status STATUS [--since DURATION]",
		Short: short,
		Long: short + `. Give message ids, or a filter: --status (default ` + string(defaultStatus) + `)
and --since (created within this long, e.g. 1h) select the account's messages
through the API, newest first. Each message's new status is printed; a
message that can't be changed is reported and the others go on.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var cfg config.Client
			if err := load(cmd, &cfg); err != nil {
				return err
			}
			api := client.New(cfg.APIURL, cfg.APIKey)
			ctx := cmd.Context()
			var ids []uuid.UUID
			for _, a := range args {
				id, err := uuid.Parse(a)
				if err != nil {
					return fmt.Errorf("%q is not a message id", a)
				}
				ids = append(ids, id)
			}
			if len(ids) == 0 {
				if !cmd.Flags().Changed("status") && !cmd.Flags().Changed("since") {
					return errors.New("give message ids, or a filter: --status and/or --since")
				}
				st, err := sms.ParseStatus(status)
				if err != nil {
					return fmt.Errorf("--status: %w", err)
				}
				if ids, err = selectMessages(ctx, api, st, since); err != nil {
					return err
				}
			}
			failed := 0
			for _, id := range ids {
				if dryRun {
					fmt.Fprintln(cmd.OutOrStdout(), id)
					continue
				}
				m, err := act(ctx, api, id)
				if err != nil {
					failed++
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", id, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", m.ID, m.Status)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d messages done\n", len(ids)-failed, len(ids))
			if failed > 0 {
				return &exitError{code: 2, err: fmt.Errorf("%d messages could not be changed", failed)}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	config.RegisterFlags(fs, config.DefaultClient())
	fs.StringVar(&status, "status", string(defaultStatus), "select messages in this status")
	fs.DurationVar(&since, "since", 0, "select messages created within this long (0: any time)")
	fs.BoolVar(&dryRun, "dry-run", false, "only print the ids selected")
	return cmd
}

// selectMessages lists the account's messages in status created within
// since (all when 0), newest first.
func selectMessages(ctx context.Context, api *client.Client, status sms.Status, since time.Duration) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	cutoff := time.Now().Add(-since)
	after := ""
	for {
		page, err := api.List(ctx, status, after, 100)
		if err != nil {
			return nil, err
		}
		for _, m := range page.Messages {
			if since > 0 && m.CreatedAt.Before(cutoff) {
				return ids, nil // newest first: the rest are older
			}
			ids = append(ids, m.ID)
		}
		if page.NextAfter == nil {
			return ids, nil
		}
		after = *page.NextAfter
	}
}

func newRetry() *cobra.Command {
	return newMessageAction("retry", "Send FAILED, UNDELIVERED or EXPIRED messages again", sms.StatusFailed,
		func(ctx context.Context, api *client.Client, id uuid.UUID) (sms.Message, error) {
			return api.Retry(ctx, id)
		})
}

func newCancel() *cobra.Command {
	return newMessageAction("cancel", "Cancel messages that have not reached the carrier", sms.StatusScheduled,
		func(ctx context.Context, api *client.Client, id uuid.UUID) (sms.Message, error) {
			return api.Cancel(ctx, id)
		})
}
