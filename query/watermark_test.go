package query

import (
	"context"
	"testing"
	"time"

	"github.com/auditlog/auditlog/internal/store/storetest"
	"github.com/auditlog/auditlog/internal/testharness"
)

// A running INSERT into events holds the stream's watermark below the
// second it started in, however long it runs: its rows are not visible yet.
func TestWatermarkWaitsForRunningInserts(t *testing.T) {
	t.Parallel()
	ch := testharness.NewClickHouse(t)
	ctx := context.Background()
	storetest.Migrate(t, ch.Conn, ch.Database)
	cfg := DefaultConfig()
	cfg.PageTokenKey = "0123456789abcdef-test"
	cfg.StreamLag = 0
	s, err := New(ch.Conn, cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// (No check of the idle watermark: system.processes is server-wide, so
	// parallel tests' inserts into their own events tables hold it back too,
	// which only ever delays a stream.)

	started := time.Now()
	done := make(chan error, 1)
	go func() {
		// sleep(3) keeps the INSERT running for about three seconds.
		done <- ch.Conn.Exec(ctx, "INSERT INTO events (id, action, occurred_ns) SELECT generateUUIDv4(), 'slow.insert', 1 FROM numbers(1) WHERE sleep(3) = 0")
	}()
	time.Sleep(2 * time.Second)
	held, err := s.watermark(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if limit := started.Unix() - 1; int64(held) > limit {
		t.Errorf("watermark %d with an INSERT running since %d: want at most %d", held, started.Unix(), limit)
	}
}
