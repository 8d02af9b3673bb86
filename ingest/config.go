package ingest

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/auditlog/auditlog/internal/kafkaconf"
	"github.com/auditlog/auditlog/internal/store"
)

// Unknown-schema policies for Config.UnknownSchema.
const (
	// UnknownSchemaStore stores events whose (action, version) has no schema,
	// marked validated=0.
	UnknownSchemaStore = "store"
	// UnknownSchemaQuarantine quarantines them instead.
	UnknownSchemaQuarantine = "quarantine"
)

// Config configures the ingester.
type Config struct {
	// Kafka says how to reach the brokers and which topic to consume.
	Kafka kafkaconf.Config
	// ClickHouse says where to store events.
	ClickHouse store.Config

	// Group is the Kafka consumer group; every ingester of one deployment
	// uses the same group so that partitions are shared among them.
	Group string
	// DLQTopic receives rejected messages; empty means Kafka.Topic + ".dlq".
	DLQTopic string
	// SessionTimeout is how long the group coordinator waits for a silent
	// member (a crashed ingester) before giving its partitions to others.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for members to
	// rejoin during a rebalance.
	RebalanceTimeout time.Duration

	// BatchRows flushes a batch when it holds this many messages. Bigger
	// batches make bigger ClickHouse parts, which ClickHouse merges less;
	// with the batch being stored, the next one and the queue they bound
	// the ingester's memory (20,000 kept its peak RSS near 235 MB on the
	// benchmark's 700-byte events under the default 220 MiB heap limit;
	// 30,000 had the garbage collector take a quarter of the CPU under a
	// 200 MiB limit, measured before the collector was paced by that limit,
	// see internal/gcpace). ClickHouse works less per row on bigger
	// INSERTs: 9-9.5 µs of its CPU per row at 60,000 rows, 11-14 at 20,000,
	// most of the difference merges of the smaller parts.
	BatchRows int
	// BatchBytes flushes a batch when its messages hold this many bytes.
	BatchBytes int
	// BatchInterval flushes a non-empty batch this long after its first
	// message arrived, so a quiet topic is stored promptly.
	BatchInterval time.Duration
	// QueueMessages is the capacity of the queue between the partition
	// fetchers and the batcher. With the batch being stored and the one
	// being collected it bounds the messages held in memory: fetching stops
	// while all three are full.
	QueueMessages int
	// QueueBytes bounds the same queue by the messages' bytes (key and
	// value), so that a burst of big messages cannot hold thousands of them;
	// a message bigger than all of it waits for the queue to empty. Each
	// partition's reader holds up to 16 messages more (readAhead) and the
	// fetch response it reads them from (at most 2 MiB, or twice
	// MaxMessageBytes).
	QueueBytes int
	// MaxMessageBytes is the largest message accepted; larger ones are
	// quarantined without being decoded.
	MaxMessageBytes int

	// UnknownSchema is what happens to an event whose (action, version) has
	// no schema: "store" (validated=0) or "quarantine".
	UnknownSchema string
	// SchemasDir holds *.json schemas overriding or extending the built-in
	// ones; empty uses the built-in schemas only.
	SchemasDir string
	// RecentIDs is the size of the window of recently stored ids (id ->
	// content hash) checked before asking ClickHouse. It must hold a whole
	// batch: a batch's ids are looked up in ClickHouse while the batch
	// before it is being inserted, so only the window sees that batch's.
	RecentIDs int

	// RetryMin and RetryMax bound the exponential backoff between attempts
	// to store a batch while ClickHouse (or the DLQ) fails.
	RetryMin time.Duration
	RetryMax time.Duration
	// StoreTimeout bounds one attempt to store a batch (or to write its
	// rejects to the DLQ). It is at most half of RebalanceTimeout: when the
	// group rebalances, this member learns of it at its next heartbeat (at
	// most a quarter of RebalanceTimeout later, see heartbeatInterval) and
	// lets the attempt under way finish (an insert cut short may still
	// land) before it rejoins; a member that rejoins late is dropped from
	// the group, which rebalances again.
	StoreTimeout time.Duration
	// ShutdownTimeout bounds storing and committing the last batch after
	// a shutdown was asked for.
	ShutdownTimeout time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Kafka:            kafkaconf.DefaultConfig(),
		ClickHouse:       store.DefaultConfig(),
		Group:            "auditlog-ingest",
		SessionTimeout:   30 * time.Second,
		RebalanceTimeout: 30 * time.Second,
		BatchRows:        20000,
		BatchBytes:       16 << 20,
		BatchInterval:    time.Second,
		QueueMessages:    5000,
		QueueBytes:       16 << 20,
		MaxMessageBytes:  1 << 20,
		UnknownSchema:    UnknownSchemaStore,
		RecentIDs:        200000,
		RetryMin:         200 * time.Millisecond,
		RetryMax:         30 * time.Second,
		StoreTimeout:     15 * time.Second,
		ShutdownTimeout:  30 * time.Second,
	}
}

// RegisterFlags binds the config to flags (kafka-*, clickhouse-* and the
// ingester's own).
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Kafka.RegisterFlags(fs)
	c.ClickHouse.RegisterFlags(fs)
	fs.StringVar(&c.Group, "kafka-group", c.Group, "Kafka consumer `group` shared by all ingesters")
	fs.StringVar(&c.DLQTopic, "kafka-dlq-topic", c.DLQTopic, "Kafka `topic` for rejected messages (default: the events topic + \".dlq\")")
	fs.DurationVar(&c.SessionTimeout, "kafka-session-timeout", c.SessionTimeout, "how long the group waits for a silent ingester before moving its partitions")
	fs.DurationVar(&c.RebalanceTimeout, "kafka-rebalance-timeout", c.RebalanceTimeout, "how long the group waits for members to rejoin during a rebalance")
	fs.IntVar(&c.BatchRows, "batch-rows", c.BatchRows, "store a batch when it holds this many messages")
	fs.IntVar(&c.BatchBytes, "batch-bytes", c.BatchBytes, "store a batch when its messages hold this many bytes")
	fs.DurationVar(&c.BatchInterval, "batch-interval", c.BatchInterval, "store a non-empty batch at the latest this long after its first message")
	fs.IntVar(&c.QueueMessages, "queue-messages", c.QueueMessages, "messages queued between fetching and batching; fetching pauses when full")
	fs.IntVar(&c.QueueBytes, "queue-bytes", c.QueueBytes, "bytes of messages queued between fetching and batching; fetching pauses when full")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "largest message accepted; larger ones are quarantined")
	fs.StringVar(&c.UnknownSchema, "unknown-schema", c.UnknownSchema, "events of an (action, version) without schema: `store` (marked unvalidated) or quarantine")
	fs.StringVar(&c.SchemasDir, "schemas-dir", c.SchemasDir, "`directory` of *.json schemas overriding or extending the built-in ones")
	fs.IntVar(&c.RecentIDs, "recent-ids", c.RecentIDs, "how many recently stored event ids to remember for deduplication (at least --batch-rows)")
	fs.DurationVar(&c.RetryMin, "retry-min", c.RetryMin, "first backoff after a failed attempt to store a batch")
	fs.DurationVar(&c.RetryMax, "retry-max", c.RetryMax, "longest backoff between attempts to store a batch")
	fs.DurationVar(&c.StoreTimeout, "store-timeout", c.StoreTimeout, "timeout of one attempt to store a batch (at most half of --kafka-rebalance-timeout)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "time allowed to store and commit the last batch at shutdown")
}

// heartbeatInterval is how often the member tells the group coordinator
// it is alive, and so how late it may learn of a rebalance: kafka-go's
// default of 3s, or less, so that at least three heartbeats fit in
// SessionTimeout and at most a quarter of RebalanceTimeout passes.
func (c Config) heartbeatInterval() time.Duration {
	return min(3*time.Second, c.SessionTimeout/3, c.RebalanceTimeout/4)
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	if err := c.Kafka.Validate(); err != nil {
		return err
	}
	if err := c.ClickHouse.Validate(); err != nil {
		return err
	}
	switch {
	case c.Group == "":
		return errors.New("--kafka-group is empty")
	case c.DLQTopic != "" && c.DLQTopic == c.Kafka.Topic:
		return fmt.Errorf("--kafka-dlq-topic %q is the events topic", c.DLQTopic)
	case c.SessionTimeout <= 0:
		return errors.New("--kafka-session-timeout must be positive")
	case c.RebalanceTimeout <= 0:
		return errors.New("--kafka-rebalance-timeout must be positive")
	case c.BatchRows < 1:
		return errors.New("--batch-rows must be at least 1")
	case c.BatchBytes < 1:
		return errors.New("--batch-bytes must be at least 1")
	case c.BatchInterval <= 0:
		return errors.New("--batch-interval must be positive")
	case c.QueueMessages < 1:
		return errors.New("--queue-messages must be at least 1")
	case c.QueueBytes < 1:
		return errors.New("--queue-bytes must be at least 1")
	case c.MaxMessageBytes < 1:
		return errors.New("--max-message-bytes must be at least 1")
	case c.UnknownSchema != UnknownSchemaStore && c.UnknownSchema != UnknownSchemaQuarantine:
		return fmt.Errorf("--unknown-schema %q: want store or quarantine", c.UnknownSchema)
	case c.RecentIDs < c.BatchRows:
		return fmt.Errorf("--recent-ids %d is less than --batch-rows %d: the window of recent ids must hold a whole batch, whose ids the next batch's lookup in ClickHouse may not see yet", c.RecentIDs, c.BatchRows)
	case c.RetryMin <= 0:
		return errors.New("--retry-min must be positive")
	case c.RetryMax < c.RetryMin:
		return errors.New("--retry-max must be at least --retry-min")
	case c.StoreTimeout <= 0:
		return errors.New("--store-timeout must be positive")
	case c.StoreTimeout > c.RebalanceTimeout/2:
		return fmt.Errorf("--store-timeout %v is more than half of --kafka-rebalance-timeout %v: a store attempt under way when the group rebalances must end before this ingester rejoins", c.StoreTimeout, c.RebalanceTimeout)
	case c.ShutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	}
	return nil
}

// dlqTopic returns the DLQ topic with its default applied.
func (c Config) dlqTopic() string {
	if c.DLQTopic != "" {
		return c.DLQTopic
	}
	return c.Kafka.Topic + ".dlq"
}
