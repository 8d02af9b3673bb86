package ingest

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/store"
)

const quarantineColumns = "received_at, topic, partition, offset, key, raw, reason, event_id"

// storedHashes returns the content hash of each of ids already stored
// (event_ids, kept in step with events by a materialized view). The ids
// travel as an external table, not in the query text: ClickHouse 18.16
// limits a query to 256 KiB, and parsing thousands of literals costs more
// than the lookup itself. The range of their time prefixes lets ClickHouse
// read only the granules that can hold them: a batch of UUIDv7 ids, made
// within seconds of each other, falls in a few; random (v4) ids spread over
// the whole table, which is then read for every batch.
func (in *Ingester) storedHashes(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]uint64, error) {
	found := make(map[uuid.UUID]uint64)
	if len(ids) == 0 {
		return found, nil
	}
	table, err := ext.NewTable("batch_ids", ext.Column("id", "UUID"))
	if err != nil {
		return nil, fmt.Errorf("looking up stored ids: %w", err)
	}
	lo, hi := uint64(math.MaxUint64), uint64(0)
	for _, id := range ids {
		if err := table.Append(id); err != nil {
			return nil, fmt.Errorf("looking up stored ids: %w", err)
		}
		p := store.IDPrefix(id)
		lo, hi = min(lo, p), max(hi, p)
	}
	qctx := clickhouse.Context(ctx, clickhouse.WithExternalTable(table))
	// Before a merge an id may have several rows (racing inserts); the one
	// with the highest first_rank is the first stored, which wins.
	rows, err := in.conn.Query(qctx, "SELECT id, argMax(content_hash, first_rank) FROM event_ids "+
		"WHERE id_prefix BETWEEN ? AND ? AND id IN (SELECT id FROM batch_ids) GROUP BY id", lo, hi)
	if err != nil {
		return nil, fmt.Errorf("looking up stored ids: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var hash uint64
		if err := rows.Scan(&id, &hash); err != nil {
			return nil, fmt.Errorf("looking up stored ids: %w", err)
		}
		found[id] = hash
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("looking up stored ids: %w", err)
	}
	return found, nil
}

// lookup is a storedHashes query started ahead of the store, while the
// batch before is being stored.
type lookup struct {
	start time.Time
	done  chan struct{}
	found map[uuid.UUID]uint64
	err   error
}

// maxLookupAge is how old a lookup started ahead may be when the store
// begins; an older one (the batch before took long, retrying) is redone,
// so that it sees what other members stored meanwhile.
const maxLookupAge = 5 * time.Second

// startLookup looks up the ids of recs' events in the background. Deduplication
// against the batch itself and the recent window still happens when the
// batch is stored: that covers ids stored by the batch before, which the
// lookup may not have seen.
func (in *Ingester) startLookup(ctx context.Context, recs []*record) *lookup {
	ids := make([]uuid.UUID, 0, len(recs))
	for _, r := range recs {
		if !r.rejected() {
			ids = append(ids, r.ev.ID)
		}
	}
	l := &lookup{start: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		ctx, cancel := context.WithTimeout(ctx, in.cfg.StoreTimeout)
		defer cancel()
		l.found, l.err = in.storedHashes(ctx, ids)
	}()
	return l
}

// result waits for the lookup; a nil or too old lookup has no result.
func (l *lookup) result() (map[uuid.UUID]uint64, error) {
	if l == nil || time.Since(l.start) > maxLookupAge {
		return nil, nil
	}
	<-l.done
	return l.found, l.err
}

// insertEvents writes the events in one columnar block.
func (in *Ingester) insertEvents(ctx context.Context, recs []*record) error {
	b := &in.block
	// Emptied after every insert, so that it holds no events in between.
	defer b.Reset()
	for _, r := range recs {
		b.Append(store.StoredEvent{Event: r.ev, Validated: r.validated, ContentHash: r.hash})
	}
	return b.Insert(ctx, in.conn, "events")
}

// insertQuarantine writes the rejected messages, raw bytes and reason.
func (in *Ingester) insertQuarantine(ctx context.Context, recs []*record) error {
	if len(recs) == 0 {
		return nil
	}
	batch, err := in.conn.PrepareBatch(ctx, "INSERT INTO quarantine ("+quarantineColumns+")")
	if err != nil {
		return fmt.Errorf("inserting into quarantine: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	for _, r := range recs {
		m := r.msg
		if err := batch.Append(now, m.Topic, int32(m.Partition), m.Offset, string(m.Key), string(m.Value), r.reason, r.eventID()); err != nil {
			_ = batch.Abort()
			return fmt.Errorf("inserting into quarantine: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("inserting %d rows into quarantine: %w", len(recs), err)
	}
	return nil
}
