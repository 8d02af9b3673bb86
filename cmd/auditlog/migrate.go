package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/store"
)

func migrateCommand() cli.Command {
	return cli.Command{
		Name:    "migrate",
		Summary: "create or upgrade the ClickHouse schema (idempotent)",
		Run:     runMigrate,
	}
}

func runMigrate(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	ch := store.DefaultConfig()
	ch.RegisterFlags(fs)
	cluster := fs.String("cluster", "", "ClickHouse cluster `name`: run DDL ON CLUSTER with Replicated and Distributed tables")
	fs.Usage = config.Usage(fs, "auditlog migrate [flags]",
		"Creates the database and tables, applying every migration not yet recorded in schema_migrations. Safe to run again.")
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	// The database may not exist yet: connect to "default" and create it.
	connCfg := ch
	connCfg.Database = "default"
	conn, err := store.Open(ctx, connCfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	applied, err := store.Migrate(ctx, conn, store.MigrateOptions{Database: ch.Database, Cluster: *cluster})
	if err != nil {
		return err
	}
	slog.Info("schema up to date", "database", ch.Database, "applied", fmt.Sprint(applied), "latest", store.LatestVersion())
	return nil
}
