// Package chserver runs a clickhouse-server process (the Debian package's
// binary) in a directory of its own on ports of its own: the test harness
// starts throwaway servers with it and `auditlog dev` starts the local one.
// Everything the server reads or writes, apart from the packaged config.xml,
// lives under that directory, so several servers run side by side and the
// system installation is left alone.
package chserver

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
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

const (
	// packagedConfig is the config the Debian package installs. It is
	// reused and every path and port is overridden on the command line.
	packagedConfig = "/etc/clickhouse-server/config.xml"

	// startTimeout bounds how long a server may take to answer. It listens
	// within about a second; the margin is for a loaded machine.
	startTimeout = 60 * time.Second

	// stopTimeout is how long a server gets to exit after SIGTERM before it
	// is killed. A clean shutdown takes about two seconds (see usersXML).
	stopTimeout = 5 * time.Second

	// startAttempts covers the race between picking a free port and the
	// server binding it: another process may take the port in between.
	startAttempts = 3
)

// InstallHint says how to get ClickHouse; every error about a missing binary
// carries it, because that error is the first thing a new machine shows.
const InstallHint = "install it with `apt-get update && apt-get install -y clickhouse-server clickhouse-client` " +
	"(or `make deps`, or scripts/install-clickhouse.sh)"

// usersXML replaces the package's users.xml. It differs in one way that
// matters: poll_interval 1 instead of 10 seconds. An idle native connection
// (every clickhouse-go pool holds some) checks for shutdown only once per
// poll_interval, so with the default a SIGTERM takes about 12 seconds instead
// of 2.
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

// tokenFile is the name of the identity token file in user_files.
const tokenFile = "chserver-token"

// Options says where a server keeps its data and which ports it takes.
type Options struct {
	// Dir holds the server's data, logs and config; created when missing.
	// Data in it survives a restart.
	Dir string
	// TCPPort and HTTPPort are the native and HTTP ports; 0 picks free
	// ports (and retries on a clash).
	TCPPort  int
	HTTPPort int
	// Kill, when set, makes the kernel kill the server when the OS thread
	// that started it exits: tests use it so that a crashed test binary
	// leaves no server behind.
	KillWithParent bool
}

// Server is a clickhouse-server process.
type Server struct {
	// TCPAddr is host:port of the native protocol.
	TCPAddr string
	// HTTPAddr is host:port of the HTTP interface.
	HTTPAddr string
	// Dir is the server's directory.
	Dir string

	bin  string
	args []string
	opts Options
	// token is written to a file in the server's user_files directory. A
	// server that reads it back is this one and not another that happens to
	// listen on the port.
	token string

	mu   sync.Mutex
	proc *process // nil while stopped
}

// process is one run of clickhouse-server.
type process struct {
	cmd *exec.Cmd
	// exited is closed once the process has exited; waitErr is set before.
	exited  chan struct{}
	waitErr error
}

// FindBinary looks on PATH and then in the Debian package's directories:
// clickhouse-server lives in /usr/sbin, which is not on every PATH.
func FindBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH, in /usr/sbin or in /usr/bin: %s", name, InstallHint)
}

// Start starts a server and waits until it answers.
func Start(opts Options) (*Server, error) {
	bin, err := FindBinary("clickhouse-server")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(packagedConfig); err != nil {
		return nil, fmt.Errorf("clickhouse-server config: %w; %s", err, InstallHint)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, bin: bin, opts: opts, token: fmt.Sprintf("%016x", rand.Uint64())}
	if err := s.writeFiles(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for attempt := 1; ; attempt++ {
		tcp, http, err := pickPorts(opts.TCPPort, opts.HTTPPort)
		if err != nil {
			return nil, err
		}
		s.setPorts(tcp, http)
		err = s.launchLocked()
		if err == nil {
			return s, nil
		}
		portsChosen := opts.TCPPort == 0 || opts.HTTPPort == 0
		if attempt == startAttempts || !portsChosen || !strings.Contains(s.LogTail(), "Address already in use") {
			return nil, err
		}
	}
}

// Restart starts a stopped server again with the same ports and data.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("clickhouse-server %s is already running", s.TCPAddr)
	}
	return s.launchLocked()
}

// Pid is the process id of the running server, 0 while it is stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Running reports whether the process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

func (s *Server) writeFiles() error {
	if err := os.MkdirAll(filepath.Join(s.Dir, "uf"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.Dir, "uf", tokenFile), []byte(s.token+"\n"), 0o644)
}

// pickPorts returns the wanted ports, or free ones for those left 0. The
// interserver port is always free: nothing connects to it.
func pickPorts(tcp, http int) (int, int, error) {
	free, err := FreePorts(2)
	if err != nil {
		return 0, 0, err
	}
	if tcp == 0 {
		tcp = free[0]
	}
	if http == 0 {
		http = free[1]
	}
	return tcp, http, nil
}

// setPorts builds the command line.
func (s *Server) setPorts(tcp, http int) {
	d := s.Dir + string(filepath.Separator)
	s.TCPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tcp))
	s.HTTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(http))
	interserver, err := FreePorts(1)
	if err != nil {
		interserver = []int{0}
	}
	s.args = []string{
		"--config-file=" + packagedConfig,
		"--",
		"--path=" + d,
		"--tmp_path=" + d + "tmp/",
		"--user_files_path=" + d + "uf/",
		"--format_schema_path=" + d + "fs/",
		"--logger.log=" + d + "log",
		"--logger.errorlog=" + d + "err",
		"--tcp_port=" + strconv.Itoa(tcp),
		"--http_port=" + strconv.Itoa(http),
		"--interserver_http_port=" + strconv.Itoa(interserver[0]),
		"--users_config=" + d + "users.xml",
		// The packaged config also listens on ::1, which fails on machines
		// without IPv6; nothing but local processes needs the server.
		"--listen_host=127.0.0.1",
	}
}

// FreePorts returns n distinct ports that were free a moment ago. All n
// listeners are held open together so the kernel cannot hand out the same
// port twice.
func FreePorts(n int) ([]int, error) {
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

// launchLocked starts the process and waits until it answers. On failure
// the process is gone and the error carries the end of its logs.
func (s *Server) launchLocked() error {
	// The console gets the few lines the server prints before its logger is
	// set up, such as config errors.
	console, err := os.OpenFile(filepath.Join(s.Dir, "console"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer console.Close() // the child keeps its own copy of the descriptor

	cmd := exec.Command(s.bin, s.args...)
	cmd.Dir = s.Dir
	cmd.Stdout = console
	cmd.Stderr = console
	cmd.SysProcAttr = procAttr(s.opts.KillWithParent)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	s.proc = p

	if err := s.waitReady(p); err != nil {
		s.stopLocked()
		return fmt.Errorf("clickhouse-server on %s in %s: %w\n%s", s.TCPAddr, s.Dir, err, s.LogTail())
	}
	return nil
}

// waitReady asks until the server answers, the process exits, or
// startTimeout passes.
func (s *Server) waitReady(p *process) error {
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
func (s *Server) identify() error {
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{s.TCPAddr},
		Auth:        clickhouse.Auth{Username: "default"},
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

// Stop sends SIGTERM, waits a few seconds, then kills; the data directory
// and ports are kept for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked()
}

func (s *Server) stopLocked() error {
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
	// A server that ignores SIGTERM this long is stuck.
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill clickhouse-server %s: %w", s.TCPAddr, err)
	}
	<-p.exited
	return nil
}

// LogTail returns the end of the server's error log and console output, the
// places where it says why it would not start.
func (s *Server) LogTail() string {
	var b strings.Builder
	for _, name := range []string{"console", "err"} {
		path := filepath.Join(s.Dir, name)
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

func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
