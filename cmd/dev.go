package cmd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/smsctl/smsctl/config"
	"github.com/smsctl/smsctl/migrations"
	"github.com/smsctl/smsctl/platform"
	"github.com/smsctl/smsctl/processor"
	"github.com/smsctl/smsctl/sms/postgres"
	"github.com/smsctl/smsctl/sms/server"
)

// DevDatabaseURL is what scripts/postgres.sh creates for development.
const DevDatabaseURL = "postgres://smsctl:smsctl@127.0.0.1:5432/smsctl?sslmode=disable"

func newDev() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process for development: migrations, API, processor, and a Kafka broker",
		Long: `dev applies the migrations, starts an in-process Kafka-protocol broker
(franz-go's kfake) unless --kafka-brokers / SMS_KAFKA_BROKERS is set, runs the
API and the processor, creates a development API key, and prints how to send
a first message. Stop it with Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: runDev,
	}
	// Both roles' flags, from the same code as serve's; where both have a
	// setting (database-url, shutdown-timeout...) the API's comes first.
	addAPIFlags(cmd)
	addProcessorFlags(cmd)
	fs := cmd.Flags()
	_ = fs.MarkHidden("api-url") // dev points its processor at its own API
	_ = fs.Set("database-url", DevDatabaseURL)
	fs.Lookup("database-url").DefValue = DevDatabaseURL
	_ = fs.Set("log-format", "console")
	fs.Lookup("log-format").DefValue = "console"
	for _, name := range []string{"database-url", "log-format"} {
		fs.Lookup(name).Changed = false
	}
	return cmd
}

func runDev(cmd *cobra.Command, _ []string) error {
	ctx := cmd.Context()
	// Start from the defaults: dev has no flags for every processor setting.
	api, proc := config.DefaultAPI(), config.DefaultProcessor()
	if err := config.Load(cmd.Flags(), &api); err != nil {
		return err
	}
	if err := config.Load(cmd.Flags(), &proc); err != nil {
		return err
	}
	if api.InternalToken == "" {
		api.InternalToken = randomToken()
	}
	if api.AdminToken == "" {
		api.AdminToken = randomToken()
	}
	// Webhook receivers in development listen on this machine.
	api.Webhooks.AllowPrivate = true
	log, err := newLogger(cmd, api.Log)
	if err != nil {
		return err
	}
	if len(api.Brokers) == 0 {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(int(api.Partitions)),
			kfake.SeedTopics(api.Partitions, api.Topic, api.DLQTopic))
		if err != nil {
			return fmt.Errorf("start in-process kafka: %w", err)
		}
		defer cluster.Close()
		api.Brokers = cluster.ListenAddrs()
		log.Info().Strs("brokers", api.Brokers).Msg("in-process Kafka broker (kfake) started")
	}
	if err := api.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}

	db, err := platform.OpenPostgres(ctx, api.DatabaseURL, 4)
	if err != nil {
		return fmt.Errorf("%w\n(run `make dev`, or scripts/postgres.sh, to get a local PostgreSQL)", err)
	}
	defer db.Close()
	if _, err := migrations.Up(ctx, db.DB, migrations.SMS); err != nil {
		return err
	}
	// The processor's schema goes where SMS_PROCESSOR_DATABASE_URL says,
	// as with serve processor; by default the same database.
	if proc.DatabaseURL == "" {
		proc.DatabaseURL = api.DatabaseURL
	}
	if err := migrateProcessor(ctx, db, proc.DatabaseURL, api.DatabaseURL); err != nil {
		return err
	}

	tp, stopTracing, err := platform.NewTracerProvider(ctx, "smsctl")
	if err != nil {
		return err
	}
	defer flushTraces(stopTracing)
	srv, err := server.New(ctx, api, log, tp)
	if err != nil {
		return err
	}
	proc.Log, proc.Kafka = api.Log, api.Kafka
	proc.InternalToken = api.InternalToken
	proc.APIURL = "http://" + reachable(srv.InternalAddr())
	if err := proc.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	svc, err := processor.NewService(ctx, proc, log, tp)
	if err != nil {
		return err
	}
	full, _, err := postgres.NewKeys(db, 0).CreateKey(ctx, "dev")
	if err != nil {
		return err
	}
	// The example sender is the dev account's number, so that replies to
	// it (the simulator's, with SMS_SIM_REPLY_RATE) are the account's.
	if _, _, err := postgres.NewInbound(postgres.NewStore(db), nil).AddNumber(ctx, "dev", devNumber); err != nil {
		log.Warn().Err(err).Str("number", devNumber).Msg("the example number stays another account's")
	}
	apiURL := "http://" + reachable(srv.Addr())
	fmt.Fprintf(cmd.OutOrStdout(), `
smsctl dev is running.
  API:        %[1]s   (docs: %[1]s/docs, metrics: %[1]s/metrics)
  processor:  http://%[2]s/metrics
  API key:    %[3]s
  console:    %[1]s/console   (sign in with the API key, or as operator with %[6]s)
  database:   %[5]s
              (messages and keys persist between runs; set SMS_DATABASE_URL to this for migrate and apikey)

Send a message:
  curl -s -X POST %[1]s/v1/messages -H 'Authorization: Bearer %[3]s' \
       -H 'Content-Type: application/json' \
       -d '{"sender":"+14155550100","recipient":"+14155552671","text":"Hello from smsctl"}'
  SMS_API_URL=%[1]s SMS_API_KEY=%[3]s %[4]s send --from +14155550100 --to +14155552671 --text "Hello" --wait

Have each message's events POSTed, signed, to a local receiver:
  curl -s -X POST %[1]s/v1/webhook-endpoints -H 'Authorization: Bearer %[3]s' \
       -H 'Content-Type: application/json' -d '{"url":"http://127.0.0.1:9000/"}'
  %[4]s webhook listen --addr 127.0.0.1:9000 --secret <the whsec_ secret that answer shows>

Stop with Ctrl-C.
`, apiURL, reachable(svc.Addr()), full, os.Args[0], api.DatabaseURL, api.AdminToken)

	var wg sync.WaitGroup
	var apiErr, procErr error
	wg.Go(func() { apiErr = srv.Run(ctx) })
	wg.Go(func() { procErr = svc.Run(ctx) })
	wg.Wait()
	return errors.Join(apiErr, procErr)
}

// devNumber is the sender of the examples smsctl dev prints.
const devNumber = "+14155550100"

// randomToken is a fresh 32-character hex token.
func randomToken() string {
	buf := make([]byte, 16)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

// reachable turns a listener address like [::]:8080 into one a client can dial.
func reachable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// migrateProcessor applies the processor's migrations on url, reusing db
// when url is the API's database.
func migrateProcessor(ctx context.Context, db *platform.DB, url, apiURL string) error {
	if url != apiURL {
		pdb, err := platform.OpenPostgres(ctx, url, 2)
		if err != nil {
			return fmt.Errorf("processor-database-url: %w", err)
		}
		defer pdb.Close()
		db = pdb
	}
	_, err := migrations.Up(ctx, db.DB, migrations.Processor)
	return err
}
