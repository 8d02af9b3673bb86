package event

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/google/uuid"
)

// parseFast is the ingester's hot path: it decodes an event in one pass over
// the bytes, without reflection, maps of members or a second Unmarshal per
// object. It only ever accepts: on anything it is not sure about (a syntax
// error, an unknown or repeated member, an escaped key, a value of the wrong
// kind, a missing field) it returns false and ParseJSON falls back to
// parseSlow, which decides and words the error. So every rejection comes
// from parseSlow, and the differential tests in decode_diff_test.go hold
// what parseFast accepts to parseSlow's result (the same Event, rendering
// and content hash).
func parseFast(data []byte, shared bool) (*Event, bool) {
	if !utf8.Valid(data) {
		return nil, false
	}
	s := scanner{data: data}
	var f [numFields]span
	if !s.envelope(&f) {
		return nil, false
	}
	// The message backs the raw objects and the strings of the event,
	// instead of one allocation per field: a copy of it, unless the caller
	// gave data up (ParseJSONShared). The strings are views of the same
	// bytes, which nothing writes to once decoded: the raw objects' slices
	// end where their value ends (see raw), so an append to one copies.
	buf := data
	if !shared {
		buf = bytes.Clone(data)
	}
	d := decoded{buf: buf, text: unsafe.String(unsafe.SliceData(buf), len(buf))}

	var e Event
	var ok bool
	if e.ID, ok = d.id(f[fID]); !ok {
		return nil, false
	}
	if e.Version, ok = d.version(f[fVersion]); !ok {
		return nil, false
	}
	if e.Action, ok = d.str(f[fAction]); !ok || ValidateAction(e.Action) != nil {
		return nil, false
	}
	if e.Actor, ok = d.entity(f[fActor]); !ok {
		return nil, false
	}
	if e.Target, ok = d.entity(f[fTarget]); !ok {
		return nil, false
	}
	if sp := f[fScope]; sp.present() && !d.isNull(sp) {
		scope, ok := d.entity(sp)
		if !ok {
			return nil, false
		}
		e.Scope = &scope
	}
	if sp := f[fPayload]; !sp.present() || d.isNull(sp) {
		e.Payload = json.RawMessage("{}")
	} else if d.buf[sp.start] == '{' {
		e.Payload = d.raw(sp)
	} else {
		return nil, false
	}
	if sp := f[fMetadata]; sp.present() && !d.isNull(sp) {
		if e.Metadata, ok = d.metadata(sp); !ok {
			return nil, false
		}
	}
	occurred, ok := d.str(f[fOccurredAt])
	if !ok {
		return nil, false
	}
	t, err := ParseTimeString("occurred_at", occurred)
	if err != nil || checkOccurredAt(t) != nil {
		return nil, false
	}
	e.OccurredAt = t
	switch string(d.bytes(f[fSuccess])) {
	case "true":
		e.Success = true
	case "false":
	default:
		return nil, false
	}
	if sp := f[fRequest]; sp.present() && !d.isNull(sp) {
		req, ok := d.request(sp)
		if !ok {
			return nil, false
		}
		e.Request = req
	}
	return &e, true
}

// The top-level members of the envelope, indexes into the spans parseFast
// collects.
const (
	fID = iota
	fVersion
	fAction
	fActor
	fTarget
	fScope
	fPayload
	fMetadata
	fOccurredAt
	fSuccess
	fRequest
	numFields
)

func envelopeField(key []byte) int {
	switch string(key) { // the compiler does not allocate for this conversion
	case "id":
		return fID
	case "version":
		return fVersion
	case "action":
		return fAction
	case "actor":
		return fActor
	case "target":
		return fTarget
	case "scope":
		return fScope
	case "payload":
		return fPayload
	case "metadata":
		return fMetadata
	case "occurred_at":
		return fOccurredAt
	case "success":
		return fSuccess
	case "request":
		return fRequest
	}
	return -1
}

// span is where one JSON value lies in the message.
type span struct {
	start, end int
	// spaced is true when the value has whitespace between its tokens, so it
	// must be compacted before it is kept.
	spaced bool
}

// present is false for the zero span, a member that was not sent (no value
// starts at offset 0: the envelope's '{' is there).
func (sp span) present() bool { return sp.end > 0 }

// scanner walks a JSON document, checking its syntax with the rules of
// encoding/json: RFC 8259 with whitespace limited to space, tab, CR and LF.
// The bytes are known to be valid UTF-8.
type scanner struct {
	data []byte
	pos  int
	// depth is the nesting depth of the value being scanned.
	depth int
	// spaced records that whitespace was skipped since it was last cleared.
	spaced bool
}

// maxDepth bounds the nesting the fast path follows; deeper documents go to
// encoding/json, which has its own (larger) limit.
const maxDepth = 512

// envelope scans the whole message as an object of known, distinct members
// and records where each value lies in f.
func (s *scanner) envelope(f *[numFields]span) bool {
	s.space()
	if !s.byte('{') {
		return false
	}
	s.space()
	if !s.byte('}') {
		for {
			key, ok := s.key()
			if !ok {
				return false
			}
			i := envelopeField(s.data[key.start:key.end])
			if i < 0 || f[i].present() {
				return false
			}
			sp, ok := s.member()
			if !ok {
				return false
			}
			f[i] = sp
			if s.byte(',') {
				s.space()
				continue
			}
			if s.byte('}') {
				break
			}
			return false
		}
	}
	s.space()
	return s.pos == len(s.data)
}

// key scans an object key without escapes and returns where its text lies,
// without the quotes.
func (s *scanner) key() (span, bool) {
	start := s.pos
	escaped, ok := s.string()
	if !ok || escaped {
		return span{}, false
	}
	return span{start: start + 1, end: s.pos - 1}, true
}

// member scans the ':' after a key and the value after it, and the
// whitespace after the value.
func (s *scanner) member() (span, bool) {
	s.space()
	if !s.byte(':') {
		return span{}, false
	}
	s.space()
	s.spaced = false
	start := s.pos
	if !s.value() {
		return span{}, false
	}
	sp := span{start: start, end: s.pos, spaced: s.spaced}
	s.space()
	return sp, true
}

func (s *scanner) space() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
			s.spaced = true
		default:
			return
		}
	}
}

// byte consumes c when it is next.
func (s *scanner) byte(c byte) bool {
	if s.pos < len(s.data) && s.data[s.pos] == c {
		s.pos++
		return true
	}
	return false
}

func (s *scanner) value() bool {
	if s.pos >= len(s.data) {
		return false
	}
	switch c := s.data[s.pos]; {
	case c == '{':
		return s.object()
	case c == '[':
		return s.array()
	case c == '"':
		_, ok := s.string()
		return ok
	case c == '-' || isDigit(c):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) object() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.pos++ // '{'
	s.space()
	if !s.byte('}') {
		for {
			if _, ok := s.string(); !ok {
				return false
			}
			s.space()
			if !s.byte(':') {
				return false
			}
			s.space()
			if !s.value() {
				return false
			}
			s.space()
			if s.byte(',') {
				s.space()
				continue
			}
			if s.byte('}') {
				break
			}
			return false
		}
	}
	s.depth--
	return true
}

func (s *scanner) array() bool {
	if s.depth++; s.depth > maxDepth {
		return false
	}
	s.pos++ // '['
	s.space()
	if !s.byte(']') {
		for {
			if !s.value() {
				return false
			}
			s.space()
			if s.byte(',') {
				s.space()
				continue
			}
			if s.byte(']') {
				break
			}
			return false
		}
	}
	s.depth--
	return true
}

// string scans a string; escaped reports a backslash in it.
func (s *scanner) string() (escaped, ok bool) {
	if !s.byte('"') {
		return false, false
	}
	data, pos := s.data, s.pos
	for {
		for pos < len(data) && plain[data[pos]] {
			pos++
		}
		if pos >= len(data) {
			return false, false
		}
		switch c := data[pos]; {
		case c == '"':
			s.pos = pos + 1
			return escaped, true
		case c == '\\':
			escaped = true
			if pos+1 >= len(data) {
				return false, false
			}
			switch data[pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				pos += 2
			case 'u':
				if pos+6 > len(data) {
					return false, false
				}
				for _, h := range data[pos+2 : pos+6] {
					if !isHex(h) {
						return false, false
					}
				}
				pos += 6
			default:
				return false, false
			}
		default: // a control character
			return false, false
		}
	}
}

// plain marks the bytes that stand for themselves in a JSON string: not a
// quote, a backslash or a control character.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// number scans -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	s.byte('-')
	switch {
	case s.byte('0'):
	case s.pos < len(s.data) && s.data[s.pos] >= '1' && s.data[s.pos] <= '9':
		s.digits()
	default:
		return false
	}
	if s.byte('.') && !s.digits() {
		return false
	}
	if s.byte('e') || s.byte('E') {
		if !s.byte('+') {
			s.byte('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits scans [0-9]* and reports whether there was at least one.
func (s *scanner) digits() bool {
	start := s.pos
	for s.pos < len(s.data) && isDigit(s.data[s.pos]) {
		s.pos++
	}
	return s.pos > start
}

func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.data[s.pos:], []byte(lit)) {
		return false
	}
	s.pos += len(lit)
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// decoded holds the copy of a scanned message that backs the decoded event:
// buf for raw JSON, text for strings (substrings share its memory).
type decoded struct {
	buf  []byte
	text string
}

func (d *decoded) bytes(sp span) []byte { return d.buf[sp.start:sp.end] }

func (d *decoded) isNull(sp span) bool { return string(d.bytes(sp)) == "null" }

// raw returns a value as compact JSON. The slice's capacity ends with it, so
// appending to it never writes over the next value.
func (d *decoded) raw(sp span) json.RawMessage {
	if !sp.spaced {
		return d.buf[sp.start:sp.end:sp.end]
	}
	return compact(d.bytes(sp))
}

// str returns the text of a string value; false when the value is not a
// string.
func (d *decoded) str(sp span) (string, bool) {
	if !sp.present() || d.buf[sp.start] != '"' {
		return "", false
	}
	quoted := d.text[sp.start:sp.end]
	inner := quoted[1 : len(quoted)-1]
	if strings.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	var s string
	if err := json.Unmarshal(d.bytes(sp), &s); err != nil {
		return "", false
	}
	return s, true
}

// optionalStr is str for a member that may be absent or null ("").
func (d *decoded) optionalStr(sp span) (string, bool) {
	if !sp.present() || d.isNull(sp) {
		return "", true
	}
	return d.str(sp)
}

func (d *decoded) id(sp span) (uuid.UUID, bool) {
	s, ok := d.str(sp)
	if !ok || len(s) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, false
	}
	return id, true
}

func (d *decoded) version(sp span) (uint32, bool) {
	if !sp.present() {
		return 0, false
	}
	var v uint64
	for _, c := range d.bytes(sp) {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
		if v > math.MaxUint32 {
			return 0, false
		}
	}
	if v < 1 {
		return 0, false
	}
	return uint32(v), true
}

// members scans the object at sp and calls fn with the text of each key
// (keys with escapes are left to encoding/json) and the span of its value,
// until fn returns false.
func (d *decoded) members(sp span, fn func(key, value span) bool) bool {
	if !sp.present() || d.buf[sp.start] != '{' {
		return false
	}
	s := scanner{data: d.buf[:sp.end], pos: sp.start + 1}
	s.space()
	if s.byte('}') {
		return true
	}
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		value, ok := s.member()
		if !ok || !fn(key, value) {
			return false
		}
		if s.byte(',') {
			s.space()
			continue
		}
		return s.byte('}')
	}
}

func (d *decoded) entity(sp span) (Entity, bool) {
	var id, typ, name span
	ok := d.members(sp, func(key, value span) bool {
		var dst *span
		switch string(d.bytes(key)) {
		case "id":
			dst = &id
		case "type":
			dst = &typ
		case "name":
			dst = &name
		default:
			return true
		}
		if dst.present() {
			return false // repeated: encoding/json keeps the last, leave it to it
		}
		*dst = value
		return true
	})
	if !ok {
		return Entity{}, false
	}
	var ent Entity
	if ent.ID, ok = d.str(id); !ok || ent.ID == "" {
		return Entity{}, false
	}
	if ent.Type, ok = d.str(typ); !ok || ent.Type == "" {
		return Entity{}, false
	}
	if ent.Name, ok = d.optionalStr(name); !ok {
		return Entity{}, false
	}
	ent.Raw = d.raw(sp)
	return ent, true
}

func (d *decoded) request(sp span) (*Request, bool) {
	var id span
	ok := d.members(sp, func(key, value span) bool {
		if string(d.bytes(key)) != "id" {
			return true
		}
		if id.present() {
			return false
		}
		id = value
		return true
	})
	if !ok {
		return nil, false
	}
	reqID, ok := d.optionalStr(id)
	if !ok {
		return nil, false
	}
	return &Request{ID: reqID, Raw: d.raw(sp)}, true
}

// metadata decodes an object of strings; nil when it is empty.
func (d *decoded) metadata(sp span) (map[string]string, bool) {
	var md map[string]string
	ok := d.members(sp, func(key, value span) bool {
		v, ok := d.str(value)
		if !ok {
			return false
		}
		if md == nil {
			md = make(map[string]string, 4)
		}
		md[d.text[key.start:key.end]] = v
		return true
	})
	return md, ok
}
