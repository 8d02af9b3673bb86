package sqlcheck

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const selectColumns = store.SelectColumns

// fixtureEvents are delivered in two batches; the second redelivers the
// first event, so the tables hold a duplicate for FINAL and LIMIT BY to drop.
func fixtureEvents(t *testing.T) [][]store.StoredEvent {
	t.Helper()
	docs := [][]string{{
		`{"id":"0190d6a1-0000-7000-8000-000000000001","version":1,"action":"workflow.job.start",
		  "actor":{"id":"alice","type":"user","name":"Alice"},"target":{"id":"job-1","type":"job"},
		  "scope":{"id":"org-1","type":"organization","name":"Org One"},
		  "payload":{"name":"build","big":12345678901234567890},"metadata":{"env":"prod","team":"ci"},
		  "occurred_at":"2026-01-02T03:04:05.123456789Z","success":true,"request":{"id":"req-1"}}`,
		`{"id":"` + idLowHighHalf.String() + `","version":2,"action":"workflow.job.finish",
		  "actor":{"id":"alice","type":"user"},"target":{"id":"job-1","type":"job"},
		  "scope":{"id":"org-1","type":"organization"},
		  "occurred_at":"2026-02-10T00:00:00Z","success":false}`,
		`{"id":"` + idHighLowHalf.String() + `","version":1,"action":"context.create",
		  "actor":{"id":"bob","type":"user","name":"Bob"},"target":{"id":"ctx-1","type":"context"},
		  "scope":{"id":"org-1","type":"organization"},"metadata":{"env":"prod"},
		  "occurred_at":"2026-01-02T03:04:05.000000001Z","success":true,"request":{"id":"req-2"}}`,
		`{"id":"0190d6a1-0000-7000-8000-000000000004","version":1,"action":"user.logged_in",
		  "actor":{"id":"zoe","type":"user","name":"Zoë 日本 \"q\""},"target":{"id":"zoe","type":"user"},
		  "scope":{"id":"org-2","type":"organization"},"metadata":{"env":"staging"},
		  "occurred_at":"2026-01-15T12:00:00.5Z","success":true}`,
	}, {
		`{"id":"0190d6a1-0000-7000-8000-000000000005","version":1,"action":"project.env_var.create",
		  "actor":{"id":"carol","type":"user"},"target":{"id":"p-1","type":"project"},
		  "scope":{"id":"org-2","type":"organization"},"payload":{"name":"SECRET"},
		  "occurred_at":"2026-01-01T00:59:59.999999999+01:00","success":true}`,
		`{"id":"0190d6a1-0000-7000-8000-000000000006","version":1,"action":"user.create",
		  "actor":{"id":"system","type":"system"},"target":{"id":"dave","type":"user"},
		  "occurred_at":"2026-03-01T00:00:00Z","success":true}`,
		// A redelivery of the first event.
		`{"id":"0190d6a1-0000-7000-8000-000000000001","version":1,"action":"workflow.job.start",
		  "actor":{"id":"alice","type":"user","name":"Alice"},"target":{"id":"job-1","type":"job"},
		  "scope":{"id":"org-1","type":"organization","name":"Org One"},
		  "payload":{"name":"build","big":12345678901234567890},"metadata":{"env":"prod","team":"ci"},
		  "occurred_at":"2026-01-02T03:04:05.123456789Z","success":true,"request":{"id":"req-1"}}`,
	}}
	var batches [][]store.StoredEvent
	for _, batch := range docs {
		var events []store.StoredEvent
		for _, doc := range batch {
			e, err := event.ParseJSON([]byte(doc))
			if err != nil {
				t.Fatalf("fixture %s: %v", doc, err)
			}
			events = append(events, store.StoredEvent{Event: e, Validated: true})
		}
		batches = append(batches, events)
	}
	return batches
}

// engines is the fixture on both engines: the migrations and
// fixtureEvents on a fresh ClickHouse 18.16 database and in a chDB data
// directory, under the same database name.
type engines struct {
	ch *testharness.ClickHouse
	// conn is a clickhouse-go connection to the 18.16 database whose
	// queries capture records.
	conn    driver.Conn
	capture *Capture
	current *ChDB
	// client is clickhouse-client, which runs query text on 18.16.
	client string
}

// newEngines builds the fixture on both engines, failing the test when
// either rejects a statement.
func newEngines(ctx context.Context, t *testing.T) *engines {
	t.Helper()
	bin, err := FindChDB()
	if err != nil {
		t.Fatal(err)
	}
	current := &ChDB{Bin: bin, DataDir: t.TempDir()}
	ch := testharness.NewClickHouse(t)
	capture := &Capture{}
	opts := ch.Options()
	opts.Logger = capture.Logger()
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	// The schema, statement by statement, on both engines.
	ddl := store.DDL(store.MigrateOptions{Database: ch.Database})
	for i, stmt := range ddl {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("ClickHouse 18.16 rejects DDL statement %d: %v\n%s", i, err, stmt)
		}
	}
	results, err := current.Run("JSONCompact", ddl...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Errorf("ClickHouse %s rejects DDL statement %d: %v\n%s", ChDBVersion, i, r.Err, ddl[i])
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The rows: on 18.16 through the ingester's batch path; on chDB as
	// INSERT ... SELECT of the same values bound into text by clickhouse-go.
	var inserts []string
	for _, batch := range fixtureEvents(t) {
		if err := store.Insert(ctx, conn, "events", batch...); err != nil {
			t.Fatal(err)
		}
		var selects []string
		for _, e := range batch {
			args := store.InsertArgs(e)
			selects = append(selects, boundText(ctx, t, conn, capture, selectOf(len(args)), args...))
		}
		inserts = append(inserts, "INSERT INTO "+ch.Database+".events ("+store.EventColumns+")\n"+strings.Join(selects, "\nUNION ALL\n"))
	}
	results, err = current.Run("JSONCompact", inserts...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Err != nil {
			t.Fatalf("ClickHouse %s rejects insert %d: %v\n%.2000s", ChDBVersion, i, r.Err, inserts[i])
		}
	}
	return &engines{ch: ch, conn: conn, capture: capture, current: current, client: testharness.ClickHouseClientPath(t)}
}

// runOld runs query text on 18.16 through clickhouse-client and returns its
// JSONCompact result.
func (e *engines) runOld(ctx context.Context, text string) (*Table, error) {
	args := append(e.ch.ClientArgs(), "--format", "JSONCompact", "--query", text)
	out, err := exec.CommandContext(ctx, e.client, args...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("clickhouse-client on 18.16: %v\n%s", err, out)
	}
	return ParseTable(out)
}

// runCurrent runs query texts on chDB in the fixture's database, one
// Result per text.
func (e *engines) runCurrent(t *testing.T, texts []string) []Result {
	t.Helper()
	results, err := e.current.Run("JSONCompact", append([]string{"USE " + e.ch.Database}, texts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Err != nil {
		t.Fatalf("chDB: USE %s: %v", e.ch.Database, results[0].Err)
	}
	return results[1:]
}

// TestCurrentClickHouseAgrees runs the migrations and every query shape on
// ClickHouse 18.16 and on current ClickHouse (chDB) and compares the rows.
func TestCurrentClickHouseAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ClickHouse 26.x through chDB (a 560 MB library); skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e := newEngines(ctx, t)

	// Every shape: run through clickhouse-go on 18.16 (as the service
	// does), then the exact text it sent on both engines as JSONCompact.
	type sent struct {
		shape Shape
		text  string
		old   *Table
	}
	var all []sent
	var texts []string
	for _, s := range shapes {
		text := boundText(ctx, t, e.conn, e.capture, s.SQL, s.Args...)
		if text == "" {
			continue // boundText reported the failure
		}
		old, err := e.runOld(ctx, text)
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		all = append(all, sent{s, text, old})
		texts = append(texts, text)
	}
	results := e.runCurrent(t, texts)
	for i, s := range all {
		r := results[i]
		if r.Err != nil {
			t.Errorf("%s: ClickHouse %s rejects the query 18.16 ran:\n%s\n%v", s.shape.Name, ChDBVersion, s.text, r.Err)
			continue
		}
		cur, err := ParseTable(r.Output)
		if err != nil {
			t.Errorf("%s: chDB: %v", s.shape.Name, err)
			continue
		}
		if d := Diff(s.old, cur, "18.16", ChDBVersion); d != "" {
			t.Errorf("%s: the engines disagree on\n%s\n%s", s.shape.Name, s.text, d)
			continue
		}
		if len(cur.Data) == 0 && !s.shape.AllowEmpty {
			t.Errorf("%s: no rows on either engine; a shape must select something (or set AllowEmpty)\n%s", s.shape.Name, s.text)
			continue
		}
		t.Logf("%s: %d rows agree", s.shape.Name, len(cur.Data))
	}
}

// selectOf returns "SELECT ?, ?, ..." with n placeholders.
func selectOf(n int) string {
	return "SELECT " + strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// boundText runs query on 18.16 through clickhouse-go, reads every row (so
// a failure mid-result counts), and returns the text the driver sent. It
// reports a failure and returns "" when 18.16 rejects the query.
func boundText(ctx context.Context, t *testing.T, conn driver.Conn, capture *Capture, query string, args ...any) string {
	t.Helper()
	rows, err := conn.Query(ctx, query, args...)
	if err == nil {
		for rows.Next() {
		}
		err = rows.Err()
		rows.Close()
	}
	if err != nil {
		t.Errorf("ClickHouse 18.16 rejects\n%s\nsent as\n%s\n%v", query, capture.Last(), err)
		return ""
	}
	return capture.Last()
}

func TestChDBRunReportsEachStatement(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chDB; skipped with -short")
	}
	bin, err := FindChDB()
	if err != nil {
		t.Fatal(err)
	}
	c := &ChDB{Bin: bin, DataDir: t.TempDir()}
	results, err := c.Run("JSONCompact",
		"CREATE TABLE t (a UInt32, s String) ENGINE = MergeTree ORDER BY a",
		"INSERT INTO t VALUES (1, 'x;\ny'), (2, '')",
		"SELECT no_such_column FROM t",
		"SELECT a, s FROM t ORDER BY a")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if results[i].Err != nil {
			t.Fatalf("statement %d: %v", i, results[i].Err)
		}
	}
	if results[2].Err == nil || !strings.Contains(results[2].Err.Error(), "no_such_column") {
		t.Errorf("a bad column: got error %v, want one naming no_such_column", results[2].Err)
	}
	// A new process on the same directory still sees the table.
	again, err := c.Run("JSONCompact", "SELECT a, s FROM t ORDER BY a")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Result{results[3], again[0]} {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		tab, err := ParseTable(r.Output)
		if err != nil {
			t.Fatal(err)
		}
		if got := compactRow(tab.Data[0]) + " " + compactRow(tab.Data[1]); got != `[1,"x;\ny"] [2,""]` {
			t.Errorf("rows = %s", got)
		}
	}
}

func TestFindChDBSaysHowToSetUp(t *testing.T) {
	t.Setenv("AUDITLOG_CHDB_DIR", t.TempDir())
	_, err := FindChDB()
	if err == nil || !strings.Contains(err.Error(), "scripts/chdb/setup.sh") {
		t.Fatalf("FindChDB in an empty directory: %v; want an error naming scripts/chdb/setup.sh", err)
	}
}

func TestCaptureRecordsBoundText(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	capture := &Capture{}
	opts := ch.Options()
	opts.Logger = capture.Logger()
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got string
	if err := conn.QueryRow(t.Context(), "SELECT ?", "it's").Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := `SELECT 'it\'s'`; capture.Last() != want {
		t.Fatalf("captured %q, want %q", capture.Last(), want)
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	a, _ := ParseTable([]byte(`{"meta":[{"name":"x","type":"UInt8"}],"data":[[1],[2]]}`))
	b, _ := ParseTable([]byte(`{"meta":[{"name":"x","type":"UInt8"}],"data":[[1], [3]]}`))
	c, _ := ParseTable([]byte(`{"meta":[{"name":"x","type":"Bool"}],"data":[[1],[2]]}`))
	if d := Diff(a, a, "a", "a"); d != "" {
		t.Errorf("a table differs from itself: %s", d)
	}
	if d := Diff(a, b, "a", "b"); !strings.Contains(d, "row 1 differs") {
		t.Errorf("Diff missed a changed value: %q", d)
	}
	if d := Diff(a, c, "a", "c"); !strings.Contains(d, "columns differ") {
		t.Errorf("Diff missed a changed type: %q", d)
	}
}

// The settings the ingester sends with its inserts are known to both
// engines: an unknown one would fail every insert.
func TestInsertSettingsAreKnown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs chDB; skipped with -short")
	}
	bin, err := FindChDB()
	if err != nil {
		t.Fatal(err)
	}
	current := &ChDB{Bin: bin, DataDir: t.TempDir()}
	ch := testharness.NewClickHouse(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for name, value := range store.InsertSettings() {
		set := fmt.Sprintf("SET %s = %v", name, value)
		results, err := current.Run("JSONCompact", set, "SELECT toString(getSetting('"+name+"'))")
		if err != nil {
			t.Fatal(err)
		}
		if results[0].Err != nil || results[1].Err != nil {
			t.Errorf("ClickHouse %s: %s: %v %v", ChDBVersion, set, results[0].Err, results[1].Err)
		}
		var got uint8
		if err := ch.Conn.QueryRow(ctx, "SELECT toUInt8(value) FROM system.settings WHERE name = ?", name).Scan(&got); err != nil {
			t.Errorf("ClickHouse 18.16: setting %s: %v", name, err)
		}
	}
	// 18.16 takes them with a query.
	var one uint8
	if err := ch.Conn.QueryRow(store.InsertContext(ctx), "SELECT toUInt8(1)").Scan(&one); err != nil {
		t.Errorf("ClickHouse 18.16: a query with the insert settings: %v", err)
	}
}
