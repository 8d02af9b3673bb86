package ingest

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
)

// The lookup of a batch's stored ids must read the part of event_ids where
// those ids lie, not the table: it runs for every batch, and the table holds
// every event of the retention period. ClickHouse enforces max_rows_to_read
// as it reads, so the lookup fails if it reads more than a few granules.
func TestStoredIDLookupReadsOnlyItsGranules(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	// 300,000 stored keys of UUIDv7 ids, as the ingester's view writes them.
	const stored = 300_000
	ids := storetest.FillEventIDs(t, ch.Conn, stored)

	// A batch: the last 1,000 stored and 1,000 new ones.
	lookup := append([]uuid.UUID(nil), ids[stored-1000:]...)
	for range 1000 {
		lookup = append(lookup, uuid.Must(uuid.NewV7()))
	}
	in := &Ingester{conn: ch.Conn, cfg: DefaultConfig()}
	limited := clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_rows_to_read": 50_000}))
	found, err := in.storedHashes(limited, lookup)
	if err != nil {
		t.Fatalf("lookup of 2,000 ids in %d stored (max_rows_to_read 50,000): %v", stored, err)
	}
	if len(found) != 1000 {
		t.Errorf("found %d stored ids, want 1000", len(found))
	}
	for i, id := range ids[stored-1000:] {
		if h, ok := found[id]; !ok || h != uint64(stored-1000+i) {
			t.Fatalf("%s: found hash %d (present %v), want %d", id, h, ok, stored-1000+i)
		}
	}
}
