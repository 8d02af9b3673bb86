package ingest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/internal/testharness"
)

// Two ingesters share the partitions of one group; one leaves in the middle
// of the ingest, another joins later. Every rebalance moves partitions with
// batches in flight; nothing is lost or duplicated.
func TestRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for consumer group rebalances")
	}
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(4)))
	e.cfg.BatchRows = 200
	e.cfg.BatchInterval = 200 * time.Millisecond

	a := start(t, e.cfg, "a")
	b := start(t, e.cfg, "b")

	const total = 6000
	events := sampleEvents(t, total)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Spread production over the whole test so that every rebalance
		// happens with messages in flight.
		for start := 0; start < total; start += 100 {
			e.k.Produce(t, events[start:start+100]...)
			time.Sleep(40 * time.Millisecond)
		}
	}()

	waitFor(t, time.Minute, func() string {
		if got := eventCounts(t, e.ch).distinct; got < total/4 {
			return fmt.Sprintf("%d stored before b leaves", got)
		}
		return ""
	})
	if err := b.stop(); err != nil {
		t.Fatalf("b: Run: %v", err)
	}
	waitFor(t, time.Minute, func() string {
		if got := eventCounts(t, e.ch).distinct; got < total/2 {
			return fmt.Sprintf("%d stored before c joins", got)
		}
		return ""
	})
	c := start(t, e.cfg, "c")
	wg.Wait()
	waitFor(t, 2*time.Minute, func() string {
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d", lag)
		}
		return ""
	})
	for name, r := range map[string]*running{"a": a, "c": c} {
		if err := r.stop(); err != nil {
			t.Errorf("%s: Run: %v", name, err)
		}
	}
	wantCounts(t, e.ch, total)
	var inserted, revoked float64
	for _, r := range []*running{a, b, c} {
		inserted += counter(t, r.reg, "auditlog_ingest_events_inserted_total", nil)
		revoked += counter(t, r.reg, "auditlog_ingest_revoked_messages_dropped_total", nil)
	}
	t.Logf("inserted %v, dropped %v buffered messages of ended generations", inserted, revoked)
	if inserted != total {
		t.Errorf("the ingesters inserted %v rows together, want %d", inserted, total)
	}
}

// A batch whose rows are stored but whose DLQ write has not gone through
// when its generation ends is not counted as dropped: it was stored, and
// the partition's next owner finds it so. Here the DLQ topic is missing,
// so the batch's one rejected message never reaches it, and a second
// ingester joining ends the generation.
func TestRebalanceDuringTheDLQWriteDropsNothingStored(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a consumer group rebalance")
	}
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(1)))
	missingDLQ(&e.cfg)
	e.cfg.ShutdownTimeout = time.Second
	a := start(t, e.cfg, "a")
	e.k.Produce(t, kafka.Message{Key: []byte("bad"), Value: []byte(`{"not":"an audit event"}`)})
	waitStoreFailures(t, a, 2, "a's DLQ writes")
	if q := e.ch.QueryUint64(t, "SELECT count() FROM quarantine"); q != 1 {
		t.Fatalf("quarantine holds %d rows before the rebalance, want 1", q)
	}

	b := start(t, e.cfg, "b")
	// The partition's owner in the next generation reads the message again.
	waitFor(t, time.Minute, func() string {
		consumed := counter(t, a.reg, "auditlog_ingest_messages_consumed_total", nil) + counter(t, b.reg, "auditlog_ingest_messages_consumed_total", nil)
		if consumed < 2 {
			return fmt.Sprintf("the message was read %v times, want it read again after the rebalance", consumed)
		}
		return ""
	})
	if d := counter(t, a.reg, "auditlog_ingest_revoked_messages_dropped_total", nil); d != 0 {
		t.Errorf("a counted %v messages of its stored batch as dropped", d)
	}
	if q := counter(t, a.reg, "auditlog_ingest_quarantined_total", nil); q != 1 {
		t.Errorf("a: quarantined_total = %v, want 1", q)
	}
	_ = a.stop()
	_ = b.stop()
}
