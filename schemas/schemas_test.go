package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
)

// designActions are the actions DESIGN.md promises a version-1 schema for.
var designActions = []string{
	"context.create", "context.delete", "context.env_var.delete", "context.env_var.store",
	"context.secrets.accessed", "project.api_token.create", "project.env_var.create",
	"project.env_var.delete", "project.settings.update", "project.ssh_key.create",
	"project.ssh_key.delete", "schedule.create", "schedule.delete", "schedule.update",
	"user.create", "user.logged_in", "user.logged_out", "workflow.job.approve",
	"workflow.job.finish", "workflow.job.scheduled", "workflow.job.start",
}

// selfAuditActions are the events auditlog emits about its own use.
var selfAuditActions = []string{"audit_log.events.export", "audit_log.events.list", "audit_log.stream.open"}

// embeddedActions is every action with an embedded schema, sorted.
var embeddedActions = append(append([]string{}, selfAuditActions...), designActions...)

func TestEmbeddedHasVersion1OfEveryAction(t *testing.T) {
	list := Embedded().List()
	var got []string
	for _, s := range list {
		if s.Version != 1 {
			t.Errorf("unexpected embedded schema %s version %d", s.Action, s.Version)
			continue
		}
		if !json.Valid(s.JSON) {
			t.Errorf("%s: List returned invalid JSON", s.Action)
		}
		got = append(got, s.Action)
	}
	if strings.Join(got, " ") != strings.Join(embeddedActions, " ") {
		t.Fatalf("embedded actions (sorted):\n got %v\nwant %v", got, embeddedActions)
	}
}

func TestEveryExampleIsValid(t *testing.T) {
	r := Embedded()
	for _, s := range r.List() {
		e := r.byKey[key{s.Action, s.Version}]
		if len(e.examples) == 0 {
			t.Errorf("%s v%d has no examples: samples and docs need one", s.Action, s.Version)
		}
		for i, ex := range e.examples {
			if err := r.Validate(s.Action, s.Version, ex); err != nil {
				t.Errorf("%s v%d example %d: %v", s.Action, s.Version, i, err)
			}
		}
	}
}

func TestSamplesCoverEveryActionAndParse(t *testing.T) {
	if n := len(Samples()); n != len(embeddedActions) {
		t.Errorf("Samples() has %d entries, want %d", n, len(embeddedActions))
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	for _, action := range designActions {
		if p := SamplePayload(action); p == nil {
			t.Errorf("SamplePayload(%q) = nil", action)
			continue
		}
		id := uuid.Must(uuid.NewV7()).String()
		raw := SampleEvent(action, id, at)
		ev, err := event.ParseJSON(raw)
		if err != nil {
			t.Errorf("SampleEvent(%q) does not parse: %v\n%s", action, err, raw)
			continue
		}
		if ev.ID.String() != id || !ev.OccurredAt.Equal(at) || ev.Action != action {
			t.Errorf("SampleEvent(%q): got id %s at %s action %s", action, ev.ID, ev.OccurredAt, ev.Action)
		}
		if ev.Target.ID == "unknown" || ev.Target.Name == "" {
			t.Errorf("SampleEvent(%q): target %s lacks the id or name of the payload", action, ev.Target.Raw)
		}
		if err := Embedded().Validate(ev.Action, ev.Version, ev.Payload); err != nil {
			t.Errorf("SampleEvent(%q): payload invalid: %v", action, err)
		}
	}
	if SamplePayload("no.such") != nil || SampleEvent("no.such", uuid.NewString(), at) != nil {
		t.Error("samples of an unknown action should be nil")
	}
}

// withMember returns the sample payload of action with one member set
// (value = raw JSON text) or, when raw is "", removed.
func withMember(t *testing.T, action, member, raw string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(SamplePayload(action), &m); err != nil {
		t.Fatal(err)
	}
	if raw == "" {
		delete(m, member)
	} else {
		m[member] = json.RawMessage(raw)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestValidateNamesTheField(t *testing.T) {
	r := Embedded()
	cases := []struct {
		name    string
		action  string
		payload json.RawMessage
		want    string // "" = valid
	}{
		{"string for integer", "workflow.job.start", withMember(t, "workflow.job.start", "job_number", `"42"`),
			"payload.job_number: expected integer, got string"},
		{"fraction for integer", "workflow.job.start", withMember(t, "workflow.job.start", "job_number", `42.5`),
			"payload.job_number: expected integer, got number"},
		{"integral float is an integer", "workflow.job.start", withMember(t, "workflow.job.start", "job_number", `42.0`), ""},
		{"missing required", "workflow.job.start", withMember(t, "workflow.job.start", "job_name", ""),
			"payload.job_name: is required"},
		{"empty payload lacks required", "workflow.job.finish", nil, "payload.job_id: is required"},
		{"int64 max fits", "workflow.job.start", withMember(t, "workflow.job.start", "job_number", `9223372036854775807`), ""},
		// 2^63 rounds to the maximum as a float64: only exact decoding catches it.
		{"int64 max + 1 exceeds maximum", "workflow.job.start", withMember(t, "workflow.job.start", "job_number", `9223372036854775808`),
			"payload.job_number: must be <= 9223372036854775807, got 9223372036854775808"},
		{"integer beyond 2^64", "workflow.job.finish", withMember(t, "workflow.job.finish", "duration_ms", `123456789012345678901234567890`), ""},
		{"nested member", "workflow.job.start", withMember(t, "workflow.job.start", "vcs", `{"revision":"not-a-sha"}`),
			`payload.vcs.revision: 'not-a-sha' does not match pattern '^[0-9a-f]{7,64}$'`},
		{"array element", "context.secrets.accessed", withMember(t, "context.secrets.accessed", "secret_names", `["A",5]`),
			"payload.secret_names[1]: expected string, got number"},
		{"bad uuid", "workflow.job.start", withMember(t, "workflow.job.start", "workflow_id", `"wf-1"`),
			// The wording of uuidFormat, so the check is the registered one.
			"payload.workflow_id: 'wf-1' is not valid uuid: want 36 characters (8-4-4-4-12 hexadecimal digits), got 4"},
		{"minimum", "workflow.job.start", withMember(t, "workflow.job.start", "pipeline_number", `0`),
			"payload.pipeline_number: must be >= 1, got 0"},
		{"minLength", "workflow.job.start", withMember(t, "workflow.job.start", "job_name", `""`),
			"payload.job_name: must be at least 1 characters, got 0"},
		{"enum", "workflow.job.finish", withMember(t, "workflow.job.finish", "status", `"passed"`),
			"payload.status: value must be one of"},
		{"secret value forbidden", "project.env_var.create", withMember(t, "project.env_var.create", "value", `"hunter2"`),
			"payload.value: must not be sent"},
		{"extra members allowed", "workflow.job.start", withMember(t, "workflow.job.start", "parallelism", `4`), ""},
		{"payload not an object", "user.logged_out", json.RawMessage(`[1]`), "payload: expected object, got array"},
		{"malformed", "user.logged_out", json.RawMessage(`{"a":`), "payload: malformed JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := r.Validate(tc.action, 1, tc.payload)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %q, got valid", tc.want)
			}
			var fe *event.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %v is not an *event.FieldError", err, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error\n got %q\nwant prefix %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || len(err.Error()) > 200 {
				t.Fatalf("error should be one short line: %q", err)
			}
			if errors.Is(err, ErrUnknownSchema) {
				t.Fatal("a validation error must not match ErrUnknownSchema")
			}
		})
	}
}

func TestUnknownSchema(t *testing.T) {
	for _, k := range []key{{"workflow.job.start", 2}, {"no.such", 1}} {
		err := Embedded().Validate(k.action, k.version, json.RawMessage(`{}`))
		if !errors.Is(err, ErrUnknownSchema) {
			t.Fatalf("%s v%d: got %v, want ErrUnknownSchema", k.action, k.version, err)
		}
		if !strings.Contains(err.Error(), k.action) {
			t.Errorf("error %q does not name the action", err)
		}
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadOverridesAndExtends(t *testing.T) {
	dir := t.TempDir()
	// Version 1 of user.create overridden to also require email; version 2
	// added with a $ref to version 1.
	writeFile(t, dir, "v1/user.create.json", `{"type":"object","required":["user_id","email"]}`)
	writeFile(t, dir, "v2/user.create.json", `{"$ref":"../v1/user.create.json","properties":{"email":{"type":"string","format":"email"}}}`)
	writeFile(t, dir, "README.md", "not a schema")
	r, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(r.List()); n != len(embeddedActions)+1 {
		t.Fatalf("List has %d schemas, want %d", n, len(embeddedActions)+1)
	}
	if err := r.Validate("user.create", 1, SamplePayload("user.create")); err == nil || err.Error() != "payload.email: is required" {
		t.Fatalf("override not in force: %v", err)
	}
	if err := r.Validate("user.create", 2, json.RawMessage(`{"user_id":"x","email":"not an email"}`)); err == nil || !strings.HasPrefix(err.Error(), "payload.email:") {
		t.Fatalf("v2 should reject a bad email, got %v", err)
	}
	if err := r.Validate("user.create", 2, json.RawMessage(`{"user_id":"x","email":"a@example.com"}`)); err != nil {
		t.Fatalf("v2: %v", err)
	}
	if err := r.Validate("workflow.job.start", 1, SamplePayload("workflow.job.start")); err != nil {
		t.Fatalf("embedded schema lost: %v", err)
	}
	// The embedded registry is untouched.
	if err := Embedded().Validate("user.create", 1, SamplePayload("user.create")); err != nil {
		t.Fatalf("Load changed the embedded registry: %v", err)
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	cases := []struct {
		name, file, text, want string
	}{
		{"not JSON", "v1/user.create.json", `{"type":`, "not valid JSON"},
		{"not a schema", "v1/user.create.json", `{"type":5}`, ""},
		{"bad ref", "v1/user.create.json", `{"$ref":"https://example.com/x.json"}`, ""},
		{"no version dir", "user.create.json", `{}`, "v<VERSION>/<ACTION>.json"},
		{"version 0", "v0/user.create.json", `{}`, "v<VERSION>/<ACTION>.json"},
		{"bad action", "v1/User.Create.json", `{}`, "action"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := writeFile(t, dir, tc.file, tc.text)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load accepted a broken file")
			}
			if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q should name %s and say %q", err, p, tc.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing dir: %v", err)
	}
}

// benchEvents is how many payloads one benchmark operation validates, so
// that `make bench` (-benchtime 1x) still measures something:
// AUDITLOG_BENCH_VALIDATE_N overrides it.
func benchEvents(b *testing.B) int {
	n := 100000
	if v := os.Getenv("AUDITLOG_BENCH_VALIDATE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("AUDITLOG_BENCH_VALIDATE_N=%q: want a positive integer", v)
		}
	}
	return n
}

// BenchmarkValidate measures Validate on the sample payloads of all 21
// actions, on one goroutine and on every core. The ingester needs ~100k
// events/s on 2 cores for the whole pipeline, so validation must take a
// fraction of that budget.
func BenchmarkValidate(b *testing.B) {
	r := Embedded()
	samples := Samples()
	n := benchEvents(b)
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			for range b.N {
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < n; i += workers {
							s := samples[i%len(samples)]
							if err := r.Validate(s.Action, s.Version, s.Payload); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
			}
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			events := float64(b.N * n)
			perSec := events / elapsed.Seconds()
			b.ReportMetric(float64(elapsed.Nanoseconds())/events, "ns/event")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/events, "allocs/event")
			b.ReportMetric(perSec, "events/s")
			b.Logf("Validate, %d goroutine(s): %.0f events/s, %.0f ns/event, %.1f allocs/event; ratio to the 100k events/s ingest target: %.2f",
				workers, perSec, float64(elapsed.Nanoseconds())/events, float64(after.Mallocs-before.Mallocs)/events, perSec/100000)
		})
	}
}
