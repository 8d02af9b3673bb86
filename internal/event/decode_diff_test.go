package event_test

import (
	"bytes"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/schemas"
)

// The fast decoder must agree with the encoding/json one on every input:
// same event (and so the same canonical rendering and content hash) or the
// same error.

const goodEvent = `{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":1,"action":"workflow.job.start",` +
	`"actor":{"id":"u1","type":"user","name":"Zoë"},"target":{"id":"j1","type":"job"},` +
	`"scope":{"id":"org-1","type":"organization","name":"Acme"},"payload":{"n":18446744073709551617},` +
	`"metadata":{"k":"v"},"occurred_at":"2026-03-04T05:06:07.123456789Z","success":true,"request":{"id":"r1"}}`

func sampleEvents(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	base := time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)
	for i, s := range schemas.Samples() {
		out = append(out, schemas.SampleEvent(s.Action, uuid.NewString(), base.Add(time.Duration(i)*time.Microsecond)))
	}
	if len(out) == 0 {
		t.Fatal("no sample events")
	}
	return out
}

// agree fails the test when ParseJSON and the reference decoder differ on
// data.
func agree(t testing.TB, data []byte) {
	t.Helper()
	want, wantErr := event.ParseSlow(bytes.Clone(data))
	got, gotErr := event.ParseJSON(bytes.Clone(data))
	if (wantErr == nil) != (gotErr == nil) || wantErr != nil && wantErr.Error() != gotErr.Error() {
		t.Fatalf("input %q:\nParseJSON error %v\nreference error %v", data, gotErr, wantErr)
	}
	if wantErr != nil {
		if _, ok := gotErr.(*event.FieldError); !ok {
			t.Fatalf("input %q: error %v is %T, want *FieldError", data, gotErr, gotErr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("input %q:\nParseJSON %#v\nreference %#v", data, got, want)
	}
	if g, w := got.AppendJSON(nil), want.AppendJSON(nil); !bytes.Equal(g, w) {
		t.Fatalf("input %q: renderings differ:\n%s\n%s", data, g, w)
	}
	if got.ContentHash() != want.ContentHash() {
		t.Fatalf("input %q: content hashes differ", data)
	}
	if shared, err := event.ParseJSONShared(bytes.Clone(data)); err != nil || !reflect.DeepEqual(shared, want) {
		t.Fatalf("input %q:\nParseJSONShared %#v, %v\nreference %#v", data, shared, err, want)
	}
}

// ParseJSON copies: a caller may reuse its buffer once it returned.
func TestParseJSONKeepsNothingOfItsInput(t *testing.T) {
	data := []byte(goodEvent)
	e, err := event.ParseJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	before := e.AppendJSON(nil)
	for i := range data {
		data[i] = 'x'
	}
	if after := e.AppendJSON(nil); !bytes.Equal(after, before) {
		t.Fatalf("the event changed with the buffer it was parsed from:\n%s\n%s", before, after)
	}
}

func TestFastPathTakesWellFormedEvents(t *testing.T) {
	inputs := append(sampleEvents(t), []byte(goodEvent))
	for _, in := range inputs {
		if _, ok := event.ParseFast(in, false); !ok {
			t.Errorf("fast path declined a valid event, so every message pays for encoding/json: %s", in)
		}
		agree(t, in)
	}
}

func TestFastPathAgreesOnVariants(t *testing.T) {
	variants := []string{
		goodEvent,
		" \t\r\n" + goodEvent + "\n",
		strings.ReplaceAll(goodEvent, `,"`, ", \n\t\""),
		strings.ReplaceAll(goodEvent, `:`, ` : `),
		strings.ReplaceAll(goodEvent, `"Zoë"`, `"Zo\u00eb \"q\" \\ \/ \b\f\n\r\t \ud83d\ude00 \ud800"`),
		strings.ReplaceAll(goodEvent, `"u1"`, `"u\u0031"`),
		strings.ReplaceAll(goodEvent, `{"k":"v"}`, `{"k":"v","k":"w","\u006b2":"x","e":"","n":null}`),
		strings.ReplaceAll(goodEvent, `{"k":"v"}`, `{"k":1,"k":"v"}`),
		strings.ReplaceAll(goodEvent, `{"k":"v"}`, `{}`),
		strings.ReplaceAll(goodEvent, `{"k":"v"}`, `null`),
		strings.ReplaceAll(goodEvent, `{"k":"v"}`, `[]`),
		strings.ReplaceAll(goodEvent, `"id":"u1"`, `"id":"u0","id":"u1"`),
		strings.ReplaceAll(goodEvent, `"id":"u1"`, `"\u0069d":"u1"`),
		strings.ReplaceAll(goodEvent, `"id":"u1"`, `"ID":"u1"`),
		strings.ReplaceAll(goodEvent, `"name":"Zoë"`, `"name":null`),
		strings.ReplaceAll(goodEvent, `"name":"Zoë"`, `"name":""`),
		strings.ReplaceAll(goodEvent, `"name":"Zoë"`, `"name":"Zoë","extra":{"a":[1,2.5e-3,-0,true,false,null,{}],"b":"\""}`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":1,"version":2`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"Version":1`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":4294967295`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":4294967296`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":99999999999999999999999`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":01`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":1e0`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":-1`),
		strings.ReplaceAll(goodEvent, `"version":1`, `"version":null`),
		strings.ReplaceAll(goodEvent, `0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55`, `0193A1F4-6A3C-7D2E-9B41-2F9C8E1D7A55`),
		strings.ReplaceAll(goodEvent, `0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55`, `00000000-0000-0000-0000-000000000000`),
		strings.ReplaceAll(goodEvent, `0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55`, `{0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a5}`),
		strings.ReplaceAll(goodEvent, `"scope":{"id":"org-1","type":"organization","name":"Acme"},`, ``),
		strings.ReplaceAll(goodEvent, `{"id":"org-1","type":"organization","name":"Acme"}`, `null`),
		strings.ReplaceAll(goodEvent, `{"id":"org-1","type":"organization","name":"Acme"}`, `{"id":"","type":"organization"}`),
		strings.ReplaceAll(goodEvent, `,"request":{"id":"r1"}`, ``),
		strings.ReplaceAll(goodEvent, `{"id":"r1"}`, `null`),
		strings.ReplaceAll(goodEvent, `{"id":"r1"}`, `{}`),
		strings.ReplaceAll(goodEvent, `{"id":"r1"}`, `{"id":null, "ip" : "1.2.3.4"}`),
		strings.ReplaceAll(goodEvent, `{"id":"r1"}`, `{"id":7}`),
		strings.ReplaceAll(goodEvent, `{"id":"r1"}`, `"r1"`),
		strings.ReplaceAll(goodEvent, `{"n":18446744073709551617}`, `{ "n" : [ 1 , 2 ] , "s":"a b" }`),
		strings.ReplaceAll(goodEvent, `{"n":18446744073709551617}`, `null`),
		strings.ReplaceAll(goodEvent, `{"n":18446744073709551617}`, `[]`),
		strings.ReplaceAll(goodEvent, `,"payload":{"n":18446744073709551617}`, ``),
		strings.ReplaceAll(goodEvent, `"success":true`, `"success":false`),
		strings.ReplaceAll(goodEvent, `"success":true`, `"success":null`),
		strings.ReplaceAll(goodEvent, `"success":true`, `"success":tru`),
		strings.ReplaceAll(goodEvent, `"success":true`, `"success":true,`),
		strings.ReplaceAll(goodEvent, `"action":"workflow.job.start"`, `"action":"workflow.job.star\u0074"`),
		strings.ReplaceAll(goodEvent, `"action":"workflow.job.start"`, `"action":"workflow"`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2026-03-04T05:06:07+05:30`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2026-03-04T05:06:07.1-00:00`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `1969-12-31T23:59:59Z`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `1970-01-01T00:30:00+01:00`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `1969-12-31T23:30:00-01:00`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2105-12-31T23:59:59.999999999Z`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2106-01-01T00:00:00Z`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2105-12-31T23:00:00-01:00`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2026-03-04T05:06:07.Z`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2026-03-04t05:06:07Z`),
		strings.ReplaceAll(goodEvent, `2026-03-04T05:06:07.123456789Z`, `2026-03-04T25:06:07Z`),
		goodEvent + `{}`,
		goodEvent[:len(goodEvent)-1] + `,}`,
		goodEvent[:len(goodEvent)-1] + `,"x":1}`,
		"\ufeff" + goodEvent,
		strings.ReplaceAll(goodEvent, `"Zoë"`, "\"Zo\x01\""),
		strings.ReplaceAll(goodEvent, `"Zoë"`, `"Zo\x"`),
		strings.ReplaceAll(goodEvent, `"Zoë"`, `"Zo\u12G4"`),
		`{}`, `[]`, `null`, `"x"`, `1`, ``, `{`, `{"id"}`,
		strings.Repeat("[", 600) + strings.Repeat("]", 600),
		strings.ReplaceAll(goodEvent, `{"n":18446744073709551617}`, `{"n":`+strings.Repeat("[", 600)+strings.Repeat("]", 600)+`}`),
	}
	for _, v := range variants {
		agree(t, []byte(v))
	}
}

// TestFastPathAgreesOnMutations breaks well-formed events one byte at a
// time: deleted, doubled, or replaced by a byte that matters to the syntax.
func TestFastPathAgreesOnMutations(t *testing.T) {
	inputs := [][]byte{[]byte(goodEvent)}
	if !testing.Short() {
		inputs = append(inputs, sampleEvents(t)[0])
	}
	for _, in := range inputs {
		for i := range in {
			agree(t, append(bytes.Clone(in[:i]), in[i+1:]...))
			agree(t, append(bytes.Clone(in[:i+1]), in[i:]...))
			for _, c := range []byte{' ', '"', '\\', '{', '}', ',', '0', 'a'} {
				m := bytes.Clone(in)
				m[i] = c
				agree(t, m)
			}
		}
	}
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(goodEvent))
	for _, in := range sampleEvents(f) {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, data []byte) { agree(t, data) })
}

var (
	actionRe = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$`)
	timeRe   = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$`)
)

func TestSyntaxChecksMatchTheirRegexps(t *testing.T) {
	actions := []string{"", "a", "a.b", "a.b.c", "workflow.job.start", "a..b", ".a.b", "a.b.", "A.b", "a.B",
		"a1.b_2", "1a.b", "_a.b", "a._b", "a.b\n", "a.b ", "a-b.c", "a.bé", "a.b.c.d.e.f_g9"}
	for _, s := range actions {
		if got, want := event.IsActionSyntax(s), actionRe.MatchString(s); got != want {
			t.Errorf("isActionSyntax(%q) = %v, the regexp says %v", s, got, want)
		}
	}
	times := []string{"", "2026-03-04T05:06:07Z", "2026-03-04T05:06:07.1Z", "2026-03-04T05:06:07.123456789Z",
		"2026-03-04T05:06:07.1234567891Z", "2026-03-04T05:06:07.Z", "2026-03-04T05:06:07+05:30",
		"2026-03-04T05:06:07.5-07:00", "2026-03-04T05:06:07", "2026-03-04T05:06:07z", "2026-03-04t05:06:07Z",
		"2026-03-04T05:06:07+0530", "2026-03-04T05:06:07+05:30 ", "2026-03-04T05:06:07Z\n", "026-03-04T05:06:07Z",
		"2026-3-04T05:06:07Z", "2026-03-04 05:06:07Z", "2026-03-04T05:06:07+05:3a", "2026-03-04T05:06:07ZZ",
		"2026-03-04T05:06:07.١Z", "2026-03-04T05:06:07.12345678Z"}
	for _, s := range times {
		if got, want := event.IsTimeSyntax(s), timeRe.MatchString(s); got != want {
			t.Errorf("isTimeSyntax(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}

func FuzzSyntaxChecks(f *testing.F) {
	f.Add("workflow.job.start")
	f.Add("2026-03-04T05:06:07.123456789+01:00")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := event.IsActionSyntax(s), actionRe.MatchString(s); got != want {
			t.Errorf("isActionSyntax(%q) = %v, the regexp says %v", s, got, want)
		}
		if got, want := event.IsTimeSyntax(s), timeRe.MatchString(s); got != want {
			t.Errorf("isTimeSyntax(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
