package testharness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
)

// kafkaTimeout bounds each admin request and Produce call, so a broken
// cluster fails the test instead of hanging it.
const kafkaTimeout = 30 * time.Second

// Kafka is one test's pair of topics on a Kafka cluster.
type Kafka struct {
	// Brokers are the host:port addresses to bootstrap from.
	Brokers []string
	// Topic is the test's own topic, created empty for the test.
	Topic string
	// DLQTopic is Topic + ".dlq", created with the same partition count.
	DLQTopic string
	// Partitions is the partition count of both topics.
	Partitions int
	// Cluster is the private in-process cluster of NewDedicatedKafka, for
	// tests that control it (kfake's Control hooks, Close). It is nil for
	// NewKafka, because the shared cluster belongs to every test.
	Cluster *kfake.Cluster

	// transport is this test's own, so its metadata cache only knows the
	// topics this test created and goes away with the test.
	transport *kafka.Transport
}

// KafkaOption changes how NewKafka and NewDedicatedKafka create topics.
type KafkaOption func(*kafkaOptions)

type kafkaOptions struct {
	partitions int
}

// WithPartitions sets the partition count of the test topics (default 3).
func WithPartitions(n int) KafkaOption {
	return func(o *kafkaOptions) { o.partitions = n }
}

// sharedKafka is the cluster NewKafka creates topics on, started the first
// time a test asks for it and closed by Main.
var sharedKafka struct {
	once    sync.Once
	mu      sync.Mutex // guards cluster, read by Main outside the once
	cluster *kfake.Cluster
	brokers []string
	err     error
}

// NewKafka creates a topic and its ".dlq" topic, both empty, for this test
// on the test binary's shared cluster: an in-process kfake cluster started on
// first use, or the brokers named by AUDITLOG_TEST_KAFKA. The topics are
// deleted when the test ends.
func NewKafka(t testing.TB, opts ...KafkaOption) *Kafka {
	t.Helper()
	sharedKafka.once.Do(func() {
		if env := os.Getenv("AUDITLOG_TEST_KAFKA"); env != "" {
			sharedKafka.brokers = splitBrokers(env)
			if len(sharedKafka.brokers) == 0 {
				sharedKafka.err = fmt.Errorf("AUDITLOG_TEST_KAFKA=%q names no brokers", env)
			}
			return
		}
		c, err := kfake.NewCluster()
		if err != nil {
			sharedKafka.err = fmt.Errorf("start kfake cluster: %w", err)
			return
		}
		sharedKafka.mu.Lock()
		sharedKafka.cluster = c
		sharedKafka.mu.Unlock()
		sharedKafka.brokers = c.ListenAddrs()
	})
	if sharedKafka.err != nil {
		t.Fatalf("testharness: Kafka: %v", sharedKafka.err)
	}
	k := newTopics(t, sharedKafka.brokers, opts)
	t.Cleanup(func() {
		// Deleting keeps a long-lived real broker clean; a failure here says
		// nothing about the code under test, so it is only logged.
		ctx, cancel := context.WithTimeout(context.Background(), kafkaTimeout)
		defer cancel()
		resp, err := k.client().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{k.Topic, k.DLQTopic}})
		if err == nil {
			err = errors.Join(resp.Errors[k.Topic], resp.Errors[k.DLQTopic])
		}
		if err != nil {
			t.Logf("testharness: delete topics %s, %s: %v", k.Topic, k.DLQTopic, err)
		}
	})
	return k
}

// NewDedicatedKafka starts a private in-process kfake cluster for this test
// and creates the test topics on it. Use it for tests that control or break
// the cluster through Kafka.Cluster. It uses kfake even when
// AUDITLOG_TEST_KAFKA is set, because a test cannot control a real broker.
// The cluster is closed when the test ends.
func NewDedicatedKafka(t testing.TB, opts ...KafkaOption) *Kafka {
	t.Helper()
	c, err := kfake.NewCluster()
	if err != nil {
		t.Fatalf("testharness: start kfake cluster: %v", err)
	}
	// Registered before newTopics' cleanup so it runs after it.
	t.Cleanup(c.Close)
	k := newTopics(t, c.ListenAddrs(), opts)
	k.Cluster = c
	return k
}

func splitBrokers(s string) []string {
	var brokers []string
	for b := range strings.SplitSeq(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	return brokers
}

// newTopics creates the test topic and its DLQ through kafka-go, as a real
// broker would be asked, so the harness works the same on both.
func newTopics(t testing.TB, brokers []string, opts []KafkaOption) *Kafka {
	t.Helper()
	o := kafkaOptions{partitions: 3}
	for _, opt := range opts {
		opt(&o)
	}
	if o.partitions < 1 {
		t.Fatalf("testharness: WithPartitions(%d): want at least 1", o.partitions)
	}
	topic := topicName(t.Name())
	k := &Kafka{
		Brokers:    brokers,
		Topic:      topic,
		DLQTopic:   topic + ".dlq",
		Partitions: o.partitions,
		transport:  &kafka.Transport{},
	}
	t.Cleanup(k.transport.CloseIdleConnections)

	ctx, cancel := context.WithTimeout(context.Background(), kafkaTimeout)
	defer cancel()
	req := &kafka.CreateTopicsRequest{}
	for _, name := range []string{k.Topic, k.DLQTopic} {
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:         name,
			NumPartitions: o.partitions,
			// -1 takes the broker's default, so the same request suits
			// kfake and a replicated real cluster.
			ReplicationFactor: -1,
		})
	}
	// kafka-go waits, inside CreateTopics, until its metadata shows the new
	// topics, so producing right after does not race topic creation.
	resp, err := k.client().CreateTopics(ctx, req)
	if err == nil {
		err = errors.Join(resp.Errors[k.Topic], resp.Errors[k.DLQTopic])
	}
	if err != nil {
		t.Fatalf("testharness: create topics %s, %s on %v: %v", k.Topic, k.DLQTopic, brokers, err)
	}
	return k
}

// topicName returns "test.<test name>.<random>". The test name keeps only
// [a-z0-9-]: Kafka rejects a topic that collides with another once '.' and
// '_' are treated alike, so '_' is avoided altogether.
func topicName(testName string) string {
	return fmt.Sprintf("test.%s.%08x", sanitize(testName, '-', 100), rand.Uint32())
}

func (k *Kafka) client() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: k.transport, Timeout: kafkaTimeout}
}

// Produce writes msgs synchronously, failing the test on error. A message
// without a Topic goes to k.Topic. Partitions are picked by hashing the key
// (kafka.Hash) and every in-sync replica must acknowledge, as the service's
// producers do.
func (k *Kafka) Produce(t testing.TB, msgs ...kafka.Message) {
	t.Helper()
	k.produce(t, &kafka.Writer{
		// kfake rejects requests over 1 MB, its default message.max.bytes.
		BatchBytes: 1 << 20,
	}, msgs)
}

// ProduceCompressed is Produce with gzip, as producers that compress send:
// the broker's message.max.bytes limits the compressed batch, so messages
// far bigger than it get through when they compress well.
func (k *Kafka) ProduceCompressed(t testing.TB, msgs ...kafka.Message) {
	t.Helper()
	k.produce(t, &kafka.Writer{
		Compression: kafka.Gzip,
		// kafka-go holds the uncompressed messages to this limit.
		BatchBytes: 64 << 20,
	}, msgs)
}

func (k *Kafka) produce(t testing.TB, w *kafka.Writer, msgs []kafka.Message) {
	t.Helper()
	w.Addr = kafka.TCP(k.Brokers...)
	w.Balancer = &kafka.Hash{}
	w.RequiredAcks = kafka.RequireAll
	// The default waits a second for a batch to fill up; tests produce
	// exactly what they mean to and want it sent now.
	w.BatchTimeout = 5 * time.Millisecond
	w.Transport = k.transport
	defer w.Close()

	withTopic := slices.Clone(msgs)
	for i := range withTopic {
		if withTopic[i].Topic == "" {
			withTopic[i].Topic = k.Topic
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), kafkaTimeout)
	defer cancel()
	if err := w.WriteMessages(ctx, withTopic...); err != nil {
		t.Fatalf("testharness: produce %d messages: %v", len(msgs), err)
	}
}

// ConsumeAll reads topic from the start of every partition, without a
// consumer group, until at least n messages have arrived, and fails the test
// if they do not within timeout. It returns every message present in the
// topic at that moment, ordered by partition and offset, so a test can
// assert len == n to catch duplicates; n = 0 returns what is there now. The
// topic may be any topic on the cluster, such as one the code under test
// creates.
func (k *Kafka) ConsumeAll(t testing.TB, topic string, n int, timeout time.Duration) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	// A transport of its own, with a short metadata TTL, sees a topic that
	// someone else created a moment ago; k.transport only learns of topics
	// it created itself.
	transport := &kafka.Transport{MetadataTTL: time.Second}
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(k.Brokers...), Transport: transport}

	readers := make(map[int]*kafka.Reader)
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	// next is the offset of the next message to read from each partition.
	next := make(map[int]int64)
	var got []kafka.Message
	var lastErr error

	for {
		// The end offsets say how far to read without blocking, so ConsumeAll
		// returns everything present instead of stopping at exactly n.
		ends, err := topicOffsets(ctx, client, topic)
		if err != nil {
			lastErr = err
		}
		for _, po := range ends {
			if _, ok := next[po.Partition]; !ok {
				next[po.Partition] = po.FirstOffset
			}
			for next[po.Partition] < po.LastOffset && ctx.Err() == nil {
				r := readers[po.Partition]
				if r == nil {
					r = kafka.NewReader(kafka.ReaderConfig{
						Brokers:   k.Brokers,
						Topic:     topic,
						Partition: po.Partition,
						MaxWait:   100 * time.Millisecond,
					})
					readers[po.Partition] = r
					if err := r.SetOffset(next[po.Partition]); err != nil {
						t.Fatalf("testharness: ConsumeAll %s: partition %d: %v", topic, po.Partition, err)
					}
				}
				m, err := r.ReadMessage(ctx)
				if err != nil {
					lastErr = err
					break
				}
				got = append(got, m)
				next[po.Partition] = m.Offset + 1
			}
		}
		if len(got) >= n {
			slices.SortFunc(got, func(a, b kafka.Message) int {
				if c := cmp.Compare(a.Partition, b.Partition); c != 0 {
					return c
				}
				return cmp.Compare(a.Offset, b.Offset)
			})
			return got
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testharness: ConsumeAll %s: got %d of %d messages within %v (last error: %v)", topic, len(got), n, timeout, lastErr)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// topicOffsets returns the first and end offset of each partition of topic.
func topicOffsets(ctx context.Context, client *kafka.Client, topic string) ([]kafka.PartitionOffsets, error) {
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, err
	}
	var reqs []kafka.OffsetRequest
	for _, tp := range meta.Topics {
		if tp.Name != topic {
			continue
		}
		if tp.Error != nil {
			return nil, tp.Error
		}
		for _, p := range tp.Partitions {
			reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
		}
	}
	if len(reqs) == 0 {
		return nil, fmt.Errorf("topic %s not found", topic)
	}
	resp, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, err
	}
	offsets := resp.Topics[topic]
	for _, po := range offsets {
		if po.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", po.Partition, po.Error)
		}
	}
	return offsets, nil
}
