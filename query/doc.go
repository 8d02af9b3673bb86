// Package query serves stored audit events: the ListEvents, GetEvent,
// StreamEvents and ListSchemas RPCs of audit.v1.AuditService (ExportEvents is
// package export). Filters come from package query/filter, the one parser
// shared with export; errors leave through internal/apierr.
//
// ListEvents reads keyset pages over the full key (occurred_ns, id) of the
// events table in the requested order (newest first by default), so equal
// timestamps never skip or repeat a row and page 1,000 costs what page 1
// costs. Copies of one stored event share (scope_id, occurred_ns, id), come
// out next to each other and are dropped by comparing with the previous row.
// page_size defaults to 100 and is clamped to 1000. The page token is an
// HMAC-signed position bound to the order and to a hash of the filter SQL
// (which includes the caller's scopes), so a token altered, truncated or
// replayed with other filters is INVALID_ARGUMENT naming page_token. Rows
// inserted while a client pages may or may not appear; rows that existed
// before the first page are returned exactly once.
//
// GetEvent looks the id up in event_ids (ordered by the id's time prefix,
// then the id) to learn the event's primary key in events, then reads that
// one row. An id outside the caller's scopes is NOT_FOUND, exactly like an
// unknown id.
//
// # StreamEvents: every event after the cursor, exactly once
//
// The stream reads events_by_ingest, ordered by (ingested_at, id), where
// ingested_at is stamped in whole seconds by the ClickHouse server when it
// writes a block (DEFAULT now(); see internal/store). The cursor is the
// signed (ingested_at, id) of the last event sent; a poll reads rows strictly
// after it, in key order, so the cost of a poll is a primary-key range read
// that grows with the new rows, not with the table. Events with an old
// occurred_at that are ingested late get a new ingested_at and therefore
// come after the cursor: late arrivals are delivered.
//
// Visibility watermark: a block stamped at second S becomes visible only
// when its INSERT (with the materialized views) finishes, a moment or, under
// load, seconds after S. A reader that advanced its cursor past S before
// then would miss those rows for good. Each poll therefore reads only rows
// with ingested_at <= the watermark, computed on the server that stamps the
// rows, in one query: its now() minus StreamLag (default 2s), and never at
// or after the second in which a still-running INSERT into events started
// (from system.processes): such an INSERT stamps its rows at or after its
// start and they are not visible yet, however long it runs. Every second at
// or below the watermark is therefore complete when read, so nothing behind
// the cursor can appear later. A stuck INSERT thus holds streams back
// rather than letting them skip its rows; system.processes is server-wide,
// so inserts into another database's events table hold them back too. (On a
// cluster, every shard's running inserts and clock count; this reads the
// server it is connected to.)
//
// Exactly once across copies: the ingester drops redeliveries, but a race
// can store two copies of one id, at different ingested_at. A row is sent
// only if no row of its id in event_ids (one query per
// poll for the whole batch) has an earlier ingested_at: only the first
// stored copy is sent, whenever the stream reaches it. Copies with the same
// (ingested_at, id) are adjacent and the cursor steps over them.
// event_ids merges copies of one id keeping the earliest (its version
// column first_rank falls as ingested_at grows), so the first copy's row is
// never merged away under the stream.
//
// The stream sends each event with its cursor; a client that reconnects
// with the last cursor it received loses and repeats nothing. Without a
// cursor, `since` starts at ingested_at >= since (whatever the occurred_at);
// with neither, at the beginning. `follow` keeps polling every
// StreamPollInterval once caught up; otherwise the stream ends when it
// reaches the watermark.
//
// Limits: every ClickHouse query runs with max_execution_time and is
// cancelled when the client goes away; at most MaxConcurrentQueries run at
// once, and a request that waits longer than QueueWait for a slot gets
// RESOURCE_EXHAUSTED. A stream holds a slot only while it polls.
package query
