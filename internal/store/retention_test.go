package store

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// retentionFixture stores events in three months (Nov 2025, Dec 2025,
// Jan 2026; the December one a nanosecond before January) and quarantined
// messages in two, and returns the ids by month.
func retentionFixture(t *testing.T) (*testharness.ClickHouse, map[string][]string) {
	t.Helper()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database}); err != nil {
		t.Fatal(err)
	}
	times := map[string][]time.Time{
		"202511": {time.Date(2025, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 11, 30, 12, 0, 0, 0, time.UTC)},
		"202512": {time.Date(2025, 12, 31, 23, 59, 59, 999999999, time.UTC)},
		"202601": {time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 20, 8, 0, 0, 0, time.UTC)},
	}
	ids := map[string][]string{}
	var stored []StoredEvent
	for month, ts := range times {
		for _, at := range ts {
			id := uuid.Must(uuid.NewV7()).String()
			e, err := event.ParseJSON(schemas.SampleEvent("workflow.job.finish", id, at))
			if err != nil {
				t.Fatal(err)
			}
			stored = append(stored, StoredEvent{Event: e, Validated: true})
			ids[month] = append(ids[month], id)
		}
	}
	if err := Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
	q, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO quarantine (received_at, topic, partition, offset, key, raw, reason, event_id)")
	if err != nil {
		t.Fatal(err)
	}
	for i, at := range []time.Time{time.Date(2025, 11, 5, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)} {
		if err := q.Append(at, "audit.events", int32(0), int64(i), "", "{", "malformed JSON", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Send(); err != nil {
		t.Fatal(err)
	}
	return ch, ids
}

func storedIDs(t *testing.T, ch *testharness.ClickHouse, table string) []string {
	t.Helper()
	rows, err := ch.Conn.Query(context.Background(), "SELECT toString(id) FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids) // ClickHouse orders UUIDs by their halves, not as text
	return ids
}

func sorted(ids ...[]string) []string {
	var out []string
	for _, s := range ids {
		out = append(out, s...)
	}
	slices.Sort(out)
	return out
}

func TestDropPartitionsOlderThanKeepsTheCutoffMonth(t *testing.T) {
	t.Parallel()
	ch, ids := retentionFixture(t)
	ctx := context.Background()
	// Mid-January: November and December lie entirely before it; January
	// holds an event older than the cutoff (Jan 1) and one newer (Jan 20),
	// so it is kept whole.
	cutoff := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	want := []string{
		"events 202511", "events 202512",
		"events_by_ingest 202511", "events_by_ingest 202512",
		"event_ids 202511", "event_ids 202512",
		"quarantine 202511",
	}

	listed, err := PartitionsOlderThan(ctx, ch.Conn, ch.Database, cutoff, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, want) {
		t.Fatalf("dry run lists\n%v\nwant\n%v", listed, want)
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM events"); n != 5 {
		t.Fatalf("the dry run changed events: %d rows, want 5", n)
	}

	dropped, err := DropPartitionsOlderThan(ctx, ch.Conn, ch.Database, cutoff, "")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dropped, want) {
		t.Fatalf("dropped\n%v\nwant\n%v", dropped, want)
	}
	for _, table := range []string{"events", "events_by_ingest", "event_ids"} {
		if got, want := storedIDs(t, ch, table), sorted(ids["202601"]); !slices.Equal(got, want) {
			t.Errorf("%s holds %v, want exactly January's %v", table, got, want)
		}
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM quarantine WHERE toYYYYMM(received_at) = 202601"); n != 1 {
		t.Errorf("quarantine lost January: %d rows", n)
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM quarantine"); n != 1 {
		t.Errorf("quarantine holds %d rows, want 1", n)
	}

	// Again: nothing left to drop.
	again, err := DropPartitionsOlderThan(ctx, ch.Conn, ch.Database, cutoff, "")
	if err != nil || len(again) != 0 {
		t.Fatalf("second run dropped %v, %v; want nothing", again, err)
	}
}

func TestDropPartitionsAtAMonthBoundary(t *testing.T) {
	t.Parallel()
	ch, ids := retentionFixture(t)
	// The cutoff is the first instant of January: December's last event, a
	// nanosecond earlier, is older, so December goes; January stays.
	if _, err := DropPartitionsOlderThan(context.Background(), ch.Conn, ch.Database, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), ""); err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, ch, "events"), sorted(ids["202601"]); !slices.Equal(got, want) {
		t.Errorf("events holds %v, want %v", got, want)
	}
	// A nanosecond earlier the cutoff lies in December, which is kept whole
	// (its last event is exactly at the cutoff): only November goes.
	ch2, ids2 := retentionFixture(t)
	if _, err := DropPartitionsOlderThan(context.Background(), ch2.Conn, ch2.Database, time.Date(2025, 12, 31, 23, 59, 59, 999999999, time.UTC), ""); err != nil {
		t.Fatal(err)
	}
	if got, want := storedIDs(t, ch2, "event_ids"), sorted(ids2["202512"], ids2["202601"]); !slices.Equal(got, want) {
		t.Errorf("event_ids holds %v, want December and January %v", got, want)
	}
}

func TestRunRetention(t *testing.T) {
	t.Parallel()
	ch, ids := retentionFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	olderThan := time.Since(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC))
	go func() { done <- RunRetention(ctx, ch.Conn, ch.Database, "", olderThan, time.Hour, slog.Default()) }()
	deadline := time.Now().Add(30 * time.Second)
	for ch.QueryUint64(t, "SELECT count() FROM events_by_ingest") != uint64(len(ids["202601"])) {
		if time.Now().After(deadline) {
			t.Fatal("RunRetention did not drop the old partitions within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunRetention returned %v after cancel, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunRetention did not return after its context was cancelled")
	}
	if err := RunRetention(context.Background(), ch.Conn, ch.Database, "", time.Hour, time.Hour, nil); err == nil || !strings.Contains(err.Error(), "minimum") {
		t.Fatalf("older-than 1h: got %v, want a refusal naming the minimum", err)
	}
}

// The cluster variant cannot run here (no ZooKeeper for ON CLUSTER), but its
// listing query must be valid on 18.16: an unknown cluster is the only
// complaint.
func TestPartitionsOlderThanClusterQueryParses(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	_, err := PartitionsOlderThan(context.Background(), ch.Conn, ch.Database, time.Now(), "no_such_cluster")
	t.Logf("cluster listing on 18.16: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cluster 'no_such_cluster' not found") {
		t.Fatalf("got %v, want an error about the unknown cluster", err)
	}
	if _, err := PartitionsOlderThan(context.Background(), ch.Conn, "bad-name", time.Now(), ""); err == nil {
		t.Fatal("a database name that is not an identifier must be refused")
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"400d": 400 * 24 * time.Hour, "36h": 36 * time.Hour, "1d": 24 * time.Hour, "90m": 90 * time.Minute} {
		got, err := ParseAge(in)
		if err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"400", "1.5d", "d", "-3d", "forever"} {
		if _, err := ParseAge(in); err == nil {
			t.Errorf("ParseAge(%q) accepted", in)
		}
	}
	var a Age
	if err := a.Set("400d"); err != nil || a.String() != "400d" {
		t.Errorf("Age round trip: %v %q", err, a.String())
	}
}
