package filter

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/auditlog/auditlog/internal/event"
)

// Limits on what one request may ask for. They keep the generated SQL far
// below ClickHouse's max_query_size (256 KiB) and the parser's work small.
const (
	// MaxPhraseBytes is the longest `q` phrase accepted.
	MaxPhraseBytes = 4096
	// MaxTerms is the most terms a `q` phrase may have.
	MaxTerms = 32
	// MaxValues is the most values one parameter (or one `q` term) may have.
	MaxValues = 100
	// MaxValueBytes is the longest single value accepted.
	MaxValueBytes = 1024
)

// Request is satisfied by *auditv1.ListEventsRequest,
// *auditv1.StreamEventsRequest and *auditv1.ExportEventsRequest: their
// generated getters for the shared filter fields 1 to 15. ProtoReflect tells
// whether the optional `success` was set.
type Request interface {
	GetScopeId() []string
	GetAction() []string
	GetActorId() []string
	GetActorType() []string
	GetActorName() []string
	GetTargetId() []string
	GetTargetType() []string
	GetTargetName() []string
	GetSuccess() bool
	GetVersion() []uint32
	GetRequestId() []string
	GetSince() string
	GetUntil() string
	GetMetadata() []string
	GetQ() string
	ProtoReflect() protoreflect.Message
}

// Error is a bad filter. It maps to INVALID_ARGUMENT over gRPC and HTTP 400
// over REST, with Param naming the request parameter at fault.
type Error struct {
	// Param is the request parameter at fault, e.g. "action" or "q".
	Param string
	// Problem says what is wrong with it, e.g. `unknown key "acter" in term 2`.
	Problem string
}

func (e *Error) Error() string { return e.Param + ": " + e.Problem }

func errorf(param, format string, args ...any) error {
	return &Error{Param: param, Problem: fmt.Sprintf(format, args...)}
}

// Field is what a condition looks at.
type Field int

// The fields a condition can look at.
const (
	ScopeID Field = iota + 1
	Action
	ActorID
	ActorType
	ActorName
	Actor // actor id or name
	TargetID
	TargetType
	TargetName
	Target // target id or name
	RequestID
	Success
	Version
	Metadata
	Occurred
)

// columns maps the plain string fields to their columns; Actor and Target
// look at two columns each.
var columns = map[Field][]string{
	ScopeID:    {"scope_id"},
	Action:     {"action"},
	ActorID:    {"actor_id"},
	ActorType:  {"actor_type"},
	ActorName:  {"actor_name"},
	Actor:      {"actor_id", "actor_name"},
	TargetID:   {"target_id"},
	TargetType: {"target_type"},
	TargetName: {"target_name"},
	Target:     {"target_id", "target_name"},
	RequestID:  {"request_id"},
}

// Cond is one condition of a filter: it holds when any of its values matches
// (or, when Negate, when none does). Which value list is used depends on
// Field.
type Cond struct {
	Field Field
	// Values are the strings compared for the string fields. For Action, a
	// value ending in `*` is a prefix.
	Values []string
	// Bools are the values of Success.
	Bools []bool
	// Versions are the values of Version.
	Versions []uint32
	// Pairs are the metadata key/value pairs of Metadata.
	Pairs []Pair
	// Ranges are the time ranges of Occurred.
	Ranges []Range
	// Negate turns the condition into "none of the values matches".
	Negate bool
}

// Pair is a metadata key and value.
type Pair struct{ Key, Value string }

// Range is a half-open range [From, To) of occurred_at in unix nanoseconds;
// math.MinInt64 and math.MaxInt64 mean an open end.
type Range struct{ From, To int64 }

// Filter is a parsed filter. All its conditions are ANDed.
type Filter struct {
	// Conds are the conditions of every parameter and `q` term, in request
	// order.
	Conds []Cond
	// Since is the `since` parameter, zero when absent. ListEvents and
	// ExportEvents compare it with occurred_at (inclusive); StreamEvents
	// takes it out of the filter and starts its ingestion-order read there.
	Since time.Time
	// Until is the `until` parameter (exclusive, occurred_at), zero when
	// absent.
	Until time.Time
	// AllowedScopes is the caller's scopes; nil = every scope. Always ANDed
	// into SQL(): it is the tenant boundary. The server sets it from the
	// authenticated caller, never from request fields.
	AllowedScopes []string
}

// Parse reads the filter fields of a request. Every error is an *Error
// naming the parameter.
func Parse(req Request) (*Filter, error) {
	f := &Filter{}
	strs := []struct {
		param  string
		field  Field
		values []string
	}{
		{"scope_id", ScopeID, req.GetScopeId()},
		{"action", Action, req.GetAction()},
		{"actor_id", ActorID, req.GetActorId()},
		{"actor_type", ActorType, req.GetActorType()},
		{"actor_name", ActorName, req.GetActorName()},
		{"target_id", TargetID, req.GetTargetId()},
		{"target_type", TargetType, req.GetTargetType()},
		{"target_name", TargetName, req.GetTargetName()},
		{"request_id", RequestID, req.GetRequestId()},
	}
	for _, s := range strs {
		if len(s.values) == 0 {
			continue
		}
		c, err := stringCond(s.field, s.values)
		if err != nil {
			return nil, errorf(s.param, "%s", err)
		}
		f.Conds = append(f.Conds, c)
	}
	if hasSuccess(req) {
		f.Conds = append(f.Conds, Cond{Field: Success, Bools: []bool{req.GetSuccess()}})
	}
	if vs := req.GetVersion(); len(vs) > 0 {
		if len(vs) > MaxValues {
			return nil, errorf("version", "%d values, at most %d allowed", len(vs), MaxValues)
		}
		for _, v := range vs {
			if v == 0 {
				return nil, errorf("version", "0 is not a version (versions start at 1)")
			}
		}
		f.Conds = append(f.Conds, Cond{Field: Version, Versions: vs})
	}
	var err error
	if s := req.GetSince(); s != "" {
		if f.Since, err = parseTime(s); err != nil {
			return nil, errorf("since", "%s", err)
		}
	}
	if s := req.GetUntil(); s != "" {
		if f.Until, err = parseTime(s); err != nil {
			return nil, errorf("until", "%s", err)
		}
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return nil, errorf("until", "%s is not after since %s", f.Until.Format(event.TimeLayout), f.Since.Format(event.TimeLayout))
	}
	md := req.GetMetadata()
	if len(md) > MaxValues {
		return nil, errorf("metadata", "%d pairs, at most %d allowed", len(md), MaxValues)
	}
	for _, kv := range md {
		p, err := parsePair(kv)
		if err != nil {
			return nil, errorf("metadata", "%s", err)
		}
		// "All must match": one condition per pair.
		f.Conds = append(f.Conds, Cond{Field: Metadata, Pairs: []Pair{p}})
	}
	if q := req.GetQ(); q != "" {
		conds, err := parsePhrase(q)
		if err != nil {
			return nil, errorf("q", "%s", err)
		}
		f.Conds = append(f.Conds, conds...)
	}
	return f, nil
}

// hasSuccess reports whether the optional `success` field was set; proto3
// optional fields have no Has getter in Go, so ask protoreflect.
func hasSuccess(req Request) bool {
	m := req.ProtoReflect()
	fd := m.Descriptor().Fields().ByName("success")
	return fd != nil && m.Has(fd)
}

func stringCond(field Field, values []string) (Cond, error) {
	if len(values) > MaxValues {
		return Cond{}, fmt.Errorf("%d values, at most %d allowed", len(values), MaxValues)
	}
	for _, v := range values {
		if err := checkValue(v); err != nil {
			return Cond{}, err
		}
		if field == Action {
			if i := strings.IndexByte(v, '*'); i >= 0 && i != len(v)-1 {
				return Cond{}, fmt.Errorf("%q: `*` is allowed only at the end (a prefix such as workflow.job.*)", clip(v))
			}
		}
	}
	return Cond{Field: field, Values: values}, nil
}

func checkValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty value")
	case len(v) > MaxValueBytes:
		return fmt.Errorf("value of %d bytes, at most %d allowed", len(v), MaxValueBytes)
	case !utf8.ValidString(v):
		return fmt.Errorf("value is not valid UTF-8")
	}
	return nil
}

func parsePair(kv string) (Pair, error) {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || k == "" {
		return Pair{}, fmt.Errorf("%q: want key=value", clip(kv))
	}
	if len(kv) > MaxValueBytes || !utf8.ValidString(kv) {
		return Pair{}, fmt.Errorf("%q: too long or not UTF-8", clip(kv))
	}
	return Pair{Key: k, Value: v}, nil
}

// parseTime reads an RFC 3339 time (zone required, up to nine fractional
// digits) or a date YYYY-MM-DD, which means midnight UTC.
func parseTime(s string) (time.Time, error) {
	var t time.Time
	if len(s) == len("2006-01-02") {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q is not a date YYYY-MM-DD or an RFC 3339 time", clip(s))
		}
		t = d
	} else {
		var err error
		if t, err = event.ParseTimeString("", s); err != nil {
			return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time with a zone and at most 9 fractional digits (e.g. 2026-01-02T15:04:05Z) or a date YYYY-MM-DD", clip(s))
		}
	}
	// occurred_ns is Int64 unix nanoseconds: 1970 to 2262.
	if t.Year() < 1970 || t.Year() > 2261 {
		return time.Time{}, fmt.Errorf("%q is outside the years 1970 to 2261", clip(s))
	}
	return t.UTC(), nil
}

func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	return s[:64] + "…"
}

// SQL returns a boolean SQL expression over the columns of the events table
// (events_by_ingest has the same columns) and its arguments, one per
// positional `?`. The expression is "1" when nothing constrains the rows.
// No user text is ever part of the SQL.
func (f *Filter) SQL() (where string, args []any) {
	var parts []string
	add := func(sql string, a ...any) {
		parts = append(parts, sql)
		args = append(args, a...)
	}
	if f.AllowedScopes != nil {
		var scopes []string
		for _, s := range f.AllowedScopes {
			if s != "" { // a scope-less event is for every-scope callers only
				scopes = append(scopes, s)
			}
		}
		if len(scopes) == 0 {
			add("0")
		} else {
			add("scope_id IN ("+placeholders(len(scopes))+")", anys(scopes)...)
		}
	}
	if !f.Since.IsZero() {
		// occurred_at repeats the bound in whole seconds so ClickHouse can
		// skip monthly partitions; occurred_ns is the exact comparison.
		add("occurred_ns >= ? AND occurred_at >= toDateTime(?)", f.Since.UnixNano(), f.Since.Unix())
	}
	if !f.Until.IsZero() {
		add("occurred_ns < ? AND occurred_at <= toDateTime(?)", f.Until.UnixNano(), f.Until.Unix())
	}
	for _, c := range f.Conds {
		sql, a := c.sql()
		if c.Negate {
			sql = "NOT (" + sql + ")"
		}
		add(sql, a...)
	}
	if len(parts) == 0 {
		return "1", nil
	}
	return strings.Join(parts, " AND "), args
}

func (c Cond) sql() (string, []any) {
	var ors []string
	var args []any
	switch c.Field {
	case Success:
		for _, b := range c.Bools {
			ors = append(ors, "success = ?")
			args = append(args, boolToUInt8(b))
		}
	case Version:
		ors = append(ors, "version IN ("+placeholders(len(c.Versions))+")")
		for _, v := range c.Versions {
			args = append(args, v)
		}
	case Metadata:
		// has() first: indexOf gives 0 for a missing key and arr[0] is the
		// default "", which would match an empty value.
		for _, p := range c.Pairs {
			ors = append(ors, "(has(metadata_keys, ?) AND metadata_values[indexOf(metadata_keys, ?)] = ?)")
			args = append(args, p.Key, p.Key, p.Value)
		}
	case Occurred:
		for _, r := range c.Ranges {
			var and []string
			if r.From != math.MinInt64 {
				and = append(and, "occurred_ns >= ?")
				args = append(args, r.From)
			}
			if r.To != math.MaxInt64 {
				and = append(and, "occurred_ns < ?")
				args = append(args, r.To)
			}
			if len(and) == 0 {
				and = append(and, "1")
			}
			ors = append(ors, "("+strings.Join(and, " AND ")+")")
		}
	case Action:
		var exact []string
		for _, v := range c.Values {
			if prefix, ok := strings.CutSuffix(v, "*"); ok {
				ors = append(ors, "startsWith(action, ?)")
				args = append(args, prefix)
			} else {
				exact = append(exact, v)
			}
		}
		if len(exact) > 0 {
			ors = append(ors, "action IN ("+placeholders(len(exact))+")")
			args = append(args, anys(exact)...)
		}
	default:
		for _, col := range columns[c.Field] {
			ors = append(ors, col+" IN ("+placeholders(len(c.Values))+")")
			args = append(args, anys(c.Values)...)
		}
	}
	if len(ors) == 0 {
		return "0", nil // a condition with no values matches nothing
	}
	if len(ors) == 1 {
		return ors[0], args
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

func placeholders(n int) string {
	if n == 0 {
		return "NULL"
	}
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func boolToUInt8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// parseVersion reads a version value of a `q` term.
func parseVersion(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a version (an integer from 1)", clip(s))
	}
	return uint32(v), nil
}
