package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/server"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/proto/openapi"
	"github.com/auditlog/auditlog/query"
)

func TestMain(m *testing.M) { testharness.Main(m) }

const sent = `{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":1,"action":"workflow.job.start",` +
	`"actor":{"id":"u1","type":"user","name":"Zoë \"z\"","ip":"10.0.0.1"},"target":{"id":"j1","type":"job","n":18446744073709551617},` +
	`"scope":{"id":"org-1","type":"organization","name":"Acme"},"payload":{"big":123456789012345678901234567890,"nested":{"a":[1,2,{"b":null}]}},` +
	`"metadata":{"b":"2","a":"1"},"occurred_at":"2026-03-04T05:06:07.000000010+02:00","success":false,"request":{"id":"r1","ua":"curl"}}`

// exporter stands in for package export, to prove the route is mounted
// ahead of the gateway.
type exporter struct{}

func (exporter) ExportEvents(*auditv1.ExportEventsRequest, auditv1.AuditService_ExportEventsServer) error {
	return nil
}

func (exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv")
	io.WriteString(w, "id\r\nexported\r\n")
}

type fixture struct {
	base string
	grpc string
	reg  *prometheus.Registry
}

func start(t *testing.T, ready func(context.Context) error) (*fixture, *event.Event) {
	t.Helper()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	e, err := event.ParseJSON([]byte(sent))
	if err != nil {
		t.Fatal(err)
	}
	var stored []store.StoredEvent
	stored = append(stored, store.StoredEvent{Event: e, Validated: true})
	if err := store.Insert(ctx, ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
	qc := query.DefaultConfig()
	qc.StreamLag = 0
	qc.PageTokenKey = "0123456789abcdef0123"
	reg := prometheus.NewRegistry()
	svc, err := query.New(ch.Conn, qc, query.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	if ready == nil {
		ready = ch.Conn.Ping
	}
	sc := server.DefaultConfig()
	sc.GRPCAddr, sc.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	sc.Query, sc.Registry, sc.Ready, sc.Exporter = svc, reg, ready, exporter{}
	sc.Guard = auth.NewGuard(auth.Insecure(), auth.LimitsConfig{})
	srv, err := server.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after shutdown")
		}
	})
	return &fixture{base: "http://" + srv.HTTPAddr(), grpc: srv.GRPCAddr(), reg: reg}, e
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

func decode(t *testing.T, body []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, body)
	}
	return v
}

// checkEvent asserts the REST rendering of the stored event: what was sent,
// member for member, with occurred_at in UTC with nine digits.
func checkEvent(t *testing.T, got any) {
	t.Helper()
	var want map[string]any
	d := json.NewDecoder(strings.NewReader(sent))
	d.UseNumber()
	if err := d.Decode(&want); err != nil {
		t.Fatal(err)
	}
	want["occurred_at"] = "2026-03-04T03:06:07.000000010Z"
	gotJSON, _ := json.Marshal(got)
	wantJSON, _ := json.Marshal(want)
	if string(gotJSON) != string(wantJSON) {
		t.Errorf("event over REST:\n got %s\nwant %s", gotJSON, wantJSON)
	}
}

func TestRESTShapes(t *testing.T) {
	t.Parallel()
	f, e := start(t, nil)

	code, body := get(t, f.base+"/v1/events?success=false&scope_id=org-1&q=action:workflow.job.*")
	if code != http.StatusOK {
		t.Fatalf("GET /v1/events: %d %s", code, body)
	}
	for _, raw := range []string{`"success":false`, `"big":123456789012345678901234567890`, `"n":18446744073709551617`, `"occurred_at":"2026-03-04T03:06:07.000000010Z"`, `"next_page_token":""`} {
		if !bytes.Contains(body, []byte(raw)) {
			t.Errorf("ListEvents body lacks %s:\n%s", raw, body)
		}
	}
	list := decode(t, body)
	if len(list) != 2 {
		t.Errorf("ListEvents members: %v, want events and next_page_token", list)
	}
	events, _ := list["events"].([]any)
	if len(events) != 1 {
		t.Fatalf("ListEvents: %s", body)
	}
	checkEvent(t, events[0])

	code, body = get(t, f.base+"/v1/events/"+e.ID.String())
	if code != http.StatusOK {
		t.Fatalf("GET /v1/events/{id}: %d %s", code, body)
	}
	one := decode(t, body)
	if len(one) != 1 {
		t.Errorf("GetEvent members: %v, want only event", one)
	}
	checkEvent(t, one["event"])

	code, body = get(t, f.base+"/v1/events/"+uuid.NewString())
	if code != http.StatusNotFound {
		t.Errorf("unknown id: %d %s, want 404", code, body)
	}
	code, body = get(t, f.base+"/v1/events?q=acter:alice")
	if code != http.StatusBadRequest || !strings.Contains(decode(t, body)["message"].(string), `q: unknown key "acter" in term 1`) {
		t.Errorf("bad phrase: %d %s, want 400 naming q", code, body)
	}
	code, body = get(t, f.base+"/v1/events?since=yesterday")
	if code != http.StatusBadRequest || !strings.HasPrefix(decode(t, body)["message"].(string), "since: ") {
		t.Errorf("bad since: %d %s, want 400 naming since", code, body)
	}
	code, body = get(t, f.base+"/v1/events?acter_id=u1")
	if code != http.StatusBadRequest || decode(t, body)["message"] != "acter_id: unknown parameter" {
		t.Errorf("unknown parameter: %d %s, want 400 naming acter_id", code, body)
	}
	code, body = get(t, f.base+"/v1/events?success=maybe")
	if code != http.StatusBadRequest || !strings.Contains(decode(t, body)["message"].(string), `"success"`) {
		t.Errorf("bad success: %d %s, want 400 naming success", code, body)
	}
	code, body = get(t, f.base+"/v1/events?page_token=garbage")
	if code != http.StatusBadRequest || !strings.HasPrefix(decode(t, body)["message"].(string), "page_token: ") {
		t.Errorf("bad page_token: %d %s, want 400 naming page_token", code, body)
	}

	// StreamEvents over REST: one {"event": …, "cursor": …} per line.
	// Follow, and read the one event: the stream's watermark may hold the
	// event back a moment while other tests' inserts run on the server.
	streamCtx, cancelStream := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStream()
	req, _ := http.NewRequestWithContext(streamCtx, "GET", f.base+"/v1/events:stream?follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var lines []string
	if sc.Scan() {
		lines = append(lines, sc.Text())
	}
	cancelStream()
	resp.Body.Close()
	if len(lines) != 1 {
		t.Fatalf("stream lines: %q", lines)
	}
	msg := decode(t, []byte(lines[0]))
	if c, _ := msg["cursor"].(string); c == "" || len(msg) != 2 {
		t.Errorf("stream line %s: want event and cursor", lines[0])
	}
	checkEvent(t, msg["event"])

	code, body = get(t, f.base+"/v1/events:export")
	if code != http.StatusOK || string(body) != "id\r\nexported\r\n" {
		t.Errorf("export route: %d %q", code, body)
	}
	code, body = get(t, f.base+"/v1/schemas")
	if code != http.StatusOK || string(body) != `{"schemas":[]}` {
		t.Errorf("schemas: %d %s", code, body)
	}
}

func TestOperationalEndpoints(t *testing.T) {
	t.Parallel()
	f, _ := start(t, nil)
	if code, body := get(t, f.base+"/openapi.json"); code != http.StatusOK || !bytes.Equal(body, openapi.JSON) {
		t.Errorf("/openapi.json: %d, %d bytes, want the embedded document", code, len(body))
	}
	if code, body := get(t, f.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s", code, body)
	}
	if code, body := get(t, f.base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	get(t, f.base+"/v1/events")
	if code, body := get(t, f.base+"/metrics"); code != http.StatusOK ||
		!bytes.Contains(body, []byte(`auditlog_api_request_duration_seconds_count{code="OK",rpc="ListEvents"} 1`)) {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	conn, err := grpc.NewClient(f.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: "audit.v1.AuditService"})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc health: %v %v", hc, err)
	}
}

func TestReadyzWithoutClickHouse(t *testing.T) {
	t.Parallel()
	dead, err := clickhouse.Open(&clickhouse.Options{Addr: []string{"127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	f, _ := start(t, dead.Ping)
	if code, body := get(t, f.base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with ClickHouse down: %d %s, want 503", code, body)
	}
	if code, _ := get(t, f.base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz must not depend on ClickHouse: %d", code)
	}
}
