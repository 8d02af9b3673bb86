package server_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/server"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

// tenants is a running server over the events of two tenants (org-a,
// org-b) and a few events without a scope, with a token per tenant and an
// all-scope admin token.
type tenants struct {
	base, grpcAddr string
	tokensFile     string
	ids            map[string][]string // scope ("" for none) -> ids
	tokenA         string
	tokenB         string
	admin          string
}

func writeTokens(t *testing.T, path string, entries map[string][]string) map[string]string {
	t.Helper()
	secrets := map[string]string{}
	var list []map[string]any
	for name, scopes := range entries {
		secret := "secret-" + name + "-" + uuid.NewString()
		secrets[name] = secret
		list = append(list, map[string]any{"name": name, "sha256": auth.HashToken(secret), "scopes": scopes})
	}
	data, _ := json.Marshal(map[string]any{"tokens": list})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return secrets
}

func startTenants(t *testing.T, limits auth.LimitsConfig) *tenants {
	t.Helper()
	ctx := context.Background()
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	tn := &tenants{ids: map[string][]string{}, tokensFile: filepath.Join(t.TempDir(), "tokens.json")}
	var stored []store.StoredEvent
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 45 {
		scope := []string{"org-a", "org-b", ""}[i%3]
		if scope == "" && i > 9 {
			scope = "org-b"
		}
		obj := map[string]any{
			"id": uuid.Must(uuid.NewV7()).String(), "version": 1, "action": "workflow.job.start",
			"actor":  map[string]any{"id": "u" + scope, "type": "user", "name": "user of " + scope},
			"target": map[string]any{"id": "j1", "type": "job"}, "success": i%2 == 0,
			"occurred_at": base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano),
		}
		if scope != "" {
			obj["scope"] = map[string]any{"id": scope, "type": "organization"}
		}
		raw, _ := json.Marshal(obj)
		e, err := event.ParseJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, store.StoredEvent{Event: e, Validated: true})
		tn.ids[scope] = append(tn.ids[scope], e.ID.String())
	}
	if err := store.Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
	secrets := writeTokens(t, tn.tokensFile, map[string][]string{"tenant-a": {"org-a"}, "tenant-b": {"org-b"}, "admin": {"*"}})
	tn.tokenA, tn.tokenB, tn.admin = secrets["tenant-a"], secrets["tenant-b"], secrets["admin"]

	ac := auth.Config{TokensFile: tn.tokensFile, Limits: limits}
	guard, err := ac.NewGuard(testLogger(), "/audit.v1.AuditService/StreamEvents", "/audit.v1.AuditService/ExportEvents")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	guard.Tokens().ReloadOnSIGHUP(runCtx, testLogger())
	reg := prometheus.NewRegistry()
	qc := query.DefaultConfig()
	qc.StreamLag = 0
	qc.StreamPollInterval = 100 * time.Millisecond
	qc.PageTokenKey = "tenant-test-key-0123456789"
	svc, err := query.New(ch.Conn, qc, query.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	exp, err := export.New(export.DefaultConfig(), ch.Conn, export.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	sc := server.DefaultConfig()
	sc.GRPCAddr, sc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	sc.Query, sc.Exporter, sc.Guard, sc.Registry, sc.Ready = svc, exp, guard, reg, ch.Conn.Ping
	srv, err := server.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	tn.base, tn.grpcAddr = "http://"+srv.HTTPAddr(), srv.GRPCAddr()
	return tn
}

func (tn *tenants) get(t *testing.T, token, path string, q url.Values) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", tn.base+path+"?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, body
}

func (tn *tenants) client(t *testing.T) auditv1.AuditServiceClient {
	conn, err := grpc.NewClient(tn.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return auditv1.NewAuditServiceClient(conn)
}

func bearer(token string) string { return "Bearer " + token }

func withToken(ctx context.Context, header string) context.Context {
	if header == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", header)
}

// listAll pages through GET /v1/events and returns the scopes seen.
func (tn *tenants) listAll(t *testing.T, token string, q url.Values) (ids []string, code int) {
	t.Helper()
	q.Set("page_size", "7")
	for {
		code, _, body := tn.get(t, bearer(token), "/v1/events", q)
		if code != http.StatusOK {
			return ids, code
		}
		var page struct {
			Events []struct {
				ID    string `json:"id"`
				Scope *struct {
					ID string `json:"id"`
				} `json:"scope"`
			} `json:"events"`
			Next string `json:"next_page_token"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Events {
			ids = append(ids, e.ID)
		}
		if page.Next == "" {
			return ids, code
		}
		q.Set("page_token", page.Next)
	}
}

// onlyScope fails the test if ids holds an event outside scope's.
func (tn *tenants) onlyScope(t *testing.T, what string, ids []string, scope string) {
	t.Helper()
	own := map[string]bool{}
	for _, id := range tn.ids[scope] {
		own[id] = true
	}
	for _, id := range ids {
		if !own[id] {
			t.Errorf("%s: returned event %s of another tenant", what, id)
		}
	}
}

func TestCrossTenantIsolationOnEveryPath(t *testing.T) {
	t.Parallel()
	tn := startTenants(t, auth.LimitsConfig{})
	a, bIDs := tn.tokenA, tn.ids["org-b"]

	// List, with and without scope filters and with phrase tricks.
	for _, q := range []url.Values{
		{},
		{"scope_id": {"org-b"}},
		{"scope_id": {"org-a", "org-b"}},
		{"q": {"scope:org-b"}},
		{"q": {"-scope:org-a"}},
		{"q": {"scope:org-a,org-b"}},
		{"q": {`scope:"org-b"`}},
		{"q": {"actor:uorg-b"}},
		{"q": {`scope:org-a") OR 1=1 --`}},
		{"actor_id": {"uorg-b"}},
	} {
		ids, code := tn.listAll(t, a, q)
		if code != http.StatusOK && code != http.StatusBadRequest {
			t.Errorf("list %v: %d, want 200 or a 400 for a malformed phrase", q, code)
		}
		tn.onlyScope(t, fmt.Sprintf("list %v", q), ids, "org-a")
	}
	if ids, _ := tn.listAll(t, a, url.Values{}); len(ids) != len(tn.ids["org-a"]) {
		t.Errorf("tenant A lists %d events, want its %d", len(ids), len(tn.ids["org-a"]))
	}
	if ids, _ := tn.listAll(t, tn.admin, url.Values{}); len(ids) != 45 {
		t.Errorf("admin lists %d events, want all 45 (scope-less included)", len(ids))
	}

	// Get by another tenant's id, or a scope-less event's: NOT_FOUND, as
	// for an id that does not exist.
	for _, id := range []string{bIDs[0], tn.ids[""][0], uuid.NewString()} {
		if code, _, body := tn.get(t, bearer(a), "/v1/events/"+id, nil); code != http.StatusNotFound {
			t.Errorf("GET other tenant's %s = %d %s, want 404", id, code, body)
		}
	}
	if code, _, _ := tn.get(t, bearer(a), "/v1/events/"+tn.ids["org-a"][0], nil); code != http.StatusOK {
		t.Errorf("GET own event = %d, want 200", code)
	}

	// A page token issued to tenant B is refused to tenant A.
	_, _, body := tn.get(t, bearer(tn.tokenB), "/v1/events", url.Values{"page_size": {"2"}})
	var page struct {
		Next string `json:"next_page_token"`
	}
	_ = json.Unmarshal(body, &page)
	if page.Next == "" {
		t.Fatal("tenant B got no page token")
	}
	code, _, body := tn.get(t, bearer(a), "/v1/events", url.Values{"page_size": {"2"}, "page_token": {page.Next}})
	if code != http.StatusBadRequest || strings.Contains(string(body), bIDs[0]) {
		t.Errorf("B's page token used by A = %d %s, want 400", code, body)
	}

	// Stream over gRPC, and over REST.
	client := tn.client(t)
	ctx, cancel := context.WithTimeout(withToken(context.Background(), bearer(a)), 30*time.Second)
	defer cancel()
	stream, err := client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Follow: true, Q: "scope:org-b"})
	if err != nil {
		t.Fatal(err)
	}
	// Tenant A's own events are all it may see; asking for org-b gives it
	// nothing, so wait for an own-scope stream to prove the stream works.
	own, err := client.StreamEvents(ctx, &auditv1.StreamEventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var streamed []string
	for len(streamed) < len(tn.ids["org-a"]) {
		msg, err := own.Recv()
		if err != nil {
			t.Fatalf("own stream after %d: %v", len(streamed), err)
		}
		streamed = append(streamed, msg.GetEvent().GetId())
	}
	tn.onlyScope(t, "stream", streamed, "org-a")
	recvDone := make(chan []string)
	go func() {
		var got []string
		for {
			msg, err := stream.Recv()
			if err != nil {
				recvDone <- got
				return
			}
			got = append(got, msg.GetEvent().GetId())
		}
	}()
	time.Sleep(time.Second) // the org-b stream polled several times by now
	cancel()
	if got := <-recvDone; len(got) != 0 {
		t.Errorf("stream with q=scope:org-b gave tenant A %d events", len(got))
	}

	// Export in both formats, over REST and gRPC.
	for _, format := range []string{"csv", "ndjson"} {
		code, _, body := tn.get(t, bearer(a), "/v1/events:export", url.Values{"format": {format}, "scope_id": {"org-a", "org-b"}})
		if code != http.StatusOK {
			t.Fatalf("export %s: %d %s", format, code, body)
		}
		ids := exportedIDs(t, format, body)
		if len(ids) != len(tn.ids["org-a"]) {
			t.Errorf("export %s gave %d events, want tenant A's %d", format, len(ids), len(tn.ids["org-a"]))
		}
		tn.onlyScope(t, "export "+format, ids, "org-a")
	}
	gctx, gcancel := context.WithTimeout(withToken(context.Background(), bearer(a)), 30*time.Second)
	defer gcancel()
	exp, err := client.ExportEvents(gctx, &auditv1.ExportEventsRequest{Format: "ndjson", Q: "scope:org-b"})
	if err != nil {
		t.Fatal(err)
	}
	var data []byte
	for {
		chunk, err := exp.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, chunk.GetData()...)
	}
	if ids := exportedIDs(t, "ndjson", data); len(ids) != 0 {
		t.Errorf("gRPC export q=scope:org-b gave tenant A %d events", len(ids))
	}
}

func exportedIDs(t *testing.T, format string, body []byte) []string {
	t.Helper()
	var ids []string
	if format == "csv" {
		rows, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range rows[1:] {
			ids = append(ids, row[0])
		}
		return ids
	}
	for _, line := range strings.Split(strings.TrimSpace(string(body)), "\n") {
		if line == "" {
			continue
		}
		var e struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

func TestMissingMalformedUnknownTokens(t *testing.T) {
	t.Parallel()
	tn := startTenants(t, auth.LimitsConfig{})
	id := tn.ids["org-a"][0]
	for _, header := range []string{"", "Bearer", "Basic " + tn.tokenA, tn.tokenA, "Bearer not-a-token"} {
		for _, path := range []string{"/v1/events", "/v1/events/" + id, "/v1/events:export", "/v1/events:stream", "/v1/schemas"} {
			code, _, body := tn.get(t, header, path, nil)
			if code != http.StatusUnauthorized {
				t.Errorf("%s with Authorization %q = %d %s, want 401", path, header, code, body)
			}
			if strings.Contains(string(body), id) {
				t.Errorf("%s leaked an event to Authorization %q", path, header)
			}
		}
		ctx := withToken(context.Background(), header)
		client := tn.client(t)
		_, err := client.ListEvents(ctx, &auditv1.ListEventsRequest{})
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC ListEvents with %q = %v, want UNAUTHENTICATED", header, err)
		}
		stream, err := client.StreamEvents(ctx, &auditv1.StreamEventsRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("gRPC StreamEvents with %q = %v, want UNAUTHENTICATED", header, err)
		}
	}
	// Health, readiness, metrics and the OpenAPI document need no token.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if code, _, _ := tn.get(t, "", path, nil); code != http.StatusOK {
			t.Errorf("%s without a token = %d, want 200", path, code)
		}
	}
}

func TestRateLimitAndStreamCap(t *testing.T) {
	t.Parallel()
	tn := startTenants(t, auth.LimitsConfig{RequestsPerSecond: 0.5, Burst: 3, MaxStreamsPerToken: 1})
	var last int
	var header http.Header
	for range 5 {
		last, header, _ = tn.get(t, bearer(tn.tokenA), "/v1/events", nil)
	}
	if last != http.StatusTooManyRequests || header.Get("Retry-After") == "" {
		t.Errorf("6th request in a second = %d (Retry-After %q), want 429 with Retry-After", last, header.Get("Retry-After"))
	}
	_, err := tn.client(t).ListEvents(withToken(context.Background(), bearer(tn.tokenA)), &auditv1.ListEventsRequest{})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC over the rate = %v, want RESOURCE_EXHAUSTED", err)
	}
	// Another token has its own budget.
	if code, _, _ := tn.get(t, bearer(tn.tokenB), "/v1/events", nil); code != http.StatusOK {
		t.Errorf("tenant B limited by tenant A's requests: %d", code)
	}

	// One open stream uses up tenant B's stream slot: an export is refused.
	ctx, cancel := context.WithCancel(withToken(context.Background(), bearer(tn.tokenB)))
	defer cancel()
	stream, err := tn.client(t).StreamEvents(ctx, &auditv1.StreamEventsRequest{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	code, h, body := tn.get(t, bearer(tn.tokenB), "/v1/events:export", nil)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Errorf("export beside an open stream = %d %s (Retry-After %q), want 429", code, body, h.Get("Retry-After"))
	}
	cancel()
}

func TestSIGHUPRevokesToken(t *testing.T) {
	// Not parallel: SIGHUP reaches every server of the process.
	tn := startTenants(t, auth.LimitsConfig{})
	if code, _, _ := tn.get(t, bearer(tn.tokenB), "/v1/events", nil); code != http.StatusOK {
		t.Fatalf("tenant B before revocation: %d", code)
	}
	// Keep only tenant A, with the same secret.
	data, _ := json.Marshal(map[string]any{"tokens": []map[string]any{{"name": "tenant-a", "sha256": auth.HashToken(tn.tokenA), "scopes": []string{"org-a"}}}})
	if err := os.WriteFile(tn.tokensFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := tn.get(t, bearer(tn.tokenB), "/v1/events", nil)
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still answered %d 10s after SIGHUP", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := tn.get(t, bearer(tn.tokenA), "/v1/events", nil); code != http.StatusOK {
		t.Errorf("kept token after reload: %d", code)
	}
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
