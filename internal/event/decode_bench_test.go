package event_test

import (
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/schemas"
)

// benchEvents are CircleCI-shaped events of every sample action, as the
// ingest benchmark produces them.
func benchEvents(b *testing.B) [][]byte {
	b.Helper()
	var out [][]byte
	base := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	for i, s := range schemas.Samples() {
		raw := schemas.SampleEvent(s.Action, uuid.NewString(), base.Add(time.Duration(i)*time.Microsecond))
		if len(raw) < 800 {
			out = append(out, raw)
		}
	}
	if len(out) == 0 {
		b.Fatal("no sample events")
	}
	return out
}

// BenchmarkParseJSON decodes the sample events round robin; ns/op and
// allocs/op are per event.
func BenchmarkParseJSON(b *testing.B) {
	events := benchEvents(b)
	var size int
	for _, e := range events {
		size += len(e)
	}
	b.SetBytes(int64(size / len(events)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := event.ParseJSON(events[i%len(events)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkParseAndValidate is the ingester's per-event decode work:
// ParseJSON, ContentHash and the payload's schema validation.
func BenchmarkParseAndValidate(b *testing.B) {
	events := benchEvents(b)
	reg := schemas.Embedded()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ev, err := event.ParseJSON(events[i%len(events)])
		if err != nil {
			b.Fatal(err)
		}
		_ = ev.ContentHash()
		if err := reg.Validate(ev.Action, ev.Version, ev.PayloadJSON()); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
