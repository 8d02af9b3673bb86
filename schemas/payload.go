package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// decodePayload decodes a payload into the values the validator walks
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
func decodePayload(data []byte) (any, bool) {
	d := payloadDecoder{data: data, text: unsafe.String(unsafe.SliceData(data), len(data))}
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

// maxDepth bounds the nesting decodePayload follows.
const maxDepth = 512

type payloadDecoder struct {
	data []byte
	// text is data as a string: strings and numbers without escapes are
	// slices of it.
	text  string
	pos   int
	depth int
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
	m := map[string]any{}
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
	a := []any{}
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
