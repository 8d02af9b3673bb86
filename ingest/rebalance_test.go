package ingest_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
