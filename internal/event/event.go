package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"slices"
	"time"

	"github.com/google/uuid"
)

// TimeLayout renders occurred_at: RFC 3339 in UTC with all nine fractional
// digits, so rendered times sort as strings and never lose a digit.
const TimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Event is one validated audit event. Its byte slices are read-only once
// it is decoded: they may share memory with the message it came from and
// with strings made from them (see ParseJSONShared and store.EventBlock).
type Event struct {
	ID      uuid.UUID
	Version uint32
	Action  string
	Actor   Entity
	Target  Entity
	// Scope is nil when the event belongs to no account.
	Scope *Entity
	// Payload is a compact JSON object, `{}` when none was sent.
	Payload json.RawMessage
	// Metadata is nil when none was sent.
	Metadata   map[string]string
	OccurredAt time.Time
	Success    bool
	// Request is nil when none was sent.
	Request *Request
}

// Entity is an actor, target or scope. ID, Type and Name are copies of the
// members of Raw that the service filters on; Raw is what was sent.
type Entity struct {
	ID   string
	Type string
	// Name is empty when the object has no name (or an empty one).
	Name string
	// Raw is the object as sent, compact JSON.
	Raw json.RawMessage
}

// Request is the external request that caused an event.
type Request struct {
	// ID is empty when the object has no id.
	ID string
	// Raw is the object as sent, compact JSON.
	Raw json.RawMessage
}

// ScopeID returns the scope id, or "" for an event without a scope.
func (e *Event) ScopeID() string {
	if e.Scope == nil {
		return ""
	}
	return e.Scope.ID
}

// RequestID returns the request id, or "" when there is none.
func (e *Event) RequestID() string {
	if e.Request == nil {
		return ""
	}
	return e.Request.ID
}

// MarshalJSON renders the event as the contract's JSON object: fields in the
// contract's order, nested objects exactly as sent, payload and metadata
// always present, scope and request only when the event has them.
func (e *Event) MarshalJSON() ([]byte, error) {
	return e.AppendJSON(make([]byte, 0, 512)), nil
}

// AppendJSON appends the JSON rendering of MarshalJSON to buf. It allocates
// nothing beyond buf's growth, which matters on the export path.
func (e *Event) AppendJSON(buf []byte) []byte {
	buf = append(buf, `{"id":"`...)
	buf = AppendUUID(buf, e.ID)
	buf = append(buf, `","version":`...)
	buf = appendUint(buf, uint64(e.Version))
	buf = append(buf, `,"action":`...)
	buf = appendJSONString(buf, e.Action)
	buf = append(buf, `,"actor":`...)
	buf = append(buf, e.Actor.Raw...)
	buf = append(buf, `,"target":`...)
	buf = append(buf, e.Target.Raw...)
	if e.Scope != nil {
		buf = append(buf, `,"scope":`...)
		buf = append(buf, e.Scope.Raw...)
	}
	buf = append(buf, `,"payload":`...)
	buf = append(buf, e.PayloadJSON()...)
	buf = append(buf, `,"metadata":`...)
	buf = AppendMetadataJSON(buf, e.Metadata)
	buf = append(buf, `,"occurred_at":"`...)
	buf = AppendTime(buf, e.OccurredAt)
	buf = append(buf, `","success":`...)
	if e.Success {
		buf = append(buf, "true"...)
	} else {
		buf = append(buf, "false"...)
	}
	if e.Request != nil {
		buf = append(buf, `,"request":`...)
		buf = append(buf, e.Request.Raw...)
	}
	return append(buf, '}')
}

// PayloadJSON returns the payload, `{}` when it is empty.
func (e *Event) PayloadJSON() json.RawMessage {
	if len(e.Payload) == 0 {
		return json.RawMessage("{}")
	}
	return e.Payload
}

// ContentHash identifies the content of an event: two deliveries of one id
// with different hashes are a conflict. It hashes the canonical rendering,
// which keeps nested objects byte for byte as sent, so a redelivered Kafka
// message always hashes the same.
func (e *Event) ContentHash() uint64 {
	sum := sha256.Sum256(e.AppendJSON(make([]byte, 0, 1024)))
	return binary.BigEndian.Uint64(sum[:8])
}

// AppendMetadataJSON appends metadata as a JSON object with sorted keys, `{}`
// when empty.
func AppendMetadataJSON(buf []byte, md map[string]string) []byte {
	if len(md) == 0 {
		return append(buf, "{}"...)
	}
	// Sorted keys in a stack array for the usual handful: the export
	// renders metadata on every row.
	var small [16]string
	keys := small[:0]
	if len(md) > len(small) {
		keys = make([]string, 0, len(md))
	}
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	buf = append(buf, '{')
	for i, k := range keys {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSONString(buf, k)
		buf = append(buf, ':')
		buf = appendJSONString(buf, md[k])
	}
	return append(buf, '}')
}

// AppendUUID appends id in its canonical text form, as id.String() renders
// it, without allocating a string (the export renders one per row).
func AppendUUID(buf []byte, id uuid.UUID) []byte {
	var text [36]byte
	hex.Encode(text[0:8], id[0:4])
	text[8] = '-'
	hex.Encode(text[9:13], id[4:6])
	text[13] = '-'
	hex.Encode(text[14:18], id[6:8])
	text[18] = '-'
	hex.Encode(text[19:23], id[8:10])
	text[23] = '-'
	hex.Encode(text[24:], id[10:])
	return append(buf, text[:]...)
}

func appendUint(buf []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(buf, tmp[i:]...)
}

// appendJSONString appends s as a JSON string with the encoding/json escaping
// rules (minus HTML escaping, which would change stored text).
func appendJSONString(buf []byte, s string) []byte {
	if needsNoEscape(s) {
		buf = append(buf, '"')
		buf = append(buf, s...)
		return append(buf, '"')
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // encoding a string cannot fail
	return append(buf, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...)
}

// needsNoEscape reports whether s is plain printable ASCII without quotes or
// backslashes, the common case that can be copied as is.
func needsNoEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// AppendTime appends t as TimeLayout renders it (UTC, nine fractional
// digits), several times faster than time.AppendFormat, which shows on
// millions of rows: every exported row, and every ingested event's
// ContentHash.
func AppendTime(buf []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	if year < 0 || year > 9999 {
		return t.AppendFormat(buf, TimeLayout)
	}
	var tmp [30]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			tmp[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	tmp[4] = '-'
	put(5, 2, int(month))
	tmp[7] = '-'
	put(8, 2, day)
	tmp[10] = 'T'
	put(11, 2, hour)
	tmp[13] = ':'
	put(14, 2, minute)
	tmp[16] = ':'
	put(17, 2, sec)
	tmp[19] = '.'
	put(20, 9, t.Nanosecond())
	tmp[29] = 'Z'
	return append(buf, tmp[:]...)
}
