package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/auditlog/auditlog/export"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
)

// exportServer serves the export of a fresh database holding n generated
// events, as a caller who sees every scope.
func exportServer(t *testing.T, cfg export.Config, n int) *httptest.Server {
	t.Helper()
	ch := testharness.NewClickHouse(t)
	storetest.Migrate(t, ch.Conn, ch.Database)
	ch.Exec(t, `INSERT INTO events (`+store.EventColumns+`)
SELECT generateUUIDv4(), 1, 'user.logged_in', 'u1', 'user', '=cmd', '{"id":"u1","type":"user","name":"=cmd"}',
    't1', 'user', '', '{"id":"t1","type":"user"}', 'org-1', 'organization', '', '{"id":"org-1","type":"organization"}',
    '{}', [], [], toDateTime(1767225600 + number), toInt64(1767225600000000000 + number * 1000000000), 1, '', '', 1, number
FROM numbers(`+strconv.Itoa(n)+`)`)
	conn, err := clickhouse.Open(ch.Options())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	svc, err := export.New(cfg, conn, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, `{"code":16,"message":"unauthenticated"}`, http.StatusUnauthorized)
			return
		}
		svc.ServeHTTP(w, r.WithContext(auth.NewContext(r.Context(), &auth.Principal{Name: "t", All: true})))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestExportWritesTheFile(t *testing.T) {
	t.Parallel()
	srv := exportServer(t, export.DefaultConfig(), 500)
	file := filepath.Join(t.TempDir(), "out.csv")
	var stdout, stderr bytes.Buffer
	err := runExport(context.Background(), []string{"--url", srv.URL, "--token", "s3cret", "-o", file,
		"--columns", "id,actor_name,occurred_at", "--order", "asc", "--since", "2026-01-01T00:01:40Z"}, &stdout, &stderr, false)
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, stderr.String())
	}
	if stdout.Len() != 0 || stderr.Len() != 0 {
		t.Errorf("quiet when not on a terminal: stdout %q stderr %q", stdout.String(), stderr.String())
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(records[0], ",") != "id,actor_name,occurred_at" || len(records) != 401 {
		t.Fatalf("header %q and %d records, want 400 events since 00:01:40", records[0], len(records)-1)
	}
	if records[1][1] != "'=cmd" || records[1][2] != "2026-01-01T00:01:40.000000000Z" {
		t.Errorf("first record %q", records[1])
	}
	if _, err := os.Stat(file + ".partial"); !os.IsNotExist(err) {
		t.Errorf("%s.partial left behind: %v", file, err)
	}

	// Progress on a terminal; the data to stdout.
	stdout.Reset()
	if err := runExport(context.Background(), []string{"--url", srv.URL, "--token", "s3cret", "--format", "ndjson"}, &stdout, &stderr, true); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(stdout.String(), "\n"); n != 500 {
		t.Errorf("%d NDJSON lines on stdout, want 500", n)
	}
	if !strings.Contains(stderr.String(), "500 rows") || !strings.Contains(stderr.String(), "exported 500 rows to stdout") {
		t.Errorf("progress %q", stderr.String())
	}

	// A bad request is the server's 400, naming the parameter.
	err = runExport(context.Background(), []string{"--url", srv.URL, "--token", "s3cret", "--columns", "id,nope"}, &stdout, &stderr, false)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown column: %v", err)
	}
	err = runExport(context.Background(), []string{"--url", srv.URL, "--token", "wrong"}, &stdout, &stderr, false)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("bad token: %v", err)
	}
}

func TestExportFailureLeavesOnlyAPartialFile(t *testing.T) {
	t.Parallel()
	cfg := export.DefaultConfig()
	cfg.MaxRows = 1000
	cfg.BlockRows = 100
	srv := exportServer(t, cfg, 3000)
	file := filepath.Join(t.TempDir(), "out.csv")
	var stdout, stderr bytes.Buffer
	err := runExport(context.Background(), []string{"--url", srv.URL, "--token", "s3cret", "-o", file}, &stdout, &stderr, false)
	if err == nil || !strings.Contains(err.Error(), "#ERROR: export failed after") || !strings.Contains(err.Error(), ".partial") {
		t.Fatalf("error %v, want the server's #ERROR line and the partial file's name", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("%s exists after a failed export: %v", file, err)
	}
	if _, err := os.Stat(file + ".partial"); err != nil {
		t.Errorf("no partial file: %v", err)
	}
}
