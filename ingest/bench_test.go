package ingest_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/ingest"
	"github.com/auditlog/auditlog/internal/event"
	"github.com/auditlog/auditlog/internal/store"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// BenchmarkIngest measures sustained Kafka -> ClickHouse throughput of the
// `auditlog ingest` binary on a backlog of CircleCI-shaped events (about 700
// bytes each), beside clickhouse-client inserting the same rows as
// JSONEachRow into a table of the same schema (with the same two
// materialized views, so the server does the same work), and the ingester
// process's peak RSS (VmHWM). AUDITLOG_BENCH_EVENTS sets the number of
// events (default 1,000,000); AUDITLOG_BENCH_CPUPROFILE=FILE saves a
// ten-second CPU profile of the ingester at work, and FILE.heap its heap
// after that.
func BenchmarkIngest(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("AUDITLOG_BENCH_EVENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("AUDITLOG_BENCH_EVENTS=%q: want a positive integer", v)
		}
	}
	for b.Loop() {
		benchmarkIngest(b, n)
	}
}

func benchmarkIngest(b *testing.B, n int) {
	ch := testharness.NewClickHouse(b)
	k := testharness.NewKafka(b, testharness.WithPartitions(4))
	ctx := context.Background()
	if _, err := store.Migrate(ctx, ch.Conn, store.MigrateOptions{Database: ch.Database}); err != nil {
		b.Fatalf("migrate: %v", err)
	}
	// The reference tables copy the events tables and their materialized
	// views exactly as the migrations made them, renamed.
	for _, table := range []string{"events", "events_by_id", "events_by_ingest"} {
		ch.Exec(b, fmt.Sprintf("CREATE TABLE %s AS %s", benchRefName.ReplaceAllStringFunc(table, benchRef), table))
	}
	for _, view := range []string{"events_by_id_mv", "events_by_ingest_mv"} {
		var create string
		if err := ch.Conn.QueryRow(ctx, "SHOW CREATE TABLE "+view).Scan(&create); err != nil {
			b.Fatalf("show create %s: %v", view, err)
		}
		ch.Exec(b, benchRefName.ReplaceAllStringFunc(create, benchRef))
	}
	bin := buildAuditlog(b)

	// The events, produced to Kafka and written as JSONEachRow rows of the
	// events table for clickhouse-client.
	refPath := filepath.Join(b.TempDir(), "rows.ndjson")
	refFile, err := os.Create(refPath)
	if err != nil {
		b.Fatal(err)
	}
	refOut := bufio.NewWriterSize(refFile, 1<<20)
	columns := strings.Split(store.EventColumns, ", ")
	var actions []string
	for _, s := range schemas.Samples() {
		if len(schemas.SampleEvent(s.Action, uuid.NewString(), time.Now())) < 800 {
			actions = append(actions, s.Action)
		}
	}
	base := time.Now().Add(-24 * time.Hour)
	var totalBytes int
	chunk := make([]kafka.Message, 0, 10000)
	produceStart := time.Now()
	for i := range n {
		id := uuid.Must(uuid.NewV7()).String()
		raw := schemas.SampleEvent(actions[i%len(actions)], id, base.Add(time.Duration(i)*time.Microsecond))
		totalBytes += len(raw)
		chunk = append(chunk, kafka.Message{Key: []byte(id), Value: raw})
		if len(chunk) == cap(chunk) || i == n-1 {
			k.Produce(b, chunk...)
			chunk = chunk[:0]
		}
		ev, err := event.ParseJSON(raw)
		if err != nil {
			b.Fatalf("sample event: %v", err)
		}
		row := map[string]any{}
		for j, v := range store.InsertArgs(store.StoredEvent{Event: ev, Validated: true}) {
			if t, ok := v.(time.Time); ok {
				v = t.UTC().Format("2006-01-02 15:04:05")
			}
			row[columns[j]] = v
		}
		line, err := json.Marshal(row)
		if err != nil {
			b.Fatal(err)
		}
		refOut.Write(line)
		refOut.WriteByte('\n')
	}
	if err := refOut.Flush(); err != nil {
		b.Fatal(err)
	}
	refFile.Close()
	b.Logf("produced %d events (%d bytes on average) in %v", n, totalBytes/n, time.Since(produceStart).Round(time.Millisecond))

	// clickhouse-client: the reference.
	in, err := os.Open(refPath)
	if err != nil {
		b.Fatal(err)
	}
	client := exec.Command(testharness.ClickHouseClientPath(b), append(ch.ClientArgs(),
		"--query", fmt.Sprintf("INSERT INTO %s.events_bench_ref (%s) FORMAT JSONEachRow", ch.Database, store.EventColumns))...)
	client.Stdin = in
	refStart, refBusy := time.Now(), machineBusy(b)
	if out, err := client.CombinedOutput(); err != nil {
		b.Fatalf("clickhouse-client: %v\n%s", err, out)
	}
	refDur := time.Since(refStart)
	refCores := (machineBusy(b) - refBusy).Seconds() / refDur.Seconds()
	in.Close()
	if got := ch.QueryUint64(b, "SELECT count() FROM events_bench_ref"); got != uint64(n) {
		b.Fatalf("clickhouse-client stored %d rows, want %d", got, n)
	}

	// The ingester, timed from joining the group to the last commit.
	e := &env{ch: ch, k: k, cfg: newEnvConfig(ch, k)}
	args := ingestArgs(e)
	profile := os.Getenv("AUDITLOG_BENCH_CPUPROFILE")
	var pprofAddr string
	if profile != "" {
		pprofAddr = freeAddr(b)
		args = append(args, "--metrics-addr", pprofAddr, "--pprof")
	}
	p := startProc(b, bin, args)
	defer func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}()
	var ingestStart time.Time
	var ingestBusy time.Duration
	deadline := time.Now().Add(30 * time.Minute)
	for ingestStart.IsZero() {
		if strings.Contains(p.stderr.String(), "consumer group generation started") {
			ingestStart, ingestBusy = time.Now(), machineBusy(b)
		}
		select {
		case <-p.exited:
			b.Fatalf("ingester exited: %v\n%s", p.err, tail(p.stderr.String(), 20))
		case <-time.After(10 * time.Millisecond):
		}
	}
	profiled := make(chan struct{})
	if profile != "" {
		go func() {
			defer close(profiled)
			fetchProfile(b, "http://"+pprofAddr+"/debug/pprof/profile?seconds=10", profile)
			fetchProfile(b, "http://"+pprofAddr+"/debug/pprof/heap", profile+".heap")
		}()
	} else {
		close(profiled)
	}
	for groupLag(b, k, e.cfg.Group) != 0 {
		if time.Now().After(deadline) {
			b.Fatalf("ingester did not catch up within 30 minutes\n%s", tail(p.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ingestDur := time.Since(ingestStart)
	ingestCores := (machineBusy(b) - ingestBusy).Seconds() / ingestDur.Seconds()
	<-profiled
	hwm := vmHWM(b, p.cmd.Process.Pid)
	cpu := cpuTime(b, p.cmd.Process.Pid)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if p.err != nil {
		b.Errorf("ingester exit after SIGTERM: %v\n%s", p.err, tail(p.stderr.String(), 20))
	}
	if got := ch.QueryUint64(b, "SELECT toUInt64(uniqExact(id)) FROM events"); got != uint64(n) {
		b.Fatalf("ingester stored %d distinct events, want %d", got, n)
	}

	ingestRate := float64(n) / ingestDur.Seconds()
	refRate := float64(n) / refDur.Seconds()
	b.ReportMetric(ingestRate, "events/s")
	b.ReportMetric(refRate, "ref_rows/s")
	b.ReportMetric(ingestRate/refRate, "ratio")
	b.ReportMetric(float64(hwm)/(1<<20), "peak_rss_MB")
	b.ReportMetric(cpu.Seconds()*1e6/float64(n), "ingester_cpu_us/event")
	fmt.Printf("ingest: %d events (avg %d B) Kafka -> ClickHouse in %v = %.0f events/s; clickhouse-client JSONEachRow %v = %.0f rows/s; "+
		"ratio %.2f (target >= 0.8); ingester peak RSS (VmHWM) %.0f MB (target < 256); ingester CPU %v (%.1f µs/event, %.2f cores); "+
		"machine busy %.2f of %d cores during the ingest, %.2f during the client\n",
		n, totalBytes/n, ingestDur.Round(time.Millisecond), ingestRate, refDur.Round(time.Millisecond), refRate, ingestRate/refRate,
		float64(hwm)/(1<<20), cpu.Round(time.Millisecond), cpu.Seconds()*1e6/float64(n), cpu.Seconds()/ingestDur.Seconds(),
		ingestCores, runtime.NumCPU(), refCores)
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// fetchProfile saves the CPU profile served at url (AUDITLOG_BENCH_CPUPROFILE:
// ten seconds of the ingester at work, for go tool pprof).
func fetchProfile(tb testing.TB, url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		tb.Errorf("CPU profile: %v", err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", resp.Status, data)
	}
	if err == nil {
		err = os.WriteFile(path, data, 0o644)
	}
	if err != nil {
		tb.Errorf("CPU profile: %v", err)
	}
}

// newEnvConfig is newEnv's configuration without migrating, with the
// production batch sizes.
func newEnvConfig(ch *testharness.ClickHouse, k *testharness.Kafka) ingest.Config {
	cfg := ingest.DefaultConfig()
	cfg.Kafka.Brokers = k.Brokers
	cfg.Kafka.Topic = k.Topic
	cfg.Group = "bench-" + k.Topic
	cfg.ClickHouse.Addr = ch.Addr
	cfg.ClickHouse.Database = ch.Database
	cfg.ClickHouse.User = ch.Options().Auth.Username
	cfg.ClickHouse.Password = ch.Options().Auth.Password
	return cfg
}

// vmHWM returns the peak resident set size of a process, in bytes.
func vmHWM(tb testing.TB, pid int) int64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read /proc/%d/status: %v", pid, err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("VmHWM %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// machineBusy returns the CPU time all cores of the machine spent busy
// (not idle or waiting for I/O) since boot, from /proc/stat.
func machineBusy(tb testing.TB) time.Duration {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatalf("read /proc/stat: %v", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var busy int64
	// cpu user nice system idle iowait irq softirq steal ...
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

// cpuTime returns the user plus system CPU time a process has used so far.
func cpuTime(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("read /proc/%d/stat: %v", pid, err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of them, in clock ticks
	// (100 per second on Linux).
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// benchRefName matches the names of the events tables and views in DDL.
var benchRefName = regexp.MustCompile(`\b(events_by_id_mv|events_by_ingest_mv|events_by_id|events_by_ingest|events)\b`)

// benchRef names the reference copy of an events table or view:
// events_by_id -> events_bench_ref_by_id.
func benchRef(name string) string {
	return "events_bench_ref" + strings.TrimPrefix(name, "events")
}
