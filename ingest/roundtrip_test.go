package ingest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testharness"
)

// What comes back from ClickHouse equals what was sent: all nine digits of
// occurred_at, unicode, integers beyond 2^53, nested payloads, empty
// metadata, and the protobuf wire format.
func TestRoundTripIsExact(t *testing.T) {
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t))
	r := start(t, e.cfg, "ingester")

	newID := func() string { return uuid.Must(uuid.NewV7()).String() }
	type sent struct {
		id, json string
		// want is the canonical rendering expected back, when it differs
		// from json (a time sent with another zone comes back in UTC).
		want        string
		proto       bool
		unvalidated bool
	}
	payload := `{"job_id":"3f9a8b7c-6d5e-4f3a-9b2c-1d0e9f8a7b6c","job_name":"build ✓ ünïcødé 日本語 🚀","job_number":9007199254740993,` +
		`"workflow_id":"7c2e9d14-3b5a-4f8e-a1c6-92d0e4b7f3a5","big":123456789012345678901234567890,"neg":-9223372036854775808,` +
		`"float":1.5e-300,"vcs":{"provider":"github","branch":"main","deep":[1,{"x":[true,null,"\u00fc\"\\"]},[]]},"empty":{}}`
	cases := []sent{}
	id := newID()
	cases = append(cases, sent{id: id, json: `{"id":"` + id + `","version":1,"action":"workflow.job.start",` +
		`"actor":{"id":"u-1","type":"user","name":"Zoë 🚀","extra":{"k":[1,2]}},"target":{"id":"j-1","type":"job"},` +
		`"scope":{"id":"org-1","type":"organization","name":"ACME ünï"},"payload":` + payload + `,"metadata":{},` +
		`"occurred_at":"2026-03-04T05:06:07.123456789Z","success":true,"request":{"id":"req-1","ip":"203.0.113.9"}}`})
	id = newID()
	cases = append(cases, sent{id: id,
		json: `{"id":"` + id + `","version":1,"action":"user.logged_in","actor":{"id":"u-2","type":"user"},"target":{"id":"u-2","type":"user"},` +
			`"payload":{"method":"password"},"metadata":{"ua":"Mozilla/5.0 (ü)","z":""},"occurred_at":"2026-03-04T07:06:07.000000001+02:00","success":false}`,
		want: `{"id":"` + id + `","version":1,"action":"user.logged_in","actor":{"id":"u-2","type":"user"},"target":{"id":"u-2","type":"user"},` +
			`"payload":{"method":"password"},"metadata":{"ua":"Mozilla/5.0 (ü)","z":""},"occurred_at":"2026-03-04T05:06:07.000000001Z","success":false}`})
	id = newID()
	cases = append(cases, sent{id: id, proto: true, json: `{"id":"` + id + `","version":1,"action":"workflow.job.start",` +
		`"actor":{"id":"u-3","type":"user","name":"Ω"},"target":{"id":"j-3","type":"job"},"scope":{"id":"org-1","type":"organization"},` +
		`"payload":` + payload + `,"metadata":{"a":"b"},"occurred_at":"2026-03-04T05:06:07.999999999Z","success":true,"request":{"id":"req-3"}}`})
	id = newID()
	cases = append(cases, sent{id: id, unvalidated: true, json: `{"id":"` + id + `","version":7,"action":"custom.thing.happen",` +
		`"actor":{"id":"svc","type":"service"},"target":{"id":"t","type":"thing"},"payload":{"n":18446744073709551616},"metadata":{},` +
		`"occurred_at":"1970-01-01T00:00:00.000000001Z","success":true}`})
	// The last instant stored: occurred_at is a DateTime, whose seconds
	// run out in February 2106.
	id = newID()
	cases = append(cases, sent{id: id, json: `{"id":"` + id + `","version":1,"action":"user.logged_in","actor":{"id":"u-4","type":"user"},` +
		`"target":{"id":"u-4","type":"user"},"payload":{"method":"sso"},"metadata":{},"occurred_at":"2105-12-31T23:59:59.999999999Z","success":true}`})

	var msgs []kafka.Message
	for _, c := range cases {
		m := kafka.Message{Key: []byte(c.id), Value: []byte(c.json)}
		if c.proto {
			ev, err := event.ParseJSON([]byte(c.json))
			if err != nil {
				t.Fatalf("test event: %v", err)
			}
			b, err := proto.Marshal(ev.ToProto())
			if err != nil {
				t.Fatal(err)
			}
			m.Value = b
			m.Headers = []kafka.Header{{Key: "content-type", Value: []byte("application/x-protobuf")}}
		}
		msgs = append(msgs, m)
	}
	e.k.Produce(t, msgs...)
	waitFor(t, time.Minute, func() string {
		if q := e.ch.QueryUint64(t, "SELECT count() FROM quarantine"); q > 0 {
			t.Fatalf("%d events quarantined; want none", q)
		}
		if n := e.ch.QueryUint64(t, "SELECT count() FROM events"); n != uint64(len(cases)) {
			return fmt.Sprintf("%d of %d events stored (quarantine: %d)", n, len(cases), e.ch.QueryUint64(t, "SELECT count() FROM quarantine"))
		}
		return ""
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range cases {
		rows, err := e.ch.Conn.Query(ctx, "SELECT "+store.SelectColumns+" FROM events WHERE id = toUUID(?)", c.id)
		if err != nil {
			t.Fatal(err)
		}
		if !rows.Next() {
			t.Fatalf("event %s not found", c.id)
		}
		var s store.EventScanner
		ev, err := s.Scan(rows)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
		validated := e.ch.QueryUint64(t, "SELECT toUInt64(validated) FROM events WHERE id = toUUID(?)", c.id)
		got := ev.AppendJSON(nil)
		want := c.want
		if want == "" {
			want = c.json
		}
		if !jsonEqual(t, got, []byte(want)) {
			t.Errorf("event %s came back as\n%s\nwant\n%s", c.id, got, want)
		}
		if wantValidated := !c.unvalidated; (validated == 1) != wantValidated {
			t.Errorf("event %s: validated=%d, want %v", c.id, validated, wantValidated)
		}
		// The DateTime column, which partitions, holds the same second as
		// occurred_ns: not wrapped around at the end of its range.
		seconds := e.ch.QueryUint64(t, "SELECT toUInt64(toUnixTimestamp(occurred_at)) FROM events WHERE id = toUUID(?)", c.id)
		month := e.ch.QueryUint64(t, "SELECT toUInt64(toYYYYMM(occurred_at)) FROM events WHERE id = toUUID(?)", c.id)
		at := ev.OccurredAt.UTC()
		if seconds != uint64(at.Unix()) || month != uint64(at.Year()*100+int(at.Month())) {
			t.Errorf("event %s: occurred_at stored as second %d in month %d; want %d in %d", c.id, seconds, month, at.Unix(), at.Year()*100+int(at.Month()))
		}
	}
}
