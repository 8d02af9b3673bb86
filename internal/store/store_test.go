package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

func TestMain(m *testing.M) { testharness.Main(m) }

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	applied, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database})
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(migrations) {
		t.Fatalf("first run applied %v, want all %d migrations", applied, len(migrations))
	}
	again, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 0 {
		t.Fatalf("second run applied %v, want nothing", again)
	}
	var n uint64
	if err := ch.Conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name IN ('events', 'event_ids', 'events_by_ingest', 'quarantine', 'schema_migrations')", ch.Database).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 5 {
		t.Fatalf("found %d of the 5 tables", n)
	}
	if n := ch.QueryUint64(t, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name LIKE 'events_by_id%'"); n != 0 {
		t.Errorf("%d tables named events_by_id*, replaced by event_ids in migration 2, dropped in 3", n)
	}
}

// A database made by migration 1 keeps what it stored when migrations 2
// and 3 move the keys from events_by_id to event_ids, and new rows reach
// event_ids with the id prefix Go computes.
func TestEventIDsTakeOverFromEventsByID(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	opts := MigrateOptions{Database: ch.Database}
	if _, err := migrate(ctx, ch.Conn, opts, 1); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	var ids []uuid.UUID
	insert := func(n int) {
		var events []StoredEvent
		for range n {
			id := uuid.Must(uuid.NewV7())
			e, err := event.ParseJSON(schemas.SampleEvent("workflow.job.start", id.String(), at))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			events = append(events, StoredEvent{Event: e, Validated: true})
		}
		if err := Insert(ctx, ch.Conn, "events", events...); err != nil {
			t.Fatal(err)
		}
	}
	insert(5)
	if n := ch.QueryUint64(t, "SELECT count() FROM events_by_id"); n != 5 {
		t.Fatalf("migration 1 stored %d keys in events_by_id, want 5", n)
	}
	applied, err := Migrate(ctx, ch.Conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(applied, []uint32{2, 3}) {
		t.Fatalf("applied %v, want [2 3]", applied)
	}
	insert(3)
	rows, err := ch.Conn.Query(ctx, "SELECT id, id_prefix FROM event_ids")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[uuid.UUID]uint64{}
	for rows.Next() {
		var id uuid.UUID
		var prefix uint64
		if err := rows.Scan(&id, &prefix); err != nil {
			t.Fatal(err)
		}
		got[id] = prefix
	}
	if len(got) != len(ids) {
		t.Errorf("event_ids holds %d ids, want the %d stored before and after the migration", len(got), len(ids))
	}
	for _, id := range ids {
		if p, ok := got[id]; !ok || p != IDPrefix(id) {
			t.Errorf("event_ids: %s has prefix %d (present %v), want %d", id, p, ok, IDPrefix(id))
		}
	}
}

func TestRowRoundTripThroughViews(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database}); err != nil {
		t.Fatal(err)
	}
	in := `{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":1,"action":"workflow.job.start",` +
		`"actor":{"id":"u1","type":"user","name":"Zoë \"z\", the admin"},"target":{"id":"j1","type":"job","n":18446744073709551617},` +
		`"scope":{"id":"org-1","type":"organization","name":"Acme"},"payload":{"big":123456789012345678901234567890,"nested":{"a":[1,2,{"b":null}]}},` +
		`"metadata":{"b":"2","a":"1"},"occurred_at":"2026-03-04T05:06:07.123456789+02:00","success":false,"request":{"id":"r1","ip":"10.0.0.1"}}`
	e, err := event.ParseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var stored []StoredEvent
	stored = append(stored, StoredEvent{Event: e, Validated: true})
	if err := Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events", "events_by_ingest"} {
		rows, err := ch.Conn.Query(ctx, "SELECT "+SelectColumns+" FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		var sc EventScanner
		if !rows.Next() {
			t.Fatalf("%s: no row", table)
		}
		got, err := sc.Scan(rows)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		want, _ := e.MarshalJSON()
		gotJSON, _ := got.MarshalJSON()
		if string(gotJSON) != string(want) {
			t.Errorf("%s: read back\n%s\nwant\n%s", table, gotJSON, want)
		}
		if !strings.Contains(string(gotJSON), `"occurred_at":"2026-03-04T03:06:07.123456789Z"`) {
			t.Errorf("%s: occurred_at not UTC with 9 digits: %s", table, gotJSON)
		}
		var v map[string]any
		if err := json.Unmarshal(gotJSON, &v); err != nil {
			t.Errorf("%s: not JSON: %v", table, err)
		}
	}
	var ingested time.Time
	if err := ch.Conn.QueryRow(ctx, "SELECT ingested_at FROM event_ids WHERE id = ?", e.ID).Scan(&ingested); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(ingested); d < -5*time.Second || d > time.Minute {
		t.Errorf("event_ids.ingested_at = %v, want the server's now()", ingested)
	}
}

func TestRenderCluster(t *testing.T) {
	opts := MigrateOptions{Database: "audit", Cluster: "prod"}
	got := render(migrations[0].Statements[0], opts)
	for _, want := range []string{
		"CREATE TABLE IF NOT EXISTS audit.events_local ON CLUSTER prod",
		"ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/events_local', '{replica}')",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("cluster DDL lacks %q:\n%s", want, got)
		}
	}
	dist := render(migrations[0].Statements[1], opts)
	if !strings.Contains(dist, "ENGINE = Distributed(prod, audit, events_local, cityHash64(id))") {
		t.Errorf("distributed DDL: %s", dist)
	}
	if render(migrations[0].Statements[1], MigrateOptions{Database: "audit"}) != "" {
		t.Error("a single server must get no Distributed table")
	}
}

func TestEventsByIDKeepsTheFirstCopyThroughMerges(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database}); err != nil {
		t.Fatal(err)
	}
	// Two copies of one event, stamped a second or more apart.
	ch.Exec(t, "INSERT INTO event_ids (id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank) "+
		"SELECT 113612486740835630, toUUID('0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55'), 'org', toDateTime(0, 'UTC'), 0, 1, toDateTime(1000, 'UTC'), toUInt32(4294967295 - 1000)")
	ch.Exec(t, "INSERT INTO event_ids (id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank) "+
		"SELECT 113612486740835630, toUUID('0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55'), 'org', toDateTime(0, 'UTC'), 0, 1, toDateTime(2000, 'UTC'), toUInt32(4294967295 - 2000)")
	ch.Exec(t, "OPTIMIZE TABLE event_ids FINAL")
	if n := ch.QueryUint64(t, "SELECT count() FROM event_ids"); n != 1 {
		t.Fatalf("%d rows after OPTIMIZE FINAL, want the copies merged into 1", n)
	}
	if at := ch.QueryUint64(t, "SELECT toUInt64(ingested_at) FROM event_ids"); at != 1000 {
		t.Errorf("merge kept the copy ingested at %d, want the first (1000)", at)
	}
}

func TestRenderEngineParams(t *testing.T) {
	single := render("{engine:ReplacingMergeTree(first_rank):event_ids}", MigrateOptions{Database: "audit"})
	if single != "ReplacingMergeTree(first_rank)" {
		t.Errorf("single: %s", single)
	}
	cluster := render("{engine:ReplacingMergeTree(first_rank):event_ids}", MigrateOptions{Database: "audit", Cluster: "c"})
	if cluster != "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/audit/event_ids_local', '{replica}', first_rank)" {
		t.Errorf("cluster: %s", cluster)
	}
}

// An EventBlock larger than one data block still makes one INSERT, which
// ClickHouse squashes into one part per table: small parts are what makes
// ClickHouse merge again, and an INSERT cut short writes nothing.
func TestEventBlockInsertsOnePart(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, ch.Conn, MigrateOptions{Database: ch.Database}); err != nil {
		t.Fatal(err)
	}
	n := 2*insertBlockRows + 100
	var b EventBlock
	base := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range n {
		e, err := event.ParseJSON(schemas.SampleEvent("workflow.job.start", uuid.NewString(), base.Add(time.Duration(i)*time.Millisecond)))
		if err != nil {
			t.Fatal(err)
		}
		b.Append(StoredEvent{Event: e, Validated: true})
	}
	if err := b.Insert(ctx, ch.Conn, "events"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"events", "event_ids", "events_by_ingest"} {
		var parts, level, rows uint64
		err := ch.Conn.QueryRow(ctx, "SELECT count(), toUInt64(max(level)), sum(rows) FROM system.parts WHERE database = currentDatabase() AND table = ? AND active", table).Scan(&parts, &level, &rows)
		if err != nil {
			t.Fatal(err)
		}
		if parts != 1 || level != 0 || rows != uint64(n) {
			t.Errorf("%s: %d active parts, level %d, %d rows; want the %d rows of one INSERT in one part of level 0 (written whole, not merged)", table, parts, level, rows, n)
		}
	}
}

// The block lists its columns once (ordered); the insert names them with
// EventColumns. The two must agree, name by name: a column out of place
// would store, say, actor_type in actor_id without any error.
func TestEventBlockColumnsAreEventColumns(t *testing.T) {
	t.Parallel()
	var b EventBlock
	var names []string
	for _, c := range b.ordered() {
		names = append(names, c.name)
	}
	if got := strings.Join(names, ", "); got != EventColumns {
		t.Errorf("EventBlock columns:\n %s\nEventColumns:\n %s", got, EventColumns)
	}
	// And every column gets a value per appended event.
	e, err := event.ParseJSON(schemas.SampleEvent("workflow.job.start", uuid.NewString(), time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	b.Append(StoredEvent{Event: e, Validated: true})
	for _, c := range b.ordered() {
		if got := reflect.ValueOf(c.col.slice(0, b.Len())).Len(); got != 1 {
			t.Errorf("column %s holds %d values after one Append, want 1", c.name, got)
		}
	}
	b.Reset()
	for _, c := range b.ordered() {
		if got := reflect.ValueOf(c.col.slice(0, 0)).Cap(); got == 0 {
			t.Errorf("column %s lost its capacity in Reset", c.name)
		}
	}
}

// The metadata rows of a block are cut from one shared slice; each row must
// still be its own event's keys, sorted, with their values, also after the
// slice grew and after a Reset.
func TestEventBlockMetadataRows(t *testing.T) {
	t.Parallel()
	metadata := func(n, seed int) map[string]string {
		md := map[string]string{}
		for i := range n {
			md[fmt.Sprintf("k%02d-%d", (i*7+seed)%n, seed)] = fmt.Sprintf("v%d-%d", i, seed)
		}
		return md
	}
	var b EventBlock
	for round := range 2 {
		var want []map[string]string
		for i := range 40 {
			md := metadata(i%23, round*100+i)
			want = append(want, md)
			b.Append(StoredEvent{Event: &event.Event{ID: uuid.New(), Metadata: md}, ContentHash: 1})
		}
		for i, md := range want {
			keys, values := b.metadataKeys.v[i], b.metadataValues.v[i]
			if len(keys) != len(md) || len(values) != len(md) {
				t.Fatalf("round %d, row %d: %d keys and %d values, want %d", round, i, len(keys), len(values), len(md))
			}
			if !slices.IsSorted(keys) {
				t.Errorf("round %d, row %d: keys not sorted: %v", round, i, keys)
			}
			for j, k := range keys {
				if v, ok := md[k]; !ok || v != values[j] {
					t.Errorf("round %d, row %d: %s = %q, want %q (present %v)", round, i, k, values[j], v, ok)
				}
			}
		}
		b.Reset()
	}
}
