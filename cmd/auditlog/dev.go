package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sync/errgroup"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/ingest"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/chserver"
	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/gcpace"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/schemas"
)

func devCommand() cli.Command {
	return cli.Command{
		Name:    "dev",
		Summary: "run everything in one process: local ClickHouse, embedded Kafka, ingester, API, sample data",
		Run:     runDev,
	}
}

// devTenants are the sample tenants the seed spreads events over.
var devTenants = []string{"org-acme", "org-globex", "org-initech", "org-umbrella"}

// devConfig holds the flags of dev.
type devConfig struct {
	dataDir        string
	clickhouseAddr string
	clickhousePort int
	kafkaPort      int
	seedEvents     int
}

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	dc := devConfig{dataDir: ".data", clickhousePort: 19000, kafkaPort: 19092, seedEvents: 3000}
	fs.StringVar(&dc.dataDir, "data-dir", dc.dataDir, "`directory` for the local ClickHouse data, the embedded Kafka log and the tokens file")
	fs.StringVar(&dc.clickhouseAddr, "clickhouse-addr", dc.clickhouseAddr, "use the ClickHouse at this native `host:port` instead of starting one")
	fs.IntVar(&dc.clickhousePort, "clickhouse-port", dc.clickhousePort, "native `port` of the local ClickHouse started when --clickhouse-addr is empty")
	fs.IntVar(&dc.kafkaPort, "kafka-port", dc.kafkaPort, "`port` of the embedded Kafka broker (for auditctl emit --kafka-brokers)")
	fs.IntVar(&dc.seedEvents, "seed-events", dc.seedEvents, "sample events emitted through Kafka when the database holds fewer")
	api := defaultAPIConfig()
	api.server.GRPCAddr, api.server.HTTPAddr = "127.0.0.1:9090", "127.0.0.1:8080"
	api.registerFlags(fs, false)
	fs.Usage = config.Usage(fs, "auditlog dev [flags]",
		"Runs the whole service in one process for development: starts a local ClickHouse (Debian's clickhouse-server, data under --data-dir) unless --clickhouse-addr is given, an embedded Kafka broker (kfake), migrates, runs the ingester and the API, seeds sample events across several tenants through Kafka, and prints the addresses, an admin token and example commands. Ctrl-C stops everything in order.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected arguments %q", fs.Args())
	}
	log := slog.Default()
	gcpace.Set(gcpace.Serve)
	if err := os.MkdirAll(dc.dataDir, 0o755); err != nil {
		return err
	}

	// ClickHouse: a local server under the data directory, stopped last.
	ch := store.DefaultConfig()
	ch.Addr = dc.clickhouseAddr
	if ch.Addr == "" {
		log.Info("starting ClickHouse", "dir", filepath.Join(dc.dataDir, "clickhouse"), "port", dc.clickhousePort)
		srv, err := chserver.Start(chserver.Options{Dir: filepath.Join(dc.dataDir, "clickhouse"), TCPPort: dc.clickhousePort})
		if err != nil {
			return fmt.Errorf("local ClickHouse: %w", err)
		}
		defer func() {
			log.Info("stopping ClickHouse")
			if err := srv.Stop(); err != nil {
				log.Error("stopping ClickHouse", "err", err)
			}
		}()
		ch.Addr = srv.TCPAddr
	}
	admin := ch
	admin.Database = "default"
	adminConn, err := store.Open(ctx, admin)
	if err != nil {
		return err
	}
	_, err = store.Migrate(ctx, adminConn, store.MigrateOptions{Database: ch.Database})
	adminConn.Close()
	if err != nil {
		return err
	}
	conn, err := store.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()

	// Kafka: kfake with its log under the data directory, so a restart
	// keeps topics and committed offsets.
	topic := "audit.events"
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(dc.kafkaPort),
		kfake.DataDir(filepath.Join(dc.dataDir, "kafka")),
		kfake.SeedTopics(3, topic, topic+".dlq"),
	)
	if err != nil {
		return fmt.Errorf("embedded Kafka on port %d: %w", dc.kafkaPort, err)
	}
	defer func() {
		log.Info("stopping embedded Kafka")
		cluster.Close()
	}()
	brokers := cluster.ListenAddrs()

	// Tokens: a fresh admin token and one per tenant at every start.
	tokens, err := writeDevTokens(filepath.Join(dc.dataDir, "tokens.json"))
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ic := ingest.DefaultConfig()
	ic.Kafka.Brokers, ic.Kafka.Topic = brokers, topic
	ic.ClickHouse = ch
	ic.BatchInterval = 200 * time.Millisecond
	ing, err := ingest.New(ctx, ic, ingest.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	api.auth.TokensFile = filepath.Join(dc.dataDir, "tokens.json")
	if api.query.PageTokenKey == "" {
		// Kept in the data directory so SIEM cursors survive a restart.
		if api.query.PageTokenKey, err = devSecret(filepath.Join(dc.dataDir, "page-token-key")); err != nil {
			return err
		}
	}
	api.selfKafka.Brokers, api.selfKafka.Topic = brokers, topic
	if err := api.validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	srv, closeAPI, err := newAPI(ctx, api, conn, reg, log)
	if err != nil {
		return err
	}
	defer closeAPI()

	// The API and the ingester stop together on Ctrl-C; each drains in its
	// own order (API: health, gRPC, HTTP; ingester: flush, commit).
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return ing.Run(gctx) })
	g.Go(func() error {
		if err := seedDev(gctx, conn, brokers, topic, dc.seedEvents, log); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("seeding sample events", "err", err)
		}
		printDevBanner(srv.HTTPAddr(), srv.GRPCAddr(), brokers, tokens, dc)
		return nil
	})
	return g.Wait()
}

// writeDevTokens writes a tokens file with an admin token and one token per
// sample tenant, and returns the plaintext tokens by name.
func writeDevTokens(path string) (map[string]string, error) {
	type entry struct {
		Name   string   `json:"name"`
		SHA256 string   `json:"sha256"`
		Scopes []string `json:"scopes"`
	}
	plain := map[string]string{}
	var entries []entry
	add := func(name string, scopes ...string) {
		raw := make([]byte, 24)
		_, _ = rand.Read(raw)
		tok := "dev_" + hex.EncodeToString(raw)
		plain[name] = tok
		entries = append(entries, entry{Name: name, SHA256: auth.HashToken(tok), Scopes: scopes})
	}
	add("dev-admin", auth.AllScopes)
	for _, tenant := range devTenants {
		add("dev-"+tenant, tenant)
	}
	data, err := json.MarshalIndent(map[string]any{"tokens": entries}, "", "  ")
	if err != nil {
		return nil, err
	}
	return plain, os.WriteFile(path, data, 0o600)
}

// devSecret returns the secret kept in path, creating it on first use.
func devSecret(path string) (string, error) {
	if data, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(data))) >= 16 {
		return strings.TrimSpace(string(data)), nil
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := hex.EncodeToString(raw)
	return secret, os.WriteFile(path, []byte(secret+"\n"), 0o600)
}

// seedDev emits sample events of every action across the sample tenants,
// through Kafka like any product component, when the database holds fewer
// than n events, and waits until the ingester stored them.
func seedDev(ctx context.Context, conn driver.Conn, brokers []string, topic string, n int, log *slog.Logger) error {
	count := func() (uint64, error) {
		var c uint64
		err := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM events").Scan(&c)
		return c, err
	}
	have, err := count()
	if err != nil || have >= uint64(n) {
		return err
	}
	cfg := emitter.DefaultConfig()
	cfg.Brokers, cfg.Topic, cfg.Schemas, cfg.Logger = brokers, topic, schemas.Embedded(), log
	cfg.Async = true
	em, err := emitter.New(cfg)
	if err != nil {
		return err
	}
	var actions []string
	for _, s := range schemas.Embedded().List() {
		if !strings.HasPrefix(s.Action, "audit_log.") {
			actions = append(actions, s.Action)
		}
	}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	now := time.Now().UTC()
	want := uint64(n) - have
	log.Info("seeding sample events through Kafka", "events", want, "tenants", len(devTenants))
	for i := uint64(0); i < want; i++ {
		action := actions[mrand.IntN(len(actions))]
		at := now.Add(-time.Duration(mrand.Int64N(int64(30 * 24 * time.Hour))))
		var ev map[string]any
		if err := json.Unmarshal(schemas.SampleEvent(action, uuid.Must(uuid.NewV7()).String(), at), &ev); err != nil {
			return err
		}
		tenant := devTenants[mrand.IntN(len(devTenants))]
		user := users[mrand.IntN(len(users))]
		ev["scope"] = map[string]any{"id": tenant, "type": "organization", "name": strings.TrimPrefix(tenant, "org-")}
		ev["actor"] = map[string]any{"id": "user-" + user, "type": "user", "name": user}
		ev["success"] = mrand.IntN(10) != 0
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if _, err := em.EmitJSON(ctx, data); err != nil {
			em.Close()
			return err
		}
	}
	if err := em.Close(); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		have, err = count()
		if err != nil || have >= uint64(n) {
			log.Info("sample events stored", "events", have)
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sample events stored after 2 minutes", have, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// printDevBanner tells the developer where everything is and how to use it.
func printDevBanner(httpAddr, grpcAddr string, brokers []string, tokens map[string]string, dc devConfig) {
	admin := tokens["dev-admin"]
	tenant := devTenants[0]
	fmt.Printf(`
auditlog dev is running.

  REST      http://%[1]s   (OpenAPI: http://%[1]s/openapi.json)
  gRPC      %[2]s          (reflection on)
  Kafka     %[3]s   topic audit.events
  data      %[4]s

  admin token (every tenant):   %[5]s
  tenant token (%[6]s only): %[7]s
  (all tokens are in %[4]s/tokens.json as hashes; new ones at every start)

Try:
  curl -s -H 'Authorization: Bearer %[5]s' 'http://%[1]s/v1/events?page_size=5&q=action:workflow.job.*+success:false'
  curl -s -H 'Authorization: Bearer %[5]s' 'http://%[1]s/v1/events:export?scope_id=%[6]s' -o audit.csv
  go run ./cmd/auditctl tail -f --addr %[2]s --insecure --token %[5]s
  grpcurl -plaintext -H 'authorization: Bearer %[5]s' -d '{"follow": true}' %[2]s audit.v1.AuditService/StreamEvents

Ctrl-C stops everything.
`, httpAddr, grpcAddr, strings.Join(brokers, ","), dc.dataDir, admin, tenant, tokens["dev-"+tenant])
}
