package sqlcheck

import (
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

// Shape is one query as the service sends it: SQL with ? placeholders and the
// arguments it passes to clickhouse-go. Table names may be unqualified (the
// connection's database is the test database on both engines).
type Shape struct {
	// Name says what the query is for, e.g. "list: newest first in a scope".
	Name string
	// SQL is the query text before binding, with no FORMAT clause.
	SQL string
	// Args are bound by clickhouse-go exactly as the service binds them.
	Args []any
	// AllowEmpty accepts an empty result. Without it a shape must return
	// rows on both engines: agreeing on nothing proves little.
	AllowEmpty bool
}

// fixedIDs are events whose UUIDs order differently depending on whether
// UUIDs compare as text or by their halves, to catch an engine that sorts
// them otherwise.
var (
	idLowHighHalf = uuid.MustParse("00000000-0000-0001-0000-000000000000")
	idHighLowHalf = uuid.MustParse("00000000-0000-0000-ffff-ffffffffffff")
)

// shapes are the queries checked on both engines. The query and export
// packages add theirs from files of their own (see doc.go). Rows selected
// without an ORDER BY that fixes their order must not be compared, so every
// shape orders its rows completely.
var shapes = []Shape{
	{
		Name: "list: newest first in a scope, deduplicated with FINAL",
		SQL: `SELECT ` + selectColumns + ` FROM events FINAL
WHERE scope_id = ? ORDER BY occurred_ns DESC, id DESC LIMIT ?`,
		Args: []any{"org-1", 100},
	},
	{
		Name: "list: keyset page after a (occurred_ns, id) cursor, several scopes",
		SQL: `SELECT id, occurred_ns, action FROM events FINAL
WHERE has(?, scope_id) AND (occurred_ns, id) < (?, ?)
ORDER BY occurred_ns DESC, id DESC LIMIT 3`,
		Args: []any{[]string{"org-1", "org-2"}, int64(1767323045000000000), idLowHighHalf},
	},
	{
		// A []string binds as an array literal: "IN (?)" becomes
		// "IN (['a', 'b'])", which 18.16 rejects (type mismatch in IN). A
		// clickhouse.GroupSet binds as a tuple, "IN ('a', 'b')"; has(?, col)
		// with the []string works too.
		Name: "list: scope IN a bound tuple (clickhouse.GroupSet)",
		SQL:  `SELECT id FROM events FINAL WHERE scope_id IN ? ORDER BY id`,
		Args: []any{clickhouse.GroupSet{Value: []any{"org-1", "org-2"}}},
	},
	{
		Name: "list: dedup without FINAL by LIMIT 1 BY id",
		SQL: `SELECT id, action, content_hash FROM events
WHERE scope_id = ? ORDER BY scope_id, occurred_ns, id LIMIT 1 BY id`,
		Args: []any{"org-1"},
	},
	{
		Name: "filter: action prefix, success, actor, time range with time.Time",
		SQL: `SELECT id FROM events FINAL
WHERE startsWith(action, ?) AND success = ? AND actor_id = ?
  AND occurred_at >= ? AND occurred_at < ?
ORDER BY occurred_ns, id`,
		Args: []any{"workflow.job.", true, "alice",
			time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
	},
	{
		Name: "filter: metadata key=value through parallel arrays",
		SQL: `SELECT id FROM events FINAL
WHERE arrayExists((k, v) -> k = ? AND v = ?, metadata_keys, metadata_values)
ORDER BY id`,
		Args: []any{"env", "prod"},
	},
	{
		Name: "filter: version list and request id",
		SQL:  `SELECT id FROM events FINAL WHERE has(?, version) AND request_id != ? ORDER BY id`,
		Args: []any{[]uint32{1, 2}, ""},
	},
	{
		Name: "filter: no scope (only all-scope tokens see these)",
		SQL:  `SELECT id, scope, scope_id FROM events FINAL WHERE scope_id = '' ORDER BY id`,
	},
	{
		Name: "filter: a JSON member of the payload with visitParamExtractString",
		SQL:  `SELECT id, visitParamExtractString(payload, 'name') AS name FROM events FINAL WHERE name != '' ORDER BY id`,
	},
	{
		Name: "get: by id from event_ids, then the row from events",
		SQL: `SELECT e.id, e.action, e.payload FROM events AS e FINAL
WHERE e.scope_id = (SELECT any(scope_id) FROM event_ids FINAL WHERE id_prefix = ? AND id = ?) AND e.id = ?`,
		Args: []any{store.IDPrefix(idHighLowHalf), idHighLowHalf, idHighLowHalf},
	},
	{
		Name: "get: the point lookup of GetEvent",
		SQL:  `SELECT scope_id, occurred_ns FROM event_ids WHERE id_prefix = ? AND id = toUUID(?) LIMIT 1`,
		Args: []any{store.IDPrefix(idLowHighHalf), idLowHighHalf.String()},
	},
	{
		Name: "order: UUIDs sorted on their own, and the id_prefix the view computed",
		SQL:  `SELECT id, id_prefix FROM event_ids FINAL ORDER BY id`,
	},
	{
		Name: "dedup: stored ids of a batch, in the range of their prefixes",
		SQL: `SELECT id, argMax(content_hash, first_rank) FROM event_ids
WHERE id_prefix BETWEEN ? AND ? AND id IN (toUUID(?), toUUID(?)) GROUP BY id ORDER BY id`,
		Args: []any{store.IDPrefix(idHighLowHalf), store.IDPrefix(idLowHighHalf), idHighLowHalf.String(), idLowHighHalf.String()},
	},
	{
		// ingested_at is the server's now() at insert time, so it differs
		// between the engines and between the two fixture batches: the rows
		// are compared in id order, and a redelivery stamped in another
		// second is a second row that FINAL does not collapse (on both
		// engines), hence LIMIT 1 BY id.
		Name: "stream: events_by_ingest after a zero (ingested_at, id) cursor",
		SQL: `SELECT id, action FROM events_by_ingest
WHERE (ingested_at, id) > (?, ?) ORDER BY id LIMIT 1 BY id`,
		Args: []any{time.Unix(0, 0).UTC(), uuid.Nil},
	},
	{
		Name: "export: every column of a scope as the exporter reads it",
		SQL: `SELECT ` + selectColumns + ` FROM events
WHERE scope_id = ? ORDER BY scope_id, occurred_ns, id`,
		Args: []any{"org-2"},
	},
	{
		Name: "retention: rows per monthly partition",
		SQL:  `SELECT toYYYYMM(occurred_at) AS month, count() FROM events GROUP BY month ORDER BY month`,
	},
	// Not (SELECT count() ...) as a column: scalar subqueries are
	// Nullable(UInt64) on 26.x and UInt64 on 18.16, which clickhouse-go
	// scans into different Go types.
	{
		Name: "counts: rows stored, distinct ids",
		SQL:  `SELECT count() AS rows, uniqExact(id) AS ids FROM events`,
	},
	{
		Name: "counts: rows after dedup with FINAL",
		SQL:  `SELECT count() AS rows FROM events FINAL WHERE scope_id != ?`,
		Args: []any{"no-such-scope"},
	},
}
