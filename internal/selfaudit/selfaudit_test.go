package selfaudit

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/schemas"
)

func TestMain(m *testing.M) { testharness.Main(m) }

func TestRecordEmitsValidatedEventForTheToken(t *testing.T) {
	k := testharness.NewKafka(t)
	cfg := emitter.DefaultConfig()
	cfg.Brokers, cfg.Topic = k.Brokers, k.Topic
	cfg.Schemas = schemas.Embedded()
	cfg.RequireSchema = true
	em, err := emitter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := New(em, slog.New(slog.NewTextHandler(io.Discard, nil)))

	ctx := auth.NewContext(context.Background(), &auth.Principal{Name: "tenant-a", Scopes: []string{"org-a"}})
	success := false
	rec.Record(ctx, ActionList, &auditv1.ListEventsRequest{Action: []string{"workflow.job.*"}, Success: &success, PageToken: "opaque"}, 42, true, map[string]any{"page_size": 100})
	admin := auth.NewContext(context.Background(), &auth.Principal{Name: "admin", All: true})
	rec.Record(admin, ActionExport, &auditv1.ExportEventsRequest{Format: "csv"}, 7, true, map[string]any{"format": "csv", "completed": true})
	if err := em.Close(); err != nil {
		t.Fatal(err)
	}

	msgs := k.ConsumeAll(t, k.Topic, 2, 10*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("got %d messages, want 2", len(msgs))
	}
	byAction := map[string]*event.Event{}
	for _, m := range msgs {
		e, err := event.ParseJSON(m.Value)
		if err != nil {
			t.Fatalf("emitted event does not parse: %v\n%s", err, m.Value)
		}
		if err := schemas.Embedded().Validate(e.Action, e.Version, e.Payload); err != nil {
			t.Errorf("%s payload fails its schema: %v", e.Action, err)
		}
		byAction[e.Action] = e
	}
	list := byAction[ActionList]
	if list == nil {
		t.Fatal("no list event")
	}
	if list.Actor.ID != "tenant-a" || list.Actor.Type != "api_token" || list.ScopeID() != "org-a" || !list.Success {
		t.Errorf("list event actor/scope: %s", list.AppendJSON(nil))
	}
	var payload struct {
		Filters map[string]any `json:"filters"`
		Rows    int            `json:"rows"`
	}
	if err := json.Unmarshal(list.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Rows != 42 || payload.Filters["success"] != false || payload.Filters["page_token"] != nil {
		t.Errorf("list payload = %s", list.Payload)
	}
	if got := payload.Filters["action"]; got == nil || got.([]any)[0] != "workflow.job.*" {
		t.Errorf("list filters = %v", payload.Filters)
	}
	exp := byAction[ActionExport]
	if exp == nil || exp.Scope != nil || exp.Actor.ID != "admin" {
		t.Errorf("export event of an all-scope token: %v", exp)
	}
}

func TestNilRecorderRecordsNothing(t *testing.T) {
	var rec *Recorder
	rec.Record(context.Background(), ActionList, nil, 0, true, nil) // must not panic
}
