package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/internal/apierr"
	"github.com/auditlog/auditlog/internal/event"
)

// column is one CSV column: its header name and how to render its cell
// (before quoting and formula neutralisation).
type column struct {
	name   string
	render func(buf []byte, e *event.Event) []byte
	// flat columns show a filterable copy of an entity member, which the
	// export reads only when asked for (store.ExportSelect).
	flat bool
}

// DefaultColumns are the CSV columns of DESIGN.md, in order.
var DefaultColumns = []string{"id", "occurred_at", "action", "version", "success", "actor", "target", "scope", "payload", "metadata", "request"}

// columnsByName holds every column columns= may name: the default ones and
// the flat fields for spreadsheets.
var columnsByName = map[string]column{}

func init() {
	all := []column{
		{"id", func(b []byte, e *event.Event) []byte { return event.AppendUUID(b, e.ID) }, false},
		{"occurred_at", func(b []byte, e *event.Event) []byte { return event.AppendTime(b, e.OccurredAt) }, false},
		{"action", func(b []byte, e *event.Event) []byte { return append(b, e.Action...) }, false},
		{"version", func(b []byte, e *event.Event) []byte { return strconv.AppendUint(b, uint64(e.Version), 10) }, false},
		{"success", func(b []byte, e *event.Event) []byte { return strconv.AppendBool(b, e.Success) }, false},
		{"actor", func(b []byte, e *event.Event) []byte { return append(b, e.Actor.Raw...) }, false},
		{"target", func(b []byte, e *event.Event) []byte { return append(b, e.Target.Raw...) }, false},
		{"scope", func(b []byte, e *event.Event) []byte {
			if e.Scope == nil {
				return b
			}
			return append(b, e.Scope.Raw...)
		}, false},
		{"payload", func(b []byte, e *event.Event) []byte { return append(b, e.PayloadJSON()...) }, false},
		{"metadata", func(b []byte, e *event.Event) []byte { return event.AppendMetadataJSON(b, e.Metadata) }, false},
		{"request", func(b []byte, e *event.Event) []byte {
			if e.Request == nil {
				return b
			}
			return append(b, e.Request.Raw...)
		}, false},
		{"actor_id", func(b []byte, e *event.Event) []byte { return append(b, e.Actor.ID...) }, true},
		{"actor_type", func(b []byte, e *event.Event) []byte { return append(b, e.Actor.Type...) }, true},
		{"actor_name", func(b []byte, e *event.Event) []byte { return append(b, e.Actor.Name...) }, true},
		{"target_id", func(b []byte, e *event.Event) []byte { return append(b, e.Target.ID...) }, true},
		{"target_type", func(b []byte, e *event.Event) []byte { return append(b, e.Target.Type...) }, true},
		{"target_name", func(b []byte, e *event.Event) []byte { return append(b, e.Target.Name...) }, true},
		{"scope_id", func(b []byte, e *event.Event) []byte { return append(b, e.ScopeID()...) }, true},
		{"scope_type", func(b []byte, e *event.Event) []byte {
			if e.Scope == nil {
				return b
			}
			return append(b, e.Scope.Type...)
		}, true},
		{"scope_name", func(b []byte, e *event.Event) []byte {
			if e.Scope == nil {
				return b
			}
			return append(b, e.Scope.Name...)
		}, true},
		{"request_id", func(b []byte, e *event.Event) []byte { return append(b, e.RequestID()...) }, true},
	}
	for _, c := range all {
		columnsByName[c.name] = c
	}
}

// ColumnNames lists every column columns= accepts, defaults first.
func ColumnNames() []string {
	return append(append([]string(nil), DefaultColumns...),
		"actor_id", "actor_type", "actor_name", "target_id", "target_type", "target_name",
		"scope_id", "scope_type", "scope_name", "request_id")
}

// parseColumns reads columns= values, each comma-separated, into columns.
// None means the default columns.
func parseColumns(values []string) ([]column, error) {
	var names []string
	for _, v := range values {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				names = append(names, name)
			}
		}
	}
	if len(values) > 0 && len(names) == 0 {
		return nil, apierr.InvalidArgument("columns", "is empty; leave it out for the default columns")
	}
	if len(names) == 0 {
		names = DefaultColumns
	}
	cols := make([]column, 0, len(names))
	seen := map[string]bool{}
	for _, name := range names {
		c, ok := columnsByName[strings.ToLower(name)]
		if !ok {
			return nil, apierr.InvalidArgument("columns", "unknown column %q; known columns: %s", name, strings.Join(ColumnNames(), ","))
		}
		if seen[c.name] {
			return nil, apierr.InvalidArgument("columns", "column %q is named twice", c.name)
		}
		seen[c.name] = true
		cols = append(cols, c)
	}
	return cols, nil
}

// encoder renders CSV records. Its scratch buffer is reused for every cell,
// so rendering allocates nothing per row.
type encoder struct {
	columns []column
	escape  bool
	cell    []byte
}

func (enc *encoder) appendHeader(buf []byte) []byte {
	for i, c := range enc.columns {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, c.name...)
	}
	return append(buf, '\r', '\n')
}

func (enc *encoder) appendCSV(buf []byte, e *event.Event) []byte {
	for i, c := range enc.columns {
		if i > 0 {
			buf = append(buf, ',')
		}
		enc.cell = c.render(enc.cell[:0], e)
		buf = appendField(buf, enc.cell, enc.escape)
	}
	return append(buf, '\r', '\n')
}

// appendErrorRow appends the record that ends a failed CSV export: one
// unquoted field starting with #ERROR, which no data record can be. The
// message loses the characters that would need quoting, so the line reads
// the same in a text editor and in a CSV reader.
func (enc *encoder) appendErrorRow(buf []byte, rows int64, msg string) []byte {
	msg = strings.NewReplacer(",", ";", `"`, "'", "\r", " ", "\n", " ").Replace(msg)
	buf = fmt.Appendf(buf, "#ERROR: export failed after %d rows: %s", rows, msg)
	return append(buf, '\r', '\n')
}

// appendErrorLine appends the line that ends a failed NDJSON export.
func appendErrorLine(buf []byte, rows int64, st *status.Status) []byte {
	line, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": code.Code(st.Code()).String(), "message": st.Message(), "rows": rows,
	}})
	return append(append(buf, line...), '\n')
}

// formulaStart reports whether a spreadsheet would run a cell starting with
// c as a formula (OWASP: = + - @, and tab and CR, which some programs strip
// before looking).
func formulaStart(c byte) bool {
	switch c {
	case '=', '+', '-', '@', '\t', '\r':
		return true
	}
	return false
}

// needsQuotes marks the bytes that make RFC 4180 quote a field.
var needsQuotes = [256]bool{'"': true, ',': true, '\r': true, '\n': true}

// appendField appends one RFC 4180 field: quoted when it holds a quote,
// comma, CR or LF, with quotes doubled; with escape, a leading ' when it
// starts like a formula.
func appendField(buf, cell []byte, escape bool) []byte {
	quote := false
	if len(cell) > 0 && cell[0] == '{' {
		// The big JSON cells: vectorised searches beat the byte loop. A JSON
		// object always has a quote, so the rest rarely runs.
		quote = bytes.IndexByte(cell, '"') >= 0 || bytes.IndexByte(cell, ',') >= 0 ||
			bytes.IndexByte(cell, '\n') >= 0 || bytes.IndexByte(cell, '\r') >= 0
	} else {
		for _, c := range cell {
			if needsQuotes[c] {
				quote = true
				break
			}
		}
	}
	if quote {
		buf = append(buf, '"')
	}
	if escape && len(cell) > 0 && formulaStart(cell[0]) {
		buf = append(buf, '\'')
	}
	if !quote {
		return append(buf, cell...)
	}
	// One pass into room for the worst case (every byte a quote): JSON
	// cells hold dozens of quotes, and a search per quote costs more.
	n := len(buf)
	buf = slices.Grow(buf, 2*len(cell)+1)[:n+2*len(cell)+1]
	for _, c := range cell {
		buf[n] = c
		n++
		if c == '"' {
			buf[n] = '"'
			n++
		}
	}
	buf[n] = '"'
	return buf[:n+1]
}
