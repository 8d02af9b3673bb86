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
// It allocates per row only the strings the driver returns.
type ExportScanner struct {
	flat  bool
	dest  []any
	parts []string

	id                                       uuid.UUID
	version                                  uint32
	action                                   string
	actor, target, scopeRaw                  json.RawMessage
	payload, requestRaw                      json.RawMessage
	packed                                   string
	occurredNs                               int64
	success                                  uint8
	actorID, actorType, actorName            string
	targetID, targetType, targetName         string
	scopeID, scopeType, scopeName, requestID string
}

// ExportRow holds a scanned event with what it points to (scope, request,
// metadata map), so that rows can be reused rather than allocated: an
// event is valid until its row is scanned into again.
type ExportRow struct {
	Event   event.Event
	scope   event.Entity
	request event.Request
	md      map[string]string
}

// NewExportScanner returns a scanner for rows selected with
// ExportSelect(flat).
func NewExportScanner(flat bool) *ExportScanner {
	s := &ExportScanner{flat: flat}
	s.dest = []any{&s.id, &s.version, &s.action, &s.actor, &s.target, &s.scopeRaw, &s.payload,
		&s.packed, &s.occurredNs, &s.success, &s.requestRaw}
	if flat {
		s.dest = append(s.dest, &s.actorID, &s.actorType, &s.actorName,
			&s.targetID, &s.targetType, &s.targetName,
			&s.scopeID, &s.scopeType, &s.scopeName, &s.requestID)
	}
	return s
}

// ScanInto reads the current row of rows into r.
func (s *ExportScanner) ScanInto(rows driver.Rows, r *ExportRow) (*event.Event, error) {
	if err := rows.Scan(s.dest...); err != nil {
		return nil, fmt.Errorf("scanning event row: %w", err)
	}
	e := &r.Event
	e.ID, e.Version, e.Action = s.id, s.version, s.action
	e.Actor = event.Entity{ID: s.actorID, Type: s.actorType, Name: s.actorName, Raw: s.actor}
	e.Target = event.Entity{ID: s.targetID, Type: s.targetType, Name: s.targetName, Raw: s.target}
	e.Payload = s.payload
	e.OccurredAt = time.Unix(0, s.occurredNs).UTC()
	e.Success = s.success != 0
	e.Scope, e.Request = nil, nil
	if len(s.scopeRaw) > 0 {
		r.scope = event.Entity{ID: s.scopeID, Type: s.scopeType, Name: s.scopeName, Raw: s.scopeRaw}
		e.Scope = &r.scope
	}
	if len(s.requestRaw) > 0 {
		r.request = event.Request{ID: s.requestID, Raw: s.requestRaw}
		e.Request = &r.request
	}
	e.Metadata = nil
	if s.packed != "" {
		if r.md == nil {
			r.md = map[string]string{}
		}
		clear(r.md)
		if err := s.unpack(r.md); err != nil {
			return nil, fmt.Errorf("event %s: metadata: %w", s.id, err)
		}
		e.Metadata = r.md
	}
	return e, nil
}

// unpack reads packedMetadata into md.
func (s *ExportScanner) unpack(md map[string]string) error {
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
		md[k] = s.parts[half+i]
	}
	return nil
}
