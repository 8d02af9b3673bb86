package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/ingest"
	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
	"github.com/auditlog/auditlog/schemas"
)

func TestMain(m *testing.M) { testharness.Main(m) }

// env is one test's Kafka topics, ClickHouse database (migrated) and an
// ingester configuration pointing at them.
type env struct {
	ch  *testharness.ClickHouse
	k   *testharness.Kafka
	cfg ingest.Config
}

func newEnv(t *testing.T, ch *testharness.ClickHouse, k *testharness.Kafka) *env {
	t.Helper()
	storetest.Migrate(t, ch.Conn, ch.Database)
	cfg := ingest.DefaultConfig()
	cfg.Kafka.Brokers = k.Brokers
	cfg.Kafka.Topic = k.Topic
	cfg.Group = "ingest-" + k.Topic
	opts := ch.Options()
	cfg.ClickHouse.Addr = ch.Addr
	cfg.ClickHouse.Database = ch.Database
	cfg.ClickHouse.User = opts.Auth.Username
	cfg.ClickHouse.Password = opts.Auth.Password
	// Small batches and short waits so that a test crosses many batches
	// and finishes quickly.
	cfg.BatchRows = 100
	cfg.BatchInterval = 100 * time.Millisecond
	cfg.SessionTimeout = 6 * time.Second
	cfg.RebalanceTimeout = 10 * time.Second
	cfg.StoreTimeout = 5 * time.Second
	cfg.RetryMin = 50 * time.Millisecond
	cfg.RetryMax = time.Second
	return &env{ch: ch, k: k, cfg: cfg}
}

// running is an in-process ingester.
type running struct {
	reg  *prometheus.Registry
	stop func() error
}

// start runs an ingester with cfg until stop is called, which returns what
// Run returned.
func start(t *testing.T, cfg ingest.Config, name string) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t, name}, &slog.HandlerOptions{Level: testLogLevel()}))
	ctx, cancel := context.WithCancel(context.Background())
	in, err := ingest.New(ctx, cfg, ingest.Deps{Logger: log, Registerer: reg})
	if err != nil {
		cancel()
		t.Fatalf("ingest.New: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	stopped := false
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				t.Fatalf("%s: Run did not return within a minute of cancel", name)
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{reg: reg, stop: stop}
}

// testWriter sends logs to t.Log, while the test runs.
type testWriter struct {
	t    *testing.T
	name string
}

func (w testWriter) Write(p []byte) (int, error) {
	if !testing.Verbose() {
		return len(p), nil
	}
	w.t.Log(w.name + ": " + strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}

// counter sums the samples of a counter family whose labels include want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// missingDLQ points cfg at a DLQ topic that does not exist: a batch
// holding a rejected message then keeps failing after its rows were stored,
// and holds back every batch behind it.
func missingDLQ(cfg *ingest.Config) {
	cfg.DLQTopic = cfg.Kafka.Topic + ".missing"
}

// waitStoreFailures waits until r has failed at least n attempts to store a
// batch; why says what should be failing.
func waitStoreFailures(t *testing.T, r *running, n float64, why string) {
	t.Helper()
	waitFor(t, time.Minute, func() string {
		if f := counter(t, r.reg, "auditlog_ingest_store_failures_total", nil); f < n {
			return fmt.Sprintf("%v failed store attempts, want >= %v (%s)", f, n, why)
		}
		return ""
	})
}

// waitFor polls cond until it returns "" (done) or timeout passes, then
// fails the test with cond's last word.
func waitFor(t *testing.T, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// counts is what a user of the events table sees.
type counts struct {
	rows     uint64 // every row, duplicates included
	distinct uint64 // distinct ids
	visible  uint64 // rows read in table order, dropping a row equal in id to the previous one (what list and export do)
	// stream counts the rows of events_by_ingest, what the SIEM stream
	// reads. A copy inserted in another second than the first is not next
	// to it there and is never merged away, so this catches every insert
	// of a duplicate that ReplacingMergeTree may already have hidden in
	// events.
	stream uint64
}

func eventCounts(t *testing.T, ch *testharness.ClickHouse) counts {
	t.Helper()
	c := counts{
		rows:     ch.QueryUint64(t, "SELECT count() FROM events"),
		distinct: ch.QueryUint64(t, "SELECT toUInt64(uniqExact(id)) FROM events"),
		stream:   ch.QueryUint64(t, "SELECT count() FROM events_by_ingest"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := ch.Conn.Query(ctx, "SELECT id FROM events ORDER BY scope_id, occurred_ns, id")
	if err != nil {
		t.Fatalf("select ids: %v", err)
	}
	defer rows.Close()
	var prev uuid.UUID
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("scan id: %v", err)
		}
		if id != prev {
			c.visible++
		}
		prev = id
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("select ids: %v", err)
	}
	return c
}

// wantCounts fails the test unless every count is n.
func wantCounts(t *testing.T, ch *testharness.ClickHouse, n int) {
	t.Helper()
	c := eventCounts(t, ch)
	if c.rows != uint64(n) || c.distinct != uint64(n) || c.visible != uint64(n) || c.stream != uint64(n) {
		t.Fatalf("events: %d rows, %d distinct ids, %d visible; events_by_ingest: %d rows; want %d of each", c.rows, c.distinct, c.visible, c.stream, n)
	}
}

var sampleActions = []string{
	"workflow.job.start", "workflow.job.finish", "context.create", "project.env_var.create",
	"user.logged_in", "schedule.update", "project.settings.update",
}

// sampleEvents returns n valid CircleCI-shaped events with fresh UUIDv7 ids.
func sampleEvents(t testing.TB, n int) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, n)
	base := time.Now().Add(-time.Hour)
	for i := range msgs {
		id := uuid.Must(uuid.NewV7()).String()
		action := sampleActions[i%len(sampleActions)]
		at := base.Add(time.Duration(i)*time.Millisecond + time.Duration(rand.IntN(1000)))
		raw := schemas.SampleEvent(action, id, at)
		if raw == nil {
			t.Fatalf("no sample event for %s", action)
		}
		msgs[i] = kafka.Message{Key: []byte(id), Value: raw, Headers: []kafka.Header{{Key: "content-type", Value: []byte("application/json")}}}
	}
	return msgs
}

// produceChunks produces msgs in chunks of size, so that they spread over
// many fetches and batches.
func produceChunks(t *testing.T, k *testharness.Kafka, msgs []kafka.Message, size int) {
	t.Helper()
	for start := 0; start < len(msgs); start += size {
		k.Produce(t, msgs[start:min(start+size, len(msgs))]...)
	}
}

// groupLag returns how many messages of the topic the group has not
// committed yet (end offset minus committed offset, summed over partitions).
// A partial answer (a partition with an error or missing) is asked again.
func groupLag(t testing.TB, k *testharness.Kafka, group string) int64 {
	t.Helper()
	var lastErr error
	for range 50 {
		lag, err := tryGroupLag(k, group)
		if err == nil {
			return lag
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("group lag of %s: %v", group, lastErr)
	return 0
}

func tryGroupLag(k *testharness.Kafka, group string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(k.Brokers...)}
	parts := make([]int, k.Partitions)
	var reqs []kafka.OffsetRequest
	for p := range k.Partitions {
		parts[p] = p
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	ends, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{k.Topic: reqs}})
	if err != nil {
		return 0, fmt.Errorf("list offsets: %w", err)
	}
	committed, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{k.Topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("offset fetch: %w", err)
	}
	if committed.Error != nil {
		return 0, fmt.Errorf("offset fetch: %w", committed.Error)
	}
	got := map[int]int64{}
	for _, p := range committed.Topics[k.Topic] {
		if p.Error != nil {
			return 0, fmt.Errorf("offset fetch partition %d: %w", p.Partition, p.Error)
		}
		got[p.Partition] = max(0, p.CommittedOffset)
	}
	var lag int64
	seen := 0
	for _, po := range ends.Topics[k.Topic] {
		if po.Error != nil {
			return 0, fmt.Errorf("list offsets partition %d: %w", po.Partition, po.Error)
		}
		if po.LastOffset < got[po.Partition] {
			return 0, fmt.Errorf("partition %d: end offset %d below the committed %d", po.Partition, po.LastOffset, got[po.Partition])
		}
		lag += po.LastOffset - got[po.Partition]
		seen++
	}
	if seen != k.Partitions {
		return 0, fmt.Errorf("list offsets answered for %d of %d partitions", seen, k.Partitions)
	}
	return lag, nil
}

// jsonEqual compares two JSON documents as values, numbers as written.
func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	return reflect.DeepEqual(decodeNumbers(t, a), decodeNumbers(t, b))
}

func decodeNumbers(t *testing.T, data []byte) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return v
}

// testLogLevel is info, or debug when AUDITLOG_TEST_DEBUG is set.
func testLogLevel() slog.Level {
	if os.Getenv("AUDITLOG_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
