package ingest_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/internal/testharness"
)

// Every event delivered three times, across partitions and batches, is
// stored once; each dedup layer catches the copies that reach it, and a
// second ingester that rereads the whole topic with an empty memory adds
// nothing either.
func TestEveryEventThreeTimes(t *testing.T) {
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(3)))
	const n = 600
	events := sampleEvents(t, n)

	r := start(t, e.cfg, "first")
	// Copies one and two back to back: the second copy is in the same fetch
	// and usually the same batch (layer "batch"), or the next one.
	var twice []kafka.Message
	for _, m := range events {
		twice = append(twice, m, m)
	}
	produceChunks(t, e.k, twice, 70)
	waitFor(t, time.Minute, func() string {
		if c := eventCounts(t, e.ch); c.distinct < n {
			return fmt.Sprintf("%d of %d events stored", c.distinct, n)
		}
		return ""
	})
	// Copy three, after the originals are stored: the recent-id window.
	produceChunks(t, e.k, events, 70)
	waitFor(t, time.Minute, func() string {
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d", lag)
		}
		return ""
	})
	if err := r.stop(); err != nil {
		t.Fatalf("first ingester: Run: %v", err)
	}
	wantCounts(t, e.ch, n)
	batchDups := counter(t, r.reg, "auditlog_ingest_duplicates_dropped_total", map[string]string{"layer": "batch"})
	recentDups := counter(t, r.reg, "auditlog_ingest_duplicates_dropped_total", map[string]string{"layer": "recent"})
	storedDups := counter(t, r.reg, "auditlog_ingest_duplicates_dropped_total", map[string]string{"layer": "stored"})
	inserted := counter(t, r.reg, "auditlog_ingest_events_inserted_total", nil)
	t.Logf("first ingester: inserted %v, duplicates dropped: batch %v, recent %v, stored %v", inserted, batchDups, recentDups, storedDups)
	if inserted != n || batchDups+recentDups+storedDups != 2*n {
		t.Errorf("first ingester: inserted %v and dropped %v duplicates; want %d and %d", inserted, batchDups+recentDups+storedDups, n, 2*n)
	}
	if batchDups == 0 || recentDups < n {
		t.Errorf("first ingester: batch layer dropped %v (want > 0), recent layer %v (want >= %d: every third copy)", batchDups, recentDups, n)
	}

	// A new group rereads all 3n messages; its window starts empty and
	// holds one batch, so the first copy of each id is caught by the ids
	// already stored.
	cfg := e.cfg
	cfg.Group += "-again"
	cfg.BatchRows = 250
	cfg.RecentIDs = cfg.BatchRows
	r2 := start(t, cfg, "second")
	waitFor(t, time.Minute, func() string {
		if lag := groupLag(t, e.k, cfg.Group); lag != 0 {
			return fmt.Sprintf("second group lag %d", lag)
		}
		return ""
	})
	if err := r2.stop(); err != nil {
		t.Fatalf("second ingester: Run: %v", err)
	}
	wantCounts(t, e.ch, n)
	stored2 := counter(t, r2.reg, "auditlog_ingest_duplicates_dropped_total", map[string]string{"layer": "stored"})
	all2 := counter(t, r2.reg, "auditlog_ingest_duplicates_dropped_total", nil)
	if inserted2 := counter(t, r2.reg, "auditlog_ingest_events_inserted_total", nil); inserted2 != 0 || all2 != 3*n || stored2 < n {
		t.Errorf("second ingester: inserted %v, dropped %v duplicates (%v by stored ids); want 0, %d (>= %d)", inserted2, all2, stored2, 3*n, n)
	}
	if q := e.ch.QueryUint64(t, "SELECT count() FROM quarantine"); q != 0 {
		t.Errorf("quarantine holds %d rows; exact redeliveries are not conflicts", q)
	}
}
