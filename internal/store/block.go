package store

import (
	"context"
	"fmt"
	"slices"
	"time"
	"unsafe"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
)

// EventBlock gathers rows of the events table column by column, in
// EventColumns order, and inserts them as one block. It is the bulk form of
// InsertArgs: the ingester stores every event through it, because handing
// the driver one []any row per event boxed 25 values per row and cost the
// ingester more CPU than decoding the event. Reset and reuse it: its slices
// keep their capacity.
//
// The block refers to the events' JSON bytes instead of copying them (the
// driver copies them into the insert anyway): an event must not change
// between Append and Reset, which no code does (an Event's bytes are
// read-only once decoded).
type EventBlock struct {
	ids                                          column[uuid.UUID]
	versions                                     column[uint32]
	actions                                      column[string]
	actorIDs, actorTypes, actorNames, actors     column[string]
	targetIDs, targetTypes, targetNames, targets column[string]
	scopeIDs, scopeTypes, scopeNames, scopes     column[string]
	payloads                                     column[string]
	metadataKeys, metadataValues                 column[[]string]
	occurredAt                                   column[time.Time]
	occurredNs                                   column[int64]
	success                                      column[uint8]
	requestIDs, requests                         column[string]
	validated                                    column[uint8]
	contentHashes                                column[uint64]

	// mdStrings backs the metadata_keys and metadata_values rows: one
	// growing slice for the block instead of two small ones per event.
	mdStrings []string
}

// namedColumn is a column of the block with its name in the events table.
type namedColumn struct {
	name string
	col  blockColumn
}

// ordered lists the block's columns in EventColumns order: the one place
// that order is written down for the block (a test holds it to
// EventColumns).
func (b *EventBlock) ordered() []namedColumn {
	return []namedColumn{
		{"id", &b.ids}, {"version", &b.versions}, {"action", &b.actions},
		{"actor_id", &b.actorIDs}, {"actor_type", &b.actorTypes}, {"actor_name", &b.actorNames}, {"actor", &b.actors},
		{"target_id", &b.targetIDs}, {"target_type", &b.targetTypes}, {"target_name", &b.targetNames}, {"target", &b.targets},
		{"scope_id", &b.scopeIDs}, {"scope_type", &b.scopeTypes}, {"scope_name", &b.scopeNames}, {"scope", &b.scopes},
		{"payload", &b.payloads}, {"metadata_keys", &b.metadataKeys}, {"metadata_values", &b.metadataValues},
		{"occurred_at", &b.occurredAt}, {"occurred_ns", &b.occurredNs}, {"success", &b.success},
		{"request_id", &b.requestIDs}, {"request", &b.requests},
		{"validated", &b.validated}, {"content_hash", &b.contentHashes},
	}
}

// blockColumn is what the block does with each of its columns alike.
type blockColumn interface {
	// slice returns rows [from, to) as the driver's batch.Column appends them.
	slice(from, to int) any
	// appendTo appends rows [from, to) to the driver's column.
	appendTo(col driver.BatchColumn, from, to int) error
	// value returns row i as InsertArgs does.
	value(i int) any
	// reset empties the column, keeping its capacity, and clears what it
	// held so that the events' bytes are not kept alive until overwritten.
	reset()
}

// column holds the values of one column of the block.
type column[T any] struct{ v []T }

func (c *column[T]) add(x T)                { c.v = append(c.v, x) }
func (c *column[T]) slice(from, to int) any { return c.v[from:to] }
func (c *column[T]) value(i int) any        { return c.v[i] }
func (c *column[T]) reset()                 { clear(c.v); c.v = c.v[:0] }

func (c *column[T]) appendTo(col driver.BatchColumn, from, to int) error {
	// The driver appends a slice of arrays (metadata_keys, metadata_values)
	// through reflection, element by element; an array at a time it takes
	// a typed path.
	if rows, ok := any(c.v).([][]string); ok {
		for _, row := range rows[from:to] {
			if err := col.AppendRow(row); err != nil {
				return err
			}
		}
		return nil
	}
	return col.Append(c.slice(from, to))
}

// view returns b as a string sharing its memory; see EventBlock.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Len is the number of rows gathered.
func (b *EventBlock) Len() int { return len(b.ids.v) }

// Reset empties the block and keeps its capacity.
func (b *EventBlock) Reset() {
	for _, c := range b.ordered() {
		c.col.reset()
	}
	clear(b.mdStrings)
	b.mdStrings = b.mdStrings[:0]
}

// Append adds one event; the values are those of InsertArgs.
func (b *EventBlock) Append(s StoredEvent) {
	e := s.Event
	hash := s.ContentHash
	if hash == 0 {
		hash = e.ContentHash()
	}
	keys, values := b.metadataColumns(e.Metadata)
	var scopeType, scopeName, scope, request string
	if e.Scope != nil {
		scopeType, scopeName, scope = e.Scope.Type, e.Scope.Name, view(e.Scope.Raw)
	}
	if e.Request != nil {
		request = view(e.Request.Raw)
	}
	b.ids.add(e.ID)
	b.versions.add(e.Version)
	b.actions.add(e.Action)
	b.actorIDs.add(e.Actor.ID)
	b.actorTypes.add(e.Actor.Type)
	b.actorNames.add(e.Actor.Name)
	b.actors.add(view(e.Actor.Raw))
	b.targetIDs.add(e.Target.ID)
	b.targetTypes.add(e.Target.Type)
	b.targetNames.add(e.Target.Name)
	b.targets.add(view(e.Target.Raw))
	b.scopeIDs.add(e.ScopeID())
	b.scopeTypes.add(scopeType)
	b.scopeNames.add(scopeName)
	b.scopes.add(scope)
	b.payloads.add(view(e.PayloadJSON()))
	b.metadataKeys.add(keys)
	b.metadataValues.add(values)
	b.occurredAt.add(e.OccurredAt.UTC().Truncate(time.Second))
	b.occurredNs.add(e.OccurredAt.UnixNano())
	b.success.add(boolToUInt8(e.Success))
	b.requestIDs.add(e.RequestID())
	b.requests.add(request)
	b.validated.add(boolToUInt8(s.Validated))
	b.contentHashes.add(hash)
}

// metadataColumns splits metadata into parallel key and value arrays sorted
// by key, so equal metadata always produces equal rows. Both are cut from
// b.mdStrings; a row cut before mdStrings grew keeps the old array, which
// holds the same strings.
func (b *EventBlock) metadataColumns(md map[string]string) (keys, values []string) {
	start := len(b.mdStrings)
	for k := range md {
		b.mdStrings = append(b.mdStrings, k)
	}
	mid := len(b.mdStrings)
	keys = b.mdStrings[start:mid:mid]
	slices.Sort(keys)
	for _, k := range keys {
		b.mdStrings = append(b.mdStrings, md[k])
	}
	// The append may have moved the array: cut both from the new one.
	keys = b.mdStrings[start:mid:mid]
	values = b.mdStrings[mid:len(b.mdStrings):len(b.mdStrings)]
	return keys, values
}

// insertBlockRows is how many rows go to ClickHouse in one data block of an
// INSERT. One INSERT still carries the whole EventBlock, and the server
// squashes its blocks into one part (min_insert_block_size_rows), but the
// driver's column buffers are refilled per block instead of growing to the
// size of the whole batch: growing them in steps of a quarter had the
// ingester allocate four times the batch's bytes, half of all it allocated.
const insertBlockRows = 2048

// row returns row i as InsertArgs does, in EventColumns order.
func (b *EventBlock) row(i int) []any {
	cols := b.ordered()
	row := make([]any, len(cols))
	for j, c := range cols {
		row[j] = c.col.value(i)
	}
	return row
}

// InsertContext returns ctx with the settings every insert of the ingester
// needs. insert_distributed_sync makes an INSERT into a Distributed table
// (the tables of a --cluster schema) return only once every shard wrote
// its rows: otherwise the rows wait in a queue on the node that took the
// INSERT, to be lost with it after the offsets were committed, and the next
// batch's lookup of stored ids does not see them yet. A table that is not
// Distributed ignores it.
func InsertContext(ctx context.Context) context.Context {
	return clickhouse.Context(ctx, clickhouse.WithSettings(InsertSettings()))
}

// InsertSettings returns a new map of the settings InsertContext sets.
func InsertSettings() clickhouse.Settings {
	return clickhouse.Settings{"insert_distributed_sync": 1}
}

// Insert writes the block into table (events, or a table with its columns)
// as one INSERT. An empty block inserts nothing.
func (b *EventBlock) Insert(ctx context.Context, conn driver.Conn, table string) error {
	if b.Len() == 0 {
		return nil
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+EventColumns+")")
	if err != nil {
		return fmt.Errorf("inserting %d events: %w", b.Len(), err)
	}
	cols := b.ordered()
	for from := 0; from < b.Len(); from += insertBlockRows {
		to := min(b.Len(), from+insertBlockRows)
		for i, c := range cols {
			if err := c.col.appendTo(batch.Column(i), from, to); err != nil {
				_ = batch.Abort()
				return fmt.Errorf("inserting %d events: column %s: %w", b.Len(), c.name, err)
			}
		}
		if to < b.Len() {
			// Sends the block and empties the driver's columns, keeping
			// their capacity; the INSERT stays open.
			if err := batch.Flush(); err != nil {
				_ = batch.Abort()
				return fmt.Errorf("inserting %d events: %w", b.Len(), err)
			}
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d events: %w", b.Len(), err)
	}
	return nil
}
