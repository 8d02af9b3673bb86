package store

import (
	"encoding/binary"

	"github.com/google/uuid"
)

// A migration is a list of DDL statements, each idempotent (IF NOT EXISTS),
// run in order and recorded in schema_migrations once all succeeded. A
// migration that failed halfway is simply run again. Statements are
// templates rendered by render: the same text yields plain tables on one
// server and Replicated tables behind Distributed ones on a cluster.
type migration struct {
	Version    uint32
	Name       string
	Statements []string
}

// eventColumns is the column list shared by events and events_by_ingest.
const eventColumns = `(
    id              UUID,
    version         UInt32,
    action          String,
    actor_id        String,
    actor_type      String,
    actor_name      String,
    actor           String,
    target_id       String,
    target_type     String,
    target_name     String,
    target          String,
    scope_id        String,
    scope_type      String,
    scope_name      String,
    scope           String,
    payload         String,
    metadata_keys   Array(String),
    metadata_values Array(String),
    occurred_at     DateTime('UTC'),
    occurred_ns     Int64,
    success         UInt8,
    request_id      String,
    request         String,
    validated       UInt8,
    content_hash    UInt64,
    ingested_at     DateTime('UTC') DEFAULT now()
)`

var migrations = []migration{
	{
		Version: 1,
		Name:    "events, lookup by id, ingestion order, quarantine",
		Statements: []string{
			`CREATE TABLE IF NOT EXISTS {db}.{table:events} {on_cluster} ` + eventColumns + `
ENGINE = {engine:ReplacingMergeTree:events}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (scope_id, occurred_ns, id)`,
			`{distributed:events:cityHash64(id)}`,

			// first_rank makes merges keep the FIRST stored copy of an
			// event (ReplacingMergeTree keeps the highest version): the SIEM
			// stream delivers an event at its first copy only, so the row
			// of that copy must never be merged away.
			`CREATE TABLE IF NOT EXISTS {db}.{table:events_by_id} {on_cluster} (
    id           UUID,
    scope_id     String,
    occurred_at  DateTime('UTC'),
    occurred_ns  Int64,
    content_hash UInt64,
    ingested_at  DateTime('UTC'),
    first_rank   UInt32
)
ENGINE = {engine:ReplacingMergeTree(first_rank):events_by_id}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY id`,
			`{distributed:events_by_id:cityHash64(id)}`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table:events_by_id_mv} {on_cluster}
TO {db}.{table:events_by_id}
AS SELECT id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at,
    toUInt32(4294967295 - toUInt32(ingested_at)) AS first_rank
FROM {db}.{table:events}`,

			`CREATE TABLE IF NOT EXISTS {db}.{table:events_by_ingest} {on_cluster} ` + eventColumns + `
ENGINE = {engine:ReplacingMergeTree:events_by_ingest}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (ingested_at, id)`,
			`{distributed:events_by_ingest:cityHash64(id)}`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table:events_by_ingest_mv} {on_cluster}
TO {db}.{table:events_by_ingest}
AS SELECT * FROM {db}.{table:events}`,

			`CREATE TABLE IF NOT EXISTS {db}.{table:quarantine} {on_cluster} (
    received_at DateTime('UTC'),
    topic       String,
    partition   Int32,
    offset      Int64,
    key         String,
    raw         String,
    reason      String,
    event_id    String
)
ENGINE = {engine:ReplacingMergeTree:quarantine}
PARTITION BY toYYYYMM(received_at)
ORDER BY (topic, partition, offset)`,
			`{distributed:quarantine:cityHash64(topic, partition, offset)}`,
		},
	},
	{
		Version: 2,
		Name:    "event_ids: the keys of every event ordered by the time prefix of the id",
		Statements: []string{
			// ClickHouse compares UUIDs by their second half first, so a
			// table ORDER BY id keeps no time order for UUIDv7 ids and a
			// batch's ids fall in every granule: the ingester's lookup of
			// stored ids read all of events_by_id, for every batch. The
			// first eight bytes of a UUIDv7 are its creation time, so
			// (id_prefix, id) keeps a batch's ids in a few granules.
			`CREATE TABLE IF NOT EXISTS {db}.{table:event_ids} {on_cluster} (
    id_prefix    UInt64,
    id           UUID,
    scope_id     String,
    occurred_at  DateTime('UTC'),
    occurred_ns  Int64,
    content_hash UInt64,
    ingested_at  DateTime('UTC'),
    first_rank   UInt32
)
ENGINE = {engine:ReplacingMergeTree(first_rank):event_ids}
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (id_prefix, id)`,
			`{distributed:event_ids:cityHash64(id)}`,
			`CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{table:event_ids_mv} {on_cluster}
TO {db}.{table:event_ids}
AS SELECT ` + idPrefixSQL + ` AS id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at,
    toUInt32(4294967295 - toUInt32(ingested_at)) AS first_rank
FROM {db}.{table:events}`,
			// The rows stored before. A row that arrived through both views
			// meanwhile, or a second run of this migration, copies a row
			// twice: copies of one id are expected (see first_rank).
			`INSERT INTO {db}.event_ids (id_prefix, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank)
SELECT ` + idPrefixSQL + `, id, scope_id, occurred_at, occurred_ns, content_hash, ingested_at, first_rank
FROM {db}.events_by_id`,
			`DROP TABLE IF EXISTS {db}.{table:events_by_id_mv} {on_cluster}`,
		},
	},
	{
		// Separate from 2, so that 2 can run again after failing halfway:
		// its copy reads events_by_id.
		Version: 3,
		Name:    "drop events_by_id, replaced by event_ids",
		Statements: []string{
			`DROP TABLE IF EXISTS {db}.events_by_id {on_cluster}`,
			`DROP TABLE IF EXISTS {db}.{table:events_by_id} {on_cluster}`,
		},
	},
}

// idPrefixSQL is the first eight bytes of id as a big-endian integer
// (IDPrefix), for ClickHouse 18.16 and current versions alike.
const idPrefixSQL = "reinterpretAsUInt64(reverse(substring(UUIDStringToNum(toString(id)), 1, 8)))"

// IDPrefix is event_ids.id_prefix of id: its first eight bytes as a
// big-endian integer, for a UUIDv7 its creation time in milliseconds and
// then random bits. Queries of event_ids by id name it too, so that
// ClickHouse reads the granules of those ids only.
func IDPrefix(id uuid.UUID) uint64 { return binary.BigEndian.Uint64(id[:8]) }
