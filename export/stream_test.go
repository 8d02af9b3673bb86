package export_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/v2/utilities"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
	"github.com/auditlog/auditlog/query/filter"
)

func TestDuplicatesAppearOnce(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	// Keep the copies apart: a merge would remove them before the export
	// had to.
	env.ch.Exec(t, "SYSTEM STOP MERGES events")
	texts := append(trickyEvents[:len(trickyEvents):len(trickyEvents)], randomEvents(t, 300, 3)...)
	// Different events, different scopes, the very same occurred_at: the
	// copies of each must still sit next to each other in the export order
	// (scope_id is not part of it).
	for i := range 30 {
		texts = append(texts, fmt.Sprintf(`{"id":"0193a1f4-6a3c-7d2e-9b41-%012d","version":1,"action":"user.logged_in","actor":{"id":"u","type":"user"},`+
			`"target":{"id":"u","type":"user"},"scope":{"id":"org-%d","type":"organization"},"occurred_at":"2026-05-05T05:05:05.555555555Z","success":true}`, i, i%3))
	}
	events, _ := stored(t, texts)
	for range 3 { // three deliveries, three parts
		env.insert(t, events)
	}
	if n := env.ch.QueryUint64(t, "SELECT count() FROM events"); n != uint64(3*len(events)) {
		t.Fatalf("%d rows stored, want %d copies", n, 3*len(events))
	}
	for _, format := range []string{"csv", "ndjson"} {
		d := env.get(t, url.Values{"format": {format}})
		seen := map[string]int{}
		if format == "csv" {
			for _, rec := range readCSV(t, d.body)[1:] {
				seen[rec[0]]++
			}
		} else {
			for _, line := range strings.Split(strings.TrimSpace(string(d.body)), "\n") {
				seen[line[len(`{"id":"`):len(`{"id":"`)+36]]++
			}
		}
		if len(seen) != len(events) {
			t.Errorf("%s: %d distinct ids, want %d", format, len(seen), len(events))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s: %s appears %d times", format, id, n)
			}
		}
		if got := d.resp.Trailer.Get(export.TrailerRows); got != fmt.Sprint(len(events)) {
			t.Errorf("%s: rows trailer %q, want %d", format, got, len(events))
		}
	}
	if n := env.ch.QueryUint64(t, "SELECT count() FROM events"); n != uint64(3*len(events)) {
		t.Fatalf("copies were merged away during the test (%d rows): it proved nothing", n)
	}
}

// filterCases are requests with a plain-Go statement of what they select.
var filterCases = []struct {
	params url.Values
	match  func(e *event.Event) bool
}{
	{url.Values{}, func(e *event.Event) bool { return true }},
	{url.Values{"scope_id": {"org-1"}}, func(e *event.Event) bool { return e.ScopeID() == "org-1" }},
	{url.Values{"scope_id": {"org-1", "org-2"}}, func(e *event.Event) bool { return e.ScopeID() == "org-1" || e.ScopeID() == "org-2" }},
	{url.Values{"action": {"workflow.job.*"}}, func(e *event.Event) bool { return strings.HasPrefix(e.Action, "workflow.job.") }},
	{url.Values{"action": {"context.create", "user.logged_in"}}, func(e *event.Event) bool { return e.Action == "context.create" || e.Action == "user.logged_in" }},
	{url.Values{"actor_id": {"u1", "u2"}}, func(e *event.Event) bool { return e.Actor.ID == "u1" || e.Actor.ID == "u2" }},
	{url.Values{"actor_type": {"system"}}, func(e *event.Event) bool { return e.Actor.Type == "system" }},
	{url.Values{"target_name": {`job "7"`}}, func(e *event.Event) bool { return e.Target.Name == `job "7"` }},
	{url.Values{"success": {"false"}}, func(e *event.Event) bool { return !e.Success }},
	{url.Values{"version": {"2"}}, func(e *event.Event) bool { return e.Version == 2 }},
	{url.Values{"request_id": {"req-3"}}, func(e *event.Event) bool { return e.RequestID() == "req-3" }},
	{url.Values{"metadata": {"env=prod"}}, func(e *event.Event) bool { return e.Metadata["env"] == "prod" }},
	{url.Values{"since": {"2026-02-01T00:00:00Z"}, "until": {"2026-03-01T00:00:00.333333333Z"}}, func(e *event.Event) bool {
		return !e.OccurredAt.Before(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)) && e.OccurredAt.Before(time.Date(2026, 3, 1, 0, 0, 0, 333333333, time.UTC))
	}},
	{url.Values{"q": {"action:workflow.job.* actor_type:system -scope:org-0 success:true"}}, func(e *event.Event) bool {
		return strings.HasPrefix(e.Action, "workflow.job.") && e.Actor.Type == "system" && e.ScopeID() != "org-0" && e.Success
	}},
	{url.Values{"q": {"meta.env:staging,prod request:req-1"}}, func(e *event.Event) bool {
		return (e.Metadata["env"] == "staging" || e.Metadata["env"] == "prod") && e.RequestID() == "req-1"
	}},
}

func exportedIDs(t *testing.T, env *env, params url.Values) map[string]bool {
	t.Helper()
	d := env.get(t, params)
	if d.resp.StatusCode != http.StatusOK || d.err != nil {
		t.Fatalf("%v: %d %v %s", params, d.resp.StatusCode, d.err, d.body)
	}
	ids := map[string]bool{}
	for _, rec := range readCSV(t, d.body)[1:] {
		if ids[rec[0]] {
			t.Errorf("%v: %s twice", params, rec[0])
		}
		ids[rec[0]] = true
	}
	return ids
}

func TestFiltersMatchAGoOracle(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	events, _ := stored(t, append(trickyEvents[:len(trickyEvents):len(trickyEvents)], randomEvents(t, 600, 4)...))
	env.insert(t, events)
	for _, tc := range filterCases {
		// The request parses with the shared parser (the one ListEvents
		// uses): a case the parser rejects would prove nothing.
		req := &auditv1.ExportEventsRequest{}
		if err := runtime.PopulateQueryParameters(req, tc.params, utilities.NewDoubleArray(nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := filter.Parse(req); err != nil {
			t.Fatalf("%v: %v", tc.params, err)
		}
		got := exportedIDs(t, env, tc.params)
		want := 0
		for _, e := range events {
			if !tc.match(e) {
				continue
			}
			want++
			if !got[e.ID.String()] {
				t.Errorf("%v: %s missing", tc.params, e.ID)
			}
		}
		if len(got) != want {
			t.Errorf("%v: %d events, want %d", tc.params, len(got), want)
		}
		if want == 0 {
			t.Errorf("%v: the oracle selects nothing; the case proves little", tc.params)
		}
	}
}

func TestExportStaysInsideTheCallersScopes(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig(), "org-1")
	events, _ := stored(t, append(trickyEvents[:len(trickyEvents):len(trickyEvents)], randomEvents(t, 300, 5)...))
	env.insert(t, events)
	inScope := 0
	for _, e := range events {
		if e.ScopeID() == "org-1" {
			inScope++
		}
	}
	for _, params := range []url.Values{
		{}, {"scope_id": {"org-2"}}, {"scope_id": {"org-1", "org-2"}}, {"q": {"scope:org-2"}}, {"q": {"-scope:org-1"}}, {"format": {"ndjson"}},
	} {
		d := env.get(t, params)
		lines := strings.Split(strings.TrimSpace(string(d.body)), "\n")
		if params.Get("format") != "ndjson" {
			lines = lines[1:] // the header
		}
		n := 0
		for _, line := range lines {
			if line == "" {
				continue
			}
			n++
			if !strings.Contains(line, `"scope":{"id":"org-1"`) && !strings.Contains(line, `{""id"":""org-1""`) {
				t.Errorf("%v: a row outside scope org-1: %.300s", params, line)
			}
		}
		if params.Get("scope_id") == "org-2" || params.Get("q") != "" {
			if n != 0 {
				t.Errorf("%v: %d rows, want none", params, n)
			}
		} else if n != inScope {
			t.Errorf("%v: %d rows, want the %d of org-1", params, n, inScope)
		}
	}
	d := env.get(t, url.Values{})
	if cd := d.resp.Header.Get("Content-Disposition"); !strings.Contains(cd, `filename="auditlog-org-1-`) {
		t.Errorf("Content-Disposition %q: want the caller's only scope in the name", cd)
	}
}

// processGone polls system.processes until the query id is gone.
func processGone(t *testing.T, env *env, id string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if env.ch.QueryUint64(t, "SELECT count() FROM system.processes WHERE query_id = ?", id) == 0 {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("export query %s still in system.processes %s after the client left", id, within)
	return 0
}

func TestDisconnectCancelsTheQueryAndFreesTheSlot(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 300k events")
	}
	cfg := export.DefaultConfig()
	cfg.MaxConcurrent = 1
	cfg.BlockRows = 1000
	env := newEnv(t, cfg)
	env.fill(t, 300_000)

	for _, phase := range []string{"while ClickHouse sorts", "while rows stream"} {
		client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
		resp, err := client.Get(env.srv.URL + "/v1/events:export")
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Header.Get("X-Export-Id")
		br := bufio.NewReader(resp.Body)
		header, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(header, "id,occurred_at,") {
			t.Fatalf("first line %q, %v", header, err)
		}
		if phase == "while rows stream" {
			if _, err := io.CopyN(io.Discard, br, 1<<20); err != nil {
				t.Fatal(err)
			}
		}
		if env.ch.QueryUint64(t, "SELECT count() FROM system.processes WHERE query_id = ?", id) != 1 {
			t.Fatalf("%s: export query %q is not running", phase, id)
		}

		// While it runs, a second export is refused: the cap is 1.
		d := env.get(t, url.Values{"scope_id": {"org-1"}})
		if d.resp.StatusCode != http.StatusTooManyRequests || d.resp.Header.Get("Retry-After") != "10" {
			t.Errorf("second export: %d Retry-After %q, want 429 with Retry-After 10: %s", d.resp.StatusCode, d.resp.Header.Get("Retry-After"), d.body)
		}

		resp.Body.Close() // the client goes away mid-export
		took := processGone(t, env, id, 5*time.Second)
		t.Logf("%s: the query left system.processes %s after the client closed", phase, took.Round(time.Millisecond))
		deadline := time.Now().Add(5 * time.Second)
		for inFlight(t, env) != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if v := inFlight(t, env); v != 0 {
			t.Fatalf("%s: %v exports in flight after the client left", phase, v)
		}
	}
	// The slot is free again.
	d := env.get(t, url.Values{"actor_id": {"user-7"}, "until": {"2026-01-01T00:01:00Z"}})
	if d.resp.StatusCode != http.StatusOK || d.resp.Trailer.Get(export.TrailerRows) != "60" {
		t.Errorf("export after the disconnects: %d, rows %q, want 200 with 60 rows", d.resp.StatusCode, d.resp.Trailer.Get(export.TrailerRows))
	}
}

// inFlight reads the auditlog_export_in_flight gauge.
func inFlight(t *testing.T, env *env) float64 {
	t.Helper()
	mfs, err := env.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "auditlog_export_in_flight" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no auditlog_export_in_flight metric")
	return 0
}

func TestMidStreamFailureIsUnmistakable(t *testing.T) {
	t.Parallel()
	cfg := export.DefaultConfig()
	cfg.BlockRows = 100
	cfg.MaxRows = 1000 // ClickHouse fails the query after about 1000 rows
	cfg.FlushBytes = 4096
	env := newEnv(t, cfg)
	env.fill(t, 5000)

	// CSV: the rows so far, an #ERROR record, an aborted body, no trailer.
	d := env.get(t, nil)
	if !errors.Is(d.err, io.ErrUnexpectedEOF) {
		t.Errorf("reading the body ended with %v, want an unexpected EOF", d.err)
	}
	if got := d.resp.Trailer.Get(export.TrailerStatus); got != "" {
		t.Errorf("trailer %s = %q on a failed export", export.TrailerStatus, got)
	}
	lines := strings.Split(strings.TrimSuffix(string(d.body), "\r\n"), "\r\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "#ERROR: export failed after ") || !strings.Contains(last, "--export-max-rows") {
		t.Errorf("last line %q, want the #ERROR record", last)
	}
	if len(lines) < 100 {
		t.Errorf("only %d lines before the error: the failure was not mid-stream", len(lines))
	}
	// The record says how many rows came before it, and it is right.
	if want := fmt.Sprintf("#ERROR: export failed after %d rows: ", len(lines)-2); !strings.HasPrefix(last, want) {
		t.Errorf("last line %q, want it to start %q", last, want)
	}
	t.Logf("CSV: %d lines, last: %s", len(lines), last)

	// gzip: the same inside the compressed stream, which itself is cut off.
	d = env.get(t, nil, "Accept-Encoding", "gzip")
	zr, err := gzip.NewReader(bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("gunzip ended with %v, want an unexpected EOF", err)
	}
	if !bytes.Contains(plain, []byte("\r\n#ERROR: export failed after ")) {
		t.Errorf("gzip body lacks the #ERROR record: %q", plain[max(0, len(plain)-200):])
	}

	// NDJSON: a last {"error": …} line.
	d = env.get(t, url.Values{"format": {"ndjson"}})
	if !errors.Is(d.err, io.ErrUnexpectedEOF) {
		t.Errorf("ndjson: body ended with %v", d.err)
	}
	nd := strings.Split(strings.TrimSpace(string(d.body)), "\n")
	if last := nd[len(nd)-1]; !strings.HasPrefix(last, `{"error":{"code":"RESOURCE_EXHAUSTED","message":"the export has more than 1000 rows`) {
		t.Errorf("ndjson last line %q", last)
	}

	// gRPC: chunks, then a non-OK status.
	chunks, data, err := grpcExport(t, env, &auditv1.ExportEventsRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC stream ended with %v, want RESOURCE_EXHAUSTED", err)
	}
	if chunks < 2 || !bytes.Contains(data, []byte("\r\n#ERROR: export failed after ")) {
		t.Errorf("gRPC: %d chunks, tail %q", chunks, data[max(0, len(data)-200):])
	}
}

func TestGRPCExport(t *testing.T) {
	t.Parallel()
	cfg := export.DefaultConfig()
	cfg.FlushBytes = 1024
	env := newEnv(t, cfg)
	events, _ := stored(t, append(trickyEvents[:len(trickyEvents):len(trickyEvents)], randomEvents(t, 300, 6)...))
	env.insert(t, events)
	chunks, data, err := grpcExport(t, env, &auditv1.ExportEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d := env.get(t, nil)
	// Same code path: the same bytes as REST.
	if !bytes.Equal(data, d.body) {
		t.Errorf("gRPC body (%d bytes in %d chunks) differs from the REST body (%d bytes)", len(data), chunks, len(d.body))
	}
	if chunks < 10 {
		t.Errorf("%d chunks of about 1 KiB for %d bytes", chunks, len(data))
	}
	_, _, err = grpcExport(t, env, &auditv1.ExportEventsRequest{Columns: []string{"nope"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "nope") {
		t.Errorf("unknown column over gRPC: %v", err)
	}
}

// grpcExport runs ExportEvents over a real gRPC connection as an all-scope
// caller and returns the chunks' count and data and how the stream ended.
func grpcExport(t *testing.T, env *env, req *auditv1.ExportEventsRequest) (int, []byte, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &withContext{ServerStream: ss, ctx: auth.NewContext(ss.Context(), &auth.Principal{Name: "test", All: true})})
	}))
	auditv1.RegisterAuditServiceServer(srv, &exportOnly{svc: env.svc})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := auditv1.NewAuditServiceClient(conn).ExportEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	chunks := 0
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			if got := stream.Trailer().Get("x-export-status"); len(got) != 1 || got[0] != "complete" {
				t.Errorf("complete stream without the x-export-status trailer: %v", stream.Trailer())
			}
			return chunks, data, nil
		}
		if err != nil {
			return chunks, data, err
		}
		if chunks == 0 && msg.GetContentType() != "text/csv; charset=utf-8" && req.GetFormat() == "" {
			t.Errorf("first chunk content type %q", msg.GetContentType())
		}
		if chunks > 0 && msg.GetContentType() != "" {
			t.Errorf("chunk %d repeats the content type", chunks)
		}
		chunks++
		data = append(data, msg.GetData()...)
	}
}

type exportOnly struct {
	auditv1.UnimplementedAuditServiceServer
	svc *export.Service
}

func (s *exportOnly) ExportEvents(req *auditv1.ExportEventsRequest, stream auditv1.AuditService_ExportEventsServer) error {
	return s.svc.ExportEvents(req, stream)
}

type withContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *withContext) Context() context.Context { return s.ctx }

func TestFiltersMatchListEvents(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	env.ch.Exec(t, "SYSTEM STOP MERGES events")
	events, _ := stored(t, append(trickyEvents[:len(trickyEvents):len(trickyEvents)], randomEvents(t, 400, 7)...))
	env.insert(t, events)
	env.insert(t, events[:100]) // some stored twice
	list, err := query.New(env.ch.Conn, query.DefaultConfig(), query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range filterCases {
		want := map[string]bool{}
		req := &auditv1.ListEventsRequest{}
		// The same parameters, read the way the gateway reads them.
		if err := runtime.PopulateQueryParameters(req, tc.params, utilities.NewDoubleArray(nil)); err != nil {
			t.Fatal(err)
		}
		req.PageSize = 1000
		for {
			resp, err := list.ListEvents(auth.NewContext(context.Background(), &auth.Principal{Name: "test", All: true}), req)
			if err != nil {
				t.Fatalf("%v: ListEvents: %v", tc.params, err)
			}
			for _, e := range resp.GetEvents() {
				want[e.GetId()] = true
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		got := exportedIDs(t, env, tc.params)
		if len(got) != len(want) {
			t.Errorf("%v: export has %d events, ListEvents %d", tc.params, len(got), len(want))
		}
		for id := range want {
			if !got[id] {
				t.Errorf("%v: %s listed but not exported", tc.params, id)
			}
		}
	}
}
