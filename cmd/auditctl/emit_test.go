package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// emitInput is a file of six non-blank lines: three valid events (one
// without id and occurred_at), malformed JSON, a schema violation, and a
// blank line that is skipped.
func emitInput(t *testing.T) (text string, ids []string) {
	t.Helper()
	at := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	a, b := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
	var noID map[string]json.RawMessage
	if err := json.Unmarshal(schemas.SampleEvent("user.logged_in", uuid.NewString(), at), &noID); err != nil {
		t.Fatal(err)
	}
	delete(noID, "id")
	delete(noID, "occurred_at")
	noIDLine, _ := json.Marshal(noID)
	bad := strings.Replace(string(schemas.SampleEvent("workflow.job.start", uuid.NewString(), at)), `"job_number":18234`, `"job_number":"18234"`, 1)
	lines := []string{
		string(schemas.SampleEvent("workflow.job.start", a, at)), // line 1
		`{"id": "not json"`, // line 2
		"",                  // line 3, skipped
		bad,                 // line 4
		string(noIDLine),    // line 5
		string(schemas.SampleEvent("context.secrets.accessed", b, at)), // line 6
	}
	return strings.Join(lines, "\n") + "\n", []string{a, b}
}

func TestEmitReportsBadLinesAndSendsTheRest(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	input, ids := emitInput(t)
	path := filepath.Join(t.TempDir(), "events.ndjson")
	if err := os.WriteFile(path, []byte(input), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := runEmit(context.Background(), []string{
		"--kafka-brokers", strings.Join(k.Brokers, ","), "--kafka-topic", k.Topic, "-f", path,
	}, strings.NewReader(""), &stdout, &stderr)
	if err == nil || err.Error() != "2 line(s) not emitted" {
		t.Fatalf("got error %v, want the count of rejected lines (non-zero exit)", err)
	}
	if got := stdout.String(); got != "emitted 3, rejected 2\n" {
		t.Errorf("summary %q", got)
	}
	wantErr := []string{
		"line 2: malformed JSON:",
		"line 4: payload.job_number: expected integer, got string",
	}
	gotErr := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(gotErr) != len(wantErr) {
		t.Fatalf("stderr:\n%s\nwant %d lines", stderr.String(), len(wantErr))
	}
	for i := range wantErr {
		if !strings.HasPrefix(gotErr[i], wantErr[i]) {
			t.Errorf("stderr line %d = %q, want prefix %q", i+1, gotErr[i], wantErr[i])
		}
	}

	msgs := k.ConsumeAll(t, k.Topic, 3, 30*time.Second)
	if len(msgs) != 3 {
		t.Fatalf("topic holds %d events, want 3", len(msgs))
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		ev, err := event.ParseJSON(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != ev.ID.String() {
			t.Errorf("key %s != id %s", m.Key, ev.ID)
		}
		seen[ev.ID.String()] = true
		if ev.Action == "user.logged_in" && ev.ID.Version() != 7 {
			t.Errorf("assigned id %s is not a UUIDv7", ev.ID)
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("event %s missing from the topic", id)
		}
	}
}

func TestEmitStopOnErrorFromStdin(t *testing.T) {
	t.Parallel()
	k := testharness.NewKafka(t)
	input, ids := emitInput(t)
	var stdout, stderr bytes.Buffer
	err := runEmit(context.Background(), []string{
		"--kafka-brokers", strings.Join(k.Brokers, ","), "--kafka-topic", k.Topic, "--stop-on-error",
	}, strings.NewReader(input), &stdout, &stderr)
	if err == nil {
		t.Fatal("want an error")
	}
	if got := stdout.String(); got != "emitted 1, rejected 1\n" {
		t.Errorf("summary %q, want it to stop at line 2", got)
	}
	if !strings.HasPrefix(stderr.String(), "line 2: ") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr %q, want only line 2", stderr.String())
	}
	msgs := k.ConsumeAll(t, k.Topic, 1, 30*time.Second)
	if len(msgs) != 1 || string(msgs[0].Key) != ids[0] {
		t.Fatalf("topic holds %d events, want only line 1's", len(msgs))
	}
}

func TestEmitDryRunSendsNothing(t *testing.T) {
	t.Parallel()
	input, _ := emitInput(t)
	var stdout, stderr bytes.Buffer
	// No broker listens on port 1: a dry run must not need one.
	err := runEmit(context.Background(), []string{"--dry-run", "--kafka-brokers", "127.0.0.1:1"}, strings.NewReader(input), &stdout, &stderr)
	if err == nil {
		t.Fatal("want an error for the two bad lines")
	}
	if got := stdout.String(); got != "valid 3, rejected 2\n" {
		t.Errorf("summary %q", got)
	}
}
