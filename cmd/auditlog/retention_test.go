package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/cli"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

func TestRetentionCommand(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	// One event 500 days ago, one now.
	old := time.Now().Add(-500 * 24 * time.Hour)
	var stored []store.StoredEvent
	for _, at := range []time.Time{old, time.Now()} {
		e, err := event.ParseJSON(schemas.SampleEvent("user.logged_in", uuid.NewString(), at))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, store.StoredEvent{Event: e, Validated: true})
	}
	if err := store.Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
	oldMonth := old.UTC().Format("200601")
	args := []string{"--clickhouse-addr", ch.Server().TCPAddr, "--clickhouse-database", ch.Database, "--older-than", "400d"}

	var out bytes.Buffer
	if err := runRetention(ctx, append(args, "--dry-run"), &out); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events", "events_by_ingest", "event_ids"} {
		if want := "would drop " + table + " " + oldMonth + "\n"; !strings.Contains(out.String(), want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out.String())
		}
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM events"); n != 2 {
		t.Fatalf("dry run dropped rows: %d left", n)
	}

	out.Reset()
	if err := runRetention(ctx, args, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "dropped 3 partition(s)") {
		t.Errorf("output:\n%s", out.String())
	}
	for _, table := range []string{"events", "events_by_ingest", "event_ids"} {
		if n := ch.QueryUint64(t, "SELECT count() FROM "+table); n != 1 {
			t.Errorf("%s holds %d rows, want the recent one", table, n)
		}
	}

	for _, bad := range [][]string{{}, {"--older-than", "400"}, {"--older-than", "400s"}} {
		if err := runRetention(ctx, bad, &out); !errors.Is(err, cli.ErrUsage) {
			t.Errorf("retention %v: got %v, want a usage error", bad, err)
		}
	}
}
