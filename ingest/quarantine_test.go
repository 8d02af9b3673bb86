package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/ingest"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// validEvent returns a valid workflow.job.start event as a map to mutate.
func validEvent(t *testing.T) (string, map[string]any) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	var m map[string]any
	if err := json.Unmarshal(schemas.SampleEvent("workflow.job.start", id, time.Now()), &m); err != nil {
		t.Fatal(err)
	}
	return id, m
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Each bad input lands in the quarantine table and on the DLQ topic with a
// reason naming the field at fault, and the ingester goes on: a good event
// after them is stored.
func TestBadInputsAreQuarantined(t *testing.T) {
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(2)))
	e.cfg.MaxMessageBytes = 4096
	e.cfg.UnknownSchema = ingest.UnknownSchemaQuarantine
	r := start(t, e.cfg, "ingester")

	// The first delivery of an id that later conflicts.
	firstID, first := validEvent(t)
	e.k.Produce(t, kafka.Message{Key: []byte(firstID), Value: mustJSON(t, first)})
	waitFor(t, time.Minute, func() string {
		if n := e.ch.QueryUint64(t, "SELECT count() FROM events"); n != 1 {
			return fmt.Sprintf("%d events stored, want the first one", n)
		}
		return ""
	})

	type badInput struct {
		name        string
		value       []byte
		contentType string
		// want are substrings of the reason: the field at fault and what
		// is wrong with it.
		want []string
	}
	mutate := func(f func(m map[string]any)) []byte {
		_, m := validEvent(t)
		f(m)
		return mustJSON(t, m)
	}
	cases := []badInput{
		{name: "malformed JSON", value: []byte(`{"id": "0190d1a0-0000-7000-8000-000000000001", "version": 1,`), want: []string{"malformed JSON"}},
		{name: "not an object", value: []byte(`[1,2,3]`), want: []string{"not an object"}},
		{name: "wrong type", value: mutate(func(m map[string]any) { m["success"] = "yes" }), want: []string{"success", "boolean"}},
		{name: "wrong type nested", value: mutate(func(m map[string]any) { m["actor"].(map[string]any)["id"] = 42 }), want: []string{"actor.id", "string"}},
		{name: "missing field", value: mutate(func(m map[string]any) { delete(m, "target") }), want: []string{"target", "required"}},
		{name: "missing version", value: mutate(func(m map[string]any) { delete(m, "version") }), want: []string{"version", "required"}},
		{name: "bad UUID", value: mutate(func(m map[string]any) { m["id"] = "1234-not-a-uuid" }), want: []string{"id", "not a UUID"}},
		{name: "time without zone", value: mutate(func(m map[string]any) { m["occurred_at"] = "2026-01-02T15:04:05.123" }), want: []string{"occurred_at", "zone"}},
		{name: "time after 2105", value: mutate(func(m map[string]any) { m["occurred_at"] = "2106-02-08T00:00:00Z" }), want: []string{"occurred_at", "after 2105"}},
		{name: "10-digit fraction", value: mutate(func(m map[string]any) { m["occurred_at"] = "2026-01-02T15:04:05.1234567891Z" }), want: []string{"occurred_at", "9 fractional digits"}},
		{name: "action with capitals", value: mutate(func(m map[string]any) { m["action"] = "Workflow.Job.Start" }), want: []string{"action", "lowercase"}},
		{name: "metadata not strings", value: mutate(func(m map[string]any) { m["metadata"] = map[string]any{"n": 1} }), want: []string{"metadata.n", "string"}},
		{name: "unknown top-level field", value: mutate(func(m map[string]any) { m["actr"] = map[string]any{} }), want: []string{"actr", "unknown field"}},
		{name: "oversize", value: mutate(func(m map[string]any) { m["metadata"] = map[string]any{"blob": strings.Repeat("x", 5000)} }), want: []string{"message", "bytes", "--max-message-bytes"}},
		{name: "schema violation", value: mutate(func(m map[string]any) { m["payload"].(map[string]any)["job_name"] = 17 }), want: []string{"schema workflow.job.start v1", "payload.job_name"}},
		{name: "schema missing member", value: mutate(func(m map[string]any) { delete(m["payload"].(map[string]any), "job_id") }), want: []string{"schema workflow.job.start v1", "job_id"}},
		{name: "unknown schema", value: mutate(func(m map[string]any) { m["action"] = "made.up"; m["version"] = 3 }), want: []string{"unknown schema", `"made.up"`, "version 3"}},
		{name: "conflicting duplicate", value: func() []byte { c := maps(first); c["success"] = false; return mustJSON(t, c) }(), want: []string{"conflict: event " + firstID + " already stored with different content"}},
		{name: "bad protobuf", value: []byte{0xff, 0xff, 0xff}, contentType: "application/x-protobuf", want: []string{"protobuf"}},
		{name: "unknown content type", value: mustJSON(t, first), contentType: "text/csv", want: []string{"content-type", "text/csv"}},
	}
	var msgs []kafka.Message
	for i, c := range cases {
		m := kafka.Message{Key: []byte(fmt.Sprintf("bad-%02d", i)), Value: c.value}
		if c.name == "conflicting duplicate" {
			m.Key = []byte(firstID)
		}
		if c.contentType != "" {
			m.Headers = []kafka.Header{{Key: "content-type", Value: []byte(c.contentType)}}
		}
		msgs = append(msgs, m)
	}
	e.k.Produce(t, msgs...)
	goodID, good := validEvent(t)
	e.k.Produce(t, kafka.Message{Key: []byte(goodID), Value: mustJSON(t, good)})

	waitFor(t, time.Minute, func() string {
		q := e.ch.QueryUint64(t, "SELECT count() FROM quarantine")
		ev := e.ch.QueryUint64(t, "SELECT count() FROM events WHERE id = toUUID(?)", goodID)
		if q != uint64(len(cases)) || ev != 1 {
			return fmt.Sprintf("quarantine holds %d rows (want %d), good event stored %d times (want 1)", q, len(cases), ev)
		}
		return ""
	})
	if n := e.ch.QueryUint64(t, "SELECT count() FROM events"); n != 2 {
		t.Errorf("events holds %d rows; want 2 (the first delivery and the good event)", n)
	}
	if got := e.ch.QueryUint64(t, "SELECT count() FROM events WHERE id = toUUID(?) AND success = 1", firstID); got != 1 {
		t.Errorf("the first delivery of %s is not what is stored (first wins)", firstID)
	}

	// The quarantine table: keyed by the raw bytes, which are distinct.
	type row struct{ reason, eventID, key string }
	byRaw := map[string]row{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := e.ch.Conn.Query(ctx, "SELECT raw, reason, event_id, key, topic FROM quarantine")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var raw, reason, eventID, key, topic string
		if err := rows.Scan(&raw, &reason, &eventID, &key, &topic); err != nil {
			t.Fatal(err)
		}
		if topic != e.k.Topic {
			t.Errorf("quarantine row topic %q, want %q", topic, e.k.Topic)
		}
		byRaw[raw+"|"+key] = row{reason, eventID, key}
	}
	rows.Close()

	dlq := e.k.ConsumeAll(t, e.k.DLQTopic, len(cases), 30*time.Second)
	if len(dlq) != len(cases) {
		t.Errorf("DLQ holds %d messages, want %d", len(dlq), len(cases))
	}
	dlqByKey := map[string]kafka.Message{}
	for _, m := range dlq {
		dlqByKey[string(m.Key)+"|"+string(m.Value)] = m
	}

	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := string(msgs[i].Key)
			got, ok := byRaw[string(c.value)+"|"+key]
			if !ok {
				t.Fatalf("not in quarantine")
			}
			for _, w := range c.want {
				if !strings.Contains(got.reason, w) {
					t.Errorf("quarantine reason %q does not say %q", got.reason, w)
				}
			}
			if c.name == "conflicting duplicate" && got.eventID != firstID {
				t.Errorf("quarantine event_id %q, want %s", got.eventID, firstID)
			}
			// Whole, oversize included: the DLQ cuts only what does not fit
			// a Kafka message (TestRejectsAtTheSizeLimitReachTheDLQ).
			m, ok := dlqByKey[key+"|"+string(c.value)]
			if !ok {
				t.Fatalf("not on the DLQ topic %s", e.k.DLQTopic)
			}
			h := headers(m)
			if h["reason"] != got.reason {
				t.Errorf("DLQ reason header %q, want the quarantine reason %q", h["reason"], got.reason)
			}
			if h["original-topic"] != e.k.Topic || h["original-partition"] == "" {
				t.Errorf("DLQ headers %v do not say where the message came from", h)
			}
			if off, err := strconv.ParseInt(h["original-offset"], 10, 64); err != nil || off < 0 {
				t.Errorf("DLQ original-offset header %q", h["original-offset"])
			}
		})
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if q := counter(t, r.reg, "auditlog_ingest_quarantined_total", nil); q != float64(len(cases)) {
		t.Errorf("quarantined_total = %v, want %d", q, len(cases))
	}
	if c := counter(t, r.reg, "auditlog_ingest_conflicts_total", nil); c != 1 {
		t.Errorf("conflicts_total = %v, want 1", c)
	}
}

// Rejected messages as big as the ingester accepts, or bigger (producers
// that compress get them past the broker's limit, which counts compressed
// bytes), go whole to the quarantine table and cut to fit a Kafka message to
// the DLQ; ingestion goes on behind them.
func TestRejectsAtTheSizeLimitReachTheDLQ(t *testing.T) {
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t))
	limit := ingest.DefaultConfig().MaxMessageBytes
	if e.cfg.MaxMessageBytes != limit {
		t.Fatalf("the test means the default --max-message-bytes, %d; the environment has %d", limit, e.cfg.MaxMessageBytes)
	}
	// A queue smaller than the messages: each waits for it to empty and
	// takes all of it.
	e.cfg.QueueBytes = 1 << 20
	r := start(t, e.cfg, "ingester")

	big := []kafka.Message{
		// Exactly the size allowed, and malformed: with its key and the
		// DLQ's headers it is over 1 MiB.
		{Key: []byte("at-the-limit"), Value: append([]byte(`{"id":"`), bytes.Repeat([]byte("x"), limit-len(`{"id":"`))...)},
		{Key: []byte("oversize"), Value: bytes.Repeat([]byte("y"), 3*limit)},
	}
	e.k.ProduceCompressed(t, big...)
	waitFor(t, time.Minute, func() string {
		if q := e.ch.QueryUint64(t, "SELECT count() FROM quarantine"); q != uint64(len(big)) {
			return fmt.Sprintf("quarantine holds %d rows, want %d", q, len(big))
		}
		return ""
	})
	// Stored, and the offsets committed, only once the batch before it went
	// through, DLQ included.
	goodID, good := validEvent(t)
	e.k.Produce(t, kafka.Message{Key: []byte(goodID), Value: mustJSON(t, good)})
	waitFor(t, time.Minute, func() string {
		if n := e.ch.QueryUint64(t, "SELECT count() FROM events WHERE id = toUUID(?)", goodID); n != 1 {
			return fmt.Sprintf("the event after the big ones is stored %d times, want 1", n)
		}
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d", lag)
		}
		return ""
	})

	reasons := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := e.ch.Conn.Query(ctx, "SELECT key, raw, reason FROM quarantine")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var key, raw, reason string
		if err := rows.Scan(&key, &raw, &reason); err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(big, func(b kafka.Message) bool { return string(b.Key) == key })
		if i < 0 || raw != string(big[i].Value) {
			t.Errorf("quarantine row with key %q and %d bytes: not one of the messages sent, whole", key, len(raw))
			continue
		}
		reasons[key] = reason
	}
	rows.Close()
	if !strings.Contains(reasons["oversize"], "--max-message-bytes") || !strings.Contains(reasons["at-the-limit"], "malformed JSON") {
		t.Errorf("quarantine reasons %q", reasons)
	}

	dlq := e.k.ConsumeAll(t, e.k.DLQTopic, len(big), 30*time.Second)
	if len(dlq) != len(big) {
		t.Fatalf("DLQ holds %d messages, want %d", len(dlq), len(big))
	}
	for _, m := range dlq {
		key := string(m.Key)
		i := slices.IndexFunc(big, func(b kafka.Message) bool { return string(b.Key) == key })
		if i < 0 {
			t.Errorf("DLQ message with key %q was not sent", key)
			continue
		}
		h := headers(m)
		if h["truncated"] != "true" || !bytes.HasPrefix(big[i].Value, m.Value) {
			t.Errorf("%s: DLQ value of %d bytes (truncated=%q); want a prefix of the %d sent, marked truncated", key, len(m.Value), h["truncated"], len(big[i].Value))
		}
		// Cut to fit, not emptied.
		if len(m.Value) < limit*9/10 {
			t.Errorf("%s: DLQ value of %d bytes; want most of a MiB", key, len(m.Value))
		}
		if h["reason"] != reasons[key] {
			t.Errorf("%s: DLQ reason %q, want the quarantine reason %q", key, h["reason"], reasons[key])
		}
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func headers(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	return h
}

// maps returns a shallow copy of m.
func maps(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
