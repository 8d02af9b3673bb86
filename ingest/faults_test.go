package ingest_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/auditlog/auditlog/internal/testharness"
)

// ClickHouse stops while events keep arriving: the ingester holds the batch
// and commits nothing while it is down, then catches up once it is back;
// nothing is lost or duplicated.
func TestClickHouseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a ClickHouse server")
	}
	ch := testharness.NewDedicatedClickHouse(t)
	e := newEnv(t, ch, testharness.NewKafka(t, testharness.WithPartitions(3)))
	e.cfg.ClickHouse.DialTimeout = time.Second
	// Small buffers, so that the events produced during the outage do not
	// all fit: the fetchers must stop.
	e.cfg.BatchRows = 100
	e.cfg.QueueMessages = 50
	r := start(t, e.cfg, "ingester")

	before := sampleEvents(t, 500)
	produceChunks(t, e.k, before, 50)
	waitFor(t, time.Minute, func() string {
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d before the stop", lag)
		}
		return ""
	})
	wantCounts(t, ch, len(before))

	consumedBefore := counter(t, r.reg, "auditlog_ingest_messages_consumed_total", nil)
	ch.Server().Stop(t)
	during := sampleEvents(t, 700)
	produceChunks(t, e.k, during, 50)
	// Wait until the ingester has tried and failed to store them.
	waitStoreFailures(t, r, 3, "ClickHouse is down")
	if lag := groupLag(t, e.k, e.cfg.Group); lag != int64(len(during)) {
		t.Errorf("group lag %d while ClickHouse is down; want %d: offsets of unstored events must not be committed", lag, len(during))
	}
	// Back-pressure: what was taken from Kafka during the outage is at most
	// the batch being retried, the next batch, the queue, and one message
	// per fetcher.
	time.Sleep(time.Second)
	held := counter(t, r.reg, "auditlog_ingest_messages_consumed_total", nil) - consumedBefore
	if limit := float64(2*e.cfg.BatchRows + e.cfg.QueueMessages + e.k.Partitions); held > limit || held == 0 {
		t.Errorf("%v messages fetched while ClickHouse is down; want between 1 and %v (two batches + queue + one per partition)", held, limit)
	}

	ch.Server().Start(t)
	after := sampleEvents(t, 300)
	produceChunks(t, e.k, after, 50)
	total := len(before) + len(during) + len(after)
	waitFor(t, 2*time.Minute, func() string {
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d after the restart", lag)
		}
		return ""
	})
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	wantCounts(t, ch, total)
	if inserted := counter(t, r.reg, "auditlog_ingest_events_inserted_total", nil); inserted != float64(total) {
		t.Errorf("inserted %v events, want %d", inserted, total)
	}
}

// A batch that cannot be stored holds back the commit of every batch behind
// it, also when the ingester shuts down meanwhile: here the DLQ topic does
// not exist, so the first batch (which holds a rejected message) keeps
// failing after its events were inserted, while the next batch, all valid,
// waits complete behind it. Committing that one would skip the first.
func TestShutdownCommitsNothingPastAFailedBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for retries")
	}
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(1)))
	missingDLQ(&e.cfg)
	e.cfg.RetryMax = 200 * time.Millisecond
	e.cfg.ShutdownTimeout = 2 * time.Second
	msgs := sampleEvents(t, 3*e.cfg.BatchRows)
	msgs[0].Value = []byte(`{"not":"an audit event"}`)
	produceChunks(t, e.k, msgs, e.cfg.BatchRows)

	for round := range 3 {
		r := start(t, e.cfg, fmt.Sprintf("ingester %d", round))
		waitStoreFailures(t, r, 3, "the DLQ topic "+e.cfg.DLQTopic+" is missing")
		// The second batch is complete and waits by now (the third is
		// collected behind it): the shutdown must store them after the
		// first, or not at all.
		time.Sleep(300 * time.Millisecond)
		if err := r.stop(); err == nil {
			t.Fatalf("round %d: Run returned nil; want the error of the batch it could not store", round)
		}
		if lag := groupLag(t, e.k, e.cfg.Group); lag != int64(len(msgs)) {
			t.Fatalf("round %d: group lag %d, want %d: offsets were committed past a batch that was never stored", round, lag, len(msgs))
		}
		// The shutdown only retries the DLQ write of the stored batch: it
		// does not store it again, which would quarantine its rejected
		// message twice.
		if q := counter(t, r.reg, "auditlog_ingest_quarantined_total", nil); q != 1 {
			t.Errorf("round %d: quarantined_total = %v, want 1", round, q)
		}
		if d := counter(t, r.reg, "auditlog_ingest_duplicates_dropped_total", map[string]string{"layer": "recent"}); d != 0 {
			t.Errorf("round %d: %v duplicates dropped by the recent window: the stored batch was stored again", round, d)
		}
	}
}

// Big messages are held back by their bytes, not only by their count: with
// the storer stuck on a batch it cannot finish (the DLQ topic is missing, so
// its rejected message cannot be written), what the fetchers take from their
// readers is at most the batch waiting behind it, the queue's bytes and one
// message per fetcher, though the queue has room for thousands of messages.
// (Each reader reads a few messages ahead, readAhead, which is not counted.)
func TestBigMessagesAreQueuedByBytes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for retries")
	}
	e := newEnv(t, testharness.NewClickHouse(t), testharness.NewKafka(t, testharness.WithPartitions(2)))
	missingDLQ(&e.cfg)
	e.cfg.ShutdownTimeout = 2 * time.Second
	e.cfg.BatchBytes = 64 << 10
	e.cfg.QueueBytes = 64 << 10
	const size = 16 << 10
	r := start(t, e.cfg, "ingester")

	e.k.Produce(t, kafka.Message{Key: []byte("stuck"), Value: []byte(`{"not":"an audit event"}`)})
	waitStoreFailures(t, r, 2, "the DLQ topic "+e.cfg.DLQTopic+" is missing")
	consumedBefore := counter(t, r.reg, "auditlog_ingest_messages_consumed_total", nil)
	big := make([]kafka.Message, 200)
	for i := range big {
		big[i] = kafka.Message{Key: fmt.Appendf(nil, "big-%d", i), Value: bytes.Repeat([]byte("x"), size)}
	}
	produceChunks(t, e.k, big, 20)
	waitFor(t, time.Minute, func() string {
		if n := counter(t, r.reg, "auditlog_ingest_messages_consumed_total", nil) - consumedBefore; n < 4 {
			return fmt.Sprintf("%v big messages fetched, want the fetchers to fill what they may", n)
		}
		return ""
	})
	time.Sleep(time.Second)
	held := counter(t, r.reg, "auditlog_ingest_messages_consumed_total", nil) - consumedBefore
	// The waiting batch may pass BatchBytes by one message.
	limit := float64((e.cfg.BatchBytes+e.cfg.QueueBytes)/size + 1 + e.k.Partitions)
	if held > limit {
		t.Errorf("%v messages of %d bytes fetched while the storer is stuck; want at most %v (a batch of %d bytes, a queue of %d bytes, one per partition)",
			held, size, limit, e.cfg.BatchBytes, e.cfg.QueueBytes)
	}
	if lag := groupLag(t, e.k, e.cfg.Group); lag != int64(1+len(big)) {
		t.Errorf("group lag %d; want %d, nothing committed", lag, 1+len(big))
	}
	if err := r.stop(); err == nil {
		t.Errorf("Run returned nil; want the error of the batch it could not store")
	}
}
