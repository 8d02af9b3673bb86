package query_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
	"github.com/auditlog/auditlog/schemas"
)

// GetEvent finds the event's key in event_ids by id, among the keys of every
// stored event: it must read the granules of that id, not the table.
// ClickHouse enforces max_rows_to_read (set on the connection here) as it
// reads, so the call fails if it reads more than a few granules.
func TestGetEventReadsOnlyItsGranules(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	if _, err := store.Migrate(ctx, ch.Conn, store.MigrateOptions{Database: ch.Database}); err != nil {
		t.Fatal(err)
	}
	const stored = 300_000
	batch, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO event_ids (id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank)")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range stored {
		id := uuid.Must(uuid.NewV7())
		if err := batch.Append(store.IDPrefix(id), id, "org", at, at.UnixNano(), uint64(i), at, uint32(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	id := uuid.Must(uuid.NewV7())
	e, err := event.ParseJSON(schemas.SampleEvent("workflow.job.start", id.String(), at))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Insert(ctx, ch.Conn, "events", store.StoredEvent{Event: e, Validated: true}); err != nil {
		t.Fatal(err)
	}

	opts := ch.Options()
	opts.Settings = clickhouse.Settings{"max_rows_to_read": 50_000}
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	svc, err := query.New(conn, query.DefaultConfig(), query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := svc.GetEvent(auth.NewContext(ctx, &auth.Principal{Name: "test", All: true}), &auditv1.GetEventRequest{Id: id.String()})
	if err != nil {
		t.Fatalf("GetEvent among %d stored keys (max_rows_to_read 50,000): %v", stored, err)
	}
	if got := resp.GetEvent().GetId(); got != id.String() {
		t.Errorf("GetEvent returned %q, want %s", got, id)
	}
}
