package event

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

const good = `{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":1,"action":"workflow.job.start",` +
	`"actor":{"id":"u1","type":"user","name":"Zoë"},"target":{"id":"j1","type":"job"},` +
	`"scope":{"id":"org-1","type":"organization","name":"Acme"},"payload":{"n":18446744073709551617},` +
	`"metadata":{"k":"v"},"occurred_at":"2026-03-04T05:06:07.123456789Z","success":true,"request":{"id":"r1"}}`

// with replaces one top-level member of the good event (or deletes it when
// value is empty) and returns the JSON.
func with(t *testing.T, key, value string) string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(good), &m); err != nil {
		t.Fatal(err)
	}
	if value == "" {
		delete(m, key)
	} else {
		m[key] = json.RawMessage(value)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestParseJSONRejectsWithFieldNamed(t *testing.T) {
	cases := []struct {
		name, input, field, problem string
	}{
		{"malformed", `{"id": `, "", "malformed JSON"},
		{"not an object", `[1,2]`, "", "not an object"},
		{"null", `null`, "", "not an object"},
		{"unknown field", with(t, "occured_at", `"2026-01-01T00:00:00Z"`), "occured_at", "unknown field"},
		{"missing id", with(t, "id", ""), "id", "is required"},
		{"id not string", with(t, "id", `42`), "id", "must be a string, got number"},
		{"bad uuid", with(t, "id", `"not-a-uuid"`), "id", "is not a UUID"},
		{"uuid without dashes", with(t, "id", `"0193a1f46a3c7d2e9b412f9c8e1d7a55"`), "id", "is not a UUID"},
		{"missing version", with(t, "version", ""), "version", "is required"},
		{"version zero", with(t, "version", `0`), "version", "from 1"},
		{"version fraction", with(t, "version", `1.5`), "version", "integer"},
		{"version string", with(t, "version", `"1"`), "version", "got string"},
		{"action capitals", with(t, "action", `"Workflow.Job.Start"`), "action", "lowercase"},
		{"action one word", with(t, "action", `"login"`), "action", "lowercase ASCII words joined by dots"},
		{"action too long", with(t, "action", `"a.`+strings.Repeat("b", 200)+`"`), "action", "at most 128"},
		{"missing actor", with(t, "actor", ""), "actor", "is required"},
		{"actor not object", with(t, "actor", `"alice"`), "actor", "must be an object"},
		{"actor without id", with(t, "actor", `{"type":"user"}`), "actor.id", "is required"},
		{"actor empty type", with(t, "actor", `{"id":"u","type":""}`), "actor.type", "must not be empty"},
		{"actor name number", with(t, "actor", `{"id":"u","type":"user","name":3}`), "actor.name", "must be a string"},
		{"target missing", with(t, "target", ""), "target", "is required"},
		{"scope without id", with(t, "scope", `{"type":"organization"}`), "scope.id", "is required"},
		{"payload array", with(t, "payload", `[1]`), "payload", "must be an object"},
		{"metadata number", with(t, "metadata", `{"k":1}`), "metadata.k", "must be a string"},
		{"time without zone", with(t, "occurred_at", `"2026-03-04T05:06:07"`), "occurred_at", "with a zone"},
		{"time 10 digit fraction", with(t, "occurred_at", `"2026-03-04T05:06:07.1234567891Z"`), "occurred_at", "at most 9 fractional digits"},
		{"time as number", with(t, "occurred_at", `1700000000`), "occurred_at", "must be a string"},
		{"time invalid date", with(t, "occurred_at", `"2026-02-30T00:00:00Z"`), "occurred_at", "not a valid time"},
		{"time before 1970", with(t, "occurred_at", `"1969-12-31T23:59:59.999999999Z"`), "occurred_at", "before 1970"},
		{"time before 1970 by its zone", with(t, "occurred_at", `"1970-01-01T00:30:00+01:00"`), "occurred_at", "before 1970"},
		{"time after 2105", with(t, "occurred_at", `"2106-01-01T00:00:00Z"`), "occurred_at", "after 2105"},
		{"time after 2105 by its zone", with(t, "occurred_at", `"2105-12-31T23:30:00-01:00"`), "occurred_at", "after 2105"},
		{"missing success", with(t, "success", ""), "success", "is required"},
		{"success string", with(t, "success", `"true"`), "success", "must be a boolean"},
		{"request id number", with(t, "request", `{"id":7}`), "request.id", "must be a string"},
		{"invalid utf8", "{\"id\":\"\xff\"}", "", "UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseJSON([]byte(c.input))
			if err == nil {
				t.Fatalf("accepted %s", c.input)
			}
			fe, ok := err.(*FieldError)
			if !ok {
				t.Fatalf("error %v is %T, want *FieldError", err, err)
			}
			if fe.Field != c.field || !strings.Contains(fe.Problem, c.problem) {
				t.Errorf("got %q, want field %q with a problem containing %q", err, c.field, c.problem)
			}
		})
	}
}

func TestParseJSONExactRoundTrip(t *testing.T) {
	in := `{"id":"0193A1F4-6A3C-7D2E-9B41-2F9C8E1D7A55","version":3,"action":"context.env_var.store",
	  "actor":{"id":"u1","type":"user","name":"Zoë \"quoted\", <b>","extra":{"deep":[1,2.50,{"x":null}]}},
	  "target":{"id":"t","type":"context","big":123456789012345678901234567890},
	  "payload":{"big":-18446744073709551617,"float":1.0e400,"s":"日本語 \u2028 \\ \"","empty":{}},
	  "occurred_at":"2026-03-04T05:06:07.000000001-07:30","success":false}`
	e, err := ParseJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if e.Scope != nil || e.Request != nil || e.Metadata != nil {
		t.Errorf("absent scope/request/metadata came back as %v %v %v", e.Scope, e.Request, e.Metadata)
	}
	out := string(e.AppendJSON(nil))
	for _, want := range []string{
		`"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55"`,
		`"occurred_at":"2026-03-04T12:36:07.000000001Z"`,
		`"big":123456789012345678901234567890`,
		`"big":-18446744073709551617`,
		`"float":1.0e400`,
		`"name":"Zoë \"quoted\", <b>"`,
		`"success":false`,
		`"metadata":{}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"scope"`) || strings.Contains(out, `"request"`) {
		t.Errorf("absent scope or request rendered: %s", out)
	}
	// Rendered output parses back to the same event.
	again, err := ParseJSON([]byte(out))
	if err != nil {
		t.Fatalf("own rendering rejected: %v\n%s", err, out)
	}
	if got := string(again.AppendJSON(nil)); got != out {
		t.Errorf("second round trip differs:\n%s\n%s", got, out)
	}
	if again.ContentHash() != e.ContentHash() {
		t.Error("content hash changed across a round trip")
	}
}

func TestDefaultsAndNulls(t *testing.T) {
	e, err := ParseJSON([]byte(with(t, "payload", "")))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.PayloadJSON()) != "{}" {
		t.Errorf("missing payload = %s, want {}", e.PayloadJSON())
	}
	e, err = ParseJSON([]byte(with(t, "scope", "null")))
	if err != nil {
		t.Fatal(err)
	}
	if e.Scope != nil {
		t.Error("null scope kept")
	}
}

func TestContentHashDistinguishesContent(t *testing.T) {
	a, _ := ParseJSON([]byte(good))
	b, _ := ParseJSON([]byte(with(t, "success", "false")))
	if a.ContentHash() == b.ContentHash() {
		t.Error("different content, same hash")
	}
	c, _ := ParseJSON([]byte(good))
	if a.ContentHash() != c.ContentHash() {
		t.Error("same content, different hash")
	}
}

// The hash is stored (event_ids.content_hash) and compared with every later
// delivery of the same id: a change in what it hashes would make each
// redelivery of an event stored before the change a conflict.
func TestContentHashIsStable(t *testing.T) {
	e, err := ParseJSON([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.ContentHash(), uint64(0x5431cbe7c17e5d3); got != want {
		t.Errorf("ContentHash = %#x, want %#x (the hash of every stored event)", got, want)
	}
}

func TestProtoRoundTrip(t *testing.T) {
	e, err := ParseJSON([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	p := e.ToProto()
	if p.Actor.GetName() != "Zoë" || p.Scope.GetId() != "org-1" || p.Payload != `{"n":18446744073709551617}` {
		t.Errorf("proto fields: %v", p)
	}
	wire, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var decoded = p.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(wire, decoded); err != nil {
		t.Fatal(err)
	}
	back, err := FromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(t, back.AppendJSON(nil), e.AppendJSON(nil)) {
		t.Errorf("proto round trip changed the event:\n%s\n%s", back.AppendJSON(nil), e.AppendJSON(nil))
	}
}

func TestFromProtoValidatesLikeJSON(t *testing.T) {
	e, _ := ParseJSON([]byte(good))
	p := e.ToProto()
	p.Action = "Bad.Action"
	_, err := FromProto(p)
	if fe, ok := err.(*FieldError); !ok || fe.Field != "action" {
		t.Fatalf("got %v, want a FieldError on action", err)
	}
	p = e.ToProto()
	p.OccurredAt = nil
	_, err = FromProto(p)
	if fe, ok := err.(*FieldError); !ok || fe.Field != "occurred_at" {
		t.Fatalf("got %v, want a FieldError on occurred_at", err)
	}
}

// jsonEqual compares two JSON documents as values, numbers as text.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(data []byte) any {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		var v any
		if err := d.Decode(&v); err != nil {
			t.Fatalf("%v: %s", err, data)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

func TestAppendUUIDIsString(t *testing.T) {
	ids := []uuid.UUID{uuid.Nil, uuid.Max, uuid.MustParse("0193A1F4-6A3C-7D2E-9B41-2F9C8E1D7A55")}
	for range 100 {
		ids = append(ids, uuid.New())
	}
	for _, id := range ids {
		if got := string(AppendUUID([]byte("x"), id)); got != "x"+id.String() {
			t.Errorf("AppendUUID(%v) = %q, want %q", id, got, "x"+id.String())
		}
	}
}

func TestAppendTimeMatchesTheLayout(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		tm := time.Unix(0, r.Int64N(1<<62)).In(time.FixedZone("x", 3600*r.IntN(24)-43200))
		if got, want := string(AppendTime(nil, tm)), tm.UTC().Format(TimeLayout); got != want {
			t.Fatalf("AppendTime(%v) = %s, want %s", tm, got, want)
		}
	}
	if got := string(AppendTime(nil, time.Unix(0, 1))); got != "1970-01-01T00:00:00.000000001Z" {
		t.Errorf("got %s", got)
	}
}
