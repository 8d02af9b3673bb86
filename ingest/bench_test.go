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
	"slices"
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
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

// BenchmarkIngest measures sustained Kafka -> ClickHouse throughput of the
// `auditlog ingest` binary on a backlog of CircleCI-shaped events (about 700
// bytes each), beside clickhouse-client inserting the same rows as
// JSONEachRow into a table of the same schema (with the same two
// materialized views, so the server does the same work), and the ingester
// process's peak RSS (VmHWM). The two alternate for AUDITLOG_BENCH_ROUNDS
// rounds (default 3) on the same backlog; it prints every round, the median
// of the paired rounds' ratios and the ratio of the best rounds.
// AUDITLOG_BENCH_EVENTS sets the number of events (default 1,000,000);
// AUDITLOG_BENCH_CPUPROFILE=FILE saves a ten-second CPU profile of the
// ingester at work in the first round, and FILE.heap its heap after that;
// AUDITLOG_BENCH_INGEST_FLAGS adds flags to the ingester's command line
// (e.g. "--memory-limit-mib 230"), to measure a setting.
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
	storetest.Migrate(b, ch.Conn, ch.Database)
	// The reference tables copy the events tables and their materialized
	// views exactly as the migrations made them, renamed.
	for _, table := range []string{"events", "event_ids", "events_by_ingest"} {
		ch.Exec(b, fmt.Sprintf("CREATE TABLE %s AS %s", benchRefName.ReplaceAllStringFunc(table, benchRef), table))
	}
	for _, view := range []string{"event_ids_mv", "events_by_ingest_mv"} {
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

	// Alternate the contenders for a few rounds on the same backlog (the
	// machine is shared, one pair of runs can be off by a third); each round
	// starts from empty tables and a new consumer group.
	rounds := testharness.BenchRounds(b, 3)
	profile := os.Getenv("AUDITLOG_BENCH_CPUPROFILE")
	var (
		rs          testharness.Rounds
		peakRSS     int64
		cpuPerEvent []float64
	)
	fmt.Printf("ingest bench, %d events (avg %d B) from Kafka:\n", n, totalBytes/n)
	for r := range rounds {
		for _, table := range []string{"events", "event_ids", "events_by_ingest"} {
			ch.Exec(b, "TRUNCATE TABLE "+table)
			ch.Exec(b, "TRUNCATE TABLE "+benchRef(table))
		}
		ref, refCores, refServerCPU := runClientInsert(b, ch, refPath, n)
		cfg := newEnvConfig(ch, k)
		cfg.Group = fmt.Sprintf("bench-%s-%d", k.Topic, r)
		run := runIngester(b, ch, k, bin, cfg, n, profile)
		profile = "" // the first round's profile is enough
		rs.Add(ref, run.dur)
		peakRSS = max(peakRSS, run.peakRSS)
		cpuPerEvent = append(cpuPerEvent, perRow(run.cpu, n))
		fmt.Printf("  round %d: clickhouse-client JSONEachRow %6.2fs %6.0f rows/s (machine busy %.2f of %d cores; ClickHouse %.1f µs CPU/row) | "+
			"auditlog ingest %6.2fs %6.0f events/s (machine busy %.2f cores; ClickHouse %.1f µs CPU/row; ingester %.1f µs CPU/event, %.2f cores, "+
			"in INSERTs %.0f%% of the time, peak RSS %.0f MB) | ratio %.2f\n",
			r+1, ref.Seconds(), float64(n)/ref.Seconds(), refCores, runtime.NumCPU(), perRow(refServerCPU, n),
			run.dur.Seconds(), float64(n)/run.dur.Seconds(), run.machineCores, perRow(run.serverCPU, n), cpuPerEvent[r], run.cpu.Seconds()/run.dur.Seconds(),
			100*run.insertTime.Seconds()/run.dur.Seconds(), float64(run.peakRSS)/(1<<20), ref.Seconds()/run.dur.Seconds())
	}
	bestRef, bestOurs, bestRatio := rs.Best()
	slices.Sort(cpuPerEvent)
	fmt.Printf("  median ratio of the paired rounds: %.2f (target >= 0.8)\n", rs.MedianRatio())
	fmt.Printf("  best of %d: clickhouse-client %.0f rows/s, auditlog ingest %.0f events/s: ratio %.2f (target >= 0.8)\n",
		rounds, float64(n)/bestRef.Seconds(), float64(n)/bestOurs.Seconds(), bestRatio)
	fmt.Printf("  ingester peak RSS (VmHWM) %.0f MB (target < 256); median CPU %.1f µs/event\n",
		float64(peakRSS)/(1<<20), cpuPerEvent[len(cpuPerEvent)/2])
	b.ReportMetric(float64(n)/bestOurs.Seconds(), "events/s")
	b.ReportMetric(float64(n)/bestRef.Seconds(), "ref_rows/s")
	b.ReportMetric(rs.MedianRatio(), "median_ratio")
	b.ReportMetric(bestRatio, "best_ratio")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak_rss_MB")
	b.ReportMetric(cpuPerEvent[len(cpuPerEvent)/2], "ingester_cpu_us/event")
}

// clickhouseCPU is the CPU time the ClickHouse server has used so far; 0
// for an external one (AUDITLOG_TEST_CLICKHOUSE), whose process the
// benchmark cannot see.
func clickhouseCPU(b *testing.B, ch *testharness.ClickHouse) time.Duration {
	if pid := ch.Server().Pid(); pid != 0 {
		return testharness.ProcessCPU(b, pid)
	}
	return 0
}

// perRow is d in microseconds per row.
func perRow(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }

// runClientInsert runs the reference, clickhouse-client inserting the
// JSONEachRow file into events_bench_ref, and returns its duration, how many
// cores the machine was busy on meanwhile and ClickHouse's CPU time.
func runClientInsert(b *testing.B, ch *testharness.ClickHouse, path string, n int) (dur time.Duration, cores float64, serverCPU time.Duration) {
	in, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	client := exec.Command(testharness.ClickHouseClientPath(b), append(ch.ClientArgs(),
		"--query", fmt.Sprintf("INSERT INTO %s.events_bench_ref (%s) FORMAT JSONEachRow", ch.Database, store.EventColumns))...)
	client.Stdin = in
	start, busy, server := time.Now(), testharness.MachineBusy(b), clickhouseCPU(b, ch)
	if out, err := client.CombinedOutput(); err != nil {
		b.Fatalf("clickhouse-client: %v\n%s", err, out)
	}
	dur = time.Since(start)
	cores = (testharness.MachineBusy(b) - busy).Seconds() / dur.Seconds()
	serverCPU = clickhouseCPU(b, ch) - server
	if got := ch.QueryUint64(b, "SELECT count() FROM events_bench_ref"); got != uint64(n) {
		b.Fatalf("clickhouse-client stored %d rows, want %d", got, n)
	}
	return dur, cores, serverCPU
}

// ingestRun is what one run of the ingester over the backlog measured.
type ingestRun struct {
	dur          time.Duration // from joining the group to the last commit
	cpu          time.Duration // the ingester's CPU time
	peakRSS      int64         // the ingester's VmHWM, bytes
	machineCores float64       // cores of the machine busy during the run
	serverCPU    time.Duration // ClickHouse's CPU time during the run
	insertTime   time.Duration // the storer's time in INSERTs (insert_duration_seconds)
}

// insertSeconds reads the sum of auditlog_ingest_insert_duration_seconds
// from the ingester's metrics.
func insertSeconds(b *testing.B, url string) time.Duration {
	resp, err := http.Get(url)
	if err != nil {
		b.Fatalf("ingester metrics: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatalf("ingester metrics: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "auditlog_ingest_insert_duration_seconds_sum "); ok {
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("ingester metrics: %q: %v", line, err)
			}
			return time.Duration(sec * float64(time.Second))
		}
	}
	b.Fatalf("ingester metrics: no auditlog_ingest_insert_duration_seconds_sum")
	return 0
}

// runIngester runs `auditlog ingest` in group cfg.Group until it has
// committed the whole backlog, then stops it with SIGTERM and checks that n
// distinct events are stored. With profile set it saves a CPU profile of
// ten seconds at work (and the heap after it) there.
func runIngester(b *testing.B, ch *testharness.ClickHouse, k *testharness.Kafka, bin string, cfg ingest.Config, n int, profile string) ingestRun {
	e := &env{ch: ch, k: k, cfg: cfg}
	args := ingestArgs(e)
	// The metrics tell how long the storer spent inserting.
	metricsAddr := freeAddr(b)
	args = append(args, "--metrics-addr", metricsAddr)
	if profile != "" {
		args = append(args, "--pprof")
	}
	args = append(args, strings.Fields(os.Getenv("AUDITLOG_BENCH_INGEST_FLAGS"))...)
	p := startProc(b, bin, args)
	defer func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	}()
	var start time.Time
	var busy, serverCPU time.Duration
	deadline := time.Now().Add(30 * time.Minute)
	for start.IsZero() {
		if strings.Contains(p.stderr.String(), "consumer group generation started") {
			start, busy = time.Now(), testharness.MachineBusy(b)
			serverCPU = clickhouseCPU(b, ch)
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
			fetchProfile(b, "http://"+metricsAddr+"/debug/pprof/profile?seconds=10", profile)
			fetchProfile(b, "http://"+metricsAddr+"/debug/pprof/heap", profile+".heap")
		}()
	} else {
		close(profiled)
	}
	for groupLag(b, k, cfg.Group) != 0 {
		if time.Now().After(deadline) {
			b.Fatalf("ingester did not catch up within 30 minutes\n%s", tail(p.stderr.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	run := ingestRun{dur: time.Since(start)}
	run.machineCores = (testharness.MachineBusy(b) - busy).Seconds() / run.dur.Seconds()
	<-profiled
	run.peakRSS = testharness.ProcStatusKB(b, p.cmd.Process.Pid, "VmHWM") << 10
	run.cpu = testharness.ProcessCPU(b, p.cmd.Process.Pid)
	run.serverCPU = clickhouseCPU(b, ch) - serverCPU
	run.insertTime = insertSeconds(b, "http://"+metricsAddr+"/metrics")
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	<-p.exited
	if p.err != nil {
		b.Errorf("ingester exit after SIGTERM: %v\n%s", p.err, tail(p.stderr.String(), 20))
	}
	if got := ch.QueryUint64(b, "SELECT toUInt64(uniqExact(id)) FROM events"); got != uint64(n) {
		b.Fatalf("ingester stored %d distinct events, want %d", got, n)
	}
	return run
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

// benchRefName matches the names of the events tables and views in DDL.
var benchRefName = regexp.MustCompile(`\b(event_ids_mv|events_by_ingest_mv|event_ids|events_by_ingest|events)\b`)

// benchRef names the reference copy of an events table or view:
// events_by_ingest -> events_bench_ref_by_ingest, event_ids ->
// events_bench_ref_ids.
func benchRef(name string) string {
	return "events_bench_ref" + strings.TrimPrefix(strings.TrimPrefix(name, "events"), "event")
}
