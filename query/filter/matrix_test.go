package filter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query/filter"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// The pools events and filters draw from: small, so random filters often
// match, with values that need quoting in a phrase.
var (
	scopes      = []string{"org-a", "org-b", "org-c", ""} // "" = no scope
	actions     = []string{"workflow.job.start", "workflow.job.finish", "workflow.job.approve", "project.settings.update", "context.create", "user.logged_in"}
	prefixes    = []string{"workflow.job.*", "workflow.*", "project.*", "user.*", "nothing.*"}
	actorIDs    = []string{"u1", "u2", "u3", "u4"}
	actorNames  = []string{"alice", "bob", "Zoë Smith", ""}
	actorTypes  = []string{"user", "system"}
	targetIDs   = []string{"t1", "t2", "t3"}
	targetNames = []string{"my project", "web", "a,b", ""}
	targetTypes = []string{"project", "job"}
	requestIDs  = []string{"r1", "r2", ""}
	metaKeys    = []string{"env", "team"}
	metaValues  = []string{"prod", "staging", "a b", ""}
	base        = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// genEvents makes n events; some share an occurred_at to the nanosecond.
func genEvents(t testing.TB, r *rand.Rand, n int) []*event.Event {
	var out []*event.Event
	var times []time.Time
	for i := 0; i < n; i++ {
		var at time.Time
		if len(times) > 0 && r.IntN(5) == 0 {
			at = pick(r, times)
		} else {
			at = base.Add(time.Duration(r.Int64N(int64(60 * 24 * time.Hour))))
			times = append(times, at)
		}
		obj := map[string]any{
			"id":          uuid.Must(uuid.NewV7()).String(),
			"version":     1 + r.IntN(2),
			"action":      pick(r, actions),
			"actor":       entity(pick(r, actorIDs), pick(r, actorTypes), pick(r, actorNames)),
			"target":      entity(pick(r, targetIDs), pick(r, targetTypes), pick(r, targetNames)),
			"occurred_at": at.Format(time.RFC3339Nano),
			"success":     r.IntN(2) == 0,
			"payload":     map[string]any{"n": i},
		}
		if s := pick(r, scopes); s != "" {
			obj["scope"] = entity(s, "organization", "")
		}
		if rid := pick(r, requestIDs); rid != "" {
			obj["request"] = map[string]any{"id": rid}
		}
		md := map[string]string{}
		for _, k := range metaKeys {
			if r.IntN(2) == 0 {
				md[k] = pick(r, metaValues)
			}
		}
		if len(md) > 0 {
			obj["metadata"] = md
		}
		raw, _ := json.Marshal(obj)
		e, err := event.ParseJSON(raw)
		if err != nil {
			t.Fatalf("generated event: %v\n%s", err, raw)
		}
		out = append(out, e)
	}
	return out
}

func entity(id, typ, name string) map[string]any {
	m := map[string]any{"id": id, "type": typ}
	if name != "" {
		m["name"] = name
	}
	return m
}

func insert(t testing.TB, ch *testharness.ClickHouse, events []*event.Event) {
	t.Helper()
	var stored []store.StoredEvent
	for _, e := range events {
		stored = append(stored, store.StoredEvent{Event: e, Validated: true})
	}
	if err := store.Insert(context.Background(), ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
}

func migrated(t testing.TB) *testharness.ClickHouse {
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	return ch
}

// selectIDs runs a filter against the events table.
func selectIDs(t *testing.T, ch *testharness.ClickHouse, f *filter.Filter) []string {
	t.Helper()
	where, args := f.SQL()
	rows, err := ch.Conn.Query(context.Background(), "SELECT DISTINCT toString(id) FROM events WHERE "+where, args...)
	if err != nil {
		t.Fatalf("query failed: %v\nwhere: %s\nargs: %#v", err, where, args)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

// cond is one randomly generated condition, in terms the oracle evaluates
// itself, independent of the package under test.
type cond struct {
	key    string // a q key, or a parameter name when param is set
	values []string
	negate bool
	param  bool // a request parameter rather than a q term
}

// oracle reports whether e matches c, in plain Go.
func (c cond) match(e *event.Event) bool {
	matched := false
	for _, v := range c.values {
		if c.matchOne(e, v) {
			matched = true
			break
		}
	}
	return matched != c.negate
}

func (c cond) matchOne(e *event.Event, v string) bool {
	switch c.key {
	case "scope_id", "scope":
		return e.ScopeID() == v
	case "action":
		if p, ok := strings.CutSuffix(v, "*"); ok {
			return strings.HasPrefix(e.Action, p)
		}
		return e.Action == v
	case "actor_id":
		return e.Actor.ID == v
	case "actor_type":
		return e.Actor.Type == v
	case "actor_name":
		return e.Actor.Name == v
	case "actor":
		return e.Actor.ID == v || e.Actor.Name == v
	case "target_id":
		return e.Target.ID == v
	case "target_type":
		return e.Target.Type == v
	case "target_name":
		return e.Target.Name == v
	case "target":
		return e.Target.ID == v || e.Target.Name == v
	case "request_id", "request":
		return e.RequestID() == v
	case "success":
		return fmt.Sprint(e.Success) == v
	case "version":
		return fmt.Sprint(e.Version) == v
	case "metadata":
		k, val, _ := strings.Cut(v, "=")
		got, ok := e.Metadata[k]
		return ok && got == val
	case "since":
		return !e.OccurredAt.Before(mustTime(v))
	case "until":
		return e.OccurredAt.Before(mustTime(v))
	case "occurred":
		return matchOccurred(e.OccurredAt, v)
	}
	if k, ok := strings.CutPrefix(c.key, "meta."); ok {
		got, has := e.Metadata[k]
		return has && got == v
	}
	panic("oracle: unknown key " + c.key)
}

func mustTime(s string) time.Time {
	if len(s) == 10 {
		t, err := time.Parse("2006-01-02", s)
		if err != nil {
			panic(err)
		}
		return t
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func matchOccurred(at time.Time, v string) bool {
	if a, b, ok := strings.Cut(v, ".."); ok {
		return !at.Before(mustTime(a)) && at.Before(mustTime(b))
	}
	for _, op := range []string{">=", "<=", ">", "<", "="} {
		if rest, ok := strings.CutPrefix(v, op); ok {
			t := mustTime(rest)
			switch op {
			case ">=":
				return !at.Before(t)
			case "<=":
				return !at.After(t)
			case ">":
				return at.After(t)
			case "<":
				return at.Before(t)
			default:
				return at.Equal(t)
			}
		}
	}
	t := mustTime(v)
	if len(v) == 10 {
		return !at.Before(t) && at.Before(t.Add(24*time.Hour))
	}
	return at.Equal(t)
}

// randomCond draws a condition over the pools (plus values that match
// nothing).
func randomCond(r *rand.Rand, events []*event.Event) cond {
	someTime := func() string {
		if r.IntN(3) == 0 {
			return base.AddDate(0, 0, r.IntN(60)).Format("2006-01-02")
		}
		return pick(r, events).OccurredAt.Format(time.RFC3339Nano) // hit equal-time edges
	}
	nonEmpty := func(xs []string) []string {
		return slices.DeleteFunc(slices.Clone(xs), func(s string) bool { return s == "" })
	}
	several := func(pool []string) []string {
		n := 1 + r.IntN(2)
		var out []string
		for i := 0; i < n; i++ {
			out = append(out, pick(r, append(nonEmpty(pool), "nomatch")))
		}
		return out
	}
	keys := []string{"scope_id", "scope", "action", "actor_id", "actor_type", "actor_name", "actor", "target_id", "target_type",
		"target_name", "target", "request_id", "request", "success", "version", "metadata", "meta.env", "meta.team", "occurred", "since", "until"}
	key := pick(r, keys)
	c := cond{key: key, negate: r.IntN(4) == 0}
	switch key {
	case "scope_id", "scope":
		c.values = several(scopes)
	case "action":
		c.values = several(append(slices.Clone(actions), prefixes...))
	case "actor_id":
		c.values = several(actorIDs)
	case "actor_type":
		c.values = several(actorTypes)
	case "actor_name":
		c.values = several(actorNames)
	case "actor":
		c.values = several(append(slices.Clone(actorIDs), actorNames...))
	case "target_id":
		c.values = several(targetIDs)
	case "target_type":
		c.values = several(targetTypes)
	case "target_name":
		c.values = several(targetNames)
	case "target":
		c.values = several(append(slices.Clone(targetIDs), targetNames...))
	case "request_id", "request":
		c.values = several(requestIDs)
	case "success":
		c.values = []string{pick(r, []string{"true", "false"})}
	case "version":
		c.values = []string{pick(r, []string{"1", "2", "3"})}
		if r.IntN(2) == 0 {
			c.values = append(c.values, pick(r, []string{"1", "2", "3"}))
		}
	case "metadata":
		c.values = []string{pick(r, metaKeys) + "=" + pick(r, nonEmpty(metaValues))}
	case "meta.env", "meta.team":
		c.values = several(metaValues)
	case "occurred":
		switch r.IntN(3) {
		case 0:
			c.values = []string{pick(r, []string{">=", "<", ">", "<=", "="}) + someTime()}
		case 1:
			a, b := mustTime(someTime()), mustTime(someTime())
			if !b.After(a) {
				a, b = b, a.Add(time.Nanosecond)
			}
			c.values = []string{a.Format(time.RFC3339Nano) + ".." + b.Format(time.RFC3339Nano)}
		default:
			c.values = []string{someTime()}
		}
	case "since", "until":
		c.values = []string{someTime()}
	}
	return c
}

// quoteValue renders a value for a phrase, quoting it when needed.
func quoteValue(v string) string {
	if v == "" || strings.ContainsAny(v, " \t,\"\\") {
		return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
	}
	return v
}

func TestFilterMatrixAgainstOracle(t *testing.T) {
	t.Parallel()
	ch := migrated(t)
	r := rand.New(rand.NewPCG(4, 4))
	events := genEvents(t, r, 400)
	insert(t, ch, events)
	// A second copy of some events: results must not care.
	insert(t, ch, events[:50])

	scopeChoices := [][]string{nil, nil, {"org-a"}, {"org-a", "org-b"}, {}, {"org-c", ""}}
	for i := 0; i < 400; i++ {
		var conds []cond
		req := &auditv1.ListEventsRequest{}
		var q []string
		for j := r.IntN(4); j > 0; j-- {
			c := randomCond(r, events)
			paramOK := !c.negate && c.key != "scope" && c.key != "actor" && c.key != "target" && c.key != "request" &&
				c.key != "occurred" && !strings.HasPrefix(c.key, "meta.")
			if paramOK && r.IntN(2) == 0 && setParam(req, c) {
				c.param = true
			} else {
				term := c.key + ":"
				var vs []string
				for _, v := range c.values {
					vs = append(vs, quoteValue(v))
				}
				term += strings.Join(vs, ",")
				if c.negate {
					term = "-" + term
				}
				q = append(q, term)
			}
			conds = append(conds, c)
		}
		req.Q = strings.Join(q, " ")
		allowed := pick(r, scopeChoices)

		f, err := filter.Parse(req)
		if err != nil {
			t.Fatalf("case %d: Parse(%v): %v", i, req, err)
		}
		f.AllowedScopes = allowed
		got := selectIDs(t, ch, f)

		var want []string
		seen := map[uuid.UUID]bool{}
		for _, e := range events {
			if seen[e.ID] {
				continue
			}
			seen[e.ID] = true
			ok := allowed == nil || (e.ScopeID() != "" && slices.Contains(allowed, e.ScopeID()))
			for _, c := range conds {
				ok = ok && c.match(e)
			}
			if ok {
				want = append(want, e.ID.String())
			}
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			where, args := f.SQL()
			t.Fatalf("case %d: request %v, scopes %q:\ngot %d ids, oracle %d\nSQL: %s %v", i, req, allowed, len(got), len(want), where, args)
		}
	}
}

// setParam puts c into the request as a parameter; false when it has no
// parameter form.
func setParam(req *auditv1.ListEventsRequest, c cond) bool {
	// Values of one parameter are ORed, so a second condition on the same
	// parameter goes to the phrase instead.
	f := req.ProtoReflect()
	if fd := f.Descriptor().Fields().ByName(protoreflect.Name(c.key)); fd == nil || f.Has(fd) {
		return false
	}
	// until must lie after since when both are parameters.
	if (c.key == "until" && req.Since != "") || (c.key == "since" && req.Until != "") {
		return false
	}
	switch c.key {
	case "scope_id":
		req.ScopeId = append(req.ScopeId, c.values...)
	case "action":
		req.Action = append(req.Action, c.values...)
	case "actor_id":
		req.ActorId = append(req.ActorId, c.values...)
	case "actor_type":
		req.ActorType = append(req.ActorType, c.values...)
	case "actor_name":
		req.ActorName = append(req.ActorName, c.values...)
	case "target_id":
		req.TargetId = append(req.TargetId, c.values...)
	case "target_type":
		req.TargetType = append(req.TargetType, c.values...)
	case "target_name":
		req.TargetName = append(req.TargetName, c.values...)
	case "request_id":
		req.RequestId = append(req.RequestId, c.values...)
	case "metadata":
		req.Metadata = append(req.Metadata, c.values...)
	case "success":
		req.Success = proto.Bool(c.values[0] == "true")
	case "version":
		for _, v := range c.values {
			var n uint32
			fmt.Sscan(v, &n)
			req.Version = append(req.Version, n)
		}
	case "since":
		req.Since = c.values[0]
	case "until":
		req.Until = c.values[0]
	default:
		return false
	}
	return true
}
