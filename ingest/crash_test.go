package ingest_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/auditlog/auditlog/internal/testharness"
)

// buildAuditlog builds cmd/auditlog into a temporary directory.
func buildAuditlog(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "auditlog")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/auditlog/auditlog/cmd/auditlog")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/auditlog: %v\n%s", err, out)
	}
	return bin
}

// proc is an `auditlog ingest` subprocess.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	err    error
}

// ingestArgs are the flags that point `auditlog ingest` at the test's
// servers, with small batches.
func ingestArgs(e *env) []string {
	return []string{"ingest",
		"--kafka-brokers", strings.Join(e.cfg.Kafka.Brokers, ","),
		"--kafka-topic", e.cfg.Kafka.Topic,
		"--kafka-group", e.cfg.Group,
		"--kafka-session-timeout", e.cfg.SessionTimeout.String(),
		"--kafka-rebalance-timeout", e.cfg.RebalanceTimeout.String(),
		"--store-timeout", e.cfg.StoreTimeout.String(),
		"--clickhouse-addr", e.cfg.ClickHouse.Addr,
		"--clickhouse-database", e.cfg.ClickHouse.Database,
		"--clickhouse-user", e.cfg.ClickHouse.User,
		"--batch-rows", fmt.Sprint(e.cfg.BatchRows),
		"--batch-interval", e.cfg.BatchInterval.String(),
		"--metrics-addr", "",
		"--log-level", "info",
	}
}

func startProc(t testing.TB, bin string, args []string, extraEnv ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd.Stderr = p.stderr
	p.cmd.Env = append(os.Environ(), extraEnv...)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ingester pid %d stderr (tail):\n%s", p.cmd.Process.Pid, tail(p.stderr.String(), 40))
		}
	})
	return p
}

// syncBuffer is a bytes.Buffer that a test may read while a process
// writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (p *proc) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("ingester pid %d did not exit within %v", p.cmd.Process.Pid, timeout)
		return nil
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// An ingester process killed with SIGKILL in the middle of batches, again
// and again, loses nothing and duplicates nothing a user can see: whatever
// was stored but not committed is read again and dropped as a duplicate.
//
// Each offset commit is held back by the broker for a moment, and the test
// kills the process while rows are stored but their offsets not yet
// committed, so every round exercises the redelivery of stored events.
func TestKill9MidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("kills ingester processes")
	}
	bin := buildAuditlog(t)
	k := testharness.NewDedicatedKafka(t, testharness.WithPartitions(3))
	k.Cluster.ControlKey(int16(kmsg.OffsetCommit), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.Cluster.KeepControl()
		k.Cluster.SleepControl(func() { time.Sleep(300 * time.Millisecond) })
		return nil, nil, false // then handle the commit as usual
	})
	e := newEnv(t, testharness.NewClickHouse(t), k)
	e.cfg.BatchRows = 150
	e.cfg.BatchInterval = 50 * time.Millisecond

	const rounds, perRound = 4, 2000
	sent := 0
	var storedUncommitted int64
	for round := range rounds {
		produceChunks(t, e.k, sampleEvents(t, perRound), 500)
		sent += perRound
		storedBefore := e.ch.QueryUint64(t, "SELECT toUInt64(uniqExact(id)) FROM events")
		p := startProc(t, bin, ingestArgs(e))
		// Every message is a distinct event, so more distinct events stored
		// than messages committed means a batch is stored and not committed.
		waitFor(t, time.Minute, func() string {
			stored := e.ch.QueryUint64(t, "SELECT toUInt64(uniqExact(id)) FROM events")
			committed := int64(sent) - groupLag(t, e.k, e.cfg.Group)
			if stored < storedBefore+300 || int64(stored) <= committed {
				return fmt.Sprintf("round %d: %d stored, %d committed: waiting for a batch stored and not committed", round, stored, committed)
			}
			return ""
		})
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = p.wait(t, 10*time.Second)
		stored := e.ch.QueryUint64(t, "SELECT toUInt64(uniqExact(id)) FROM events")
		lag := groupLag(t, e.k, e.cfg.Group)
		uncommitted := int64(stored) - (int64(sent) - lag)
		storedUncommitted += max(0, uncommitted)
		t.Logf("round %d: killed with %d of %d events stored, %d of them not committed", round, stored, sent, uncommitted)
	}
	if storedUncommitted == 0 {
		t.Fatalf("no kill left stored events uncommitted: the test did not exercise redelivery")
	}

	// A last process drains the rest and stops cleanly on SIGTERM.
	p := startProc(t, bin, ingestArgs(e))
	waitFor(t, 2*time.Minute, func() string {
		if lag := groupLag(t, e.k, e.cfg.Group); lag != 0 {
			return fmt.Sprintf("group lag %d", lag)
		}
		return ""
	})
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.wait(t, time.Minute); err != nil {
		var exit *exec.ExitError
		errors.As(err, &exit)
		t.Errorf("ingester exited with %v after SIGTERM; want exit status 0", err)
	}
	if !strings.Contains(p.stderr.String(), "stopped cleanly") {
		t.Errorf("ingester did not log a clean stop:\n%s", tail(p.stderr.String(), 10))
	}
	wantCounts(t, e.ch, sent)
}
