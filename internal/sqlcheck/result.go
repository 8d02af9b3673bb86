package sqlcheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Table is a query result in ClickHouse's JSONCompact format: the column
// names and types, and the rows as JSON values (64-bit integers are quoted
// strings there, so nothing is lost to float64).
type Table struct {
	Meta []Column            `json:"meta"`
	Data [][]json.RawMessage `json:"data"`
}

// Column is one column of a Table.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// ParseTable decodes JSONCompact output.
func ParseTable(out []byte) (*Table, error) {
	var t Table
	if err := json.Unmarshal(out, &t); err != nil {
		return nil, fmt.Errorf("not JSONCompact output: %v: %.200s", err, out)
	}
	return &t, nil
}

// Diff describes how b differs from a (column names and types, then rows,
// value by value after compacting each JSON value), or returns "" when they
// are equal.
func Diff(a, b *Table, aName, bName string) string {
	var out strings.Builder
	if fmt.Sprint(a.Meta) != fmt.Sprint(b.Meta) {
		fmt.Fprintf(&out, "columns differ:\n  %s: %v\n  %s: %v\n", aName, a.Meta, bName, b.Meta)
	}
	if len(a.Data) != len(b.Data) {
		fmt.Fprintf(&out, "%s has %d rows, %s has %d\n", aName, len(a.Data), bName, len(b.Data))
	}
	for i := range min(len(a.Data), len(b.Data)) {
		ra, rb := compactRow(a.Data[i]), compactRow(b.Data[i])
		if ra != rb {
			fmt.Fprintf(&out, "row %d differs:\n  %s: %s\n  %s: %s\n", i, aName, ra, bName, rb)
		}
	}
	return out.String()
}

func compactRow(row []json.RawMessage) string {
	parts := make([]string, len(row))
	for i, v := range row {
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			parts[i] = string(v)
			continue
		}
		parts[i] = buf.String()
	}
	return "[" + strings.Join(parts, ",") + "]"
}
