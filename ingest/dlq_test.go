package ingest

import (
	"bytes"
	"testing"

	"github.com/segmentio/kafka-go"
)

// fitDLQ leaves a message that fits alone, and cuts one that does not to
// dlqMessageBytes however its size is spread over key, headers and value.
func TestFitDLQ(t *testing.T) {
	small := kafka.Message{Key: []byte("k"), Value: []byte("v"), Headers: []kafka.Header{{Key: "reason", Value: []byte("r")}}}
	if got := fitDLQ(small); len(got.Headers) != 1 || string(got.Value) != "v" {
		t.Errorf("a small message was changed: %+v", got)
	}

	big := func(n int) []byte { return bytes.Repeat([]byte("x"), n) }
	cases := []struct {
		name string
		m    kafka.Message
	}{
		{"value just over", kafka.Message{Key: []byte("k"), Value: big(dlqMessageBytes)}},
		{"value of megabytes", kafka.Message{Key: []byte("k"), Value: big(5 << 20)}},
		{"huge key", kafka.Message{Key: big(2 << 20), Value: big(100)}},
		{"huge reason", kafka.Message{Key: []byte("k"), Value: big(1 << 20), Headers: []kafka.Header{{Key: "reason", Value: big(3 << 20)}}}},
		{"everything huge", kafka.Message{Key: big(1 << 20), Value: big(1 << 20), Headers: []kafka.Header{{Key: "reason", Value: big(1 << 20)}, {Key: "event-id", Value: big(1 << 20)}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			value := c.m.Value
			got := fitDLQ(c.m)
			if n := dlqSize(got); n > dlqMessageBytes {
				t.Errorf("cut to %d bytes, more than %d", n, dlqMessageBytes)
			}
			if got.Headers[len(got.Headers)-1].Key != "truncated" {
				t.Errorf("not marked truncated: headers %v", got.Headers)
			}
			if !bytes.HasPrefix(value, got.Value) {
				t.Errorf("value is not a prefix of the original")
			}
			// The value keeps the room that the key and headers, cut to
			// dlqFieldBytes each, leave it.
			if want := min(len(value), dlqMessageBytes-(len(got.Headers)+1)*(dlqFieldBytes+64)); len(got.Value) < want {
				t.Errorf("value cut to %d bytes; want at least %d", len(got.Value), want)
			}
		})
	}
}
