package event

import (
	"encoding/json"

	"github.com/google/uuid"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// FromProtoUnchecked rebuilds an event from an API message without
// validating it, for rendering what the service itself produced (the REST
// gateway turns the gRPC answer back into the contract's JSON with
// AppendJSON). Entity and request attributes become members of their
// objects again. It fails only when the message cannot be rendered at all: a
// malformed id, or payload or attribute text that is not JSON.
func FromProtoUnchecked(p *auditv1.AuditEvent) (*Event, error) {
	if p == nil {
		return nil, fieldErr("", "empty message")
	}
	id, err := uuid.Parse(p.GetId())
	if err != nil {
		return nil, fieldErr("id", "%q is not a UUID", truncate(p.GetId(), 64))
	}
	e := &Event{
		ID:       id,
		Version:  p.GetVersion(),
		Action:   p.GetAction(),
		Metadata: p.GetMetadata(),
		Success:  p.GetSuccess(),
		Payload:  json.RawMessage(p.GetPayload()),
	}
	if len(e.Payload) > 0 && !json.Valid(e.Payload) {
		return nil, fieldErr("payload", "is not valid JSON")
	}
	if p.GetOccurredAt() != nil {
		e.OccurredAt = p.GetOccurredAt().AsTime().UTC()
	}
	if e.Actor, err = entityUnchecked("actor", p.GetActor()); err != nil {
		return nil, err
	}
	if e.Target, err = entityUnchecked("target", p.GetTarget()); err != nil {
		return nil, err
	}
	if p.GetScope() != nil {
		scope, err := entityUnchecked("scope", p.GetScope())
		if err != nil {
			return nil, err
		}
		e.Scope = &scope
	}
	if r := p.GetRequest(); r != nil {
		obj := orderedObject{}
		if r.GetId() != "" {
			obj.add("id", r.GetId())
		}
		if err := obj.addAttributes("request", r.GetAttributes(), "id"); err != nil {
			return nil, err
		}
		e.Request = &Request{ID: r.GetId(), Raw: obj.bytes()}
	}
	return e, nil
}

func entityUnchecked(field string, p *auditv1.Entity) (Entity, error) {
	if p == nil {
		return Entity{Raw: json.RawMessage("{}")}, nil
	}
	raw, err := entityJSON(field, p)
	if err != nil {
		return Entity{}, err
	}
	return Entity{ID: p.GetId(), Type: p.GetType(), Name: p.GetName(), Raw: raw}, nil
}
