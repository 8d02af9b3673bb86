package filter_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query/filter"
)

func TestParseErrorsNameTheParameter(t *testing.T) {
	cases := []struct {
		req  *auditv1.ListEventsRequest
		want string
	}{
		{&auditv1.ListEventsRequest{Q: "action:a.b acter:alice"}, `q: unknown key "acter" in term 2`},
		{&auditv1.ListEventsRequest{Q: "alice"}, `q: want key:value, got "alice" in term 1`},
		{&auditv1.ListEventsRequest{Q: `actor:"alice`}, `q: unterminated quote in term 1`},
		{&auditv1.ListEventsRequest{Q: "actor:"}, `q: empty value for "actor" in term 1`},
		{&auditv1.ListEventsRequest{Q: "success:maybe"}, `q: success: "maybe" is not true or false in term 1`},
		{&auditv1.ListEventsRequest{Q: "version:x"}, `q: version: "x" is not a version (an integer from 1) in term 1`},
		{&auditv1.ListEventsRequest{Q: "occurred:>=yesterday"}, `q: occurred: "yesterday" is not an RFC 3339 time`},
		{&auditv1.ListEventsRequest{Q: "occurred:2026-02-01..2026-01-01"}, `q: occurred: range "2026-02-01..2026-01-01" is empty`},
		{&auditv1.ListEventsRequest{Q: strings.Repeat("a:b ", filter.MaxTerms+1)}, `q: more than 32 terms`},
		{&auditv1.ListEventsRequest{Q: strings.Repeat("x", filter.MaxPhraseBytes+1)}, `q: phrase of 4097 bytes`},
		{&auditv1.ListEventsRequest{Action: []string{"work*flow"}}, "action: \"work*flow\": `*` is allowed only at the end"},
		{&auditv1.ListEventsRequest{ActorId: []string{""}}, `actor_id: empty value`},
		{&auditv1.ListEventsRequest{Since: "2026-13-01T00:00:00Z"}, `since: "2026-13-01T00:00:00Z" is not an RFC 3339 time`},
		{&auditv1.ListEventsRequest{Since: "2026-01-02T00:00:00Z", Until: "2026-01-01T00:00:00Z"}, `until: 2026-01-01T00:00:00.000000000Z is not after since`},
		{&auditv1.ListEventsRequest{Metadata: []string{"novalue"}}, `metadata: "novalue": want key=value`},
		{&auditv1.ListEventsRequest{Version: []uint32{0}}, `version: 0 is not a version`},
	}
	for _, c := range cases {
		_, err := filter.Parse(c.req)
		var fe *filter.Error
		if !errors.As(err, &fe) {
			t.Errorf("Parse(%v) = %v, want a *filter.Error", c.req, err)
			continue
		}
		if !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("Parse(%v):\n got %q\nwant %q…", c.req, err, c.want)
		}
	}
}

func TestParsePhraseForms(t *testing.T) {
	req := &auditv1.StreamEventsRequest{
		Q: `action:workflow.job.* -actor:"Zoë Smith",bob "target_name:my project" meta.env:prod occurred:2026-01-01..2026-02-01 success:false`,
	}
	f, err := filter.Parse(req)
	if err != nil {
		t.Fatal(err)
	}
	where, args := f.SQL()
	for _, want := range []string{"startsWith(action, ?)", "NOT ((actor_id IN (?, ?) OR actor_name IN (?, ?)))", "target_name IN (?)",
		"metadata_values[indexOf(metadata_keys, ?)] = ?", "(occurred_ns >= ? AND occurred_ns < ?)", "success = ?"} {
		if !strings.Contains(where, want) {
			t.Errorf("SQL lacks %q:\n%s", want, where)
		}
	}
	wantArgs := []any{"workflow.job.", "Zoë Smith", "bob", "Zoë Smith", "bob", "my project", "env", "env", "prod"}
	for i, a := range wantArgs {
		if args[i] != a {
			t.Errorf("arg %d = %#v, want %#v", i, args[i], a)
		}
	}
	if strings.Contains(where, "Zoë") || strings.Contains(where, "project") {
		t.Errorf("user text in SQL: %s", where)
	}
	// success set to false is a condition; unset is none.
	f, _ = filter.Parse(&auditv1.ListEventsRequest{Success: proto.Bool(false)})
	if where, args := f.SQL(); where != "success = ?" || args[0] != uint8(0) {
		t.Errorf("success=false: %s %v", where, args)
	}
	f, _ = filter.Parse(&auditv1.ListEventsRequest{})
	if where, _ := f.SQL(); where != "1" {
		t.Errorf("no filter: %s", where)
	}
	f.AllowedScopes = []string{}
	if where, _ := f.SQL(); where != "0" {
		t.Errorf("no scopes: %s", where)
	}
}

// FuzzParsePhrase: any phrase either parses into SQL whose text holds no
// user input and whose placeholders match the arguments, or is rejected
// with a *filter.Error naming q.
func FuzzParsePhrase(f *testing.F) {
	for _, seed := range []string{
		"action:workflow.job.* actor:alice success:false",
		`-actor_type:system "target_name:my project" occurred:>=2026-01-01`,
		"occurred:2026-01-01..2026-02-01 meta.env:prod,staging scope:org-1",
		`actor:"a \"quoted\" \\ name",bob version:1,2 request:r1 metadata:k=v`,
		"occurred:<2026-01-01T10:00:00.123456789+02:00 since:2026-01-01 until:2027-01-01",
		"' OR 1=1 --", `actor:'); DROP TABLE events; --`, "a:b:c", "-", `"`, `x:"`, "meta.:x", ":x", "x:,", "x:a,,b",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, q string) {
		flt, err := filter.Parse(&auditv1.ListEventsRequest{Q: q})
		if err != nil {
			var fe *filter.Error
			if !errors.As(err, &fe) || fe.Param != "q" {
				t.Fatalf("Parse(%q) = %v, want a *filter.Error for q", q, err)
			}
			return
		}
		where, args := flt.SQL()
		if n := strings.Count(where, "?"); n != len(args) {
			t.Fatalf("Parse(%q): %d placeholders, %d args: %s", q, n, len(args), where)
		}
		for _, c := range where {
			if c == '\'' || c == '"' || c == '\\' || c == ';' {
				t.Fatalf("Parse(%q): SQL holds %q: %s", q, c, where)
			}
		}
	})
}

func TestParseRandomGarbageNeverPanics(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte(`ab:,"\- .*=<>0123456789Tmeta`)
	for i := 0; i < 20000; i++ {
		b := make([]byte, r.IntN(40))
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		_, _ = filter.Parse(&auditv1.ListEventsRequest{Q: string(b)})
	}
}
