package testharness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// queryTimeout bounds each statement the harness or its helpers run, so a
// hung server fails the test instead of hanging it until go test's timeout.
const queryTimeout = time.Minute

// ClickHouse is one test's database on a ClickHouse server.
type ClickHouse struct {
	// Addr is host:port of the server's native protocol.
	Addr string
	// Database is the test's own database, created empty for the test and
	// dropped when it ends.
	Database string
	// Conn is a clickhouse-go connection whose default database is
	// Database, closed when the test ends.
	Conn driver.Conn

	server *ClickHouseServer
}

// sharedClickHouse is the server that NewClickHouse hands out databases on,
// started the first time a test asks for it.
var sharedClickHouse struct {
	once   sync.Once
	server *ClickHouseServer
	err    error
}

// NewClickHouse returns a fresh database on the test binary's shared
// ClickHouse server, which is started on first use (or is the server named by
// AUDITLOG_TEST_CLICKHOUSE). The database and its connection go away when the
// test ends. It fails the test, never skips it, when no server can be had.
func NewClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	sharedClickHouse.once.Do(func() {
		sharedClickHouse.server, sharedClickHouse.err = openSharedClickHouse()
	})
	if sharedClickHouse.err != nil {
		t.Fatalf("testharness: ClickHouse: %v", sharedClickHouse.err)
	}
	return newDatabase(t, sharedClickHouse.server)
}

func openSharedClickHouse() (*ClickHouseServer, error) {
	if env := os.Getenv("AUDITLOG_TEST_CLICKHOUSE"); env != "" {
		s, err := parseExternalClickHouse(env)
		if err != nil {
			return nil, err
		}
		if err := ping(s.TCPAddr, s.username, s.password); err != nil {
			return nil, fmt.Errorf("AUDITLOG_TEST_CLICKHOUSE=%s does not answer: %w", env, err)
		}
		return s, nil
	}
	if !mainCalled.Load() {
		return nil, errors.New("the shared server is stopped by testharness.Main: add `func TestMain(m *testing.M) { testharness.Main(m) }` to the package")
	}
	return startClickHouseServer(false)
}

// parseExternalClickHouse reads "host:port" or "user:password@host:port".
func parseExternalClickHouse(v string) (*ClickHouseServer, error) {
	s := &ClickHouseServer{external: true, username: "default"}
	addr := v
	if at := strings.LastIndex(v, "@"); at >= 0 {
		userinfo := v[:at]
		addr = v[at+1:]
		user, password, _ := strings.Cut(userinfo, ":")
		if user == "" {
			return nil, fmt.Errorf("AUDITLOG_TEST_CLICKHOUSE=%q: empty user before '@'", v)
		}
		s.username, s.password = user, password
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("AUDITLOG_TEST_CLICKHOUSE=%q: want host:port or user:password@host:port: %w", v, err)
	}
	s.TCPAddr = addr
	return s, nil
}

// NewDedicatedClickHouse starts a private ClickHouse server for this test
// only and returns a fresh database on it. Use it for tests that stop and
// restart the server (Server().Stop, Server().Start), which would break other
// tests on the shared server. It starts a local server even when
// AUDITLOG_TEST_CLICKHOUSE is set, because an external server cannot be
// restarted. The server is stopped and removed when the test ends.
func NewDedicatedClickHouse(t testing.TB) *ClickHouse {
	t.Helper()
	s, err := startClickHouseServer(true)
	if err != nil {
		if os.Getenv("AUDITLOG_TEST_CLICKHOUSE") != "" {
			t.Fatalf("testharness: dedicated ClickHouse (always a local server, AUDITLOG_TEST_CLICKHOUSE does not apply): %v", err)
		}
		t.Fatalf("testharness: dedicated ClickHouse: %v", err)
	}
	// Registered before newDatabase's cleanup so that it runs after it:
	// cleanups run last-in first-out.
	t.Cleanup(func() {
		if err := s.remove(); err != nil {
			t.Errorf("testharness: dedicated ClickHouse: %v", err)
		}
	})
	return newDatabase(t, s)
}

// newDatabase creates a uniquely named database on s and opens a connection
// bound to it.
func newDatabase(t testing.TB, s *ClickHouseServer) *ClickHouse {
	t.Helper()
	c := &ClickHouse{Addr: s.TCPAddr, Database: databaseName(t.Name()), server: s}

	if err := c.adminExec("CREATE DATABASE " + c.Database); err != nil {
		t.Fatalf("testharness: create database %s on %s: %v", c.Database, c.Addr, err)
	}
	// A dedicated server needs no drop: its whole directory is removed when
	// the test ends, and the test may have left it stopped.
	if !s.dedicated {
		t.Cleanup(func() {
			if err := c.adminExec("DROP DATABASE IF EXISTS " + c.Database); err != nil {
				t.Errorf("testharness: drop database %s: %v", c.Database, err)
			}
		})
	}

	conn, err := clickhouse.Open(c.Options())
	if err != nil {
		t.Fatalf("testharness: open ClickHouse %s: %v", c.Addr, err)
	}
	c.Conn = conn
	// Registered after the drop, so it runs before it.
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("testharness: close ClickHouse connection: %v", err)
		}
	})
	return c
}

// adminExec runs one statement on a connection of its own, outside the test
// database: it is how the database is created before it exists and dropped
// after the test's connection is closed.
func (c *ClickHouse) adminExec(sql string) error {
	opts := c.Options()
	opts.Auth.Database = ""
	conn, err := clickhouse.Open(opts)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	return conn.Exec(ctx, sql)
}

// databaseName returns "test_<test name>_<random>", a valid ClickHouse
// identifier that needs no quoting and says which test left it behind.
func databaseName(testName string) string {
	return fmt.Sprintf("test_%s_%08x", sanitize(testName, '_', 40), rand.Uint32())
}

// sanitize lowercases s, replaces each run of characters outside [a-z0-9]
// with sep, and cuts the result to max bytes.
func sanitize(s string, sep byte, max int) string {
	var b strings.Builder
	pendingSep := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pendingSep && b.Len() > 0 {
				b.WriteByte(sep)
			}
			pendingSep = false
			b.WriteRune(r)
			continue
		}
		pendingSep = true
	}
	out := b.String()
	if len(out) > max {
		out = strings.TrimRight(out[:max], string(sep))
	}
	if out == "" {
		out = "t"
	}
	return out
}

// Options returns new clickhouse-go options for the test database, to open
// further connections, such as the one the code under test uses. Each call
// returns a new value that the caller may change.
func (c *ClickHouse) Options() *clickhouse.Options {
	return &clickhouse.Options{
		Addr: []string{c.Addr},
		Auth: clickhouse.Auth{
			Database: c.Database,
			Username: c.server.username,
			Password: c.server.password,
		},
		DialTimeout: 5 * time.Second,
	}
}

// insertValues matches INSERT ... VALUES (...), which ClickHouse 18.16 does
// not accept over the native protocol: the server waits for the rows as data
// blocks, and clickhouse-go's Exec hangs until its deadline.
var insertValues = regexp.MustCompile(`(?is)^\s*INSERT\s+INTO\s.*\sVALUES\s*\(`)

// Exec runs a statement in the test database and fails the test if it fails.
// It refuses INSERT ... VALUES, which hangs on ClickHouse 18.16: insert rows
// with Conn.PrepareBatch (naming the columns) or INSERT ... SELECT instead.
func (c *ClickHouse) Exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if insertValues.MatchString(sql) {
		t.Fatalf("testharness: exec %q: INSERT ... VALUES hangs on ClickHouse 18.16 over the native protocol; "+
			"use Conn.PrepareBatch(ctx, \"INSERT INTO t (a, b)\") or INSERT ... SELECT", sql)
	}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := c.Conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("testharness: exec %q: %v", sql, err)
	}
}

// QueryUint64 runs a query that returns one UInt64 value, such as
// SELECT count(), and fails the test if it fails. clickhouse-go scans only
// into the exact Go type, so cast other integer columns with toUInt64().
func (c *ClickHouse) QueryUint64(t testing.TB, sql string, args ...any) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	var v uint64
	if err := c.Conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("testharness: query %q: %v", sql, err)
	}
	return v
}

// Server returns the server the database lives on. Only a server from
// NewDedicatedClickHouse may be stopped and started.
func (c *ClickHouse) Server() *ClickHouseServer {
	return c.server
}

// ClientArgs returns the arguments that point clickhouse-client at the test
// database, e.g. exec.Command(ClickHouseClientPath(t), append(c.ClientArgs(),
// "--query", sql)...).
func (c *ClickHouse) ClientArgs() []string {
	host, port, _ := net.SplitHostPort(c.Addr) // Addr was checked when the server was set up
	args := []string{"--host", host, "--port", port, "--database", c.Database}
	if c.server.username != "" {
		args = append(args, "--user", c.server.username)
	}
	if c.server.password != "" {
		args = append(args, "--password", c.server.password)
	}
	return args
}

// ClickHouseClientPath returns the path of the clickhouse-client binary. It
// fails the test, with how to install it, when it is missing.
func ClickHouseClientPath(t testing.TB) string {
	t.Helper()
	p, err := findBinary("clickhouse-client")
	if err != nil {
		t.Fatalf("testharness: %v", err)
	}
	return p
}
