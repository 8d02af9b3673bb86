package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/gcpace"
	"github.com/auditlog/auditlog/internal/selfaudit"
	"github.com/auditlog/auditlog/internal/server"
	"github.com/auditlog/auditlog/internal/store"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
	"github.com/auditlog/auditlog/schemas"
)

func serveCommand() cli.Command {
	return cli.Command{
		Name:    "serve",
		Summary: "serve the query API: gRPC, REST (grpc-gateway), health, metrics, OpenAPI",
		Run:     runServe,
	}
}

// apiConfig is everything the API needs, shared by serve and dev.
type apiConfig struct {
	query     query.Config
	export    export.Config
	server    server.Config
	auth      auth.Config
	selfKafka emitter.Config
	// selfAudit turns the audit of the API's own use on.
	selfAudit  bool
	schemasDir string
}

func defaultAPIConfig() apiConfig {
	return apiConfig{
		query:     query.DefaultConfig(),
		export:    export.DefaultConfig(),
		server:    server.DefaultConfig(),
		auth:      auth.DefaultConfig(),
		selfKafka: emitter.DefaultConfig(),
		selfAudit: true,
	}
}

func (c *apiConfig) registerFlags(fs *flag.FlagSet, withKafka bool) {
	c.query.RegisterFlags(fs)
	c.export.RegisterFlags(fs)
	c.server.RegisterFlags(fs)
	c.auth.RegisterFlags(fs)
	if withKafka {
		c.selfKafka.RegisterFlags(fs)
	}
	fs.BoolVar(&c.selfAudit, "self-audit", c.selfAudit, "emit an audit event to Kafka for each list, export and stream served (actions audit_log.*)")
	fs.StringVar(&c.schemasDir, "schemas-dir", c.schemasDir, "`directory` of *.json schemas overriding or extending the built-in ones (what ListSchemas shows; use the ingester's)")
}

func (c apiConfig) validate() error {
	for _, err := range []error{c.query.Validate(), c.export.Validate(), c.auth.Validate()} {
		if err != nil {
			return err
		}
	}
	return nil
}

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	ch := store.DefaultConfig()
	ch.RegisterFlags(fs)
	api := defaultAPIConfig()
	api.registerFlags(fs, true)
	fs.Usage = config.Usage(fs, "auditlog serve [flags]",
		"Serves stored audit events: gRPC audit.v1.AuditService with health and reflection, the REST API on the same paths (GET /v1/events, /v1/events/{id}, /v1/events:stream, /v1/events:export, /v1/schemas), /openapi.json, /healthz, /readyz and /metrics. Every API call needs `Authorization: Bearer <token>` checked against --tokens-file (reloaded on SIGHUP); each list, export and stream is itself audited through Kafka (--self-audit).")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected arguments %q", fs.Args())
	}
	if err := ch.Validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	if err := api.validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	gcpace.Set(gcpace.Serve)

	// Wire first: connect and validate everything, then serve.
	conn, err := store.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close() // last, after the servers stopped
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	srv, closeAPI, err := newAPI(ctx, api, conn, reg, slog.Default())
	if err != nil {
		return err
	}
	defer closeAPI()
	return srv.Run(ctx)
}

// newAPI wires the query service, export, authentication and self-audit
// into a server ready to Run. closeAPI flushes the self-audit emitter; call
// it after Run returned.
func newAPI(ctx context.Context, c apiConfig, conn driver.Conn, reg *prometheus.Registry, log *slog.Logger) (srv *server.Server, closeAPI func(), err error) {
	registry := schemas.Embedded()
	if c.schemasDir != "" {
		if registry, err = schemas.Load(c.schemasDir); err != nil {
			return nil, nil, fmt.Errorf("--schemas-dir: %w", err)
		}
	}
	guard, err := c.auth.NewGuard(log,
		"/"+auditv1.AuditService_ServiceDesc.ServiceName+"/StreamEvents",
		"/"+auditv1.AuditService_ServiceDesc.ServiceName+"/ExportEvents")
	if err != nil {
		return nil, nil, err
	}
	guard.Tokens().ReloadOnSIGHUP(ctx, log)

	closeAPI = func() {}
	var recorder *selfaudit.Recorder
	if c.selfAudit {
		kc := c.selfKafka
		kc.Async = true
		kc.Schemas = registry
		kc.Logger = log
		kc.Metrics = reg
		em, err := emitter.New(kc)
		if err != nil {
			return nil, nil, fmt.Errorf("self-audit emitter: %w", err)
		}
		recorder = selfaudit.New(em, log)
		closeAPI = func() {
			if err := em.Close(); err != nil {
				log.Error("self-audit emitter close", "err", err)
			}
		}
	}
	defer func() {
		if err != nil {
			closeAPI()
		}
	}()

	svc, err := query.New(conn, c.query, query.Options{Registry: reg, Logger: log, Schemas: schemaSource{registry}, Audit: recorder})
	if err != nil {
		return nil, nil, err
	}
	exp, err := export.New(c.export, conn, export.Options{Registry: reg, Logger: log, Audit: recorder})
	if err != nil {
		return nil, nil, err
	}
	sc := c.server
	sc.Query, sc.Exporter, sc.Guard = svc, exp, guard
	sc.Registry, sc.Ready, sc.Logger = reg, conn.Ping, log
	srv, err = server.New(sc)
	if err != nil {
		return nil, nil, err
	}
	return srv, closeAPI, nil
}

// schemaSource lists the registry's schemas for ListSchemas.
type schemaSource struct{ reg *schemas.Registry }

func (s schemaSource) Schemas() []query.Schema {
	var out []query.Schema
	for _, sch := range s.reg.List() {
		out = append(out, query.Schema{Action: sch.Action, Version: sch.Version, JSON: sch.JSON})
	}
	return out
}
