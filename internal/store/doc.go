// Package store owns the ClickHouse schema of auditlog: the versioned
// migrations that create it, connection options, and the mapping between an
// event.Event and a row of the events tables. The ingester writes through it
// and the query and export layers read through it, so the column list lives
// in exactly one place.
//
// Tables (the same names on a single server and on a cluster, where each is a
// Distributed table over a Replicated `_local` table sharded by id, so every
// copy of one event lands on one shard):
//
//   - events: one row per stored delivery, ORDER BY (scope_id, occurred_ns,
//     id). A tenant-scoped time range reads a contiguous key range, and
//     copies of one event sit next to each other, so readers drop repeats by
//     comparing with the previous row (ReplacingMergeTree removes them for
//     good at merge time).
//   - event_ids: the keys of every event, ORDER BY (id_prefix, id), fed by a
//     materialized view: point lookups for GetEvent, the stream's first-copy
//     check and the ingester's check against ids already stored. id_prefix
//     is the id's first eight bytes (IDPrefix): ClickHouse sorts UUIDs by
//     their second half first, so ORDER BY id alone (events_by_id, until
//     migration 2) scattered a batch of UUIDv7 ids over every granule and
//     the ingester's lookup read the whole table for every batch. Queries
//     name id_prefix along with id.
//   - events_by_ingest: the full rows again, ORDER BY (ingested_at, id), fed
//     by a materialized view: the SIEM stream reads only what is new.
//   - quarantine: every rejected Kafka message, raw bytes and the reason.
//   - schema_migrations: which migrations ran.
//
// All event tables are partitioned by the month of occurred_at, so retention
// is DROP PARTITION on each of them. ClickHouse 18.16 has no DateTime64, so
// time is stored twice: occurred_at (DateTime, whole seconds, for
// partitioning) and occurred_ns (Int64 unix nanoseconds, exact, for sorting
// and filtering).
//
// ingested_at is stamped by the ClickHouse server (DEFAULT now()) when it
// writes the block, not by the ingester: a row stamped S becomes visible a
// moment after S whatever the client's clock, timeouts or retries did, so a
// reader that only looks at seconds older than now() minus a small lag sees
// every row of those seconds (the SIEM stream's visibility watermark).
package store
