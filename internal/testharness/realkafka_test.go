package testharness

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestRealKafkaRestart runs a real broker through a clean stop and a crash
// and checks that it comes back on the same address with every message it
// had acknowledged.
func TestRealKafkaRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a JVM broker three times (~20s); skipped with -short")
	}
	t.Parallel()
	k := StartRealKafka(t)
	topics := k.NewTopics(t)

	produce := func(round int) {
		var msgs []kafka.Message
		for i := range 10 {
			msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "r%d-%d", round, i), Value: []byte("v")})
		}
		topics.Produce(t, msgs...)
	}
	assertAll := func(rounds int) {
		t.Helper()
		got := topics.ConsumeAll(t, topics.Topic, rounds*10, 60*time.Second)
		seen := make(map[string]int)
		for _, m := range got {
			seen[string(m.Key)]++
		}
		for r := range rounds {
			for i := range 10 {
				if key := fmt.Sprintf("r%d-%d", r, i); seen[key] != 1 {
					t.Errorf("after %d rounds: key %s read %d times, want once", rounds, key, seen[key])
				}
			}
		}
		if len(got) != rounds*10 {
			t.Fatalf("after %d rounds: topic holds %d messages, want %d", rounds, len(got), rounds*10)
		}
	}

	produce(0)
	k.Stop(t)
	if c, err := net.DialTimeout("tcp", k.Brokers[0], time.Second); err == nil {
		c.Close()
		t.Fatalf("broker %s still accepts connections after Stop", k.Brokers[0])
	}
	addr := strings.Join(k.Brokers, ",")
	k.Start(t)
	if got := strings.Join(k.Brokers, ","); got != addr {
		t.Fatalf("restarted broker on %s, was %s", got, addr)
	}
	produce(1)
	assertAll(2)

	k.Kill(t)
	k.Start(t)
	produce(2)
	assertAll(3)
}

// TestRealKafkaMissingJars checks what a developer without the jars sees:
// how to get them, not a skip.
func TestRealKafkaMissingJars(t *testing.T) {
	t.Parallel()
	env := append(os.Environ(), "KAFKA_HOME="+t.TempDir())
	_, err := startRealKafka(t.TempDir(), env)
	if err == nil {
		t.Fatal("startRealKafka with no jars succeeded")
	}
	if !strings.Contains(err.Error(), "scripts/kafka/kafka.sh fetch") {
		t.Fatalf("error does not say how to get the jars: %v", err)
	}
}
