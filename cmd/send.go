package cmd

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/sms"
	"github.com/smsctl/smsctl/sms/client"
)

func newSend() *cobra.Command {
	var from, to, text, idemKey string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "send --from SENDER --to RECIPIENT --text TEXT [--wait]",
		Short: "Send a test message through the API and print it as JSON",
		Long: `send posts one message to the API (--api-url, SMS_API_URL) with an API key
(--api-key, SMS_API_KEY) and prints the accepted message as JSON. With --wait
it follows the message until it is SENT or FAILED and prints it again.

Exit codes: 0 accepted (or SENT with --wait), 1 error, 2 FAILED, 3 still
PENDING when --timeout ran out.`,
		Example: `  smsctl send --from +14155550100 --to "+1 (415) 555-2671" --text "Hello" --wait`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg config.Client
			if err := load(cmd, &cfg); err != nil {
				return err
			}
			if wait && timeout <= 0 {
				return fmt.Errorf("--timeout: must be more than 0, got %s", timeout)
			}
			client := client.New(cfg.APIURL, cfg.APIKey)
			ctx := cmd.Context()
			msg, err := client.Send(ctx, sms.SendInput{Sender: from, Recipient: to, Text: text}, idemKey)
			if err != nil {
				return err
			}
			if err := printJSON(cmd, msg); err != nil {
				return err
			}
			if !wait {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			final, err := client.Wait(wctx, msg.ID, 250*time.Millisecond)
			if err != nil {
				if wctx.Err() != nil && ctx.Err() == nil {
					status := final.Status
					if status == "" { // the deadline cut off the first look
						status = msg.Status
					}
					return &exitError{code: 3, err: fmt.Errorf("message %s still %s after %s", msg.ID, status, timeout)}
				}
				return err
			}
			if err := printJSON(cmd, final); err != nil {
				return err
			}
			if final.Status == sms.StatusFailed {
				reason := ""
				if final.FailureReason != nil {
					reason = *final.FailureReason
				}
				return &exitError{code: 2, err: fmt.Errorf("message %s FAILED: %s", msg.ID, reason)}
			}
			return nil
		},
	}
	fs := cmd.Flags()
	config.RegisterFlags(fs, config.DefaultClient())
	fs.StringVar(&from, "from", "", "sender: E.164 number or alphanumeric sender ID (required)")
	fs.StringVar(&to, "to", "", "recipient: E.164 number (required)")
	fs.StringVar(&text, "text", "", "message text (required)")
	fs.StringVar(&idemKey, "idempotency-key", "", "Idempotency-Key header: retrying with the same key never sends twice")
	fs.BoolVar(&wait, "wait", false, "wait until the message is SENT or FAILED")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	return cmd
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
