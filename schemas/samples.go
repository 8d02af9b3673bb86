package schemas

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/auditlog/auditlog/internal/event"
)

// sampleTargets says, for the entity an action starts with, which target
// type the event has and which payload members carry the target's id and
// name.
var sampleTargets = map[string]struct{ typ, idField, nameField string }{
	"context":  {"context", "context_id", "context_name"},
	"project":  {"project", "project_id", "project_slug"},
	"schedule": {"schedule", "schedule_id", "schedule_name"},
	"user":     {"user", "user_id", "login"},
	"workflow": {"job", "job_id", "job_name"},
}

// SampleEvent returns a complete, valid event of action in the JSON wire
// format, shaped like the events CircleCI Server emits (actor, target taken
// from the sample payload, organization scope, metadata, request): realistic
// data for tests, benchmarks and the development seed. id must be a UUID in
// its 36-character form. It returns nil when action has no sample payload.
func SampleEvent(action, id string, occurredAt time.Time) json.RawMessage {
	payload := SamplePayload(action)
	if payload == nil {
		return nil
	}
	var members map[string]any
	_ = json.Unmarshal(payload, &members) // examples are JSON objects: the tests check them
	entity, _, _ := strings.Cut(action, ".")
	t := sampleTargets[entity]
	target := map[string]any{"id": "unknown", "type": entity}
	if t.typ != "" {
		target["type"] = t.typ
		if v, ok := members[t.idField].(string); ok {
			target["id"] = v
		}
		if v, ok := members[t.nameField].(string); ok {
			target["name"] = v
		}
	}
	ev := map[string]any{
		"id":      id,
		"version": 1,
		"action":  action,
		"actor": map[string]any{
			"id": "5e4d3c2b-1a0f-4e9d-8c7b-6a5f4e3d2c1b", "type": "user", "name": "alice",
		},
		"target": target,
		"scope": map[string]any{
			"id": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0", "type": "organization", "name": "acme",
		},
		"payload":     payload,
		"metadata":    map[string]string{"source": "circleci-server", "server_version": "4.7.2"},
		"occurred_at": occurredAt.UTC().Format(event.TimeLayout),
		"success":     true,
		"request": map[string]any{
			"id": "6b1f3c2a-9d8e-4f7a-8b6c-5d4e3f2a1b0c", "ip_address": "203.0.113.7",
		},
	}
	out, err := json.Marshal(ev)
	if err != nil {
		return nil // cannot happen: every value above marshals
	}
	return out
}
