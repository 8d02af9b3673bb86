// Package export streams every event matching a filter as a CSV (default) or
// NDJSON download: over REST as a raw HTTP body (GET /v1/events:export,
// Service.ServeHTTP) and over gRPC as a stream of google.api.HttpBody chunks
// (Service.ExportEvents). Both take the filters of ListEvents, parsed by the
// one parser in query/filter, so the three can never drift apart.
//
// # Streaming and memory
//
// One export is one ClickHouse query,
//
//	SELECT <store.ExportSelect> FROM events WHERE <filter> ORDER BY occurred_ns DESC, id DESC
//
// (ASC with order=asc), read block by block through clickhouse-go with
// store.ExportScanner, which reads metadata packed into one String (the
// driver scans Array columns through reflection, which cost more than the
// rest of a row). Four goroutines share the work of one export, each about
// equally busy on 1M rows: clickhouse-go's, decoding blocks off the socket;
// the handler's, scanning rows into batches of 256 reused rows; a renderer,
// turning them into CSV or NDJSON in a reused buffer; and a writer, which
// hands each chunk to the client (Config.FlushBytes pending, or
// Config.FlushInterval passed) while the next one is rendered. The first byte
// (the CSV header row) leaves as soon as ClickHouse accepted the query, and
// memory depends on the block size (Config.BlockRows, ClickHouse's
// max_block_size) and those fixed buffers, never on the number of rows. The
// rows' garbage (clickhouse-go allocates a string per String cell and new
// column buffers per block, about 1.5 KB per row) is what the server's
// collector mostly works on; `auditlog serve` runs it at GOGC=300
// (internal/gcpace), which cut an export's CPU by a fifth for a peak RSS
// about three times the process's live heap above it. A client that goes away
// cancels the request context, which cancels the ClickHouse query
// (clickhouse-go sends Cancel and drops the connection).
//
// Ties on occurred_ns are ordered by id in ClickHouse's UUID order (which
// is not the order of the text form).
//
// The caller's scopes come from the request context (internal/auth's
// Principal) and are ANDed into the filter; a request without a Principal
// sees nothing, so the export handler must sit behind the auth middleware.
// Each export has an id (X-Export-Id header, x-export-id gRPC header
// metadata), which is also its ClickHouse query_id and is in its log lines.
//
// Copies of one event (several deliveries stored before ReplacingMergeTree
// merged them) share (scope_id, occurred_ns, id); the ORDER BY makes them
// adjacent, so a repeat is dropped by comparing its id with the previous row,
// in O(1) memory.
//
// # CSV
//
// A header row, then one record per event. Default columns, in order:
//
//	id,occurred_at,action,version,success,actor,target,scope,payload,metadata,request
//
// columns= picks and orders them (comma-separated or repeated); the flat
// columns actor_id, actor_type, actor_name, target_id, target_type,
// target_name, scope_id, scope_type, scope_name and request_id are also
// available for spreadsheets. actor, target, scope, payload and request are
// the compact JSON objects exactly as stored (as sent); metadata is a JSON
// object with sorted keys; occurred_at is RFC 3339 in UTC with all nine
// fractional digits; success is true or false; scope and request are empty
// cells when the event has none.
//
// Records end with CRLF and fields are quoted as RFC 4180 says: a field
// holding a double quote, comma, CR or LF is enclosed in double quotes and
// its quotes are doubled. The text is UTF-8 without a byte-order mark.
//
// Formula neutralisation: a cell whose first character is = + - @ tab or CR,
// which a spreadsheet would run as a formula, gets a leading single quote
// (') so the spreadsheet shows it as text (OWASP's advice for CSV
// injection). The JSON columns start with { and never need it; the flat
// columns (actor_name, …) can. no_formula_escape=true turns it off for
// programs that want the cells verbatim.
//
// # NDJSON
//
// One event per line, rendered by event.AppendJSON (the same JSON as the
// REST API), each line ending with LF.
//
// # Errors
//
// Before the first byte (bad filter, unknown column, too many exports,
// ClickHouse refusing the query) the answer is an ordinary error: HTTP status
// from internal/apierr (400 naming the parameter, 429 with Retry-After, …)
// and a JSON body {"code": <gRPC code>, "message": "..."}, or the gRPC
// status.
//
// After the first byte the status line is gone, so a failure is signalled in
// three ways that a truncated file cannot fake:
//
//  1. A last line that cannot be data. CSV: a record of one field,
//     "#ERROR: export failed after N rows: <message>" (data records start
//     with a UUID or a header name and have as many fields as the header).
//     NDJSON: {"error":{"code":"<gRPC code name>","message":"...","rows":N}}
//     (data lines start with {"id":).
//  2. REST: the response is aborted (the handler panics with
//     http.ErrAbortHandler after flushing that line), so the chunked body
//     never gets its terminating chunk and the client's reader ends with an
//     unexpected EOF (io.ErrUnexpectedEOF in Go, "transfer closed with
//     outstanding read data remaining" in curl). A gzip body lacks its
//     trailer as well.
//  3. REST: no trailers. A complete export ends with the HTTP trailers
//     X-Export-Status: complete and X-Export-Rows: <rows written>; an
//     aborted body cannot carry trailers, so their absence means failure.
//     gRPC: the stream ends with a non-OK status after the chunks sent so far.
//
// A client should treat a download as complete only when the body ended
// cleanly AND the trailer X-Export-Status is "complete" (gRPC: the stream
// ended with OK). auditctl export does exactly that, and keeps a failed
// download only as FILE.partial.
package export
