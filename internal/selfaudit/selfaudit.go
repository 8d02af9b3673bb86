// Package selfaudit makes auditlog audit its own use: every list, export and
// stream opened with a token becomes an audit event (actions
// audit_log.events.list, audit_log.events.export, audit_log.stream.open,
// with version-1 schemas in schemas/v1) sent through the same Kafka pipeline
// as everyone else's, so it is validated, deduplicated, stored and queried
// like any other event.
//
// The actor is the token (type "api_token"), the target is the audit log, the
// scope is the token's scope when it has exactly one (otherwise none, so that
// only all-scope tokens see it), and the payload holds the filters used and
// the rows returned. Recording never fails a request: the emitter is
// asynchronous with a bounded buffer, and an event it cannot queue is logged.
package selfaudit

import (
	"context"
	"encoding/json"
	"log/slog"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/internal/auth"
)

// The actions this package emits.
const (
	ActionList   = "audit_log.events.list"
	ActionExport = "audit_log.events.export"
	ActionStream = "audit_log.stream.open"
)

// Recorder emits self-audit events. A nil *Recorder records nothing, for
// deployments and tests without Kafka.
type Recorder struct {
	emitter *emitter.Emitter
	logger  *slog.Logger
}

// New returns a Recorder that sends through em (which should be Async).
func New(em *emitter.Emitter, logger *slog.Logger) *Recorder {
	return &Recorder{emitter: em, logger: logger}
}

// Record emits one event of action for the caller in ctx. request is the API
// request whose filters are recorded (cursors and page tokens are left out:
// they are opaque and say nothing to a reader); extra holds action-specific
// payload members such as "format".
func (r *Recorder) Record(ctx context.Context, action string, request proto.Message, rows int64, success bool, extra map[string]any) {
	if r == nil {
		return
	}
	p := auth.FromContext(ctx)
	payload := map[string]any{"filters": filters(request), "rows": rows}
	scopes := p.Scopes
	if p.All {
		scopes = []string{auth.AllScopes}
	}
	payload["scopes"] = scopes
	for k, v := range extra {
		payload[k] = v
	}
	ev := &emitter.Event{
		Action:  action,
		Actor:   emitter.Entity{ID: p.Name, Type: "api_token", Name: p.Name},
		Target:  emitter.Entity{ID: "audit_log", Type: "audit_log", Name: "audit log"},
		Payload: payload,
		Success: success,
	}
	if !p.All && len(p.Scopes) == 1 {
		ev.Scope = &emitter.Entity{ID: p.Scopes[0], Type: "organization"}
	}
	// The request's context may already be cancelled (a client that went
	// away still gets its export audited), so emit on a fresh one.
	if err := r.emitter.Emit(context.WithoutCancel(ctx), ev); err != nil {
		r.logger.Error("self-audit event not emitted", "action", action, "token", p.Name, "err", err)
	}
}

// filters renders the filter fields of an API request as their query
// parameter names, leaving out paging and cursor fields.
func filters(request proto.Message) map[string]any {
	out := map[string]any{}
	if request == nil {
		return out
	}
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(request)
	if err != nil {
		return out
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return map[string]any{}
	}
	for _, k := range []string{"page_token", "cursor"} {
		delete(out, k)
	}
	return out
}
