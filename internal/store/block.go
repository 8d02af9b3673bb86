package store

import (
	"context"
	"fmt"
	"time"
	"unsafe"

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
	ids                                          []uuid.UUID
	versions                                     []uint32
	actions                                      []string
	actorIDs, actorTypes, actorNames, actors     []string
	targetIDs, targetTypes, targetNames, targets []string
	scopeIDs, scopeTypes, scopeNames, scopes     []string
	payloads                                     []string
	metadataKeys, metadataValues                 [][]string
	occurredAt                                   []time.Time
	occurredNs                                   []int64
	success                                      []uint8
	requestIDs, requests                         []string
	validated                                    []uint8
	contentHashes                                []uint64
}

// view returns b as a string sharing its memory; see EventBlock.
func view(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// Len is the number of rows gathered.
func (b *EventBlock) Len() int { return len(b.ids) }

// Reset empties the block and keeps its capacity.
func (b *EventBlock) Reset() {
	// The string slices are cleared so that the events' bytes are not kept
	// alive until the next block overwrites them.
	for _, col := range b.stringColumns() {
		clear(*col)
		*col = (*col)[:0]
	}
	clear(b.metadataKeys)
	clear(b.metadataValues)
	b.ids, b.versions, b.metadataKeys, b.metadataValues = b.ids[:0], b.versions[:0], b.metadataKeys[:0], b.metadataValues[:0]
	b.occurredAt, b.occurredNs, b.success, b.validated, b.contentHashes = b.occurredAt[:0], b.occurredNs[:0], b.success[:0], b.validated[:0], b.contentHashes[:0]
}

func (b *EventBlock) stringColumns() []*[]string {
	return []*[]string{&b.actions, &b.actorIDs, &b.actorTypes, &b.actorNames, &b.actors,
		&b.targetIDs, &b.targetTypes, &b.targetNames, &b.targets,
		&b.scopeIDs, &b.scopeTypes, &b.scopeNames, &b.scopes, &b.payloads, &b.requestIDs, &b.requests}
}

// Append adds one event; the values are those of InsertArgs.
func (b *EventBlock) Append(s StoredEvent) {
	e := s.Event
	hash := s.ContentHash
	if hash == 0 {
		hash = e.ContentHash()
	}
	keys, values := metadataColumns(e.Metadata)
	var scopeType, scopeName, scope, request string
	if e.Scope != nil {
		scopeType, scopeName, scope = e.Scope.Type, e.Scope.Name, view(e.Scope.Raw)
	}
	if e.Request != nil {
		request = view(e.Request.Raw)
	}
	b.ids = append(b.ids, e.ID)
	b.versions = append(b.versions, e.Version)
	b.actions = append(b.actions, e.Action)
	b.actorIDs = append(b.actorIDs, e.Actor.ID)
	b.actorTypes = append(b.actorTypes, e.Actor.Type)
	b.actorNames = append(b.actorNames, e.Actor.Name)
	b.actors = append(b.actors, view(e.Actor.Raw))
	b.targetIDs = append(b.targetIDs, e.Target.ID)
	b.targetTypes = append(b.targetTypes, e.Target.Type)
	b.targetNames = append(b.targetNames, e.Target.Name)
	b.targets = append(b.targets, view(e.Target.Raw))
	b.scopeIDs = append(b.scopeIDs, e.ScopeID())
	b.scopeTypes = append(b.scopeTypes, scopeType)
	b.scopeNames = append(b.scopeNames, scopeName)
	b.scopes = append(b.scopes, scope)
	b.payloads = append(b.payloads, view(e.PayloadJSON()))
	b.metadataKeys = append(b.metadataKeys, keys)
	b.metadataValues = append(b.metadataValues, values)
	b.occurredAt = append(b.occurredAt, e.OccurredAt.UTC().Truncate(time.Second))
	b.occurredNs = append(b.occurredNs, e.OccurredAt.UnixNano())
	b.success = append(b.success, boolToUInt8(e.Success))
	b.requestIDs = append(b.requestIDs, e.RequestID())
	b.requests = append(b.requests, request)
	b.validated = append(b.validated, boolToUInt8(s.Validated))
	b.contentHashes = append(b.contentHashes, hash)
}

// columns returns rows [from, to) column by column, in EventColumns order.
func (b *EventBlock) columns(from, to int) []any {
	return []any{
		b.ids[from:to], b.versions[from:to], b.actions[from:to],
		b.actorIDs[from:to], b.actorTypes[from:to], b.actorNames[from:to], b.actors[from:to],
		b.targetIDs[from:to], b.targetTypes[from:to], b.targetNames[from:to], b.targets[from:to],
		b.scopeIDs[from:to], b.scopeTypes[from:to], b.scopeNames[from:to], b.scopes[from:to], b.payloads[from:to],
		b.metadataKeys[from:to], b.metadataValues[from:to],
		b.occurredAt[from:to], b.occurredNs[from:to], b.success[from:to],
		b.requestIDs[from:to], b.requests[from:to],
		b.validated[from:to], b.contentHashes[from:to],
	}
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
	return []any{
		b.ids[i], b.versions[i], b.actions[i],
		b.actorIDs[i], b.actorTypes[i], b.actorNames[i], b.actors[i],
		b.targetIDs[i], b.targetTypes[i], b.targetNames[i], b.targets[i],
		b.scopeIDs[i], b.scopeTypes[i], b.scopeNames[i], b.scopes[i], b.payloads[i],
		b.metadataKeys[i], b.metadataValues[i],
		b.occurredAt[i], b.occurredNs[i], b.success[i],
		b.requestIDs[i], b.requests[i],
		b.validated[i], b.contentHashes[i],
	}
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
	for from := 0; from < b.Len(); from += insertBlockRows {
		to := min(b.Len(), from+insertBlockRows)
		for i, col := range b.columns(from, to) {
			if err := batch.Column(i).Append(col); err != nil {
				_ = batch.Abort()
				return fmt.Errorf("inserting %d events: column %d: %w", b.Len(), i, err)
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
