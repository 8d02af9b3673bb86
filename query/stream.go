package query

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/apierr"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/selfaudit"
	"github.com/auditlog/auditlog/internal/store"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query/filter"
)

// StreamEvents sends every matching event stored after the cursor, in
// ingestion order, each once (see the package doc for the mechanism).
func (s *Service) StreamEvents(req *auditv1.StreamEventsRequest, stream auditv1.AuditService_StreamEventsServer) error {
	ctx := stream.Context()
	var sent int64
	err := s.streamEvents(ctx, req, func(msg *auditv1.StreamEventsResponse) error {
		sent++
		return stream.Send(msg)
	})
	// Audited when the stream ends, so the event can say how much it read.
	// A stream ended by the client is the normal end of a follow stream.
	ended := err == nil || ctx.Err() != nil
	s.opts.Audit.Record(ctx, selfaudit.ActionStream, req, sent, ended,
		map[string]any{"follow": req.GetFollow(), "resumed": req.GetCursor() != ""})
	return apierr.ToStatus(ctx, err)
}

func (s *Service) streamEvents(ctx context.Context, req *auditv1.StreamEventsRequest, send func(*auditv1.StreamEventsResponse) error) error {
	f, err := filter.Parse(req)
	if err != nil {
		return err
	}
	f.AllowedScopes = s.scopes(ctx)
	// For a stream, `since` is where to start in ingestion order, not a
	// condition on occurred_at.
	since := f.Since
	f.Since = time.Time{}
	// The stream reads strictly after pos. Without a cursor it starts
	// before the first id of the second of `since` (ingested_at is whole
	// seconds), or before everything.
	pos := streamPos{id: uuid.Max}
	if c := req.GetCursor(); c != "" {
		if pos, err = s.tokens.parseCursor(c); err != nil {
			return err
		}
	} else if !since.IsZero() && since.Unix() > 0 {
		pos.at = uint32(since.Unix() - 1)
	}
	where, args := f.SQL()
	for {
		n, err := s.poll(ctx, &pos, where, args, send)
		if err != nil {
			return err
		}
		if n == s.cfg.StreamBatch {
			continue // more is waiting: read on at once
		}
		if !req.GetFollow() {
			return nil
		}
		t := time.NewTimer(s.cfg.StreamPollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// candidate is a row read by a poll.
type candidate struct {
	e  *event.Event
	at uint32
}

// poll reads one batch after pos up to the watermark, sends the first copy
// of each event and advances pos. It returns the rows read.
func (s *Service) poll(ctx context.Context, pos *streamPos, where string, args []any, send func(*auditv1.StreamEventsResponse) error) (int, error) {
	release, err := s.acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer release()

	watermark, err := s.watermark(ctx)
	if err != nil {
		return 0, err
	}

	q := "SELECT " + store.SelectColumns + ", ingested_at FROM events_by_ingest WHERE ingested_at <= toDateTime(?)"
	// The plain >= bound lets ClickHouse read a primary-key range; the OR
	// is the exact position.
	q += " AND ingested_at >= toDateTime(?) AND (ingested_at > toDateTime(?) OR (ingested_at = toDateTime(?) AND id > toUUID(?)))"
	at := int64(pos.at)
	qargs := []any{int64(watermark), at, at, at, pos.id.String()}
	q += " AND (" + where + ") ORDER BY ingested_at, id LIMIT " + strconv.Itoa(s.cfg.StreamBatch)
	qargs = append(qargs, args...)

	var batch []candidate
	var sc store.EventScanner
	n, err := s.read(ctx, q, qargs, func(rows driver.Rows) error {
		var at time.Time
		e, err := sc.ScanWith(rows, &at)
		if err != nil {
			return err
		}
		batch = append(batch, candidate{e: e, at: uint32(at.Unix())})
		return nil
	})
	if err != nil {
		return 0, err
	}
	first, err := s.firstIngested(ctx, batch)
	if err != nil {
		return 0, err
	}
	sent := 0
	for i, c := range batch {
		*pos = streamPos{at: c.at, id: c.e.ID}
		if i > 0 && batch[i-1].e.ID == c.e.ID && batch[i-1].at == c.at {
			continue // a copy stored in the same second: same key, adjacent
		}
		if f, ok := first[c.e.ID]; ok && f < c.at {
			continue // a later copy of an event stored (and sent) before
		}
		if err := send(&auditv1.StreamEventsResponse{Event: c.e.ToProto(), Cursor: s.tokens.cursor(*pos)}); err != nil {
			return 0, err
		}
		sent++
	}
	if n < s.cfg.StreamBatch {
		// Every row up to the watermark has been seen: the next poll need
		// not read the ones the filter rejected again. The client's cursor
		// stays at its last event; a resume re-reads that gap once.
		if pos.at < watermark {
			*pos = streamPos{at: watermark, id: uuid.Max}
		}
	}
	s.metrics.returned.WithLabelValues("StreamEvents").Add(float64(sent))
	return n, nil
}

// inFlightInsert matches the INSERTs that write events (and, through the
// materialized views, events_by_ingest), not event_ids or quarantine.
const inFlightInsert = `(?i)^\s*INSERT\s+INTO\s+(\S+\.)?events\b`

// watermark returns the newest ingested_at second that is complete: every
// row stamped at or before it is visible. It is the server's now() minus
// StreamLag, and never reaches the second in which a still-running INSERT
// into events started: its rows are stamped at or after that second and
// become visible only when it finishes, however long it takes.
func (s *Service) watermark(ctx context.Context) (uint32, error) {
	var now time.Time
	var oldest float64
	_, err := s.read(ctx, "SELECT now(), toFloat64(max(elapsed)) FROM system.processes WHERE match(query, ?)", []any{inFlightInsert},
		func(rows driver.Rows) error { return rows.Scan(&now, &oldest) })
	if err != nil {
		return 0, err
	}
	w := now.Add(-s.cfg.StreamLag)
	if oldest > 0 {
		started := now.Add(-time.Duration(math.Ceil(oldest)) * time.Second)
		if limit := started.Add(-time.Second); limit.Before(w) {
			w = limit
		}
	}
	return uint32(w.Unix()), nil
}

// firstIngested returns, for the ids of a batch, the earliest ingested_at
// of any stored copy, from event_ids in one query.
func (s *Service) firstIngested(ctx context.Context, batch []candidate) (map[uuid.UUID]uint32, error) {
	first := make(map[uuid.UUID]uint32, len(batch))
	if len(batch) == 0 {
		return first, nil
	}
	var prefixes, ids []any
	seen := make(map[uuid.UUID]bool, len(batch))
	for _, c := range batch {
		if !seen[c.e.ID] {
			seen[c.e.ID] = true
			prefixes = append(prefixes, store.IDPrefix(c.e.ID))
			ids = append(ids, c.e.ID.String())
		}
	}
	// The prefixes let ClickHouse read only the granules of these ids.
	q := "SELECT id, min(ingested_at) FROM event_ids WHERE id_prefix IN (" +
		strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ") + ") AND id IN (" +
		strings.TrimSuffix(strings.Repeat("toUUID(?), ", len(ids)), ", ") + ") GROUP BY id"
	_, err := s.read(ctx, q, append(prefixes, ids...), func(rows driver.Rows) error {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			return fmt.Errorf("scanning first ingestion: %w", err)
		}
		first[id] = uint32(at.Unix())
		return nil
	})
	return first, err
}
