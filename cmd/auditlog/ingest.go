package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/auditlog/auditlog/ingest"
	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/gcpace"
	"github.com/auditlog/auditlog/internal/store"
)

func ingestCommand() cli.Command {
	return cli.Command{
		Name:    "ingest",
		Summary: "consume audit events from Kafka into ClickHouse",
		Run:     runIngest,
	}
}

func runIngest(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	cfg := ingest.DefaultConfig()
	cfg.RegisterFlags(fs)
	metricsAddr := fs.String("metrics-addr", ":9100", "`host:port` serving Prometheus /metrics; empty disables it")
	logLevel := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	var retentionAge store.Age
	fs.Var(&retentionAge, "retention-older-than", "also drop, on a schedule, the months of events lying entirely before now minus this `age` (400d); empty: no retention here (see auditlog retention)")
	retentionEvery := fs.Duration("retention-every", 6*time.Hour, "how often the scheduled retention runs")
	retentionCluster := fs.String("retention-cluster", "", "ClickHouse cluster `name` for the scheduled retention's DROP PARTITION ... ON CLUSTER")
	pprofOn := fs.Bool("pprof", false, "also serve Go's profiler under /debug/pprof/ on --metrics-addr (keep that address private)")
	memLimit := fs.Int("memory-limit-mib", 220, "soft limit of the Go heap in MiB, so the garbage collector works harder instead of growing past it (0: none; GOMEMLIMIT, when set, wins); with it, GOGC defaults to 400")
	fs.Usage = config.Usage(fs, "auditlog ingest [flags]",
		`Consumes audit events from the Kafka topic as a member of the consumer group,
validates and deduplicates them, stores them in ClickHouse and commits the
offsets only after ClickHouse acknowledged the rows. Rejected messages go to the
quarantine table and the DLQ topic with a reason. On SIGTERM or SIGINT it stores
and commits the batch in hand and exits 0. The ClickHouse schema must exist
(auditlog migrate).`)
	if err := config.Parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return cli.UsageError("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	if err := cfg.Validate(); err != nil {
		return cli.UsageError("%v", err)
	}
	if age := time.Duration(retentionAge); age != 0 && age < store.MinRetention {
		return cli.UsageError("--retention-older-than %s is shorter than the minimum of 1d: a missing unit? (400 days is 400d)", retentionAge.String())
	}
	if *retentionEvery <= 0 {
		return cli.UsageError("--retention-every must be positive")
	}
	// The batch and the queue bound the live data; the limit keeps the
	// heap's garbage from doubling the footprint on top of it, and paces
	// the collector (see gcpace).
	if gcpace.SetMemoryLimit(*memLimit) {
		gcpace.Set(gcpace.Ingest)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	in, err := ingest.New(ctx, cfg, ingest.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}

	var srv *http.Server
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		if *pprofOn {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		}
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		log.Info("serving metrics", "addr", ln.Addr().String())
	}

	if age := time.Duration(retentionAge); age != 0 {
		conn, err := store.Open(ctx, cfg.ClickHouse)
		if err != nil {
			return err
		}
		defer conn.Close()
		retentionDone := make(chan struct{})
		defer func() { <-retentionDone }()
		go func() {
			defer close(retentionDone)
			if err := store.RunRetention(ctx, conn, cfg.ClickHouse.Database, *retentionCluster, age, *retentionEvery, log); err != nil {
				log.Error("scheduled retention stopped", "err", err)
			}
		}()
	}

	log.Info("ingesting", "brokers", cfg.Kafka.Brokers.String(), "topic", cfg.Kafka.Topic, "group", cfg.Group,
		"clickhouse", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database)
	runErr := in.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}
	if runErr == nil {
		log.Info("stopped cleanly")
	}
	return runErr
}
