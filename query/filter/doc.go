// Package filter is the one filter model of the query API, shared by
// ListEvents, StreamEvents and ExportEvents so that the three can never
// accept different filters (a real bug in other audit exports came from two
// lists of allowed filters).
//
// Parse reads the filter fields 1 to 15 that every request message shares
// (they are kept identical by a test in proto/audit/v1) into a Filter; SQL
// turns a Filter into a boolean expression over the columns of the events
// table (events_by_ingest has the same columns) with positional `?`
// parameters for clickhouse-go. User text only ever travels as a bound
// parameter, never as SQL.
//
// Semantics: values of one parameter are ORed, different parameters (and the
// terms of the `q` phrase) are ANDed. An action ending in `*` is a prefix.
// `metadata` pairs `key=value` must all match. `since` is inclusive and
// `until` exclusive, both compared with the full nanosecond occurred_at.
//
// The `q` phrase is a list of `key:value` terms separated by spaces, ANDed:
//
//	action:workflow.job.* actor:alice success:false
//	-actor_type:system "target_name:my project" occurred:>=2026-01-01
//	occurred:2026-01-01..2026-02-01 meta.env:prod,staging scope:org-1
//
// Keys: every filter parameter name (scope_id, action, actor_id,
// actor_type, actor_name, target_id, target_type, target_name, success,
// request_id, version, metadata, since, until), plus the short keys actor
// and target (id or name), scope (id), request (id), occurred (a time
// comparison `>=T`, `>T`, `<=T`, `<T`, `=T`, a range `A..B` (A inclusive,
// B exclusive), or a bare time or date: a date means that whole UTC day) and
// meta.KEY (the metadata value of KEY). A leading `-` negates a term, a comma
// separates values that are ORed, and double quotes hold spaces, commas and
// quotes (`\"`, `\\`) in a value or around a whole term. Times are RFC 3339
// with a zone and up to nine fractional digits, or a date YYYY-MM-DD (UTC).
// In `q`, since and until always mean occurred_at, also in StreamEvents.
//
// Limits keep a query small enough for ClickHouse's 256 KiB query size: see
// MaxPhraseBytes, MaxTerms, MaxValues and MaxValueBytes.
//
// Tenant boundary: Filter.AllowedScopes is the caller's scopes, set by the
// server from the authenticated token (never from request fields). SQL
// always ANDs it in; an empty non-nil list matches nothing, and an event
// without a scope (scope_id "") is visible only when AllowedScopes is nil
// (every scope).
package filter
