package export

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Config tunes exports. The defaults suit one ClickHouse server on a small
// machine; every field has an --export-* flag and an AUDITLOG_EXPORT_* twin.
type Config struct {
	// MaxConcurrent caps the exports running at once in this process; one
	// more is refused with RESOURCE_EXHAUSTED (HTTP 429). Each export holds
	// one ClickHouse connection and a few blocks of rows.
	MaxConcurrent int
	// RetryAfter is the hint sent with that refusal (Retry-After header,
	// google.rpc.RetryInfo detail).
	RetryAfter time.Duration
	// FlushBytes is how many rendered bytes are gathered before they are
	// written to the client: the size of an HTTP chunk and of a gRPC
	// HttpBody message.
	FlushBytes int
	// FlushInterval bounds how long rendered rows wait in the buffer when
	// rows arrive slowly (a selective filter over a big table).
	FlushInterval time.Duration
	// BlockRows is ClickHouse's max_block_size for export queries. The
	// driver holds about four blocks at a time, so this, times the row size,
	// is what bounds the memory of one export; and since the server's
	// collector runs at GOGC=300 (internal/gcpace), the heap may grow to
	// four times what is live, so that memory counts four times over.
	// 1024 rows kept an export's peak RSS growth at 40-48 MB, 2048 at 55-59.
	BlockRows int
	// MaxExecutionTime bounds one export query inside ClickHouse
	// (max_execution_time, whole seconds); 0 means no limit.
	MaxExecutionTime time.Duration
	// MaxRows fails exports of more rows than this (ClickHouse
	// max_result_rows with result_overflow_mode=throw); the client sees the
	// mid-stream error marker. 0 means no limit.
	MaxRows uint64
	// ExternalSortBytes lets ClickHouse spill the ORDER BY of a big export
	// to disk beyond this many bytes (max_bytes_before_external_sort)
	// instead of failing on its memory limit; 0 keeps the server's setting.
	ExternalSortBytes uint64
	// GzipLevel is the compression level used when the client accepts gzip,
	// 1 (fastest) to 9 (smallest).
	GzipLevel int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxConcurrent:     4,
		RetryAfter:        10 * time.Second,
		FlushBytes:        64 << 10,
		FlushInterval:     200 * time.Millisecond,
		BlockRows:         1024,
		MaxExecutionTime:  time.Hour,
		ExternalSortBytes: 1 << 30,
		GzipLevel:         gzip.BestSpeed,
	}
}

// RegisterFlags binds the config to flags named export-*.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.MaxConcurrent, "export-max-concurrent", c.MaxConcurrent, "most exports running at once; more are refused with 429 / RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.RetryAfter, "export-retry-after", c.RetryAfter, "Retry-After hint sent when an export is refused for lack of capacity")
	fs.IntVar(&c.FlushBytes, "export-flush-bytes", c.FlushBytes, "bytes gathered before writing to the client (HTTP chunk / gRPC message size)")
	fs.DurationVar(&c.FlushInterval, "export-flush-interval", c.FlushInterval, "longest time rendered rows wait before they are written to the client")
	fs.IntVar(&c.BlockRows, "export-block-rows", c.BlockRows, "ClickHouse max_block_size of export queries (bounds the memory of one export)")
	fs.DurationVar(&c.MaxExecutionTime, "export-max-execution-time", c.MaxExecutionTime, "ClickHouse max_execution_time of one export query (0 = no limit)")
	fs.Uint64Var(&c.MaxRows, "export-max-rows", c.MaxRows, "fail exports of more rows than this (0 = no limit)")
	fs.Uint64Var(&c.ExternalSortBytes, "export-external-sort-bytes", c.ExternalSortBytes, "ClickHouse max_bytes_before_external_sort of export queries (0 = server setting)")
	fs.IntVar(&c.GzipLevel, "export-gzip-level", c.GzipLevel, "gzip level (1-9) when the client accepts gzip")
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	switch {
	case c.MaxConcurrent < 1:
		return errors.New("--export-max-concurrent must be at least 1")
	case c.RetryAfter < time.Second:
		return errors.New("--export-retry-after must be at least 1s")
	case c.FlushBytes < 1024 || c.FlushBytes > 4<<20:
		return fmt.Errorf("--export-flush-bytes %d: want 1024 to %d", c.FlushBytes, 4<<20)
	case c.FlushInterval <= 0:
		return errors.New("--export-flush-interval must be positive")
	case c.BlockRows < 1:
		return errors.New("--export-block-rows must be at least 1")
	case c.MaxExecutionTime < 0:
		return errors.New("--export-max-execution-time must not be negative")
	case c.MaxExecutionTime > 0 && c.MaxExecutionTime < time.Second:
		return errors.New("--export-max-execution-time must be 0 or at least 1s (ClickHouse counts whole seconds)")
	case c.GzipLevel < gzip.BestSpeed || c.GzipLevel > gzip.BestCompression:
		return fmt.Errorf("--export-gzip-level %d: want 1 to 9", c.GzipLevel)
	}
	return nil
}
