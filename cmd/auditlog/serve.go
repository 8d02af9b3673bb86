package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/server"
	"github.com/auditlog/auditlog/internal/store"
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

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	ch := store.DefaultConfig()
	ch.RegisterFlags(fs)
	qc := query.DefaultConfig()
	qc.RegisterFlags(fs)
	ec := export.DefaultConfig()
	ec.RegisterFlags(fs)
	sc := server.DefaultConfig()
	sc.RegisterFlags(fs)
	schemasDir := fs.String("schemas-dir", "", "`directory` of *.json schemas overriding or extending the built-in ones (what ListSchemas shows; use the ingester's)")
	fs.Usage = config.Usage(fs, "auditlog serve [flags]",
		"Serves stored audit events: gRPC audit.v1.AuditService with health and reflection, the REST API on the same paths (GET /v1/events, /v1/events/{id}, /v1/events:stream, /v1/events:export, /v1/schemas), /openapi.json, /healthz, /readyz and /metrics.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected arguments %q", fs.Args())
	}
	if err := ch.Validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	if err := qc.Validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	if err := ec.Validate(); err != nil {
		return cli.UsageError("%v", err)
	}

	// Wire first: connect and validate everything, then serve.
	conn, err := store.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close() // last, after the servers stopped
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// TODO(issue 6): authentication is not wired yet. It plugs in as
	// query.Options.Scopes (auth.FromContext(ctx).AllowedScopes()),
	// server.Config.UnaryInterceptors/StreamInterceptors (Guard) and
	// server.Config.HTTPMiddleware (Guard.HTTPMiddleware), with
	// --tokens-file / --insecure-no-auth. Until then query sees every scope
	// and export (which fails closed without a Principal) sees nothing.
	registry := schemas.Embedded()
	if *schemasDir != "" {
		if registry, err = schemas.Load(*schemasDir); err != nil {
			return fmt.Errorf("--schemas-dir: %w", err)
		}
	}
	svc, err := query.New(conn, qc, query.Options{Registry: reg, Logger: slog.Default(), Schemas: schemaSource{registry}})
	if err != nil {
		return err
	}
	sc.Query = svc
	sc.Registry = reg
	sc.Ready = conn.Ping
	exp, err := export.New(ec, conn, export.Options{Registry: reg, Logger: slog.Default()})
	if err != nil {
		return err
	}
	sc.Exporter = exp
	srv, err := server.New(sc)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
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
