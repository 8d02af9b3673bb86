package testharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

const (
	// clickhouseConfig is the config the Debian package installs. The
	// harness reuses it and overrides every path and port on the command
	// line, so nothing of the system installation is written to.
	clickhouseConfig = "/etc/clickhouse-server/config.xml"

	// startTimeout bounds how long a server may take to answer. It
	// listens within about a second; the margin is for a loaded CI machine.
	startTimeout = 60 * time.Second

	// stopTimeout is how long a server gets to exit after SIGTERM before it
	// is killed. A clean shutdown takes about two seconds (see usersXML).
	stopTimeout = 5 * time.Second

	// startAttempts covers the race between picking a free port and the
	// server binding it: another process may take the port in between.
	startAttempts = 3
)

// usersXML replaces the package's users.xml for the harness's servers. It
// differs in one way that matters: poll_interval 1 instead of 10 seconds. An
// idle native connection (every clickhouse-go pool holds some) checks for
// shutdown only once per poll_interval, so with the default a SIGTERM takes
// about 12 seconds instead of 2, which a restart test pays on every Stop.
const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <poll_interval>1</poll_interval>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
`

// installHint says how to get ClickHouse; every error about a missing binary
// carries it, because that error is the first thing a new machine shows.
const installHint = "install it with `apt-get update && apt-get install -y clickhouse-server clickhouse-client` " +
	"(or `make deps`, or scripts/install-clickhouse.sh), " +
	"or set AUDITLOG_TEST_CLICKHOUSE=host:port to use a running server"

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

	bin  string
	dir  string
	args []string
	// token is written to a file in the server's user_files directory. A
	// server that reads it back is this one and not another that happens
	// to listen on the port: between picking a free port and binding it,
	// a server of another test binary may have taken it.
	token string

	mu   sync.Mutex
	proc *serverProcess // nil while stopped
}

// serverProcess is one run of clickhouse-server.
type serverProcess struct {
	cmd *exec.Cmd
	// exited is closed once the process has exited; waitErr is set before.
	exited  chan struct{}
	waitErr error
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
	if err := s.stop(); err != nil {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		t.Fatalf("testharness: Start: server %s is already running", s.TCPAddr)
	}
	if err := s.launchLocked(); err != nil {
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

// findBinary looks on PATH and then in the Debian package's directories:
// clickhouse-server lives in /usr/sbin, which is not on a normal user's PATH.
func findBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in /usr/sbin or in /usr/bin: %s", name, installHint)
}

// startClickHouseServer starts a server in a new temporary directory on free
// ports and waits until it answers. The server is registered for Main's
// cleanup before it is started, so it is never left running.
func startClickHouseServer(dedicated bool) (*ClickHouseServer, error) {
	bin, err := findBinary("clickhouse-server")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(clickhouseConfig); err != nil {
		return nil, fmt.Errorf("clickhouse-server config: %w; %s", err, installHint)
	}
	dir, err := os.MkdirTemp("", "auditlog-clickhouse-")
	if err != nil {
		return nil, err
	}
	s := &ClickHouseServer{
		bin:       bin,
		dir:       dir,
		dedicated: dedicated,
		username:  "default",
		token:     fmt.Sprintf("%016x", rand.Uint64()),
	}
	if err := s.writeFiles(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	registerServer(s)

	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(3)
		if err != nil {
			s.removeLocked()
			return nil, err
		}
		s.setPorts(ports[0], ports[1], ports[2])
		err = s.launchLocked()
		if err == nil {
			return s, nil
		}
		if attempt == startAttempts || !strings.Contains(s.logTail(), "Address already in use") {
			s.removeLocked()
			return nil, err
		}
	}
}

// writeFiles writes what the server reads from its directory: the users
// config and the identity token.
func (s *ClickHouseServer) writeFiles() error {
	if err := os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(s.dir, "uf"), 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "uf", tokenFile), []byte(s.token+"\n"), 0o644)
}

// tokenFile is the name of the identity token file in user_files.
const tokenFile = "testharness-token"

// setPorts builds the command line. Everything the server reads or writes,
// apart from the packaged config.xml, is under s.dir, so several servers run
// side by side and the system installation is left alone.
func (s *ClickHouseServer) setPorts(tcp, http, interserver int) {
	d := s.dir + string(filepath.Separator)
	s.TCPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp))
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(http))
	s.args = []string{
		"--config-file=" + clickhouseConfig,
		"--",
		"--path=" + d,
		"--tmp_path=" + d + "tmp/",
		"--user_files_path=" + d + "uf/",
		"--format_schema_path=" + d + "fs/",
		"--logger.log=" + d + "log",
		"--logger.errorlog=" + d + "err",
		"--tcp_port=" + strconv.Itoa(tcp),
		"--http_port=" + strconv.Itoa(http),
		"--interserver_http_port=" + strconv.Itoa(interserver),
		"--users_config=" + d + "users.xml",
		// The packaged config also listens on ::1, which fails on machines
		// without IPv6; nothing but this process needs to reach the server.
		"--listen_host=127.0.0.1",
	}
}

// freePorts returns n distinct ports that were free a moment ago. All n
// listeners are held open together so the kernel cannot hand out the same
// port twice.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// launchLocked starts the process and waits until it answers. On
// failure the process is gone and the error carries the end of its logs.
func (s *ClickHouseServer) launchLocked() error {
	// The console gets the few lines the server prints before its logger is
	// set up, such as "Include not found" and config errors.
	console, err := os.OpenFile(filepath.Join(s.dir, "console"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close() // the child keeps its own copy of the descriptor

	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.SysProcAttr = serverProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &serverProcess{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	s.proc = p

	if err := s.waitReady(p); err != nil {
		s.stopLocked()
		return fmt.Errorf("clickhouse-server on %s in %s: %w\n%s", s.TCPAddr, s.dir, err, s.logTail())
	}
	return nil
}

// waitReady asks until the server answers, the process exits, or
// startTimeout passes.
func (s *ClickHouseServer) waitReady(p *serverProcess) error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited during startup: %v", p.waitErr)
		default:
		}
		if lastErr = s.identify(); lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: last ping: %w", startTimeout, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// identify succeeds if the server on s.TCPAddr is s: it reads back s.token.
func (s *ClickHouseServer) identify() error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.TCPAddr},
		Auth:        clickhouse.Auth{Username: s.username, Password: s.password},
		DialTimeout: time.Second,
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var token string
	q := "SELECT token FROM file('" + tokenFile + "', 'TSV', 'token String')"
	if err := conn.QueryRow(ctx, q).Scan(&token); err != nil {
		return err
	}
	if token != s.token {
		return fmt.Errorf("another clickhouse-server answers on %s", s.TCPAddr)
	}
	return nil
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

func (s *ClickHouseServer) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

// stopLocked sends SIGTERM, waits up to stopTimeout, then kills. Stopping a
// stopped server does nothing.
func (s *ClickHouseServer) stopLocked() error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop clickhouse-server %s: %w", s.TCPAddr, err)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	// A server that ignores SIGTERM this long is stuck; the data of a
	// throwaway server is not worth waiting for.
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill clickhouse-server %s: %w", s.TCPAddr, err)
	}
	<-p.exited
	return nil
}

// remove stops the server, deletes its directory and forgets it.
func (s *ClickHouseServer) remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.removeLocked()
}

func (s *ClickHouseServer) removeLocked() error {
	stopErr := s.stopLocked()
	unregisterServer(s)
	if stopErr != nil {
		// The process may still use the directory; leave it for a human.
		return fmt.Errorf("%w (left %s)", stopErr, s.dir)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove clickhouse-server directory: %w", err)
	}
	return nil
}

// logTail returns the end of the server's error log and console output, the
// places where it says why it would not start.
func (s *ClickHouseServer) logTail() string {
	var b strings.Builder
	for _, name := range []string{"console", "err"} {
		path := filepath.Join(s.dir, name)
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- last lines of %s ---\n%s\n", path, lastLines(data, 20))
	}
	if b.Len() == 0 {
		return "(the server wrote no logs)"
	}
	return b.String()
}

// lastLines returns the last n lines of data.
func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
