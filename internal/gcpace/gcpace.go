// Package gcpace sets how often the Go garbage collector runs in the two
// auditlog daemons. Both stream data through memory that they hold only
// briefly, and both are measured against ClickHouse's own client on a
// two-core machine, where the collector's CPU is CPU the other side of the
// pipeline (ClickHouse) does not get.
//
//   - The ingester holds a bounded backlog (the queue and two batches, about
//     100 MB) under a soft memory limit (--memory-limit-mib). At Go's default
//     GOGC=100 the collector ran whenever the heap doubled that backlog; at
//     400 the limit decides, and the ingester spent 10-20 % less CPU per
//     event at the same peak RSS.
//   - The API holds little (tens of MB), but an export makes about 1.5 KB of
//     garbage per row: clickhouse-go allocates a string per String cell and
//     fresh column buffers per block. At GOGC=100 the collector ran each
//     time the export had made as much garbage as the process held; at 300
//     the export used 20-25 % less CPU per row. The heap may then grow to four times what is live, so an
//     export's peak RSS growth rose from ~25 MB to 40-48 MB (with 1024-row
//     blocks, export.Config.BlockRows; the target is < 64 MB). It is about
//     three times the server's live heap: a server holding much more than
//     an export's blocks would want a lower GOGC.
//
// GOGC and GOMEMLIMIT in the environment win over both.
package gcpace

import (
	"os"
	"runtime/debug"
)

const (
	// Ingest is the GC percent of `auditlog ingest` while a memory limit
	// is set (without one, Go's default stays: nothing else bounds the heap).
	Ingest = 400
	// Serve is the GC percent of `auditlog serve` (and the API of
	// `auditlog dev`).
	Serve = 300
)

// Set sets the GC percent, unless GOGC is set in the environment.
func Set(percent int) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
}

// SetMemoryLimit sets a soft memory limit of mib MiB, unless GOMEMLIMIT is
// set in the environment. It reports whether a limit set here applies.
func SetMemoryLimit(mib int) bool {
	if mib <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return false
	}
	debug.SetMemoryLimit(int64(mib) << 20)
	return true
}
