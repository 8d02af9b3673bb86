package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/auditlog/auditlog/emitter"
	"github.com/auditlog/auditlog/internal/auth"
	"github.com/auditlog/auditlog/internal/testharness"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/schemas"
)

// auditlogBin is the server binary under test, built once by TestMain.
var auditlogBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "auditlog-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	auditlogBin = filepath.Join(dir, "auditlog")
	build := exec.Command("go", "build", "-o", auditlogBin, "github.com/auditlog/auditlog/cmd/auditlog")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building cmd/auditlog:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testharness.Main(m)
}

// proc is a subprocess of the product, its output kept in a log file that a
// failing test prints.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(auditlogBin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	logFile.Close()
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (last 40 lines) ---\n%s", name, lastLines(string(data), 40))
		}
	})
	return p
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited with %v after SIGTERM, want a clean exit", p.name, p.err)
		}
	case <-time.After(60 * time.Second):
		t.Errorf("%s did not exit within 60s of SIGTERM", p.name)
		p.kill()
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// stack is one deployment: a ClickHouse database, a Kafka topic, the API.
type stack struct {
	ch      *testharness.ClickHouse
	brokers []string
	topic   string
	group   string
	token   string

	httpAddr, grpcAddr string
	serve              *proc
}

func newStack(t *testing.T, ch *testharness.ClickHouse, k *testharness.Kafka) *stack {
	t.Helper()
	s := &stack{ch: ch, brokers: k.Brokers, topic: k.Topic, group: "e2e-" + uuid.NewString()[:8]}
	run := exec.Command(auditlogBin, "migrate", "--clickhouse-addr", ch.Addr, "--clickhouse-database", ch.Database)
	if out, err := run.CombinedOutput(); err != nil {
		t.Fatalf("auditlog migrate: %v\n%s", err, out)
	}
	raw := make([]byte, 16)
	_, _ = rand.Read(raw)
	s.token = hex.EncodeToString(raw)
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	data, _ := json.Marshal(map[string]any{"tokens": []map[string]any{{"name": "e2e-admin", "sha256": auth.HashToken(s.token), "scopes": []string{"*"}}}})
	if err := os.WriteFile(tokens, data, 0o600); err != nil {
		t.Fatal(err)
	}
	s.httpAddr, s.grpcAddr = freeAddr(t), freeAddr(t)
	s.serve = startProc(t, "serve", "serve",
		"--clickhouse-addr", ch.Addr, "--clickhouse-database", ch.Database,
		"--http-addr", s.httpAddr, "--grpc-addr", s.grpcAddr,
		"--tokens-file", tokens, "--stream-lag", "2s", "--stream-poll-interval", "200ms",
		"--kafka-brokers", strings.Join(s.brokers, ","), "--kafka-topic", s.topic)
	waitHTTP(t, "http://"+s.httpAddr+"/readyz", 60*time.Second)
	return s
}

// startIngester starts one `auditlog ingest` member of the stack's group.
func (s *stack) startIngester(t *testing.T, name string) *proc {
	return startProc(t, name, "ingest",
		"--kafka-brokers", strings.Join(s.brokers, ","), "--kafka-topic", s.topic, "--kafka-group", s.group,
		"--clickhouse-addr", s.ch.Addr, "--clickhouse-database", s.ch.Database,
		"--batch-rows", "500", "--batch-interval", "200ms", "--metrics-addr", "",
		"--kafka-session-timeout", "6s", "--kafka-rebalance-timeout", "6s", "--store-timeout", "3s",
		"--retry-min", "100ms", "--retry-max", "1s")
}

func waitHTTP(t *testing.T, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res, err := http.Get(u)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v (last: %v)", u, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sender emits generated events, each delivered three times, retrying what
// Kafka refuses (a product component must not lose an event while the
// broker restarts).
type sender struct {
	em  *emitter.Emitter
	mu  sync.Mutex
	ids map[string]bool
}

func newSender(t *testing.T, brokers []string, topic string) *sender {
	t.Helper()
	cfg := emitter.DefaultConfig()
	cfg.Brokers, cfg.Topic = brokers, topic
	cfg.Schemas = schemas.Embedded()
	cfg.MaxAttempts = 3
	cfg.WriteTimeout = 5 * time.Second
	em, err := emitter.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Close() })
	return &sender{em: em, ids: map[string]bool{}}
}

var sampleActions = []string{"workflow.job.start", "workflow.job.finish", "context.secrets.accessed", "project.env_var.create", "user.logged_in"}

// send emits n new events three times each, in batches, so the copies land
// in different ingester batches. It returns an error rather than failing the
// test, so that it may run on a goroutine of its own.
func (s *sender) send(ctx context.Context, n int) error {
	events := make([][]byte, 0, n)
	for i := range n {
		id := uuid.Must(uuid.NewV7()).String()
		// Old occurred_at on some events: late arrivals for the stream.
		at := time.Now().UTC().Add(-time.Duration(i%7) * 24 * time.Hour)
		data, err := withScope(schemas.SampleEvent(sampleActions[i%len(sampleActions)], id, at), fmt.Sprintf("org-%d", i%3))
		if err != nil {
			return err
		}
		events = append(events, data)
		s.mu.Lock()
		s.ids[id] = true
		s.mu.Unlock()
	}
	for copy := 0; copy < 3; copy++ {
		for _, data := range events {
			for attempt := 0; ; attempt++ {
				_, err := s.em.EmitJSON(ctx, data)
				if err == nil {
					break
				}
				if ctx.Err() != nil || attempt > 120 {
					return fmt.Errorf("emit: %w", err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
	}
	return nil
}

func withScope(data []byte, scope string) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	m["scope"], _ = json.Marshal(map[string]string{"id": scope, "type": "organization", "name": scope})
	return json.Marshal(m)
}

func (s *sender) sent() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.ids))
	for k := range s.ids {
		out[k] = true
	}
	return out
}

// notSelfAudit leaves out the events the API emits about its own use
// (they travel through the same topic) from what the checks compare.
const notSelfAudit = "-action:audit_log.*"

// storedDistinct counts the distinct product events in ClickHouse.
func (s *stack) storedDistinct(t *testing.T) uint64 {
	return s.ch.QueryUint64(t, "SELECT uniqExact(id) FROM events WHERE NOT startsWith(action, 'audit_log.')")
}

// waitStored waits until every sent id is stored.
func (s *stack) waitStored(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := s.storedDistinct(t)
		if got >= uint64(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d events stored after %v", got, want, timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *stack) get(t *testing.T, path string, query url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.httpAddr+path+"?"+query.Encode(), nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// listIDs pages through GET /v1/events and returns every id in order.
func (s *stack) listIDs(t *testing.T, order string) []string {
	t.Helper()
	var ids []string
	token := ""
	for page := 0; ; page++ {
		q := url.Values{"page_size": {"1000"}, "order": {order}, "q": {notSelfAudit}}
		if token != "" {
			q.Set("page_token", token)
		}
		res := s.get(t, "/v1/events", q)
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET /v1/events page %d: %d %s", page, res.StatusCode, body)
		}
		var out struct {
			Events []struct {
				ID string `json:"id"`
			} `json:"events"`
			NextPageToken string `json:"next_page_token"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("page %d: %v", page, err)
		}
		for _, e := range out.Events {
			ids = append(ids, e.ID)
		}
		if out.NextPageToken == "" {
			return ids
		}
		token = out.NextPageToken
	}
}

// exportIDs downloads the CSV export and returns the id column.
func (s *stack) exportIDs(t *testing.T) []string {
	t.Helper()
	res := s.get(t, "/v1/events:export", url.Values{"format": {"csv"}, "columns": {"id,action"}, "q": {notSelfAudit}})
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("export: %d %s", res.StatusCode, body)
	}
	r := csv.NewReader(bufio.NewReader(res.Body))
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	if len(rows) == 0 || rows[0][0] != "id" {
		t.Fatalf("export has no header row: %v", rows[:min(1, len(rows))])
	}
	var ids []string
	for _, row := range rows[1:] {
		ids = append(ids, row[0])
	}
	return ids
}

// streamIDs reads StreamEvents from the start until it has want distinct
// ids (or timeout), then also returns the last cursor.
func (s *stack) streamIDs(t *testing.T, cursor string, want int, timeout time.Duration) ([]string, string) {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.token)
	req := &auditv1.StreamEventsRequest{Follow: true, Cursor: cursor, Q: notSelfAudit}
	if cursor == "" {
		req.Since = "1970-01-01T00:00:00Z"
	}
	stream, err := auditv1.NewAuditServiceClient(conn).StreamEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	distinct := map[string]bool{}
	last := cursor
	for len(distinct) < want {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream after %d events (%d distinct, want %d): %v", len(ids), len(distinct), want, err)
		}
		ids = append(ids, msg.GetEvent().GetId())
		distinct[msg.GetEvent().GetId()] = true
		last = msg.GetCursor()
	}
	return ids, last
}

// summary compares what each API path returns with what was sent, prints
// the scenario's summary line and fails the test on any loss or duplicate.
func (s *stack) check(t *testing.T, scenario string, sent map[string]bool) {
	t.Helper()
	stored := s.storedDistinct(t)
	paths := map[string][]string{
		"list desc": s.listIDs(t, "desc"),
		"list asc":  s.listIDs(t, "asc"),
		"export":    s.exportIDs(t),
	}
	streamed, _ := s.streamIDs(t, "", len(sent), 90*time.Second)
	paths["stream"] = streamed

	visible := map[string]bool{}
	duplicates, lost := 0, 0
	for path, ids := range paths {
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				duplicates++
				t.Errorf("%s: %s returned event %s twice", scenario, path, id)
			}
			seen[id] = true
			if !sent[id] {
				t.Errorf("%s: %s returned event %s that was never sent", scenario, path, id)
			}
			visible[id] = true
		}
		for id := range sent {
			if !seen[id] {
				lost++
				if lost <= 5 {
					t.Errorf("%s: %s misses event %s", scenario, path, id)
				}
			}
		}
	}
	line := fmt.Sprintf("e2e summary: scenario=%q sent=%d deliveries=%d stored=%d visible=%d duplicates=%d lost=%d",
		scenario, len(sent), 3*len(sent), stored, len(visible), duplicates, lost)
	fmt.Println(line)
	t.Log(line)
	if stored != uint64(len(sent)) {
		t.Errorf("%s: %d distinct events stored, want %d", scenario, stored, len(sent))
	}
}

// waitSelfAudit waits until the API's own audit events of the checks above
// (a list, an export and a stream by the test's token) are visible.
func (s *stack) waitSelfAudit(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res := s.get(t, "/v1/events", url.Values{"action": {"audit_log.*"}, "actor_id": {"e2e-admin"}, "page_size": {"1000"}})
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		var out struct {
			Events []struct {
				Action string `json:"action"`
			} `json:"events"`
		}
		_ = json.Unmarshal(body, &out)
		seen := map[string]bool{}
		for _, e := range out.Events {
			seen[e.Action] = true
		}
		if seen["audit_log.events.list"] && seen["audit_log.events.export"] && seen["audit_log.stream.open"] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("self-audit events after %v: %v, want a list, an export and a stream by e2e-admin", timeout, seen)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
