package testharness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/auditlog/auditlog/internal/chserver"
)

// installHint says how to get ClickHouse for the tests.
const installHint = chserver.InstallHint + ", or set AUDITLOG_TEST_CLICKHOUSE=host:port to use a running server"

// ClickHouseServer is a clickhouse-server process started by the harness, or
// the external server named by AUDITLOG_TEST_CLICKHOUSE.
type ClickHouseServer struct {
	// TCPAddr is host:port of the native protocol, for clickhouse-go and
	// clickhouse-client.
	TCPAddr string
	// HTTPAddr is host:port of the HTTP interface. It is empty for an
	// external server, whose HTTP port the harness does not know.
	HTTPAddr string

	username string
	password string

	// external is set for the AUDITLOG_TEST_CLICKHOUSE server, which the
	// harness must never stop.
	external bool
	// dedicated is set for a server owned by one test, the only kind a test
	// may stop and start.
	dedicated bool

	// proc is the process of a server the harness started, in a temporary
	// directory removed with the server.
	proc *chserver.Server
}

// Pid is the process id of a server the harness started and is running,
// for benchmarks that measure its CPU time; 0 for an external server.
func (s *ClickHouseServer) Pid() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.Pid()
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after a few
// seconds) and keeps its data directory and ports for Start. It fails the
// test for a server that this test does not own: the shared server or an
// external one.
func (s *ClickHouseServer) Stop(t testing.TB) {
	t.Helper()
	if err := s.checkOwned(); err != nil {
		t.Fatalf("testharness: Stop: %v", err)
	}
	if err := s.proc.Stop(); err != nil {
		t.Fatalf("testharness: Stop: %v", err)
	}
}

// Start starts a stopped server again with the same ports and data
// directory, and waits until it answers. It fails the test for a server that
// this test does not own, or one that is already running.
func (s *ClickHouseServer) Start(t testing.TB) {
	t.Helper()
	if err := s.checkOwned(); err != nil {
		t.Fatalf("testharness: Start: %v", err)
	}
	if err := s.proc.Restart(); err != nil {
		t.Fatalf("testharness: Start: %v", err)
	}
}

func (s *ClickHouseServer) checkOwned() error {
	switch {
	case s.external:
		return errors.New("the server is external (AUDITLOG_TEST_CLICKHOUSE); use NewDedicatedClickHouse for a server the test may stop")
	case !s.dedicated:
		return errors.New("the shared server cannot be stopped, other tests use it; use NewDedicatedClickHouse")
	}
	return nil
}

// findBinary finds a ClickHouse binary or says how to install it.
func findBinary(name string) (string, error) {
	p, err := chserver.FindBinary(name)
	if err != nil {
		return "", fmt.Errorf("%w, or set AUDITLOG_TEST_CLICKHOUSE=host:port to use a running server", err)
	}
	return p, nil
}

// startClickHouseServer starts a server in a new temporary directory on free
// ports and waits until it answers. The server is registered for Main's
// cleanup, so it is never left running.
func startClickHouseServer(dedicated bool) (*ClickHouseServer, error) {
	if _, err := findBinary("clickhouse-server"); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "auditlog-clickhouse-")
	if err != nil {
		return nil, err
	}
	proc, err := chserver.Start(chserver.Options{Dir: dir, KillWithParent: true})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &ClickHouseServer{
		TCPAddr:   proc.TCPAddr,
		HTTPAddr:  proc.HTTPAddr,
		username:  "default",
		dedicated: dedicated,
		proc:      proc,
	}
	registerServer(s)
	return s, nil
}

// ping opens a connection to addr and pings it once.
func ping(addr, username, password string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{addr},
		Auth:        clickhouse.Auth{Username: username, Password: password},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return conn.Ping(ctx)
}

// remove stops the server, deletes its directory and forgets it.
func (s *ClickHouseServer) remove() error {
	unregisterServer(s)
	if s.proc == nil {
		return nil
	}
	if err := s.proc.Stop(); err != nil {
		// The process may still use the directory; leave it for a human.
		return fmt.Errorf("%w (left %s)", err, s.proc.Dir)
	}
	if err := os.RemoveAll(s.proc.Dir); err != nil {
		return fmt.Errorf("remove clickhouse-server directory: %w", err)
	}
	return nil
}
