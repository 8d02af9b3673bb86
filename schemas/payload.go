package schemas

import (
	"bytes"
	"encoding/json"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// decode decodes a payload into the values the validator walks
// (map[string]any, []any, string, json.Number, bool, nil), exactly as
// encoding/json's Decoder with UseNumber would, in one pass without
// reflection: the ingester validates every event's payload, and the
// reflective decoder cost as much as the validation itself. It returns false
// for anything it does not handle (a syntax error, nesting beyond maxDepth),
// and Validate then decodes with encoding/json, which words the error.
//
// The strings of the tree are views of data, not copies: the tree lives only
// for one Validate call, which renders its error into new strings, and data
// does not change meanwhile.
func (d *payloadDecoder) decode(data []byte) (any, bool) {
	d.data, d.text, d.pos, d.depth = data, unsafe.String(unsafe.SliceData(data), len(data)), 0, 0
	d.space()
	v, ok := d.value()
	if !ok {
		return nil, false
	}
	d.space()
	// The Decoder reads the first value and ignores what follows; what would
	// follow is not something this decoder vouches for.
	return v, d.pos == len(d.data)
}

// maxDepth bounds the nesting decode follows.
const maxDepth = 512

type payloadDecoder struct {
	data []byte
	// text is data as a string: strings and numbers without escapes are
	// slices of it.
	text  string
	pos   int
	depth int

	// The objects and arrays of the tree decoded last (used) and emptied
	// ones to decode the next into (free): a payload's maps were a third
	// of what validation allocated, garbage the ingester's collector then
	// had to keep up with. See release.
	usedMaps, freeMaps     []map[string]any
	usedArrays, freeArrays [][]any
}

// Bounds on what a decoder keeps for reuse, so that one unusual payload does
// not pin its memory: a map or array larger than maxReusedLen is left to the
// collector, and so is anything beyond maxReused of each kind.
const (
	maxReusedLen = 64
	maxReused    = 256
)

var decoders = sync.Pool{New: func() any { return new(payloadDecoder) }}

// newPayloadDecoder returns a decoder from the pool. Call release once the
// tree it decoded is no longer used.
func newPayloadDecoder() *payloadDecoder { return decoders.Get().(*payloadDecoder) }

// release empties the maps and arrays of the last tree for the next decode
// and returns d to the pool: the tree must not be used any more.
func (d *payloadDecoder) release() {
	for _, m := range d.usedMaps {
		if len(m) <= maxReusedLen && len(d.freeMaps) < maxReused {
			clear(m)
			d.freeMaps = append(d.freeMaps, m)
		}
	}
	d.usedMaps = emptied(d.usedMaps)
	for _, a := range d.usedArrays {
		if 0 < cap(a) && cap(a) <= maxReusedLen && len(d.freeArrays) < maxReused {
			clear(a[:cap(a)])
			d.freeArrays = append(d.freeArrays, a[:0])
		}
	}
	d.usedArrays = emptied(d.usedArrays)
	d.data, d.text = nil, ""
	decoders.Put(d)
}

// emptied empties a list of the last tree's maps or arrays for the next
// tree, or drops it if one huge payload made it long.
func emptied[T any](list []T) []T {
	if cap(list) > 4*maxReused {
		return nil
	}
	clear(list)
	return list[:0]
}

// newMap returns an emptied map of an earlier tree, or a new one.
func (d *payloadDecoder) newMap() map[string]any {
	m, ok := pop(&d.freeMaps)
	if !ok {
		m = map[string]any{}
	}
	d.usedMaps = append(d.usedMaps, m)
	return m
}

// newArray returns an emptied array of an earlier tree, or a new one. It
// joins usedArrays once complete (see array).
func (d *payloadDecoder) newArray() []any {
	if a, ok := pop(&d.freeArrays); ok {
		return a
	}
	return []any{}
}

// pop takes the last element off list.
func pop[T any](list *[]T) (T, bool) {
	var zero T
	n := len(*list)
	if n == 0 {
		return zero, false
	}
	x := (*list)[n-1]
	(*list)[n-1] = zero
	*list = (*list)[:n-1]
	return x, true
}

func (d *payloadDecoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *payloadDecoder) byte(c byte) bool {
	if d.pos < len(d.data) && d.data[d.pos] == c {
		d.pos++
		return true
	}
	return false
}

func (d *payloadDecoder) value() (any, bool) {
	if d.pos >= len(d.data) {
		return nil, false
	}
	switch c := d.data[d.pos]; {
	case c == '{':
		return d.object()
	case c == '[':
		return d.array()
	case c == '"':
		s, ok := d.string()
		return s, ok
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, false
}

func (d *payloadDecoder) object() (any, bool) {
	if d.depth++; d.depth > maxDepth {
		return nil, false
	}
	d.pos++ // '{'
	m := d.newMap()
	d.space()
	if !d.byte('}') {
		for {
			if d.pos >= len(d.data) || d.data[d.pos] != '"' {
				return nil, false
			}
			k, ok := d.string()
			if !ok {
				return nil, false
			}
			d.space()
			if !d.byte(':') {
				return nil, false
			}
			d.space()
			v, ok := d.value()
			if !ok {
				return nil, false
			}
			m[k] = v // a repeated key keeps the last value, as encoding/json does
			d.space()
			if d.byte(',') {
				d.space()
				continue
			}
			if d.byte('}') {
				break
			}
			return nil, false
		}
	}
	d.depth--
	return m, true
}

func (d *payloadDecoder) array() (any, bool) {
	if d.depth++; d.depth > maxDepth {
		return nil, false
	}
	d.pos++ // '['
	a := d.newArray()
	d.space()
	if !d.byte(']') {
		for {
			v, ok := d.value()
			if !ok {
				return nil, false
			}
			a = append(a, v)
			d.space()
			if d.byte(',') {
				d.space()
				continue
			}
			if d.byte(']') {
				break
			}
			return nil, false
		}
	}
	d.depth--
	// Kept once complete: appending may have moved it.
	d.usedArrays = append(d.usedArrays, a)
	return a, true
}

// string decodes a string. Text without escapes is copied as it is;
// escapes are left to encoding/json, and so is invalid UTF-8, which it
// replaces.
func (d *payloadDecoder) string() (string, bool) {
	start := d.pos
	d.pos++ // '"'
	escaped := false
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			text := d.data[start+1 : d.pos-1]
			if !escaped && utf8.Valid(text) {
				return d.text[start+1 : d.pos-1], true
			}
			var s string
			if err := json.Unmarshal(d.data[start:d.pos], &s); err != nil {
				return "", false
			}
			return s, true
		case c < 0x20:
			return "", false
		case c == '\\':
			escaped = true
			d.pos += 2 // json.Unmarshal checks the escape
		default:
			d.pos++
		}
	}
	return "", false
}

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and keeps its
// text, as UseNumber does.
func (d *payloadDecoder) number() (any, bool) {
	start := d.pos
	d.byte('-')
	switch {
	case d.byte('0'):
	case d.pos < len(d.data) && '1' <= d.data[d.pos] && d.data[d.pos] <= '9':
		d.digits()
	default:
		return nil, false
	}
	if d.byte('.') && !d.digits() {
		return nil, false
	}
	if d.byte('e') || d.byte('E') {
		if !d.byte('+') {
			d.byte('-')
		}
		if !d.digits() {
			return nil, false
		}
	}
	return json.Number(d.text[start:d.pos]), true
}

func (d *payloadDecoder) digits() bool {
	start := d.pos
	for d.pos < len(d.data) && '0' <= d.data[d.pos] && d.data[d.pos] <= '9' {
		d.pos++
	}
	return d.pos > start
}

func (d *payloadDecoder) literal(lit string) bool {
	if !bytes.HasPrefix(d.data[d.pos:], []byte(lit)) {
		return false
	}
	d.pos += len(lit)
	return true
}
