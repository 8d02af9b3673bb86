package gcpace

import (
	"runtime/debug"
	"testing"
)

func TestSetAppliesThePercent(t *testing.T) {
	t.Setenv("GOGC", "")
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	Set(Serve)
	if got := debug.SetGCPercent(100); got != Serve {
		t.Errorf("GC percent after Set(%d) = %d", Serve, got)
	}
}

func TestSetLeavesGOGCFromTheEnvironment(t *testing.T) {
	t.Setenv("GOGC", "150")
	defer debug.SetGCPercent(debug.SetGCPercent(150))
	Set(Serve)
	if got := debug.SetGCPercent(150); got != 150 {
		t.Errorf("GC percent after Set(%d) with GOGC=150 = %d, want GOGC's 150", Serve, got)
	}
}

func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	t.Setenv("GOMEMLIMIT", "")
	if SetMemoryLimit(0) {
		t.Error("SetMemoryLimit(0) set a limit")
	}
	if !SetMemoryLimit(64) || debug.SetMemoryLimit(-1) != 64<<20 {
		t.Error("SetMemoryLimit(64) did not set 64 MiB")
	}
	t.Setenv("GOMEMLIMIT", "1GiB")
	if SetMemoryLimit(32) {
		t.Error("SetMemoryLimit(32) applied although GOMEMLIMIT is set")
	}
}
