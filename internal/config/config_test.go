package config

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParseEnvAndFlagPrecedence(t *testing.T) {
	t.Setenv("AUDITLOG_KAFKA_BROKERS", "a:1,b:2")
	t.Setenv("AUDITLOG_KAFKA_TOPIC", "from-env")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	brokers := StringList{"localhost:9092"}
	fs.Var(&brokers, "kafka-brokers", "brokers")
	topic := fs.String("kafka-topic", "audit.events", "topic")
	group := fs.String("kafka-group", "auditlog-ingest", "group")
	if err := Parse(fs, []string{"--kafka-topic=from-flag"}); err != nil {
		t.Fatal(err)
	}
	if got := brokers.String(); got != "a:1,b:2" {
		t.Errorf("brokers = %q, want env value a:1,b:2", got)
	}
	if *topic != "from-flag" {
		t.Errorf("topic = %q, want the flag to win over the environment", *topic)
	}
	if *group != "auditlog-ingest" {
		t.Errorf("group = %q, want the default", *group)
	}
}

func TestParseBadEnvNamesVariable(t *testing.T) {
	t.Setenv("AUDITLOG_BATCH_ROWS", "many")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Int("batch-rows", 1, "rows")
	err := Parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "AUDITLOG_BATCH_ROWS") {
		t.Fatalf("err = %v, want it to name AUDITLOG_BATCH_ROWS", err)
	}
}
