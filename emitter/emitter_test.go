package emitter_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

func TestMain(m *testing.M) { testharness.Main(m) }

func newEmitter(t *testing.T, cfg emitter.Config) *emitter.Emitter {
	t.Helper()
	e, err := emitter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// withoutIDAndTime returns a sample event of action with id and occurred_at
// removed, as a component that relies on the emitter would send it.
func withoutIDAndTime(t *testing.T, action string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(schemas.SampleEvent(action, uuid.NewString(), time.Now()), &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "id")
	delete(m, "occurred_at")
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEmitFillsIDAndTimeAndKeysByID(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	reg := prometheus.NewRegistry()
	e := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic, Metrics: reg})
	ctx := context.Background()

	const n = 42
	before := time.Now().UTC()
	var samples []schemas.Sample
	for _, s := range schemas.Samples() {
		samples = append(samples, s, s) // each action twice: once as a struct, once as JSON
	}
	sentPayload := map[string]json.RawMessage{}
	for i, s := range samples[:n] {
		var id string
		if i%2 == 0 {
			ev := &emitter.Event{
				Action:  s.Action,
				Actor:   emitter.Entity{ID: "u-1", Type: "user", Name: "Zoë <admin> & co", Attributes: map[string]any{"email": "zoe@example.com"}},
				Target:  emitter.Entity{ID: "t-1", Type: "thing"},
				Payload: s.Payload,
				Success: true,
			}
			if err := e.Emit(ctx, ev); err != nil {
				t.Fatalf("Emit %s: %v", s.Action, err)
			}
			if ev.ID == "" || ev.OccurredAt.IsZero() {
				t.Fatalf("Emit did not report the id and time it assigned: %+v", ev)
			}
			id = ev.ID
		} else {
			var err error
			if id, err = e.EmitJSON(ctx, withoutIDAndTime(t, s.Action)); err != nil {
				t.Fatalf("EmitJSON %s: %v", s.Action, err)
			}
		}
		sentPayload[id] = s.Payload
	}
	after := time.Now().UTC()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	msgs := k.ConsumeAll(t, k.Topic, n, 30*time.Second)
	if len(msgs) != n {
		t.Fatalf("topic holds %d messages, want %d", len(msgs), n)
	}
	for _, m := range msgs {
		ev, err := event.ParseJSON(m.Value)
		if err != nil {
			t.Fatalf("message does not parse: %v\n%s", err, m.Value)
		}
		if string(m.Key) != ev.ID.String() {
			t.Errorf("key %q != id %s", m.Key, ev.ID)
		}
		if ev.ID.Version() != 7 {
			t.Errorf("id %s is UUID version %d, want 7", ev.ID, ev.ID.Version())
		}
		if ev.OccurredAt.Before(before) || ev.OccurredAt.After(after) {
			t.Errorf("occurred_at %s outside [%s, %s]", ev.OccurredAt, before, after)
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != "content-type" || string(m.Headers[0].Value) != "application/json" {
			t.Errorf("headers %v, want content-type: application/json", m.Headers)
		}
		want, ok := sentPayload[ev.ID.String()]
		if !ok {
			t.Errorf("message with unknown id %s", ev.ID)
			continue
		}
		delete(sentPayload, ev.ID.String())
		if !jsonEqual(t, want, ev.Payload) {
			t.Errorf("payload of %s:\n got %s\nwant %s", ev.Action, ev.Payload, want)
		}
		if ev.Actor.Name == "Zoë <admin> & co" && !strings.Contains(string(m.Value), "Zoë <admin> & co") {
			t.Errorf("actor name re-escaped in %s", m.Value)
		}
	}
	if got := counter(t, reg, "sent"); got != n {
		t.Errorf("sent counter = %v, want %d", got, n)
	}
}

// counter reads auditlog_emitter_events_total{outcome} from reg.
func counter(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != "auditlog_emitter_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == outcome {
				v += m.GetCounter().GetValue()
			}
		}
	}
	return v
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

func TestRedeliveriesLandInOnePartition(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t, testharness.WithPartitions(8))
	e := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic})
	ctx := context.Background()
	var ids []string
	for i := 0; i < 10; i++ {
		raw := schemas.SampleEvent("workflow.job.start", uuid.Must(uuid.NewV7()).String(), time.Now())
		for range 3 {
			id, err := e.EmitJSON(ctx, raw)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 || ids[len(ids)-1] != id {
				ids = append(ids, id)
			}
		}
	}
	msgs := k.ConsumeAll(t, k.Topic, 30, 30*time.Second)
	partitionOf := map[string]int{}
	used := map[int]bool{}
	for _, m := range msgs {
		used[m.Partition] = true
		if p, ok := partitionOf[string(m.Key)]; ok && p != m.Partition {
			t.Errorf("event %s in partitions %d and %d", m.Key, p, m.Partition)
		}
		partitionOf[string(m.Key)] = m.Partition
	}
	if len(partitionOf) != 10 || len(msgs) != 30 {
		t.Fatalf("got %d messages of %d ids, want 30 of 10", len(msgs), len(partitionOf))
	}
	if len(used) < 2 {
		t.Errorf("10 ids all landed in one of 8 partitions: keys are not spreading")
	}
}

func TestInvalidEventsAreRejectedBeforeSending(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	reg := prometheus.NewRegistry()
	e := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic, Metrics: reg})
	strict := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic, RequireSchema: true})
	ctx := context.Background()

	setMember := func(action, member, raw string) []byte {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(schemas.SampleEvent(action, uuid.NewString(), time.Now()), &m); err != nil {
			t.Fatal(err)
		}
		if raw == "" {
			delete(m, member)
		} else {
			m[member] = json.RawMessage(raw)
		}
		out, _ := json.Marshal(m)
		return out
	}
	cases := []struct {
		name      string
		e         *emitter.Emitter
		data      []byte
		field     string
		unknown   bool
		wantError string
	}{
		{"payload type", e, setMember("workflow.job.start", "payload",
			`{"job_id":"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c","job_name":"b","job_number":"42","workflow_id":"7c2e9d14-3b5a-4f8e-a1c6-92d0e4b7f3a5"}`),
			"payload.job_number", false, "payload.job_number: expected integer, got string"},
		{"secret value", e, setMember("project.env_var.create", "payload", `{"env_var_name":"X","value":"hunter2"}`),
			"payload.value", false, ""},
		{"missing actor", e, setMember("user.create", "actor", ""), "actor", false, "actor: is required"},
		{"action with capitals", e, setMember("user.create", "action", `"User.Create"`), "action", false, ""},
		{"time without zone", e, setMember("user.create", "occurred_at", `"2026-01-02T03:04:05"`), "occurred_at", false, ""},
		{"not an object", e, []byte(`[1,2]`), "", false, "message is JSON array, not an object"},
		{"unknown version, strict", strict, setMember("user.create", "version", `7`), "version", true,
			"version: no schema for user.create version 7 (known versions: [1])"},
		{"unknown action, strict", strict, setMember("user.create", "action", `"user.creat"`), "version", true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.e.EmitJSON(ctx, tc.data)
			var fe *emitter.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v (%T), want a *FieldError", err, err)
			}
			if fe.Field != tc.field {
				t.Errorf("field %q, want %q (error %v)", fe.Field, tc.field, err)
			}
			if tc.wantError != "" && err.Error() != tc.wantError {
				t.Errorf("error\n got %q\nwant %q", err, tc.wantError)
			}
			if errors.Is(err, schemas.ErrUnknownSchema) != tc.unknown {
				t.Errorf("errors.Is(err, ErrUnknownSchema) = %v, want %v", !tc.unknown, tc.unknown)
			}
		})
	}
	// Without RequireSchema an unknown version is sent: the ingester stores
	// it marked as unvalidated.
	if _, err := e.EmitJSON(ctx, setMember("user.create", "version", `7`)); err != nil {
		t.Fatalf("lenient emitter refused an unknown version: %v", err)
	}
	msgs := k.ConsumeAll(t, k.Topic, 1, 30*time.Second)
	time.Sleep(200 * time.Millisecond) // let any wrongly sent message arrive
	msgs = k.ConsumeAll(t, k.Topic, 1, 30*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("topic holds %d messages, want only the unknown-version event", len(msgs))
	}
	if got := counter(t, reg, "rejected"); got != 6 {
		t.Errorf("rejected counter = %v, want 6", got)
	}
}

func TestAsyncBufferIsBounded(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	// Batches wait a minute for company, so queued events stay queued until
	// Close flushes them.
	e := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic, Async: true, BufferSize: 3, BatchTimeout: time.Minute})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := e.EmitJSON(ctx, schemas.SampleEvent("user.create", uuid.NewString(), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := e.EmitJSON(ctx, schemas.SampleEvent("user.create", uuid.NewString(), time.Now()))
	if !errors.Is(err, emitter.ErrBufferFull) {
		t.Fatalf("4th event into a buffer of 3: got %v, want ErrBufferFull", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a full buffer blocked Emit for %v; BufferWait is 0", d)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if msgs := k.ConsumeAll(t, k.Topic, 3, 30*time.Second); len(msgs) != 3 {
		t.Fatalf("Close flushed %d events, want 3", len(msgs))
	}
	if _, err := e.EmitJSON(ctx, schemas.SampleEvent("user.create", uuid.NewString(), time.Now())); !errors.Is(err, emitter.ErrClosed) {
		t.Fatalf("Emit after Close: got %v, want ErrClosed", err)
	}
}

func TestAsyncBufferWaitGivesRoomBack(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	e := newEmitter(t, emitter.Config{Brokers: k.Brokers, Topic: k.Topic, Async: true, BufferSize: 2, BufferWait: 30 * time.Second})
	ctx := context.Background()
	// Far more events than the buffer holds: each Emit waits for a slot
	// freed by an acknowledged batch instead of failing.
	const n = 50
	for i := 0; i < n; i++ {
		if _, err := e.EmitJSON(ctx, schemas.SampleEvent("user.logged_in", uuid.NewString(), time.Now())); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if msgs := k.ConsumeAll(t, k.Topic, n, 30*time.Second); len(msgs) != n {
		t.Fatalf("got %d events, want %d", len(msgs), n)
	}
}

func TestAsyncFailuresAreReported(t *testing.T) {
	t.Parallel()
	k := testharness.NewDedicatedKafka(t)
	var mu sync.Mutex
	var failed []emitter.Failure
	e := newEmitter(t, emitter.Config{
		Brokers: k.Brokers, Topic: k.Topic, Async: true, BatchTimeout: time.Minute,
		MaxAttempts: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, WriteTimeout: time.Second,
		OnFailure: func(f emitter.Failure) { mu.Lock(); failed = append(failed, f); mu.Unlock() },
	})
	ctx := context.Background()
	ids := map[string]bool{}
	for i := 0; i < 3; i++ {
		id, err := e.EmitJSON(ctx, schemas.SampleEvent("user.create", uuid.NewString(), time.Now()))
		if err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	k.Cluster.Close() // the broker goes away with the events still queued
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 3 {
		t.Fatalf("OnFailure got %d events, want 3", len(failed))
	}
	for _, f := range failed {
		if !ids[f.ID] || f.Err == nil {
			t.Errorf("failure %s (%v) is not one of the queued events", f.ID, f.Err)
		}
		if ev, err := event.ParseJSON(f.Event); err != nil || ev.ID.String() != f.ID {
			t.Errorf("failure carries an unusable event: %v", err)
		}
	}
}

func TestConfigValidateNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  emitter.Config
		want string
	}{
		{emitter.Config{MaxAttempts: -1}, "MaxAttempts"},
		{emitter.Config{BufferSize: -5}, "BufferSize"},
		{emitter.Config{BatchBytes: 10}, "BatchBytes"},
	} {
		if _, err := emitter.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}
