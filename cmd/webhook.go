package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spf13/cobra"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/smsctl/smsctl/platform"
)

func newWebhook() *cobra.Command {
	root := group(&cobra.Command{Use: "webhook", Short: "Tools for webhook endpoints"})
	var addr, secret string
	var status int
	listen := &cobra.Command{
		Use:   "listen --secret whsec_... [--addr :9000]",
		Short: "Receive webhooks locally: verify each signature and print the event",
		Long: `listen runs a webhook endpoint for development. Each POST is verified as the
Standard Webhooks specification says (webhook-id, webhook-timestamp within 5
minutes, webhook-signature with the endpoint's secret, or either secret during
a rotation) with the specification's own library. A verified event is printed
with its id and answered with --status (204 by default; 500 or 410 show how
smsctl retries, or disables an endpoint); one that does not verify is answered
401 and reported on stderr.

Register it with SMS_WEBHOOK_ALLOW_PRIVATE=true (smsctl dev sets it), e.g.
POST /v1/webhook-endpoints {"url": "http://127.0.0.1:9000/"}, and start listen
with the secret that answer shows.`,
		Example: `  smsctl webhook listen --addr :9000 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				return fmt.Errorf("--secret: want whsec_ followed by the standard base64 the endpoint's creation showed: %w", err)
			}
			if status < 200 || status > 599 {
				return fmt.Errorf("--status: must be an HTTP status from 200 to 599, got %d", status)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "listening on %s; verified events are printed here\n", ln.Addr())
			srv := platform.NewHTTPServer(webhookPrinter(cmd.OutOrStdout(), cmd.ErrOrStderr(), wh, status))
			return platform.Serve(cmd.Context(), srv, ln, 5*time.Second)
		},
	}
	fs := listen.Flags()
	fs.StringVar(&addr, "addr", ":9000", "address to listen on")
	fs.StringVar(&secret, "secret", "", "the endpoint's signing secret, whsec_... (required)")
	fs.IntVar(&status, "status", http.StatusNoContent, "status to answer verified events with")
	_ = listen.MarkFlagRequired("secret")
	root.AddCommand(listen)
	return root
}

// webhookPrinter verifies each request with wh and prints the verified
// ones to out, one block per event: a header line, then the indented body.
func webhookPrinter(out, errOut io.Writer, wh *standardwebhooks.Webhook, status int) http.Handler {
	var mu sync.Mutex // one event printed at a time
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "webhooks are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}
		id := r.Header.Get(standardwebhooks.HeaderWebhookID)
		if err := wh.Verify(body, r.Header); err != nil {
			mu.Lock()
			fmt.Fprintf(errOut, "%s refused webhook-id=%q from %s: %v\n", time.Now().UTC().Format(time.RFC3339), id, r.RemoteAddr, err)
			mu.Unlock()
			reason := "signature does not verify"
			if errors.Is(err, standardwebhooks.ErrMessageTooOld) || errors.Is(err, standardwebhooks.ErrMessageTooNew) {
				reason = "webhook-timestamp is more than 5 minutes off"
			}
			http.Error(w, reason, http.StatusUnauthorized)
			return
		}
		var event struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(body, &event)
		var pretty bytes.Buffer
		if json.Indent(&pretty, body, "", "  ") != nil {
			pretty.Reset()
			pretty.Write(body)
		}
		mu.Lock()
		fmt.Fprintf(out, "%s %s webhook-id=%s\n%s\n", time.Now().UTC().Format(time.RFC3339), event.Type, id, pretty.String())
		mu.Unlock()
		w.WriteHeader(status)
	})
}
