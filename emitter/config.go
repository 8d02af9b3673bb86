package emitter

import (
	"errors"
	"flag"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/internal/config"
	"github.com/auditlog/auditlog/schemas"
)

// Config says where and how to emit events. Zero fields take the values of
// DefaultConfig.
type Config struct {
	// Brokers are the Kafka bootstrap addresses, host:port.
	Brokers []string
	// Topic receives the events.
	Topic string

	// Async makes Emit return once the event is validated and queued,
	// instead of once Kafka acknowledged it.
	Async bool
	// BufferSize bounds the events queued but not yet acknowledged in async
	// mode.
	BufferSize int
	// BufferWait is how long an async Emit waits for room in a full queue
	// before failing with ErrBufferFull; 0 fails at once.
	BufferWait time.Duration
	// OnFailure, in async mode, receives each event that Kafka did not
	// accept after MaxAttempts attempts, so that the caller can keep it. It
	// runs on the writer's goroutine: it must not block for long. Failures
	// are logged and counted whether or not it is set.
	OnFailure func(Failure)

	// MaxAttempts is how many times a batch is sent before giving up.
	MaxAttempts int
	// BackoffMin and BackoffMax bound the wait between attempts, which
	// grows exponentially.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// BatchTimeout is how long a partial batch waits for more events.
	BatchTimeout time.Duration
	// BatchBytes bounds a produce request; one event must fit in it. Keep it
	// at or below the broker's message.max.bytes (1 MB by default).
	BatchBytes int64
	// WriteTimeout bounds one produce request.
	WriteTimeout time.Duration

	// Schemas validates payloads.
	Schemas *schemas.Registry
	// RequireSchema rejects events whose (action, version) has no schema.
	// Off by default, as in the ingester, which stores such events marked as
	// unvalidated.
	RequireSchema bool

	// Logger receives send failures.
	Logger *slog.Logger
	// Metrics, when not nil, receives the emitter's counters
	// (auditlog_emitter_*).
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults: DESIGN.md's broker and topic, a
// synchronous emitter, ten attempts with backoff from 100ms to 5s.
func DefaultConfig() Config {
	return Config{
		Brokers:      []string{"localhost:9092"},
		Topic:        "audit.events",
		BufferSize:   10000,
		MaxAttempts:  10,
		BackoffMin:   100 * time.Millisecond,
		BackoffMax:   5 * time.Second,
		BatchTimeout: 5 * time.Millisecond,
		BatchBytes:   1 << 20,
		WriteTimeout: 10 * time.Second,
	}
}

// RegisterFlags binds the Kafka settings to flags (--kafka-brokers,
// --kafka-topic, …), each with its AUDITLOG_* twin through
// internal/config.Parse.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var((*config.StringList)(&c.Brokers), "kafka-brokers", "comma-separated Kafka `host:port` list")
	fs.StringVar(&c.Topic, "kafka-topic", c.Topic, "Kafka topic the events are written to")
	fs.IntVar(&c.MaxAttempts, "kafka-max-attempts", c.MaxAttempts, "attempts to send a batch before giving up")
	fs.DurationVar(&c.WriteTimeout, "kafka-write-timeout", c.WriteTimeout, "timeout of one produce request")
	fs.BoolVar(&c.RequireSchema, "require-schema", c.RequireSchema, "reject events whose action and version have no schema")
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if len(c.Brokers) == 0 {
		c.Brokers = d.Brokers
	}
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.BufferSize == 0 {
		c.BufferSize = d.BufferSize
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.BackoffMin == 0 {
		c.BackoffMin = d.BackoffMin
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = d.BackoffMax
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = d.BatchTimeout
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Schemas == nil {
		c.Schemas = schemas.Embedded()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first invalid field, naming it.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return errors.New("emitter: Brokers (--kafka-brokers) is empty")
	case c.Topic == "":
		return errors.New("emitter: Topic (--kafka-topic) is empty")
	case c.BufferSize < 1:
		return errors.New("emitter: BufferSize must be at least 1")
	case c.BufferWait < 0:
		return errors.New("emitter: BufferWait must not be negative")
	case c.MaxAttempts < 1:
		return errors.New("emitter: MaxAttempts (--kafka-max-attempts) must be at least 1")
	case c.BackoffMin <= 0 || c.BackoffMax < c.BackoffMin:
		return errors.New("emitter: BackoffMin must be positive and at most BackoffMax")
	case c.BatchTimeout <= 0:
		return errors.New("emitter: BatchTimeout must be positive")
	case c.BatchBytes < 1024:
		return errors.New("emitter: BatchBytes must be at least 1024")
	case c.WriteTimeout <= 0:
		return errors.New("emitter: WriteTimeout (--kafka-write-timeout) must be positive")
	}
	return nil
}
