package event

import (
	"encoding/json"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
)

// ToProto converts an event to the API message.
func (e *Event) ToProto() *auditv1.AuditEvent {
	p := &auditv1.AuditEvent{
		Id:         e.ID.String(),
		Version:    e.Version,
		Action:     e.Action,
		Actor:      e.Actor.toProto(),
		Target:     e.Target.toProto(),
		Payload:    string(e.PayloadJSON()),
		Metadata:   e.Metadata,
		OccurredAt: timestamppb.New(e.OccurredAt),
		Success:    e.Success,
	}
	if e.Scope != nil {
		p.Scope = e.Scope.toProto()
	}
	if e.Request != nil {
		p.Request = &auditv1.RequestInfo{Id: e.Request.ID, Attributes: attributes(e.Request.Raw, "id")}
	}
	return p
}

func (ent *Entity) toProto() *auditv1.Entity {
	p := &auditv1.Entity{Id: ent.ID, Type: ent.Type, Attributes: attributes(ent.Raw, "id", "type", "name")}
	if ent.Name != "" {
		p.Name = proto.String(ent.Name)
	}
	return p
}

// attributes returns the members of the JSON object raw except the named
// ones, each as compact JSON text; nil when there are none.
func attributes(raw json.RawMessage, except ...string) map[string]string {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return nil
	}
	for _, k := range except {
		delete(members, k)
	}
	if len(members) == 0 {
		return nil
	}
	out := make(map[string]string, len(members))
	for k, v := range members {
		out[k] = string(compact(v))
	}
	return out
}

// FromProto validates an API message (the `application/x-protobuf` wire
// format) with exactly the rules of ParseJSON, by rendering it as the JSON
// envelope and parsing that.
func FromProto(p *auditv1.AuditEvent) (*Event, error) {
	data, err := ProtoToJSON(p)
	if err != nil {
		return nil, err
	}
	return ParseJSON(data)
}

// ProtoToJSON renders an API message as the contract's JSON object without
// validating it. Missing required fields are left out, so that ParseJSON
// names them.
func ProtoToJSON(p *auditv1.AuditEvent) ([]byte, error) {
	if p == nil {
		return nil, fieldErr("", "empty message")
	}
	obj := orderedObject{}
	if p.Id != "" {
		obj.add("id", p.Id)
	}
	if p.Version != 0 {
		obj.add("version", p.Version)
	}
	if p.Action != "" {
		obj.add("action", p.Action)
	}
	for _, ent := range []struct {
		name string
		e    *auditv1.Entity
	}{{"actor", p.Actor}, {"target", p.Target}, {"scope", p.Scope}} {
		if ent.e == nil {
			continue
		}
		raw, err := entityJSON(ent.name, ent.e)
		if err != nil {
			return nil, err
		}
		obj.addRaw(ent.name, raw)
	}
	if p.Payload != "" {
		if !json.Valid([]byte(p.Payload)) {
			return nil, fieldErr("payload", "is not valid JSON")
		}
		obj.addRaw("payload", json.RawMessage(p.Payload))
	}
	if len(p.Metadata) > 0 {
		obj.add("metadata", p.Metadata)
	}
	if p.OccurredAt != nil {
		if err := p.OccurredAt.CheckValid(); err != nil {
			return nil, fieldErr("occurred_at", "%v", err)
		}
		obj.add("occurred_at", string(AppendTime(nil, p.OccurredAt.AsTime())))
	}
	obj.add("success", p.Success)
	if p.Request != nil {
		inner := orderedObject{}
		if p.Request.Id != "" {
			inner.add("id", p.Request.Id)
		}
		if err := inner.addAttributes("request", p.Request.Attributes, "id"); err != nil {
			return nil, err
		}
		obj.addRaw("request", inner.bytes())
	}
	return obj.bytes(), nil
}

func entityJSON(field string, e *auditv1.Entity) (json.RawMessage, error) {
	obj := orderedObject{}
	obj.add("id", e.Id)
	obj.add("type", e.Type)
	if e.Name != nil {
		obj.add("name", *e.Name)
	}
	if err := obj.addAttributes(field, e.Attributes, "id", "type", "name"); err != nil {
		return nil, err
	}
	return obj.bytes(), nil
}

// orderedObject builds a JSON object whose members keep insertion order.
type orderedObject struct{ buf []byte }

func (o *orderedObject) addRaw(key string, raw json.RawMessage) {
	if len(o.buf) == 0 {
		o.buf = append(o.buf, '{')
	} else {
		o.buf = append(o.buf, ',')
	}
	o.buf = appendJSONString(o.buf, key)
	o.buf = append(o.buf, ':')
	o.buf = append(o.buf, compact(raw)...)
}

func (o *orderedObject) add(key string, v any) {
	raw, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with strings, numbers, bools and string maps
	}
	o.addRaw(key, raw)
}

// addAttributes adds the attributes of an entity or request; reserved are
// the keys that have fields of their own in the message.
func (o *orderedObject) addAttributes(field string, attrs map[string]string, reserved ...string) error {
	for _, k := range sortedKeys(attrs) {
		if slices.Contains(reserved, k) {
			return fieldErr(field+".attributes."+k, "duplicates a field of the message")
		}
		if !json.Valid([]byte(attrs[k])) {
			return fieldErr(field+".attributes."+k, "is not valid JSON text")
		}
		o.addRaw(k, json.RawMessage(attrs[k]))
	}
	return nil
}

func (o *orderedObject) bytes() []byte {
	if len(o.buf) == 0 {
		return []byte("{}")
	}
	return append(o.buf, '}')
}

// IsFieldError reports whether err is a validation error of an event.
func IsFieldError(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe)
}
