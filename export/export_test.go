package export_test

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/event"
)

// trickyEvents are events whose text a naive CSV writer or JSON round trip
// would damage, as sent (JSON text).
var trickyEvents = []string{
	`{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":7,"action":"project.settings.update",` +
		`"actor":{"id":"u1","type":"user","name":"Zoë \"z\", the admin\nline two, 日本 🎉","extra":{"k":[1,2,{"b":null}]}},` +
		`"target":{"id":"p,1","type":"project","n":18446744073709551617,"m":-18446744073709551617123},` +
		`"scope":{"id":"org-1","type":"organization","name":"Acme, \"Inc\""},` +
		`"payload":{"big":123456789012345678901234567890,"float":1.5e300,"s":"=cmd|' /C calc'!A0","crlf":"a\r\nb","tab":"\t"},` +
		`"metadata":{"b":"=1+1","a":"x,y\"z\nw","ü":"ß","7:x":"","12":"3:4:5","":"empty key"},"occurred_at":"2026-03-04T05:06:07.123456789+02:00","success":false,` +
		`"request":{"id":"r1","ip":"10.0.0.1","ua":"curl/8, \"x\""}}`,
	`{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a56","version":1,"action":"user.logged_in",` +
		`"actor":{"id":"u2","type":"user"},"target":{"id":"u2","type":"user"},"occurred_at":"2026-01-01T00:00:00.000000001Z","success":true}`,
	`{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a57","version":1,"action":"context.create",` +
		`"actor":{"id":"u3","type":"user","name":"=HYPERLINK(\"http://evil.example\",\"click\")"},` +
		`"target":{"id":"c1","type":"context","name":"-5"},"scope":{"id":"org-2","type":"organization","name":"+1"},` +
		`"occurred_at":"2026-01-01T00:00:00.100000000Z","success":true,"request":{"id":"@SUM(A1)"}}`,
	`{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a58","version":1,"action":"context.delete",` +
		`"actor":{"id":"u4","type":"user","name":"\tTAB"},"target":{"id":"c2","type":"context","name":"\rCR"},` +
		`"scope":{"id":"org-2","type":"organization","name":"@home"},"metadata":{},` +
		`"occurred_at":"2026-01-01T00:00:00.100000000Z","success":true}`,
}

// randomEvents returns n events spread over three scopes (and none), actions,
// actors and outcomes, some sharing a timestamp.
func randomEvents(t testing.TB, n int, seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, 1))
	actions := []string{"workflow.job.start", "workflow.job.finish", "context.create", "user.logged_in"}
	var out []string
	for i := range n {
		scope := ""
		if s := r.IntN(4); s < 3 {
			scope = fmt.Sprintf(`,"scope":{"id":"org-%d","type":"organization","name":"Org %d"}`, s, s)
		}
		md := ""
		if r.IntN(2) == 0 {
			md = fmt.Sprintf(`,"metadata":{"env":"%s","n":"%d"}`, []string{"prod", "staging"}[r.IntN(2)], i)
		}
		req := ""
		if r.IntN(3) == 0 {
			req = fmt.Sprintf(`,"request":{"id":"req-%d"}`, r.IntN(10))
		}
		out = append(out, fmt.Sprintf(`{"id":%q,"version":%d,"action":%q,"actor":{"id":"u%d","type":"%s","name":"User, %d"},`+
			`"target":{"id":"t%d","type":"job","name":"job \"%d\""}%s,"payload":{"i":%d,"big":1%d0000000000000000000},`+
			`"occurred_at":"2026-%02d-%02dT%02d:00:00.%09dZ","success":%t%s%s}`,
			uuid.NewString(), 1+r.IntN(2), actions[r.IntN(len(actions))], r.IntN(5), []string{"user", "system"}[r.IntN(2)], i,
			r.IntN(50), i, scope, i, i,
			1+r.IntN(3), 1+r.IntN(28), r.IntN(24), r.IntN(3)*333333333, r.IntN(4) != 0, md, req))
	}
	return out
}

// stored parses JSON texts into events, keeping what was sent by id.
func stored(t testing.TB, texts []string) ([]*event.Event, map[string]map[string]json.RawMessage) {
	var events []*event.Event
	sent := map[string]map[string]json.RawMessage{}
	for _, js := range texts {
		e := mustParse(t, js)
		events = append(events, e)
		var members map[string]json.RawMessage
		if err := json.Unmarshal([]byte(js), &members); err != nil {
			t.Fatal(err)
		}
		sent[e.ID.String()] = members
	}
	return events, sent
}

// readCSV parses an export body with encoding/csv, checking the bytes on the
// way: UTF-8 without BOM, every record ending in CRLF.
func readCSV(t testing.TB, body []byte) [][]string {
	t.Helper()
	if bytes.HasPrefix(body, []byte("\xef\xbb\xbf")) {
		t.Fatal("body starts with a byte-order mark")
	}
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Fatalf("body does not end with CRLF: %q", body[max(0, len(body)-40):])
	}
	r := csv.NewReader(bytes.NewReader(body))
	records, err := r.ReadAll()
	if err != nil {
		t.Fatalf("parsing the export as CSV: %v", err)
	}
	return records
}

// checkRecord compares one CSV record of the default columns with what was
// sent for that event, field by field.
func checkRecord(t testing.TB, rec []string, e *event.Event, sent map[string]json.RawMessage) {
	t.Helper()
	want := map[string]string{
		"id": e.ID.String(), "occurred_at": e.OccurredAt.UTC().Format(event.TimeLayout),
		"action": e.Action, "version": fmt.Sprint(e.Version), "success": fmt.Sprint(e.Success),
	}
	for i, name := range export.DefaultColumns {
		got := rec[i]
		switch name {
		case "actor", "target", "scope", "payload", "metadata", "request":
			raw, ok := sent[name]
			switch {
			case !ok && (name == "scope" || name == "request"):
				if got != "" {
					t.Errorf("%s: %s = %q, want an empty cell", e.ID, name, got)
				}
			case !ok:
				if got != "{}" {
					t.Errorf("%s: %s = %q, want {}", e.ID, name, got)
				}
			case !jsonEqual(t, []byte(got), raw):
				t.Errorf("%s: %s = %s, want %s", e.ID, name, got, raw)
			}
		default:
			if got != want[name] {
				t.Errorf("%s: %s = %q, want %q", e.ID, name, got, want[name])
			}
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	t.Parallel()
	cfg := export.DefaultConfig()
	cfg.FlushBytes = 1024 // many chunks
	env := newEnv(t, cfg)
	events, sent := stored(t, append(slices.Clone(trickyEvents), randomEvents(t, 500, 1)...))
	env.insert(t, events)

	d := env.get(t, nil)
	if d.err != nil {
		t.Fatalf("reading the body: %v", d.err)
	}
	if got := d.resp.Header.Get("Content-Type"); got != "text/csv; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := d.resp.Trailer.Get(export.TrailerStatus); got != "complete" {
		t.Errorf("trailer %s = %q, want complete", export.TrailerStatus, got)
	}
	if got := d.resp.Trailer.Get(export.TrailerRows); got != fmt.Sprint(len(events)) {
		t.Errorf("trailer %s = %q, want %d", export.TrailerRows, got, len(events))
	}
	records := readCSV(t, d.body)
	if got := strings.Join(records[0], ","); got != "id,occurred_at,action,version,success,actor,target,scope,payload,metadata,request" {
		t.Fatalf("header %q", got)
	}
	byID := map[string]*event.Event{}
	for _, e := range events {
		byID[e.ID.String()] = e
	}
	if len(records)-1 != len(events) {
		t.Fatalf("%d records, want %d", len(records)-1, len(events))
	}
	for i, rec := range records[1:] {
		e := byID[rec[0]]
		if e == nil {
			t.Fatalf("record %d: unknown id %q", i+1, rec[0])
		}
		checkRecord(t, rec, e, sent[rec[0]])
		// Newest first. Ties are ordered by id in ClickHouse's UUID order,
		// which is not the order of the text form, so only time is checked.
		if i > 0 {
			prev := records[i]
			if prev[1] < rec[1] {
				t.Errorf("record %d (%s %s) is out of order after (%s %s)", i+1, rec[1], rec[0], prev[1], prev[0])
			}
		}
	}
	// The tricky event as a person would read it.
	for _, rec := range records[1:] {
		if rec[0] == "0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55" {
			if rec[1] != "2026-03-04T03:06:07.123456789Z" {
				t.Errorf("occurred_at %q, want 2026-03-04T03:06:07.123456789Z", rec[1])
			}
			if !strings.Contains(rec[5], "Zoë \\\"z\\\", the admin\\nline two, 日本 🎉") {
				t.Errorf("actor lost its text: %s", rec[5])
			}
			if !strings.Contains(rec[6], "18446744073709551617") || !strings.Contains(rec[8], "123456789012345678901234567890") {
				t.Errorf("big integers damaged: target %s payload %s", rec[6], rec[8])
			}
		}
	}
}

func TestFormulaEscaping(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	events, _ := stored(t, trickyEvents)
	env.insert(t, events)
	cols := "id,actor_name,target_name,scope_name,request_id,payload"
	want := map[string][]string{ // by id: actor_name, target_name, scope_name, request_id as sent
		"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a57": {"=HYPERLINK(\"http://evil.example\",\"click\")", "-5", "+1", "@SUM(A1)"},
		"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a58": {"\tTAB", "\rCR", "@home", ""},
		"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a56": {"", "", "", ""},
	}
	for _, raw := range []bool{false, true} {
		params := url.Values{"columns": {cols}}
		if raw {
			params.Set("no_formula_escape", "true")
		}
		d := env.get(t, params)
		records := readCSV(t, d.body)
		if got := strings.Join(records[0], ","); got != cols {
			t.Fatalf("header %q, want %q", got, cols)
		}
		for _, rec := range records[1:] {
			w, ok := want[rec[0]]
			if !ok {
				continue
			}
			for i, v := range w {
				if !raw && v != "" {
					v = "'" + v // neutralised: a spreadsheet shows it as text
				}
				if rec[i+1] != v {
					t.Errorf("no_formula_escape=%t: %s %s = %q, want %q", raw, rec[0], records[0][i+1], rec[i+1], v)
				}
			}
			// JSON cells start with { and are never touched.
			if !strings.HasPrefix(rec[5], "{") {
				t.Errorf("payload cell %q", rec[5])
			}
		}
	}
	// The payload's formula-looking string is inside a JSON cell: verbatim.
	d := env.get(t, url.Values{"columns": {"payload"}, "scope_id": {"org-1"}})
	records := readCSV(t, d.body)
	if len(records) != 2 || !strings.Contains(records[1][0], `"s":"=cmd|' /C calc'!A0"`) {
		t.Errorf("payload cell damaged: %q", records)
	}
}

func TestColumnsAndBadParameters(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	events, _ := stored(t, trickyEvents)
	env.insert(t, events)

	// Repeated and comma-separated, in the order given.
	d := env.get(t, url.Values{"columns": {"success,action", "id"}, "order": {"asc"}})
	records := readCSV(t, d.body)
	if got := strings.Join(records[0], ","); got != "success,action,id" {
		t.Fatalf("header %q", got)
	}
	if records[1][2] != "0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a56" || records[1][0] != "true" || records[1][1] != "user.logged_in" {
		t.Errorf("first record in ascending order: %q", records[1])
	}

	for _, tc := range []struct {
		params url.Values
		param  string
	}{
		{url.Values{"columns": {"id,acter"}}, "acter"},
		{url.Values{"columns": {"id,id"}}, "columns"},
		{url.Values{"format": {"xlsx"}}, "format"},
		{url.Values{"order": {"sideways"}}, "order"},
		{url.Values{"since": {"yesterday"}}, "since"},
		{url.Values{"q": {"acter:bob"}}, "q"},
		{url.Values{"success": {"maybe"}}, "success"},
		{url.Values{"format": {"ndjson"}, "columns": {"id"}}, "columns"},
	} {
		d := env.get(t, tc.params)
		var body struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(d.body, &body); err != nil {
			t.Errorf("%v: body %q is not a JSON error: %v", tc.params, d.body, err)
			continue
		}
		if d.resp.StatusCode != 400 || body.Code != 3 || !strings.Contains(body.Message, tc.param) {
			t.Errorf("%v: %d %+v, want 400 with code 3 naming %q", tc.params, d.resp.StatusCode, body, tc.param)
		}
	}
}

func TestHeadersGzipAndNDJSON(t *testing.T) {
	t.Parallel()
	env := newEnv(t, export.DefaultConfig())
	events, sent := stored(t, append(slices.Clone(trickyEvents), randomEvents(t, 200, 2)...))
	env.insert(t, events)

	d := env.get(t, url.Values{"scope_id": {"org-1"}})
	cd := d.resp.Header.Get("Content-Disposition")
	if !strings.HasPrefix(cd, `attachment; filename="auditlog-org-1-2`) || !strings.HasSuffix(cd, `Z.csv"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	plain := d.body

	d = env.get(t, url.Values{"scope_id": {"org-1"}}, "Accept-Encoding", "gzip")
	if d.resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q", d.resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(d.body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	if !bytes.Equal(unzipped, plain) {
		t.Errorf("gzip body differs from the plain one (%d vs %d bytes)", len(unzipped), len(plain))
	}
	if d.resp.Trailer.Get(export.TrailerStatus) != "complete" {
		t.Errorf("gzip: trailer %q", d.resp.Trailer.Get(export.TrailerStatus))
	}

	d = env.get(t, url.Values{"format": {"ndjson"}})
	if d.resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("Content-Type %q", d.resp.Header.Get("Content-Type"))
	}
	if cd := d.resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, `attachment; filename="auditlog-all-`) || !strings.HasSuffix(cd, `.ndjson"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	lines := strings.Split(strings.TrimSuffix(string(d.body), "\n"), "\n")
	if len(lines) != len(events) {
		t.Fatalf("%d lines, want %d", len(lines), len(events))
	}
	for _, line := range lines {
		var members map[string]json.RawMessage
		if err := json.Unmarshal([]byte(line), &members); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		var id string
		_ = json.Unmarshal(members["id"], &id)
		want := sent[id]
		for name, raw := range want {
			if name == "occurred_at" {
				continue
			}
			if !jsonEqual(t, members[name], raw) {
				t.Errorf("%s: %s = %s, want %s", id, name, members[name], raw)
			}
		}
	}
}
