package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
)

// packedMetadata is metadata as one String: every key, then every value,
// each as "<byte length>:<bytes>". Scanning the two Array(String) columns
// goes through reflection in clickhouse-go and cost an export more than
// everything else in a row together; one String does not.
const packedMetadata = "arrayStringConcat(arrayMap(x -> concat(toString(length(x)), ':', x), arrayConcat(metadata_keys, metadata_values)))"

// ExportSelect is the select list that ExportScanner reads: what the
// canonical rendering (event.AppendJSON) needs, plus, with flat, the
// filterable copies of entity members (actor_id, …, request_id) that flat
// CSV columns show.
func ExportSelect(flat bool) string {
	cols := "id, version, action, actor, target, scope, payload, " + packedMetadata + ", occurred_ns, success, request"
	if flat {
		cols += ", actor_id, actor_type, actor_name, target_id, target_type, target_name, scope_id, scope_type, scope_name, request_id"
	}
	return cols
}

// ExportScanner reads the rows of ExportSelect for bulk readers (export).
// It allocates per row only the strings the driver returns: the event it
// returns, its metadata map and its nested objects are reused by the next
// Scan, so a caller must be done with an event before scanning the next.
type ExportScanner struct {
	flat    bool
	dest    []any
	e       event.Event
	scope   event.Entity
	request event.Request
	md      map[string]string
	parts   []string

	id                            uuid.UUID
	version                       uint32
	action                        string
	actor, target, scopeRaw       json.RawMessage
	payload, requestRaw           json.RawMessage
	packed                        string
	occurredNs                    int64
	success                       uint8
	scopeType, scopeName, scopeID string
}

// NewExportScanner returns a scanner for rows selected with
// ExportSelect(flat).
func NewExportScanner(flat bool) *ExportScanner {
	s := &ExportScanner{flat: flat, md: map[string]string{}}
	s.dest = []any{&s.id, &s.version, &s.action, &s.actor, &s.target, &s.scopeRaw, &s.payload,
		&s.packed, &s.occurredNs, &s.success, &s.requestRaw}
	if flat {
		s.dest = append(s.dest, &s.e.Actor.ID, &s.e.Actor.Type, &s.e.Actor.Name,
			&s.e.Target.ID, &s.e.Target.Type, &s.e.Target.Name,
			&s.scopeID, &s.scopeType, &s.scopeName, &s.request.ID)
	}
	return s
}

// Scan reads the current row of rows. The event is valid until the next
// Scan.
func (s *ExportScanner) Scan(rows driver.Rows) (*event.Event, error) {
	if err := rows.Scan(s.dest...); err != nil {
		return nil, fmt.Errorf("scanning event row: %w", err)
	}
	e := &s.e
	e.ID, e.Version, e.Action = s.id, s.version, s.action
	e.Actor.Raw, e.Target.Raw, e.Payload = s.actor, s.target, s.payload
	e.OccurredAt = time.Unix(0, s.occurredNs).UTC()
	e.Success = s.success != 0
	e.Scope, e.Request = nil, nil
	if len(s.scopeRaw) > 0 {
		s.scope = event.Entity{ID: s.scopeID, Type: s.scopeType, Name: s.scopeName, Raw: s.scopeRaw}
		e.Scope = &s.scope
	}
	if len(s.requestRaw) > 0 {
		s.request.Raw = s.requestRaw
		e.Request = &s.request
	}
	e.Metadata = nil
	if s.packed != "" {
		clear(s.md)
		if err := s.unpack(); err != nil {
			return nil, fmt.Errorf("event %s: metadata: %w", s.id, err)
		}
		e.Metadata = s.md
	}
	return e, nil
}

// unpack reads packedMetadata into s.md.
func (s *ExportScanner) unpack() error {
	s.parts = s.parts[:0]
	rest := s.packed
	for rest != "" {
		colon := strings.IndexByte(rest, ':')
		if colon < 0 {
			return fmt.Errorf("packed metadata: no length at %q", rest)
		}
		n, err := strconv.Atoi(rest[:colon])
		if err != nil || n < 0 || n > len(rest)-colon-1 {
			return fmt.Errorf("packed metadata: bad length %q", rest[:colon])
		}
		s.parts = append(s.parts, rest[colon+1:colon+1+n])
		rest = rest[colon+1+n:]
	}
	if len(s.parts)%2 != 0 {
		return fmt.Errorf("packed metadata: %d parts, want keys and values in pairs", len(s.parts))
	}
	half := len(s.parts) / 2
	for i, k := range s.parts[:half] {
		s.md[k] = s.parts[half+i]
	}
	return nil
}
