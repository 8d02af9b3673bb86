package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/auditlog/auditlog/internal/event"
)

// ScanWith is Scan for rows selected with SelectColumns followed by more
// columns, which it scans into extra (e.g. ingested_at for the SIEM
// stream's cursor). clickhouse-go needs one destination per column.
func (s *EventScanner) ScanWith(rows driver.Rows, extra ...any) (*event.Event, error) {
	dest := append([]any{&s.id, &s.version, &s.action,
		&s.actorID, &s.actorType, &s.actorName, &s.actor,
		&s.targetID, &s.targetType, &s.targetName, &s.target,
		&s.scopeID, &s.scopeType, &s.scopeName, &s.scope, &s.payload, &s.mdKeys, &s.mdValues,
		&s.occurredNs, &s.success, &s.requestID, &s.request}, extra...)
	if err := rows.Scan(dest...); err != nil {
		return nil, fmt.Errorf("scanning event row: %w", err)
	}
	e := &event.Event{
		ID:         s.id,
		Version:    s.version,
		Action:     s.action,
		Actor:      event.Entity{ID: s.actorID, Type: s.actorType, Name: s.actorName, Raw: json.RawMessage(s.actor)},
		Target:     event.Entity{ID: s.targetID, Type: s.targetType, Name: s.targetName, Raw: json.RawMessage(s.target)},
		Payload:    json.RawMessage(s.payload),
		OccurredAt: time.Unix(0, s.occurredNs).UTC(),
		Success:    s.success != 0,
	}
	if s.scope != "" {
		e.Scope = &event.Entity{ID: s.scopeID, Type: s.scopeType, Name: s.scopeName, Raw: json.RawMessage(s.scope)}
	}
	if s.request != "" {
		e.Request = &event.Request{ID: s.requestID, Raw: json.RawMessage(s.request)}
	}
	if len(s.mdKeys) > 0 {
		e.Metadata = make(map[string]string, len(s.mdKeys))
		for i, k := range s.mdKeys {
			e.Metadata[k] = s.mdValues[i]
		}
	}
	return e, nil
}
