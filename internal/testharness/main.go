package testharness

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// mainCalled records that the test binary runs through Main. The shared
// ClickHouse server outlives any single test, so only Main can stop it;
// without Main it would be left running and its directory left behind.
var mainCalled atomic.Bool

// running holds every clickhouse-server this process started and has not
// removed yet, so that Main can stop them even when a test's cleanup did not
// run (a panic, or t.FailNow inside a cleanup of another test).
var running struct {
	mu      sync.Mutex
	servers map[*ClickHouseServer]struct{}
}

func registerServer(s *ClickHouseServer) {
	running.mu.Lock()
	defer running.mu.Unlock()
	if running.servers == nil {
		running.servers = make(map[*ClickHouseServer]struct{})
	}
	running.servers[s] = struct{}{}
}

func unregisterServer(s *ClickHouseServer) {
	running.mu.Lock()
	defer running.mu.Unlock()
	delete(running.servers, s)
}

// Main runs the tests of a package and then stops every server the harness
// started for them: each package that uses the harness calls it from its
// TestMain:
//
//	func TestMain(m *testing.M) { testharness.Main(m) }
//
// It exits the process with the tests' exit code.
func Main(m *testing.M) {
	mainCalled.Store(true)
	code := m.Run()

	// Failing to clean up does not fail the tests: they already ran against
	// a working server. Say what was left behind so someone can remove it.
	for _, err := range shutdownAll() {
		fmt.Fprintf(os.Stderr, "testharness: cleanup: %v\n", err)
	}
	os.Exit(code)
}

// shutdownAll stops and removes every server that is still registered and
// closes the shared kfake cluster.
func shutdownAll() []error {
	running.mu.Lock()
	servers := make([]*ClickHouseServer, 0, len(running.servers))
	for s := range running.servers {
		servers = append(servers, s)
	}
	running.mu.Unlock()

	var errs []error
	for _, s := range servers {
		if err := s.remove(); err != nil {
			errs = append(errs, err)
		}
	}

	sharedKafka.mu.Lock()
	cluster := sharedKafka.cluster
	sharedKafka.mu.Unlock()
	if cluster != nil {
		cluster.Close()
	}
	return errs
}
