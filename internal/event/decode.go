package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// MaxActionLen is the longest action accepted, in bytes.
const MaxActionLen = 128

// FieldError is a rejection of one event, naming the field at fault so that a
// person reading the quarantine can act on it.
type FieldError struct {
	// Field is the JSON name of the field at fault, e.g. "occurred_at" or
	// "actor.id"; empty when the whole message is at fault.
	Field string
	// Problem says what is wrong with it.
	Problem string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// knownFields are the top-level members of the envelope; anything else is a
// typo or a format this service does not understand, and is rejected rather
// than silently dropped.
var knownFields = map[string]bool{
	"id": true, "version": true, "action": true, "actor": true, "target": true,
	"scope": true, "payload": true, "metadata": true, "occurred_at": true,
	"success": true, "request": true,
}

// ParseJSON decodes and validates one event in the JSON wire format. Every
// error is a *FieldError naming the field at fault.
//
// Well-formed events take parseFast, a single pass without reflection (the
// ingester decodes every message, and encoding/json into maps cost it most
// of its CPU); whatever parseFast does not accept goes through parseSlow,
// which is the reference: it decides every rejection and words its error.
func ParseJSON(data []byte) (*Event, error) {
	if e, ok := parseFast(data, false); ok {
		return e, nil
	}
	return parseSlow(data)
}

// ParseJSONShared is ParseJSON for a caller that gives data up: the event's
// strings and raw objects point into data rather than into a copy of it, so
// data must never be written to afterwards. The ingester decodes Kafka
// message values with it, which kafka-go allocates per message and nothing
// writes to; the message and its event then share one buffer.
func ParseJSONShared(data []byte) (*Event, error) {
	if e, ok := parseFast(data, true); ok {
		return e, nil
	}
	return parseSlow(data)
}

// parseSlow is ParseJSON on encoding/json, written for clarity: each field
// is checked in turn and the first fault is reported.
func parseSlow(data []byte) (*Event, error) {
	if !utf8.Valid(data) {
		return nil, fieldErr("", "message is not valid UTF-8")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, fieldErr("", "message is JSON %s, not an object", typeErr.Value)
		}
		return nil, fieldErr("", "malformed JSON: %v", err)
	}
	if members == nil {
		return nil, fieldErr("", "message is JSON null, not an object")
	}
	for _, k := range sortedKeys(members) {
		if !knownFields[k] {
			return nil, fieldErr(k, "unknown field")
		}
	}

	var e Event
	var err error
	if e.ID, err = parseID(members["id"]); err != nil {
		return nil, err
	}
	if e.Version, err = parseVersion(members["version"]); err != nil {
		return nil, err
	}
	if e.Action, err = parseAction(members["action"]); err != nil {
		return nil, err
	}
	if e.Actor, err = parseEntity("actor", members["actor"]); err != nil {
		return nil, err
	}
	if e.Target, err = parseEntity("target", members["target"]); err != nil {
		return nil, err
	}
	if raw, ok := members["scope"]; ok && !isNull(raw) {
		scope, err := parseEntity("scope", raw)
		if err != nil {
			return nil, err
		}
		e.Scope = &scope
	}
	if e.Payload, err = parsePayload(members["payload"]); err != nil {
		return nil, err
	}
	if e.Metadata, err = parseMetadata(members["metadata"]); err != nil {
		return nil, err
	}
	if e.OccurredAt, err = ParseTime("occurred_at", members["occurred_at"]); err != nil {
		return nil, err
	}
	if err := checkOccurredAt(e.OccurredAt); err != nil {
		return nil, err
	}
	if e.Success, err = parseSuccess(members["success"]); err != nil {
		return nil, err
	}
	if raw, ok := members["request"]; ok && !isNull(raw) {
		req, err := parseRequest(raw)
		if err != nil {
			return nil, err
		}
		e.Request = req
	}
	return &e, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

func parseString(field string, raw json.RawMessage, required bool) (string, error) {
	if raw == nil || isNull(raw) {
		if required {
			return "", fieldErr(field, "is required")
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(field, "must be a string, got %s", jsonKind(raw))
	}
	return s, nil
}

func parseID(raw json.RawMessage) (uuid.UUID, error) {
	s, err := parseString("id", raw, true)
	if err != nil {
		return uuid.Nil, err
	}
	// uuid.Parse also takes braces, URNs and hex without dashes; the contract
	// is the canonical 36-character form, which every UUID library emits.
	id, perr := uuid.Parse(s)
	if perr != nil || len(s) != 36 {
		return uuid.Nil, fieldErr("id", "%q is not a UUID (want the 36-character form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", truncate(s, 64))
	}
	if id == uuid.Nil {
		return uuid.Nil, fieldErr("id", "must not be the nil UUID")
	}
	return id, nil
}

func parseVersion(raw json.RawMessage) (uint32, error) {
	if raw == nil || isNull(raw) {
		return 0, fieldErr("version", "is required")
	}
	text := string(bytes.TrimSpace(raw))
	v, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		if jsonKind(raw) == "number" {
			return 0, fieldErr("version", "must be an integer >= 1, got %s", truncate(text, 32))
		}
		return 0, fieldErr("version", "must be an integer >= 1, got %s", jsonKind(raw))
	}
	if v < 1 || v > math.MaxUint32 {
		return 0, fieldErr("version", "must be an integer from 1 to %d, got %d", uint32(math.MaxUint32), v)
	}
	return uint32(v), nil
}

func parseAction(raw json.RawMessage) (string, error) {
	s, err := parseString("action", raw, true)
	if err != nil {
		return "", err
	}
	if err := ValidateAction(s); err != nil {
		return "", err
	}
	return s, nil
}

// ValidateAction checks an action name against the contract.
func ValidateAction(s string) error {
	if s == "" {
		return fieldErr("action", "is required")
	}
	if len(s) > MaxActionLen {
		return fieldErr("action", "is %d bytes, at most %d allowed", len(s), MaxActionLen)
	}
	if !isActionSyntax(s) {
		return fieldErr("action", "%q must be lowercase ASCII words joined by dots, entity first and verb last (e.g. workflow.job.start)", truncate(s, 64))
	}
	return nil
}

func parseEntity(field string, raw json.RawMessage) (Entity, error) {
	if raw == nil || isNull(raw) {
		return Entity{}, fieldErr(field, "is required")
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return Entity{}, fieldErr(field, "must be an object, got %s", jsonKind(raw))
	}
	var ent Entity
	var err error
	if ent.ID, err = parseString(field+".id", members["id"], true); err != nil {
		return Entity{}, err
	}
	if ent.ID == "" {
		return Entity{}, fieldErr(field+".id", "must not be empty")
	}
	if ent.Type, err = parseString(field+".type", members["type"], true); err != nil {
		return Entity{}, err
	}
	if ent.Type == "" {
		return Entity{}, fieldErr(field+".type", "must not be empty")
	}
	if ent.Name, err = parseString(field+".name", members["name"], false); err != nil {
		return Entity{}, err
	}
	ent.Raw = compact(raw)
	return ent, nil
}

func parseRequest(raw json.RawMessage) (*Request, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fieldErr("request", "must be an object, got %s", jsonKind(raw))
	}
	id, err := parseString("request.id", members["id"], false)
	if err != nil {
		return nil, err
	}
	return &Request{ID: id, Raw: compact(raw)}, nil
}

func parsePayload(raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil || isNull(raw) {
		return json.RawMessage("{}"), nil
	}
	if jsonKind(raw) != "object" {
		return nil, fieldErr("payload", "must be an object, got %s", jsonKind(raw))
	}
	return compact(raw), nil
}

func parseMetadata(raw json.RawMessage) (map[string]string, error) {
	if raw == nil || isNull(raw) {
		return nil, nil
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil, fieldErr("metadata", "must be an object of strings, got %s", jsonKind(raw))
	}
	if len(members) == 0 {
		return nil, nil
	}
	md := make(map[string]string, len(members))
	for _, k := range sortedKeys(members) {
		var v string
		if err := json.Unmarshal(members[k], &v); err != nil {
			return nil, fieldErr("metadata."+k, "must be a string, got %s", jsonKind(members[k]))
		}
		md[k] = v
	}
	return md, nil
}

// ParseTime parses an RFC 3339 time with a zone and at most nine fractional
// digits from a JSON string; field names the field in errors.
func ParseTime(field string, raw json.RawMessage) (time.Time, error) {
	s, err := parseString(field, raw, true)
	if err != nil {
		return time.Time{}, err
	}
	return ParseTimeString(field, s)
}

// ParseTimeString is ParseTime for a plain string.
func ParseTimeString(field, s string) (time.Time, error) {
	if !isTimeSyntax(s) {
		return time.Time{}, fieldErr(field, "%q is not an RFC 3339 time with a zone and at most 9 fractional digits (e.g. 2026-01-02T15:04:05.123456789Z)", truncate(s, 64))
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fieldErr(field, "%q is not a valid time: %v", truncate(s, 64), err)
	}
	// In UTC: 1970-01-01T00:30:00+01:00 is before 1970.
	t = t.UTC()
	if t.Year() < 1970 {
		return time.Time{}, fieldErr(field, "%q is before 1970", truncate(s, 64))
	}
	return t, nil
}

// LastOccurredYear is the last year an event's occurred_at may fall in.
// occurred_at is stored as a ClickHouse DateTime, unsigned 32-bit seconds
// since 1970 that run out on 2106-02-07: a later time would be stored
// wrapped around to 1970, in the wrong partition.
const LastOccurredYear = 2105

// checkOccurredAt holds an event's time to what storage keeps exactly; the
// start, 1970, is ParseTimeString's.
func checkOccurredAt(t time.Time) error {
	if t.Year() > LastOccurredYear {
		return fieldErr("occurred_at", "%q is after %d, the last year stored", t.Format(time.RFC3339Nano), LastOccurredYear)
	}
	return nil
}

// isActionSyntax reports whether s matches ^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$:
// two or more words of lowercase ASCII letters, digits and underscores, each
// starting with a letter, joined by dots. It is written out to keep the
// regexp engine off the ingester's per-event path; a test holds it to the
// regexp.
func isActionSyntax(s string) bool {
	words := 0
	i := 0
	for {
		if i >= len(s) || s[i] < 'a' || s[i] > 'z' {
			return false
		}
		i++
		for i < len(s) && ('a' <= s[i] && s[i] <= 'z' || isDigit(s[i]) || s[i] == '_') {
			i++
		}
		words++
		if i == len(s) {
			return words >= 2
		}
		if s[i] != '.' {
			return false
		}
		i++
	}
}

// isTimeSyntax reports whether s matches
// ^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$:
// RFC 3339 with a mandatory zone and at most nine fractional digits (Go's
// time.Parse alone accepts longer fractions and silently drops digits).
// Like isActionSyntax, a test holds it to the regexp.
func isTimeSyntax(s string) bool {
	const layout = "dddd-dd-ddTdd:dd:dd" // d is a digit, anything else itself
	if len(s) < len(layout) {
		return false
	}
	for i := 0; i < len(layout); i++ {
		if layout[i] == 'd' && !isDigit(s[i]) || layout[i] != 'd' && s[i] != layout[i] {
			return false
		}
	}
	zone := s[len(layout):]
	if len(zone) > 0 && zone[0] == '.' {
		n := 1
		for n < len(zone) && isDigit(zone[n]) {
			n++
		}
		if n == 1 || n > 10 {
			return false
		}
		zone = zone[n:]
	}
	if zone == "Z" {
		return true
	}
	return len(zone) == 6 && (zone[0] == '+' || zone[0] == '-') &&
		isDigit(zone[1]) && isDigit(zone[2]) && zone[3] == ':' && isDigit(zone[4]) && isDigit(zone[5])
}

func parseSuccess(raw json.RawMessage) (bool, error) {
	if raw == nil || isNull(raw) {
		return false, fieldErr("success", "is required")
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err != nil {
		return false, fieldErr("success", "must be a boolean, got %s", jsonKind(raw))
	}
	return b, nil
}

// jsonKind names the JSON type of raw for error messages.
func jsonKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func compact(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw // raw came out of json.Unmarshal, so it is valid JSON
	}
	return b.Bytes()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
