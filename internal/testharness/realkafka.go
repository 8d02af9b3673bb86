package testharness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RealKafka is a single-node Apache Kafka broker (KRaft) in a JVM of its own,
// started by scripts/kafka/kafka.sh, for tests that must stop, kill or
// restart a real broker ("broker restarted during ingest"). A restarted
// broker keeps its address and its data. It is stopped when the test ends.
type RealKafka struct {
	// Brokers is the broker's host:port, the same across restarts.
	Brokers []string
	// Dir holds the broker's config, data, pid file and logs (server.log).
	Dir string

	script string
	env    []string
}

// StartRealKafka starts a private broker for this test, which takes about
// 5-10 seconds on 2 cores. It needs the broker's jars in the cache: when they
// are missing it fails the test (it never skips) saying to run
// scripts/kafka/kafka.sh fetch.
func StartRealKafka(t testing.TB) *RealKafka {
	t.Helper()
	k, err := startRealKafka(t.TempDir(), os.Environ())
	if err != nil {
		t.Fatalf("testharness: real Kafka: %v", err)
	}
	// Registered after t.TempDir's cleanup, so it runs before the directory
	// is removed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testharness: real Kafka: end of %s:\n%s", filepath.Join(k.Dir, "server.log"), k.logTail(40))
		}
		if err := k.stop(); err != nil {
			t.Errorf("testharness: real Kafka: %v", err)
		}
	})
	return k
}

// startRealKafka runs `kafka.sh start dir` with env and reads the broker
// address it prints.
func startRealKafka(dir string, env []string) (*RealKafka, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	k := &RealKafka{
		Dir:    dir,
		script: filepath.Join(root, "scripts", "kafka", "kafka.sh"),
		// The script kills the broker when this process exits, so a test
		// binary that panics or is killed leaves no JVM behind.
		env: append(env, "KAFKA_WATCH_PID="+strconv.Itoa(os.Getpid())),
	}
	if err := k.start(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *RealKafka) start() error {
	out, err := k.run("start")
	if err != nil {
		return err
	}
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "KAFKA_BROKERS="); ok {
			brokers := splitBrokers(v)
			if k.Brokers != nil && !equalStrings(k.Brokers, brokers) {
				return fmt.Errorf("broker restarted on %v, was %v", brokers, k.Brokers)
			}
			k.Brokers = brokers
			return nil
		}
	}
	return fmt.Errorf("%s start printed no KAFKA_BROKERS= line:\n%s", k.script, out)
}

func (k *RealKafka) stop() error {
	_, err := k.run("stop")
	return err
}

// run runs the script and returns its stdout; its stderr (where it says what
// went wrong, e.g. that the jars are missing) is in the error.
func (k *RealKafka) run(cmd string) (string, error) {
	c := exec.Command(k.script, cmd, k.Dir)
	c.Env = k.env
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return "", fmt.Errorf("%s %s %s: %v\n%s", k.script, cmd, k.Dir, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Stop shuts the broker down cleanly (SIGTERM; SIGKILL after 30 seconds) and
// returns once the process is gone.
func (k *RealKafka) Stop(t testing.TB) {
	t.Helper()
	if err := k.stop(); err != nil {
		t.Fatalf("testharness: real Kafka: %v", err)
	}
}

// Kill ends the broker with SIGKILL, as a crash would, and returns once the
// process is gone. Start brings it back with the data it had flushed.
func (k *RealKafka) Kill(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.Dir, "kafka.pid"))
	if err != nil {
		t.Fatalf("testharness: real Kafka: kill: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("testharness: real Kafka: kill: pid file: %v", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("testharness: real Kafka: kill %d: %v", pid, err)
	}
	// The script waits for the process to be gone (not a zombie) and
	// removes the pid file, so a following Start sees a stopped broker.
	if err := k.stop(); err != nil {
		t.Fatalf("testharness: real Kafka: %v", err)
	}
}

// Start starts a stopped or killed broker again on the same address with
// the same data and returns once it answers metadata requests.
func (k *RealKafka) Start(t testing.TB) {
	t.Helper()
	start := time.Now()
	if err := k.start(); err != nil {
		t.Fatalf("testharness: real Kafka: %v", err)
	}
	t.Logf("testharness: real Kafka restarted on %v in %v", k.Brokers, time.Since(start).Round(time.Millisecond))
}

// NewTopics creates a topic and its ".dlq" topic on this broker for the
// test, as NewKafka does on the shared cluster. They go away with the
// broker.
func (k *RealKafka) NewTopics(t testing.TB, opts ...KafkaOption) *Kafka {
	t.Helper()
	return newTopics(t, k.Brokers, opts)
}

// logTail returns the last n lines of the broker's log.
func (k *RealKafka) logTail(n int) string {
	b, err := os.ReadFile(filepath.Join(k.Dir, "server.log"))
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// repoRoot finds the module root from the working directory, which go test
// sets to the package's directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kafka", "kafka.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("scripts/kafka/kafka.sh not found above the working directory")
		}
		dir = parent
	}
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}
