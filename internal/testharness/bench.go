package testharness

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Benchmarks compare our code with ClickHouse's own client on a shared
// machine whose other load comes and goes: one pair of runs can be off by
// a third either way. So they run the two contenders in alternating rounds
// (BenchRounds of them) and report both the median of the paired rounds'
// ratios and the ratio of the best round of each.

// BenchRounds is the number of measured rounds a benchmark runs:
// AUDITLOG_BENCH_ROUNDS, default def.
func BenchRounds(tb testing.TB, def int) int {
	tb.Helper()
	v := os.Getenv("AUDITLOG_BENCH_ROUNDS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		tb.Fatalf("AUDITLOG_BENCH_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// Rounds collects the durations of the reference (ClickHouse's client) and
// ours for the same work, one pair per round. Ratios are ref/ours: above 1,
// ours is faster.
type Rounds struct {
	ref, ours []time.Duration
}

// Add records one round.
func (r *Rounds) Add(ref, ours time.Duration) {
	r.ref = append(r.ref, ref)
	r.ours = append(r.ours, ours)
}

// Len is the number of rounds recorded.
func (r *Rounds) Len() int { return len(r.ref) }

// MedianRatio is the median of the rounds' ratios (the upper one of the two
// middle ratios when the count is even).
func (r *Rounds) MedianRatio() float64 {
	ratios := make([]float64, len(r.ref))
	for i := range r.ref {
		ratios[i] = r.ref[i].Seconds() / r.ours[i].Seconds()
	}
	slices.Sort(ratios)
	return ratios[len(ratios)/2]
}

// Best returns the shortest duration of each contender and their ratio.
func (r *Rounds) Best() (ref, ours time.Duration, ratio float64) {
	ref, ours = slices.Min(r.ref), slices.Min(r.ours)
	return ref, ours, ref.Seconds() / ours.Seconds()
}

// ProcStatusKB reads a field given in kB, such as VmRSS or VmHWM, of
// /proc/PID/status; pid 0 means this process.
func ProcStatusKB(tb testing.TB, pid int, field string) int64 {
	tb.Helper()
	data, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		tb.Fatalf("testharness: %v", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("testharness: %s %q: %v", field, rest, err)
			}
			return kb
		}
	}
	tb.Fatalf("testharness: no %s in %s", field, procPath(pid, "status"))
	return 0
}

// ResetPeakRSS resets VmHWM of this process to its current RSS (Linux
// clear_refs), so that a later ProcStatusKB(tb, 0, "VmHWM") is the peak of
// what happened in between.
func ResetPeakRSS(tb testing.TB) {
	tb.Helper()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		tb.Fatalf("testharness: resetting the peak RSS: %v", err)
	}
}

// ProcessCPU is the user plus system CPU time a process has used so far,
// from /proc/PID/stat (10 ms resolution); pid 0 means this process.
func ProcessCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	data, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		tb.Fatalf("testharness: %v", err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of them, in clock ticks
	// (100 per second on Linux).
	text := string(data)
	f := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// MachineBusy returns the CPU time all cores of the machine spent busy (not
// idle or waiting for I/O) since boot, from /proc/stat: the difference over
// a run, divided by its duration, is how many cores were busy.
func MachineBusy(tb testing.TB) time.Duration {
	tb.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		tb.Fatalf("testharness: %v", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var busy int64
	// cpu user nice system idle iowait irq softirq steal ...
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return time.Duration(busy) * 10 * time.Millisecond
}

func procPath(pid int, file string) string {
	if pid == 0 {
		return "/proc/self/" + file
	}
	return fmt.Sprintf("/proc/%d/%s", pid, file)
}
