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
	var from, to, text, idemKey, at, priority string
	var wait bool
	var timeout, validity time.Duration
	cmd := &cobra.Command{
		Use:   "send --from SENDER --to RECIPIENT --text TEXT [--wait]",
		Short: "Send a test message through the API and print it as JSON",
		Long: `send posts one message to the API (--api-url, SMS_API_URL) with an API key
(--api-key, SMS_API_KEY) and prints the accepted message as JSON. With --wait
it follows the message until its status is final and prints it again.

--at sends it later (an RFC 3339 time, or a duration from now such as 10m),
--validity gives up on it if it has not reached the carrier in time, and
--priority puts it in the high or low lane.

Exit codes: 0 accepted (with --wait: DELIVERED, or SENT when no receipt came
before --timeout), 1 error, 2 FAILED, UNDELIVERED, EXPIRED or CANCELED,
3 not yet at the carrier when --timeout ran out.`,
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
			in := sms.SendInput{Sender: from, Recipient: to, Text: text, Priority: sms.Priority(priority)}
			if at != "" {
				sendAt, err := parseWhen(at, time.Now())
				if err != nil {
					return fmt.Errorf("--at: %w", err)
				}
				in.SendAt = &sendAt
			}
			if validity != 0 {
				secs := int(validity.Seconds())
				in.ValidityPeriod = &secs
			}
			client := client.New(cfg.APIURL, cfg.APIKey)
			ctx := cmd.Context()
			msg, err := client.Send(ctx, in, idemKey)
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
					if status == sms.StatusSent {
						if err := printJSON(cmd, final); err != nil {
							return err
						}
						fmt.Fprintf(cmd.ErrOrStderr(), "message %s SENT; no receipt after %s\n", msg.ID, timeout)
						return nil
					}
					return &exitError{code: 3, err: fmt.Errorf("message %s still %s after %s", msg.ID, status, timeout)}
				}
				return err
			}
			if err := printJSON(cmd, final); err != nil {
				return err
			}
			if final.Status != sms.StatusDelivered {
				reason := ""
				if final.FailureReason != nil {
					reason = ": " + *final.FailureReason
				}
				return &exitError{code: 2, err: fmt.Errorf("message %s %s%s", msg.ID, final.Status, reason)}
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
	fs.BoolVar(&wait, "wait", false, "wait until the message's status is final")
	fs.StringVar(&at, "at", "", "send at this time: RFC 3339, or a duration from now (10m); at most 35 days ahead")
	fs.DurationVar(&validity, "validity", 0, "give up if the message has not reached the carrier within this long (1s to 168h)")
	fs.StringVar(&priority, "priority", "", "lane: high, normal (default) or low")
	fs.DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	return cmd
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseWhen reads an RFC 3339 time, or a duration from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 10m", s)
	}
	return now.Add(d), nil
}
