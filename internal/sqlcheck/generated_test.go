package sqlcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"google.golang.org/grpc"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

// minGenerated is the fewest distinct SELECTs the services must send for
// TestGeneratedQueriesAgree to count: fewer means the capture broke (or the
// services stopped querying), which must not pass as "all agree".
const minGenerated = 10

// Callers of the services. The tenant boundary is part of the SQL, so
// every caller shape gives other queries.
var (
	allScopes = &auth.Principal{Name: "sqlcheck-all", All: true}
	oneScope  = &auth.Principal{Name: "sqlcheck-org-1", Scopes: []string{"org-1"}}
	twoScopes = &auth.Principal{Name: "sqlcheck-org-1-2", Scopes: []string{"org-1", "org-2"}}
	noScopes  = &auth.Principal{Name: "sqlcheck-none", Scopes: []string{}}
)

// How the result of a generated query is compared between the engines.
type checkMode int

const (
	// compareRows compares the rows in order, value by value.
	compareRows checkMode = iota
	// compareIgnoringIngestion compares the rows as a multiset, without
	// the columns that show ingested_at: each engine stamps ingested_at
	// with its own clock when the fixture is inserted, so neither those
	// values nor an order by them can agree; the rows selected can, as
	// long as the stream's bounds take in every fixture row on both
	// engines: its watermark is 18.16's now() (StreamLag 0), later than
	// both inserts, and its LIMIT (StreamBatch) is far above the 7 rows.
	compareIgnoringIngestion
	// runOnly requires the query to run on both engines: its result
	// depends on the server's clock or state (now(), system.processes).
	runOnly
)

// modeOf classifies a generated query by its text.
func modeOf(text string) (checkMode, string) {
	switch {
	case strings.Contains(text, "now()") || strings.Contains(text, "system.processes"):
		return runOnly, "reads the server's clock and running queries (now(), system.processes)"
	case strings.Contains(text, "ingested_at"):
		return compareIgnoringIngestion, "reads ingested_at, stamped by each engine's clock: rows compared as a set, ingested_at columns left out"
	}
	return compareRows, ""
}

// TestGeneratedQueriesAgree runs the real query and export services on
// ClickHouse 18.16 with a spread of requests that reaches every branch of
// query/filter's SQL builder, captures every SELECT the driver sent (with
// its arguments bound), and runs each text on 18.16 and on current
// ClickHouse (chDB) over the same fixture, comparing the results.
func TestGeneratedQueriesAgree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ClickHouse 26.x through chDB (a 560 MB library); skipped with -short")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	e := newEngines(ctx, t)

	// The services get a connection of their own, so its capture holds
	// their queries and nothing else.
	capture := &Capture{}
	opts := e.ch.Options()
	opts.Logger = capture.Logger()
	conn, err := clickhouse.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	qcfg := query.DefaultConfig()
	qcfg.PageTokenKey = "sqlcheck-page-token-key"
	// No visibility lag: the fixture was inserted moments ago, and the
	// stream must read it (on both engines) to prove anything.
	qcfg.StreamLag = 0
	qsvc, err := query.New(conn, qcfg, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	esvc, err := export.New(export.DefaultConfig(), conn, export.Options{})
	if err != nil {
		t.Fatal(err)
	}

	drive := &requests{t: t, ctx: ctx, query: qsvc, export: esvc}
	drive.listEvents()
	drive.getEvent()
	drive.streamEvents()
	drive.exportEvents()

	// Every distinct SELECT, in the order first sent.
	var texts []string
	seen := map[string]bool{}
	for _, q := range capture.All() {
		if !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(q)), "SELECT") || seen[q] {
			continue
		}
		seen[q] = true
		texts = append(texts, q)
	}
	t.Logf("%d distinct generated queries captured from %d sent", len(texts), len(capture.All()))
	if len(texts) < minGenerated {
		t.Fatalf("only %d distinct SELECTs captured, want at least %d: the capture or the services broke", len(texts), minGenerated)
	}

	olds := make([]*Table, len(texts))
	for i, text := range texts {
		if olds[i], err = e.runOld(ctx, text); err != nil {
			t.Errorf("generated query %d: 18.16 rejects it:\n%s\n%v", i+1, text, err)
		}
	}
	results := e.runCurrent(t, texts)
	var compared, asSets, withRows, runOnlyN int
	for i, text := range texts {
		name := fmt.Sprintf("generated query %d", i+1)
		r := results[i]
		if r.Err != nil {
			t.Errorf("%s: ClickHouse %s rejects what 18.16 was sent:\n%s\n%v", name, ChDBVersion, text, r.Err)
			continue
		}
		if olds[i] == nil {
			continue // reported above
		}
		cur, err := ParseTable(r.Output)
		if err != nil {
			t.Errorf("%s: chDB: %v", name, err)
			continue
		}
		mode, why := modeOf(text)
		old := olds[i]
		switch mode {
		case runOnly:
			runOnlyN++
			t.Logf("%s: runs on both engines; not compared: %s\n%s", name, why, text)
			continue
		case compareIgnoringIngestion:
			asSets++
			old, cur = withoutIngestion(old), withoutIngestion(cur)
			if len(old.Meta) == len(olds[i].Meta) {
				t.Errorf("%s: classified as reading ingested_at but no result column shows it; fix modeOf\n%s", name, text)
			}
		}
		if d := Diff(old, cur, "18.16", ChDBVersion); d != "" {
			t.Errorf("%s: the engines disagree on\n%s\n%s", name, text, d)
			continue
		}
		compared++
		if len(cur.Data) > 0 {
			withRows++
		}
		note := ""
		if why != "" {
			note = " (" + why + ")"
		}
		t.Logf("%s: %d rows agree%s\n%s", name, len(cur.Data), note, text)
	}
	t.Logf("%d distinct generated queries checked: %d compared (%d of them as sets without ingested_at; %d with rows), %d run only",
		len(texts), compared, asSets, withRows, runOnlyN)
	// Agreeing on empty results proves little. Many reads are empty by
	// design (a list page reads on until an empty read; a lookup of an
	// absent id), but most requests are built to match fixture rows.
	if !t.Failed() && withRows < minGenerated {
		t.Errorf("only %d of %d compared queries returned rows, want at least %d; the requests no longer match the fixture", withRows, compared, minGenerated)
	}
}

// withoutIngestion drops the ingested_at columns of t and sorts its rows.
func withoutIngestion(t *Table) *Table {
	var keep []int
	out := &Table{}
	for i, c := range t.Meta {
		if !strings.Contains(c.Name, "ingested_at") {
			keep = append(keep, i)
			out.Meta = append(out.Meta, c)
		}
	}
	for _, row := range t.Data {
		var r []json.RawMessage
		for _, i := range keep {
			r = append(r, row[i])
		}
		out.Data = append(out.Data, r)
	}
	slices.SortFunc(out.Data, func(a, b []json.RawMessage) int { return strings.Compare(compactRow(a), compactRow(b)) })
	return out
}

// requests calls the services with requests that together reach every branch
// of query/filter's SQL builder and every query of the services.
type requests struct {
	t      *testing.T
	ctx    context.Context
	query  *query.Service
	export *export.Service
}

func (d *requests) as(p *auth.Principal) context.Context { return auth.NewContext(d.ctx, p) }

// listEvents lists with each filter field, the `q` phrase syntax, both
// orders, a second page and several callers.
func (d *requests) listEvents() {
	t := d.t
	yes, no := true, false
	reqs := []struct {
		name   string
		caller *auth.Principal
		req    *auditv1.ListEventsRequest
	}{
		{"no filter", allScopes, &auditv1.ListEventsRequest{}},
		{"no filter, asc", allScopes, &auditv1.ListEventsRequest{Order: "asc"}},
		{"one scope", oneScope, &auditv1.ListEventsRequest{}},
		{"two scopes, asc", twoScopes, &auditv1.ListEventsRequest{Order: "asc"}},
		{"no scopes", noScopes, &auditv1.ListEventsRequest{}},
		{"scopes, action prefix and exact, actor id and type", allScopes, &auditv1.ListEventsRequest{
			ScopeId: []string{"org-1", "org-2"}, Action: []string{"workflow.job.*", "context.create"},
			ActorId: []string{"alice", "bob"}, ActorType: []string{"user"}}},
		{"actor name with quotes and non-ASCII, target id and type", allScopes, &auditv1.ListEventsRequest{
			ActorName: []string{`Zoë 日本 "q"`, "Bob"}, TargetId: []string{"zoe", "ctx-1", "dave"}, TargetType: []string{"user", "context"}}},
		{"target name (matches nothing)", allScopes, &auditv1.ListEventsRequest{TargetName: []string{"it's", `back\slash`}}},
		{"success false, version", allScopes, &auditv1.ListEventsRequest{Success: &no, Version: []uint32{2}}},
		{"success true, versions, request ids", oneScope, &auditv1.ListEventsRequest{
			Success: &yes, Version: []uint32{1, 2}, RequestId: []string{"req-1", "req-2"}}},
		{"metadata pairs", allScopes, &auditv1.ListEventsRequest{Metadata: []string{"env=prod", "team=ci"}}},
		{"since and until with nanoseconds", allScopes, &auditv1.ListEventsRequest{
			Since: "2026-01-02T03:04:05.000000001Z", Until: "2026-01-02T04:04:05.123456790+01:00"}},
		{"since and until as dates, asc", twoScopes, &auditv1.ListEventsRequest{Since: "2026-01-01", Until: "2026-02-01", Order: "asc"}},
		{"q: comma-OR, negation, actor over id and name", allScopes, &auditv1.ListEventsRequest{
			Q: `actor:alice,Bob -action:workflow.job.finish`}},
		{"q: quoted value with a comma-OR, quoted whole term", allScopes, &auditv1.ListEventsRequest{
			Q: `actor_name:"Zoë 日本 \"q\"",Bob -"target_name:x y"`}},
		{"q: date, success, versions", allScopes, &auditv1.ListEventsRequest{
			Q: `occurred:2026-01-02 -success:false version:1,2`}},
		{"q: open ranges ORed", allScopes, &auditv1.ListEventsRequest{
			Q: `occurred:>2026-01-02T03:04:05.000000001Z,<=2025-12-31T23:59:59.999999999Z`}},
		{"q: exact instants and a range", allScopes, &auditv1.ListEventsRequest{
			Q: `occurred:=2026-01-15T12:00:00.5Z,2026-01-02T03:04:05.123456789Z,2026-02-09T00:00:00Z..2026-03-01T00:00:00.000000001Z`}},
		{"q: since, until, >=, <", allScopes, &auditv1.ListEventsRequest{
			Q: `since:2026-01-02 until:2026-02-10T00:00:00.000000001Z occurred:>=2026-01-01T00:00:00Z occurred:<2026-12-31`}},
		{"q: meta.KEY, negated meta, metadata pair", allScopes, &auditv1.ListEventsRequest{
			Q: `meta.env:prod,staging -meta.team:ci metadata:env=prod`}},
		{"q: every string key", oneScope, &auditv1.ListEventsRequest{
			Q: `request:req-1,req-2 scope:org-1 actor_type:user target_type:job,context target_id:job-1,ctx-1 action:context.*,workflow.job.start target:job-1,ctx-1 actor_id:alice,bob request_id:req-1,req-2 scope_id:org-1 actor_name:Alice,Bob`}},
		{"q: negated scope, success either way, actor id", allScopes, &auditv1.ListEventsRequest{
			Q: `-scope_id:org-2 success:true,FALSE actor_id:system,carol`}},
		{"fields and q together", allScopes, &auditv1.ListEventsRequest{
			ActorType: []string{"user"}, Metadata: []string{"env=prod"}, Q: `-target:ctx-1 version:1`}},
	}
	for _, r := range reqs {
		if _, err := d.query.ListEvents(d.as(r.caller), r.req); err != nil {
			t.Errorf("ListEvents %s: %v", r.name, err)
		}
	}

	// Keyset pages in both orders, to the end.
	for _, order := range []string{"asc", "desc"} {
		req := &auditv1.ListEventsRequest{PageSize: 2, Order: order, Q: "-actor_id:nobody"}
		pages := 0
		for {
			resp, err := d.query.ListEvents(d.as(allScopes), req)
			if err != nil {
				t.Fatalf("ListEvents order=%s page %d: %v", order, pages+1, err)
			}
			pages++
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if pages < 2 {
			t.Errorf("order=%s: %d page, want several (the fixture has 6 events)", order, pages)
		}
	}
}

// getEvent looks events up: found, duplicated, out of scope, absent.
func (d *requests) getEvent() {
	for _, c := range []struct {
		caller *auth.Principal
		id     string
		found  bool
	}{
		{allScopes, "0190d6a1-0000-7000-8000-000000000001", true}, // stored twice
		{oneScope, idHighLowHalf.String(), true},
		{oneScope, "0190d6a1-0000-7000-8000-000000000004", false}, // org-2
		{allScopes, "0190d6a1-0000-7000-8000-000000000006", true}, // no scope
		{allScopes, "0190d6a1-0000-7000-8000-0000000000ff", false},
	} {
		resp, err := d.query.GetEvent(d.as(c.caller), &auditv1.GetEventRequest{Id: c.id})
		if got := err == nil && resp.GetEvent().GetId() == c.id; got != c.found {
			d.t.Errorf("GetEvent %s as %s: found %v (%v), want %v", c.id, c.caller.Name, got, err, c.found)
		}
	}
}

// streamEvents reads streams from the beginning without following.
func (d *requests) streamEvents() {
	for _, c := range []struct {
		caller *auth.Principal
		req    *auditv1.StreamEventsRequest
		want   int
	}{
		{allScopes, &auditv1.StreamEventsRequest{Since: "1970-01-01"}, 6},
		{oneScope, &auditv1.StreamEventsRequest{Since: "1970-01-01T00:00:00Z", Q: "action:workflow.job.*"}, 2},
	} {
		s := &fakeStream{ctx: d.as(c.caller)}
		if err := d.query.StreamEvents(c.req, s); err != nil {
			d.t.Errorf("StreamEvents %v as %s: %v", c.req, c.caller.Name, err)
		}
		if len(s.sent) != c.want {
			d.t.Errorf("StreamEvents %v as %s: %d events, want %d", c.req, c.caller.Name, len(s.sent), c.want)
		}
	}
}

// fakeStream is the server side of a StreamEvents call, keeping what was
// sent.
type fakeStream struct {
	grpc.ServerStream // nil: only Send and Context are used
	ctx               context.Context
	sent              []*auditv1.StreamEventsResponse
}

func (s *fakeStream) Send(m *auditv1.StreamEventsResponse) error {
	s.sent = append(s.sent, m)
	return nil
}

func (s *fakeStream) Context() context.Context { return s.ctx }

// exportEvents downloads exports over HTTP: CSV with the default columns
// and with flat ones, NDJSON, both orders.
func (d *requests) exportEvents() {
	for _, c := range []struct {
		caller *auth.Principal
		params url.Values
		rows   int
	}{
		{allScopes, url.Values{}, 6},
		{allScopes, url.Values{"format": {"csv"}, "order": {"asc"}, "columns": {"id,actor_id,scope_id,scope_name,request_id,occurred_at"},
			"q": {"-scope:org-2"}}, 4},
		{oneScope, url.Values{"format": {"csv"}, "columns": {"id,target_type,target_name"}, "actor_id": {"alice"}}, 2},
		{allScopes, url.Values{"format": {"ndjson"}, "order": {"asc"}, "since": {"2026-01-02T03:04:05.123456789Z"}}, 4},
		{twoScopes, url.Values{"format": {"ndjson"}, "order": {"desc"}, "metadata": {"env=prod"}}, 2},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d.export.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), c.caller)))
		}))
		resp, err := http.Get(srv.URL + "/v1/events:export?" + c.params.Encode())
		if err != nil {
			d.t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if err != nil || resp.StatusCode != http.StatusOK || resp.Trailer.Get(export.TrailerStatus) != "complete" {
			d.t.Errorf("export %s as %s: status %d, %s=%q, read error %v\n%s", c.params.Encode(), c.caller.Name,
				resp.StatusCode, export.TrailerStatus, resp.Trailer.Get(export.TrailerStatus), err, body)
			continue
		}
		if got := resp.Trailer.Get(export.TrailerRows); got != fmt.Sprint(c.rows) {
			d.t.Errorf("export %s as %s: %s rows, want %d\n%s", c.params.Encode(), c.caller.Name, got, c.rows, body)
		}
	}
}
