package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/internal/store"
)

func retentionCommand() cli.Command {
	return cli.Command{
		Name:    "retention",
		Summary: "drop whole months of events older than --older-than",
		Run: func(ctx context.Context, args []string) error {
			return runRetention(ctx, args, os.Stdout)
		},
	}
}

func runRetention(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("retention", flag.ContinueOnError)
	ch := store.DefaultConfig()
	ch.RegisterFlags(fs)
	var olderThan store.Age
	fs.Var(&olderThan, "older-than", "drop months lying entirely before now minus this `age`: days (400d) or a Go duration (9600h); at least 1d")
	cluster := fs.String("cluster", "", "ClickHouse cluster `name` the schema was migrated with: drop on its _local tables ON CLUSTER")
	dryRun := fs.Bool("dry-run", false, "list the partitions that would be dropped and drop nothing")
	fs.Usage = config.Usage(fs, "auditlog retention --older-than AGE [flags]",
		`Drops whole monthly partitions of events, events_by_ingest, event_ids
(by occurred_at) and quarantine (by received_at). A month is dropped only
when it lies entirely before the cutoff (now minus --older-than, in UTC), so
no newer event is ever dropped and up to a month more than asked is kept.
Prints each partition as "table YYYYMM".`)
	if err := config.Parse(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.UsageError("%v", err)
	}
	if fs.NArg() > 0 {
		return cli.UsageError("unexpected argument %q", fs.Arg(0))
	}
	if olderThan == 0 {
		return cli.UsageError("--older-than is required (e.g. --older-than 400d)")
	}
	if time.Duration(olderThan) < store.MinRetention {
		return cli.UsageError("--older-than %s is shorter than the minimum of 1d: a missing unit? (400 days is 400d)", olderThan.String())
	}
	conn, err := store.Open(ctx, ch)
	if err != nil {
		return err
	}
	defer conn.Close()

	cutoff := time.Now().Add(-time.Duration(olderThan)).UTC()
	var parts []string
	if *dryRun {
		parts, err = store.PartitionsOlderThan(ctx, conn, ch.Database, cutoff, *cluster)
	} else {
		parts, err = store.DropPartitionsOlderThan(ctx, conn, ch.Database, cutoff, *cluster)
	}
	verb := "dropped"
	if *dryRun {
		verb = "would drop"
	}
	for _, p := range parts {
		fmt.Fprintf(stdout, "%s %s\n", verb, p)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %d partition(s) of months before %s (cutoff %s)\n", verb, len(parts), cutoff.Format("2006-01"), cutoff.Format(time.RFC3339))
	return nil
}
