// Package storetest fills the tables of a migrated test database the way the
// ingester would, for tests of other packages that need a big table (how
// many rows a query reads is a property of the data around it). It lives
// apart from store because store's own tests import testharness, and apart
// from testharness because it needs store's schema.
package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// FillEventIDs inserts n keys of UUIDv7 ids into event_ids, as its
// materialized view would write them for n events: key i has content_hash
// i, scope "org" and occurred_at and ingested_at in March 2026. The keys
// have no rows in events: they only make the table as big as a busy
// deployment's. It returns the ids in the order they were made (the order of
// their id_prefix).
func FillEventIDs(tb testing.TB, conn driver.Conn, n int) []uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO event_ids (id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank)")
	if err != nil {
		tb.Fatalf("filling event_ids: %v", err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
		if err := batch.Append(store.IDPrefix(ids[i]), ids[i], "org", at, at.UnixNano(), uint64(i), at, uint32(1)); err != nil {
			tb.Fatalf("filling event_ids: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		tb.Fatalf("filling event_ids with %d keys: %v", n, err)
	}
	return ids
}

// Migrate creates the schema in a test database, failing the test if it
// cannot.
func Migrate(tb testing.TB, conn driver.Conn, database string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := store.Migrate(ctx, conn, store.MigrateOptions{Database: database}); err != nil {
		tb.Fatalf("migrate %s: %v", database, err)
	}
}
