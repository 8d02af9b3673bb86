package export_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// env is one test's export service over its own database.
type env struct {
	ch  *testharness.ClickHouse
	svc *export.Service
	srv *httptest.Server
	reg *prometheus.Registry
}

// newEnv migrates a fresh database and serves export over HTTP as a caller
// who may see every scope (or only scopes, when given).
func newEnv(t testing.TB, cfg export.Config, scopes ...string) *env {
	t.Helper()
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	// The service gets its own connections, as in production, so the test's
	// own queries (system.processes) never wait behind an export.
	conn, err := clickhouse.Open(ch.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	reg := prometheus.NewRegistry()
	svc, err := export.New(cfg, conn, export.Options{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	p := &auth.Principal{Name: "test", All: len(scopes) == 0, Scopes: scopes}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		svc.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), p)))
	}))
	t.Cleanup(srv.Close)
	return &env{ch: ch, svc: svc, srv: srv, reg: reg}
}

// insert stores events in one batch (one part), copies times over.
func (e *env) insert(t testing.TB, events []*event.Event) {
	t.Helper()
	ctx := context.Background()
	var stored []store.StoredEvent
	for _, ev := range events {
		stored = append(stored, store.StoredEvent{Event: ev, Validated: true})
	}
	if err := store.Insert(ctx, e.ch.Conn, "events", stored...); err != nil {
		t.Fatal(err)
	}
}

// download is one export as a client saw it.
type download struct {
	resp *http.Response
	body []byte
	// err is what reading the body ended with (nil for a clean end).
	err error
}

// get downloads /v1/events:export with params, reading the body to its end.
func (e *env) get(t testing.TB, params url.Values, header ...string) download {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/events:export?"+params.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// A transport of its own: no transparent gzip, no pooled connection
	// left over by an aborted response.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 2 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return download{resp: resp, body: body, err: err}
}

// mustParse parses an event's JSON or fails the test.
func mustParse(t testing.TB, js string) *event.Event {
	t.Helper()
	e, err := event.ParseJSON([]byte(js))
	if err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	return e
}

// jsonEqual compares two JSON texts as values, numbers as their text, so
// big integers are compared exactly.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("not JSON: %v: %q", err, data)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

// eventJSON renders a test event as the contract's JSON.
func eventJSON(id string, i int, fields string) string {
	return fmt.Sprintf(`{"id":%q,"version":1,"action":"workflow.job.start","actor":{"id":"u%d","type":"user"},"target":{"id":"j%d","type":"job"},"occurred_at":"2026-03-04T05:06:07.%09dZ","success":true%s}`, id, i, i, i, fields)
}

// fill stores n CircleCI-shaped events (about 700 bytes of CSV each) with
// one INSERT … SELECT from numbers(), which ClickHouse runs at hundreds of
// thousands of rows a second. Events are spread over ten scopes, one a
// millisecond apart from 2026-01-01.
func (e *env) fill(t testing.TB, n int) {
	t.Helper()
	e.ch.Exec(t, fmt.Sprintf(`INSERT INTO events (`+store.EventColumns+`)
SELECT id, 1, action, actor_id, 'user', actor_name,
    concat('{"id":"', actor_id, '","type":"user","name":"', actor_name, '"}'),
    target_id, 'job', target_name,
    concat('{"id":"', target_id, '","type":"job","name":"', target_name, '","project":"gh/acme/service-', toString(number %% 50), '"}'),
    scope_id, 'organization', concat('Acme ', scope_id),
    concat('{"id":"', scope_id, '","type":"organization","name":"Acme ', scope_id, '"}'),
    concat('{"job_id":"', toString(id), '","workflow_id":"wf-', toString(number %% 100000), '","pipeline_number":', toString(number),
        ',"branch":"main","vcs_revision":"0123456789abcdef0123456789abcdef01234567","executor":"docker","resource_class":"medium","status":"success"}'),
    ['env', 'region'], ['prod', 'us-east-1'],
    toDateTime(intDiv(ns, 1000000000)), ns, toUInt8(number %% 10 != 0),
    concat('req-', toString(number)),
    concat('{"id":"req-', toString(number), '","ip":"10.0.', toString(number %% 256), '.1","user_agent":"circleci-cli/0.1.2"}'),
    1, number
FROM (
    SELECT number, generateUUIDv4() AS id,
        concat('org-', toString(number %% 10)) AS scope_id,
        concat('user-', toString(number %% 1000)) AS actor_id,
        concat('User Number ', toString(number %% 1000)) AS actor_name,
        concat('job-', toString(number)) AS target_id,
        concat('build-and-test-', toString(number %% 20)) AS target_name,
        if(number %% 3 = 0, 'workflow.job.start', if(number %% 3 = 1, 'workflow.job.finish', 'workflow.job.scheduled')) AS action,
        toInt64(1767225600000000000 + number * 1000000) AS ns
    FROM numbers(%d)
)`, n))
}
