package export

import (
	"testing"

	"github.com/auditlog/auditlog/internal/event"
)

// BenchmarkEncodeCSV measures rendering alone (no ClickHouse): the part of
// an export's CPU time that this package owns.
func BenchmarkEncodeCSV(b *testing.B) {
	e, err := event.ParseJSON([]byte(`{"id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","version":1,"action":"workflow.job.start",` +
		`"actor":{"id":"user-1","type":"user","name":"User Number 1"},"target":{"id":"job-1","type":"job","name":"build-and-test-1","project":"gh/acme/service-1"},` +
		`"scope":{"id":"org-1","type":"organization","name":"Acme org-1"},"payload":{"job_id":"0193a1f4-6a3c-7d2e-9b41-2f9c8e1d7a55","workflow_id":"wf-1","pipeline_number":1,"branch":"main","vcs_revision":"0123456789abcdef0123456789abcdef01234567","executor":"docker","resource_class":"medium","status":"success"},` +
		`"metadata":{"env":"prod","region":"us-east-1"},"occurred_at":"2026-03-04T05:06:07.123456789Z","success":true,"request":{"id":"req-1","ip":"10.0.1.1","user_agent":"circleci-cli/0.1.2"}}`))
	if err != nil {
		b.Fatal(err)
	}
	cols, err := parseColumns(nil)
	if err != nil {
		b.Fatal(err)
	}
	enc := encoder{columns: cols, escape: true}
	buf := make([]byte, 0, 1<<20)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf = enc.appendCSV(buf[:0], e)
	}
	b.SetBytes(int64(len(buf)))
}

func TestAppendField(t *testing.T) {
	for _, tc := range []struct {
		cell   string
		escape bool
		want   string
	}{
		{"plain", true, "plain"},
		{"", true, ""},
		{"a,b", true, `"a,b"`},
		{`say "hi"`, true, `"say ""hi"""`},
		{"two\nlines", true, "\"two\nlines\""},
		{"cr\rhere", true, "\"cr\rhere\""},
		{"{not json\nbut a name}", true, "\"{not json\nbut a name}\""},
		{`{"a":"b,c"}`, true, `"{""a"":""b,c""}"`},
		{"=1+1", true, "'=1+1"},
		{"=1+1", false, "=1+1"},
		{"+1", true, "'+1"},
		{"-1", true, "'-1"},
		{"@SUM(A1)", true, "'@SUM(A1)"},
		{"\tx", true, "'\tx"},
		{"\rx", true, "\"'\rx\""},
		{`=HYPERLINK("u","x")`, true, `"'=HYPERLINK(""u"",""x"")"`},
		{"a=1", true, "a=1"},
		{"日本 🎉", true, "日本 🎉"},
	} {
		if got := string(appendField(nil, []byte(tc.cell), tc.escape)); got != tc.want {
			t.Errorf("appendField(%q, %t) = %q, want %q", tc.cell, tc.escape, got, tc.want)
		}
	}
}
