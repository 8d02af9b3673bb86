package query_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// GetEvent and the stream's first-copy check find events' keys in event_ids
// by id, among the keys of every stored event: they must read the granules
// of those ids, not the table. The service here reads through a connection
// with max_rows_to_read, which ClickHouse enforces as it reads, so a call
// fails if it reads more than a few granules of the 300,000 keys.
func TestIDLookupsReadOnlyTheirGranules(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	const stored, limit = 300_000, 50_000
	storetest.FillEventIDs(t, ch.Conn, stored)
	opts := ch.Options()
	opts.Settings = clickhouse.Settings{"max_rows_to_read": limit}
	limited, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { limited.Close() })
	f := serveQuery(t, ch, limited, nil)
	var events []*event.Event
	for i := range 20 {
		events = append(events, makeEvent(t, "org-a", "workflow.job.start", time.Now().Add(-time.Duration(i)*time.Minute)))
	}
	f.insert(t, events...)

	t.Run("GetEvent", func(t *testing.T) {
		id := events[3].ID.String()
		resp, err := f.client.GetEvent(ctx, &auditv1.GetEventRequest{Id: id})
		if err != nil {
			t.Fatalf("GetEvent among %d stored keys (max_rows_to_read %d): %v", stored, limit, err)
		}
		if got := resp.GetEvent().GetId(); got != id {
			t.Errorf("GetEvent returned %q, want %s", got, id)
		}
	})
	t.Run("StreamEvents", func(t *testing.T) {
		got := f.streamUntil(t, ctx, &auditv1.StreamEventsRequest{}, len(events))
		sameSet(t, "stream", streamIDs(got), eventIDs(events))
	})
}
