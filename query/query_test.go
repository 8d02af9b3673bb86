package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

func TestMain(m *testing.M) { testharness.Main(m) }

type fixture struct {
	ch     *testharness.ClickHouse
	client auditv1.AuditServiceClient
}

// principalFromMetadata stands in for the auth interceptor: the scopes a
// test names in the "test-scopes" metadata (none: every scope) become the
// caller's Principal.
func principalFromMetadata(ctx context.Context) *auth.Principal {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("test-scopes")
	if len(v) == 0 {
		return &auth.Principal{Name: "test", All: true}
	}
	if v[0] == "" {
		return &auth.Principal{Name: "test", Scopes: []string{}}
	}
	return &auth.Principal{Name: "test", Scopes: strings.Split(v[0], ",")}
}

func withScopes(ctx context.Context, scopes ...string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "test-scopes", strings.Join(scopes, ","))
}

// newFixture serves a query.Service over real gRPC on a migrated test
// database.
func newFixture(t *testing.T, mutate func(*query.Config)) *fixture {
	t.Helper()
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	return serveQuery(t, ch, ch.Conn, mutate)
}

// serveQuery serves a query.Service reading through conn (a connection to
// ch's database) over real gRPC.
func serveQuery(t *testing.T, ch *testharness.ClickHouse, conn driver.Conn, mutate func(*query.Config)) *fixture {
	t.Helper()
	cfg := query.DefaultConfig()
	cfg.PageTokenKey = "0123456789abcdef-test-key"
	cfg.StreamLag = time.Second
	cfg.StreamPollInterval = 100 * time.Millisecond
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := query.New(conn, cfg, query.Options{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(auth.NewContext(ctx, principalFromMetadata(ctx)), req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &principalStream{ss, auth.NewContext(ss.Context(), principalFromMetadata(ss.Context()))})
		}),
	)
	auditv1.RegisterAuditServiceServer(srv, svc)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	client, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	return &fixture{ch: ch, client: auditv1.NewAuditServiceClient(client)}
}

type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// makeEvent builds a valid event; at is its occurred_at.
func makeEvent(t testing.TB, scope, action string, at time.Time) *event.Event {
	obj := map[string]any{
		"id": uuid.Must(uuid.NewV7()).String(), "version": 1, "action": action,
		"actor":       map[string]any{"id": "u1", "type": "user", "name": "alice"},
		"target":      map[string]any{"id": "p1", "type": "project", "n": json.Number("18446744073709551617")},
		"occurred_at": at.Format(time.RFC3339Nano), "success": false,
		"payload": map[string]any{"big": json.Number("123456789012345678901234567890")},
	}
	if scope != "" {
		obj["scope"] = map[string]any{"id": scope, "type": "organization"}
	}
	raw, _ := json.Marshal(obj)
	e, err := event.ParseJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) insert(t testing.TB, events ...*event.Event) {
	t.Helper()
	var stored []store.StoredEvent
	for _, e := range events {
		stored = append(stored, store.StoredEvent{Event: e, Validated: true})
	}
	if err := store.Insert(context.Background(), f.ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
}

// listAll pages through every event; it fails on a repeated id.
func (f *fixture) listAll(t *testing.T, ctx context.Context, req *auditv1.ListEventsRequest) []*auditv1.AuditEvent {
	t.Helper()
	var all []*auditv1.AuditEvent
	seen := map[string]bool{}
	for pages := 0; ; pages++ {
		resp, err := f.client.ListEvents(ctx, req)
		if err != nil {
			t.Fatalf("page %d: %v", pages, err)
		}
		for _, e := range resp.GetEvents() {
			if seen[e.GetId()] {
				t.Fatalf("page %d repeats event %s", pages, e.GetId())
			}
			seen[e.GetId()] = true
			all = append(all, e)
		}
		if resp.GetNextPageToken() == "" {
			return all
		}
		if len(resp.GetEvents()) != int(req.GetPageSize()) {
			t.Fatalf("page %d has %d events and a next token, want %d", pages, len(resp.GetEvents()), req.GetPageSize())
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestPagingReturnsEveryEventOnceInBothOrders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	base := time.Date(2026, 1, 31, 23, 59, 59, 999999999, time.UTC) // pages cross a partition boundary
	var events []*event.Event
	same := base.Add(time.Hour)
	for i := 0; i < 300; i++ {
		at := base.Add(time.Duration(i*37) * time.Millisecond)
		if i%3 == 0 {
			at = same // a third of them at the very same nanosecond
		}
		events = append(events, makeEvent(t, "org-a", "workflow.job.start", at))
	}
	f.insert(t, events...)
	f.insert(t, events[:60]...) // stored twice: must still show once

	for _, order := range []string{"desc", "asc"} {
		t.Run(order, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // inserts while paging: may or may not appear
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					f.insert(t, makeEvent(t, "org-a", "workflow.job.start", base.Add(time.Duration(i)*time.Second)), makeEvent(t, "org-a", "workflow.job.start", same))
					time.Sleep(5 * time.Millisecond)
				}
			}()
			got := f.listAll(t, context.Background(), &auditv1.ListEventsRequest{PageSize: 7, Order: order, ScopeId: []string{"org-a"}})
			close(stop)
			wg.Wait()

			index := map[string]bool{}
			for i, e := range got {
				index[e.GetId()] = true
				if i > 0 {
					prev, cur := got[i-1].GetOccurredAt().AsTime(), e.GetOccurredAt().AsTime()
					if (order == "desc" && cur.After(prev)) || (order == "asc" && cur.Before(prev)) {
						t.Fatalf("event %d at %v out of %s order after %v", i, cur, order, prev)
					}
				}
			}
			for _, e := range events {
				if !index[e.ID.String()] {
					t.Fatalf("pre-existing event %s (%v) was skipped", e.ID, e.OccurredAt)
				}
			}
		})
	}
}

func TestPageSizeDefaultsAndClamp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *query.Config) { c.MaxPageSize = 5; c.DefaultPageSize = 3 })
	for i := 0; i < 8; i++ {
		f.insert(t, makeEvent(t, "org-a", "user.create", time.Unix(1767225600+int64(i), 0)))
	}
	for _, c := range []struct{ size, want int32 }{{0, 3}, {2, 2}, {50, 5}} {
		resp, err := f.client.ListEvents(context.Background(), &auditv1.ListEventsRequest{PageSize: c.size})
		if err != nil {
			t.Fatal(err)
		}
		if int32(len(resp.GetEvents())) != c.want {
			t.Errorf("page_size %d gave %d events, want %d", c.size, len(resp.GetEvents()), c.want)
		}
	}
	_, err := f.client.ListEvents(context.Background(), &auditv1.ListEventsRequest{PageSize: -1})
	wantInvalid(t, err, "page_size")
	_, err = f.client.ListEvents(context.Background(), &auditv1.ListEventsRequest{Order: "up"})
	wantInvalid(t, err, "order")
}

func wantInvalid(t *testing.T, err error, param string) {
	t.Helper()
	if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), param+": ") {
		t.Errorf("got %v, want INVALID_ARGUMENT naming %s", err, param)
	}
}

func TestPageTokensRejectedWhenAlteredTruncatedOrReused(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	for i := 0; i < 10; i++ {
		f.insert(t, makeEvent(t, "org-a", "workflow.job.start", time.Unix(1767225600+int64(i), 0)))
	}
	ctx := context.Background()
	req := &auditv1.ListEventsRequest{PageSize: 3, Action: []string{"workflow.job.*"}}
	resp, err := f.client.ListEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	tok := resp.GetNextPageToken()
	if tok == "" {
		t.Fatal("no next_page_token")
	}
	// The token works with its own filters.
	if _, err := f.client.ListEvents(ctx, &auditv1.ListEventsRequest{PageSize: 3, Action: []string{"workflow.job.*"}, PageToken: tok}); err != nil {
		t.Fatal(err)
	}
	flip := []byte(tok)
	flip[len(flip)/2] ^= 1
	if flip[len(flip)/2] == '-' || flip[len(flip)/2] == '_' || flip[len(flip)/2] > 'z' {
		flip[len(flip)/2] = 'A'
	}
	cases := []struct {
		name string
		ctx  context.Context
		req  *auditv1.ListEventsRequest
	}{
		{"altered", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, PageToken: string(flip)}},
		{"truncated", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, PageToken: tok[:len(tok)-4]}},
		{"not base64", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, PageToken: "!!!"}},
		{"other filters", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.*"}, PageToken: tok}},
		{"other phrase", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, Q: "actor:alice", PageToken: tok}},
		{"other order", ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, Order: "asc", PageToken: tok}},
		{"other scopes", withScopes(ctx, "org-a"), &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, PageToken: tok}},
	}
	for _, c := range cases {
		_, err := f.client.ListEvents(c.ctx, c.req)
		if status.Code(err) != codes.InvalidArgument || !strings.HasPrefix(status.Convert(err).Message(), "page_token: ") {
			t.Errorf("%s token: got %v, want INVALID_ARGUMENT naming page_token", c.name, err)
		}
	}
	// A token signed with another key is rejected too.
	other := newFixture(t, func(c *query.Config) { c.PageTokenKey = "another-key-0123456789" })
	_, err = other.client.ListEvents(ctx, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, PageToken: tok})
	wantInvalid(t, err, "page_token")
}

func TestGetEvent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a := makeEvent(t, "org-a", "user.create", time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC))
	noScope := makeEvent(t, "", "user.create", time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	f.insert(t, a, noScope)
	f.insert(t, a) // a second copy
	ctx := context.Background()
	resp, err := f.client.GetEvent(ctx, &auditv1.GetEventRequest{Id: a.ID.String()})
	if err != nil {
		t.Fatal(err)
	}
	got, err := event.FromProtoUnchecked(resp.GetEvent())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := a.MarshalJSON()
	if gotJSON, _ := got.MarshalJSON(); !sameJSON(gotJSON, want) {
		t.Errorf("GetEvent:\n got %s\nwant %s", gotJSON, want)
	}
	if _, err := f.client.GetEvent(withScopes(ctx, "org-a"), &auditv1.GetEventRequest{Id: a.ID.String()}); err != nil {
		t.Errorf("in scope: %v", err)
	}
	for name, c := range map[string]struct {
		ctx context.Context
		id  string
	}{
		"unknown id":       {ctx, uuid.NewString()},
		"other scope":      {withScopes(ctx, "org-b"), a.ID.String()},
		"no scopes":        {withScopes(ctx, ""), a.ID.String()},
		"scope-less event": {withScopes(ctx, "org-a"), noScope.ID.String()},
	} {
		_, err := f.client.GetEvent(c.ctx, &auditv1.GetEventRequest{Id: c.id})
		if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "event "+c.id+" not found" {
			t.Errorf("%s: got %v, want NOT_FOUND", name, err)
		}
	}
	_, err = f.client.GetEvent(ctx, &auditv1.GetEventRequest{Id: "nope"})
	wantInvalid(t, err, "id")
}

func TestScopesBoundListing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	at := time.Unix(1767225600, 0)
	f.insert(t, makeEvent(t, "org-a", "user.create", at), makeEvent(t, "org-b", "user.create", at), makeEvent(t, "", "user.create", at))
	ctx := context.Background()
	for _, c := range []struct {
		ctx  context.Context
		req  *auditv1.ListEventsRequest
		want int
	}{
		{ctx, &auditv1.ListEventsRequest{}, 3},
		{withScopes(ctx, "org-a"), &auditv1.ListEventsRequest{}, 1},
		{withScopes(ctx, "org-a"), &auditv1.ListEventsRequest{ScopeId: []string{"org-b"}}, 0},
		{withScopes(ctx, "org-a"), &auditv1.ListEventsRequest{Q: "-scope:org-a"}, 0},
		{withScopes(ctx, ""), &auditv1.ListEventsRequest{}, 0},
	} {
		resp, err := f.client.ListEvents(c.ctx, c.req)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetEvents()) != c.want {
			t.Errorf("%v: %d events, want %d", c.req, len(resp.GetEvents()), c.want)
		}
	}
}

func TestConcurrencyCapAnswersResourceExhausted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *query.Config) { c.MaxConcurrentQueries = 1; c.QueueWait = 0 })
	// A following stream holds the only slot while it polls; hammer the
	// service until one call is refused.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	refused := make(chan error, 100)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20 && ctx.Err() == nil; j++ {
				_, err := f.client.ListEvents(ctx, &auditv1.ListEventsRequest{})
				if err != nil {
					refused <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(refused)
	n := 0
	for err := range refused {
		n++
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
		}
	}
	if n == 0 {
		t.Fatal("160 concurrent calls on one slot without queueing: none was refused")
	}
}

func ids(events []*auditv1.AuditEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.GetId())
	}
	return out
}

func eventIDs(events []*event.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.ID.String())
	}
	return out
}

func sameSet(t *testing.T, what string, got, want []string) {
	t.Helper()
	g := map[string]int{}
	for _, id := range got {
		g[id]++
	}
	for id, n := range g {
		if n > 1 {
			t.Errorf("%s: %s delivered %d times", what, id, n)
		}
	}
	w := map[string]bool{}
	for _, id := range want {
		w[id] = true
		if g[id] == 0 {
			t.Errorf("%s: %s missing", what, id)
		}
	}
	for id := range g {
		if !w[id] {
			t.Errorf("%s: %s unexpected", what, id)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// sameJSON compares JSON documents by members and values (numbers as
// their text, so big integers count digit for digit).
func sameJSON(a, b []byte) bool {
	decode := func(data []byte) any {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			return err.Error()
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}
