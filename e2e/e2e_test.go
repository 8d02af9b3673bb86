package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/testharness"
)

// Each scenario sends its events three times while the fault happens, then
// checks that list (both orders), stream and export return each event
// exactly once.
const eventsPerScenario = 1500

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite: real Kafka broker and subprocesses (run without -short)")
	}
}

func TestEndToEndTwoIngestersOneKilled(t *testing.T) {
	skipShort(t)
	broker := testharness.StartRealKafka(t)
	s := newStack(t, testharness.NewClickHouse(t), broker.NewTopics(t, testharness.WithPartitions(6)))
	snd := newSender(t, s.brokers, s.topic)
	ctx := context.Background()

	a := s.startIngester(t, "ingest-a")
	b := s.startIngester(t, "ingest-b")
	must(t, snd.send(ctx, eventsPerScenario/3))
	// Kill one member mid-ingest, keep sending, bring it back.
	time.Sleep(500 * time.Millisecond)
	a.kill()
	must(t, snd.send(ctx, eventsPerScenario/3))
	a = s.startIngester(t, "ingest-a-restarted")
	must(t, snd.send(ctx, eventsPerScenario/3))

	s.waitStored(t, len(snd.sent()), 3*time.Minute)
	s.check(t, "two ingesters, one killed -9 and restarted", snd.sent())
	// The checks listed, exported and streamed: the API audited itself
	// through the same pipeline.
	s.waitSelfAudit(t, time.Minute)
	a.stop(t)
	b.stop(t)
}

func TestEndToEndBrokerRestart(t *testing.T) {
	skipShort(t)
	broker := testharness.StartRealKafka(t)
	s := newStack(t, testharness.NewClickHouse(t), broker.NewTopics(t, testharness.WithPartitions(3)))
	snd := newSender(t, s.brokers, s.topic)
	ctx := context.Background()
	ing := s.startIngester(t, "ingest")

	must(t, snd.send(ctx, eventsPerScenario/2))
	broker.Stop(t)
	// Events are sent while the broker is down (the sender retries, as a
	// product component must) and while it comes back.
	sent := make(chan error, 1)
	go func() { sent <- snd.send(ctx, eventsPerScenario/2) }()
	time.Sleep(2 * time.Second)
	broker.Start(t)
	must(t, <-sent)

	s.waitStored(t, len(snd.sent()), 3*time.Minute)
	s.check(t, "broker restarted during ingest", snd.sent())
	ing.stop(t)
}

func TestEndToEndClickHouseRestart(t *testing.T) {
	skipShort(t)
	broker := testharness.StartRealKafka(t)
	ch := testharness.NewDedicatedClickHouse(t)
	s := newStack(t, ch, broker.NewTopics(t, testharness.WithPartitions(3)))
	snd := newSender(t, s.brokers, s.topic)
	ctx := context.Background()
	ing := s.startIngester(t, "ingest")

	must(t, snd.send(ctx, eventsPerScenario/2))
	ch.Server().Stop(t)
	must(t, snd.send(ctx, eventsPerScenario/2))
	time.Sleep(3 * time.Second) // the ingester retries against a dead server
	ch.Server().Start(t)

	s.waitStored(t, len(snd.sent()), 3*time.Minute)
	s.check(t, "ClickHouse restarted during ingest", snd.sent())
	ing.stop(t)
}

func TestEndToEndStreamResumes(t *testing.T) {
	skipShort(t)
	broker := testharness.StartRealKafka(t)
	s := newStack(t, testharness.NewClickHouse(t), broker.NewTopics(t))
	snd := newSender(t, s.brokers, s.topic)
	ctx := context.Background()
	ing := s.startIngester(t, "ingest")

	must(t, snd.send(ctx, 200))
	first, cursor := s.streamIDs(t, "", 200, 90*time.Second)
	// Disconnected; new events (some with old occurred_at) arrive; resume.
	before := snd.sent()
	must(t, snd.send(ctx, 200))
	rest, _ := s.streamIDs(t, cursor, 200, 90*time.Second)
	seen := map[string]bool{}
	for _, id := range append(first, rest...) {
		if seen[id] {
			t.Errorf("event %s delivered twice across the resume", id)
		}
		seen[id] = true
	}
	for id := range snd.sent() {
		if !seen[id] {
			t.Errorf("event %s never delivered", id)
		}
	}
	for _, id := range rest {
		if before[id] {
			t.Errorf("event %s from before the cursor delivered again after resuming", id)
		}
	}
	ing.stop(t)
}
