package main

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// The ingester drops old months on a schedule when asked, while it ingests.
func TestIngestRunsScheduledRetention(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	k := testharness.NewKafka(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	var stored []store.StoredEvent
	for _, at := range []time.Time{time.Now().Add(-500 * 24 * time.Hour), time.Now()} {
		e, err := event.ParseJSON(schemas.SampleEvent("user.logged_in", uuid.NewString(), at))
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, store.StoredEvent{Event: e, Validated: true})
	}
	if err := store.Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- runIngest(runCtx, []string{
			"--kafka-brokers", k.Brokers[0], "--kafka-topic", k.Topic, "--kafka-group", "g-" + uuid.NewString(),
			"--clickhouse-addr", ch.Server().TCPAddr, "--clickhouse-database", ch.Database,
			"--metrics-addr", "", "--retention-older-than", "400d", "--retention-every", "100ms",
		})
	}()
	deadline := time.Now().Add(30 * time.Second)
	for ch.QueryUint64(t, "SELECT count() FROM events") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the old month was not dropped within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ingest after SIGTERM-like cancel: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("ingest did not stop")
	}
}
