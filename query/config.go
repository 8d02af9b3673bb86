package query

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Config tunes the query service.
type Config struct {
	// PageTokenKey is the secret (at least 16 bytes) that signs page tokens
	// and stream cursors with HMAC-SHA256. Every replica must share it and it
	// must survive restarts, or SIEM cursors and page tokens stop working.
	// Empty: a random key is generated at start (with a warning).
	PageTokenKey string
	// DefaultPageSize is the ListEvents page size when page_size is 0.
	DefaultPageSize int
	// MaxPageSize caps page_size; larger values are clamped to it.
	MaxPageSize int
	// QueryTimeout bounds each ClickHouse query (sent as the
	// max_execution_time setting and as a context deadline).
	QueryTimeout time.Duration
	// MaxConcurrentQueries caps the ClickHouse queries the service runs at
	// once; further requests wait up to QueueWait, then get
	// RESOURCE_EXHAUSTED.
	MaxConcurrentQueries int
	// QueueWait is how long a request waits for a query slot.
	QueueWait time.Duration
	// StreamLag is the visibility lag of StreamEvents: a poll reads only rows
	// whose server-stamped ingested_at is at most the server's now() minus
	// StreamLag (and before any INSERT still running), because a block
	// stamped at second S becomes visible a moment after S.
	StreamLag time.Duration
	// StreamPollInterval is how often a following stream polls for new rows
	// once it has caught up.
	StreamPollInterval time.Duration
	// StreamBatch is the most rows one stream poll reads.
	StreamBatch int
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DefaultPageSize:      100,
		MaxPageSize:          1000,
		QueryTimeout:         30 * time.Second,
		MaxConcurrentQueries: 8,
		QueueWait:            2 * time.Second,
		StreamLag:            2 * time.Second,
		StreamPollInterval:   500 * time.Millisecond,
		StreamBatch:          1000,
	}
}

// RegisterFlags binds the config to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.PageTokenKey, "page-token-key", c.PageTokenKey, "secret (>= 16 bytes) signing page tokens and stream cursors; share it between replicas and keep it across restarts (empty: random per process, tokens and cursors die with it)")
	fs.IntVar(&c.DefaultPageSize, "default-page-size", c.DefaultPageSize, "ListEvents page size when the request gives none")
	fs.IntVar(&c.MaxPageSize, "max-page-size", c.MaxPageSize, "largest ListEvents page; larger page_size values are clamped")
	fs.DurationVar(&c.QueryTimeout, "query-timeout", c.QueryTimeout, "longest a single ClickHouse query may run (max_execution_time)")
	fs.IntVar(&c.MaxConcurrentQueries, "max-concurrent-queries", c.MaxConcurrentQueries, "most ClickHouse queries run at once; more wait --query-queue-wait, then get RESOURCE_EXHAUSTED")
	fs.DurationVar(&c.QueueWait, "query-queue-wait", c.QueueWait, "how long a request waits for a query slot")
	fs.DurationVar(&c.StreamLag, "stream-lag", c.StreamLag, "StreamEvents visibility lag: read only rows ingested at least this long ago by the ClickHouse clock (and before any running INSERT)")
	fs.DurationVar(&c.StreamPollInterval, "stream-poll-interval", c.StreamPollInterval, "how often a following StreamEvents polls for new rows")
	fs.IntVar(&c.StreamBatch, "stream-batch", c.StreamBatch, "most rows a StreamEvents poll reads")
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	switch {
	case c.PageTokenKey != "" && len(c.PageTokenKey) < 16:
		return errors.New("--page-token-key must be at least 16 bytes")
	case c.MaxPageSize < 1:
		return errors.New("--max-page-size must be at least 1")
	case c.DefaultPageSize < 1 || c.DefaultPageSize > c.MaxPageSize:
		return fmt.Errorf("--default-page-size must be from 1 to --max-page-size (%d)", c.MaxPageSize)
	case c.QueryTimeout < time.Second:
		return errors.New("--query-timeout must be at least 1s (ClickHouse's max_execution_time counts seconds)")
	case c.MaxConcurrentQueries < 1:
		return errors.New("--max-concurrent-queries must be at least 1")
	case c.QueueWait < 0:
		return errors.New("--query-queue-wait must not be negative")
	case c.StreamLag < 0:
		return errors.New("--stream-lag must not be negative")
	case c.StreamPollInterval <= 0:
		return errors.New("--stream-poll-interval must be positive")
	case c.StreamBatch < 1:
		return errors.New("--stream-batch must be at least 1")
	}
	return nil
}
