package store

import (
	"context"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
)

// EventColumns is the column list the ingester writes to the events table, in
// the order InsertArgs produces. ClickHouse 18.16 needs explicit column lists
// on INSERT, so always use this. ingested_at is missing on purpose: the server
// fills it with now() when it writes the block (see doc.go).
const EventColumns = "id, version, action, actor_id, actor_type, actor_name, actor, " +
	"target_id, target_type, target_name, target, scope_id, scope_type, scope_name, scope, payload, " +
	"metadata_keys, metadata_values, occurred_at, occurred_ns, success, " +
	"request_id, request, validated, content_hash"

// SelectColumns is the part of EventColumns that ScanEvent reads back to
// rebuild an event.
const SelectColumns = "id, version, action, actor_id, actor_type, actor_name, actor, " +
	"target_id, target_type, target_name, target, scope_id, scope_type, scope_name, scope, payload, " +
	"metadata_keys, metadata_values, occurred_ns, success, request_id, request"

// StoredEvent is an event with what the ingester recorded about it.
type StoredEvent struct {
	*event.Event
	// Validated is false when no schema was known for (action, version).
	Validated bool
	// ContentHash is Event.ContentHash() when the caller already has it
	// (the ingester computes it for dedup); 0 means compute it here.
	ContentHash uint64
}

// InsertArgs returns the values of one row in EventColumns order, as
// EventBlock inserts them, for driver.Batch.Append or binding into SQL text.
func InsertArgs(s StoredEvent) []any {
	var b EventBlock
	b.Append(s)
	return b.row(0)
}

// Insert writes events into table (events, or a table with its columns) as
// one INSERT, through the ingester's EventBlock.
func Insert(ctx context.Context, conn driver.Conn, table string, events ...StoredEvent) error {
	var b EventBlock
	for _, e := range events {
		b.Append(e)
	}
	return b.Insert(ctx, conn, table)
}

func boolToUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// EventScanner reads rows selected with SelectColumns. It reuses its buffers
// between rows, so a long export allocates per row only what it keeps.
type EventScanner struct {
	id                                       uuid.UUID
	version                                  uint32
	action                                   string
	actorID, actorType, actorName, actor     string
	targetID, targetType, targetName, target string
	scopeID, scopeType, scopeName, scope     string
	payload                                  string
	mdKeys, mdValues                         []string
	occurredNs                               int64
	success                                  uint8
	requestID, request                       string
}

// Scan reads the current row of rows into a new event.
func (s *EventScanner) Scan(rows driver.Rows) (*event.Event, error) {
	return s.ScanWith(rows)
}
