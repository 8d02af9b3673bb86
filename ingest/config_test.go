package ingest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/auditlog/auditlog/ingest"
)

// Validate names the flag at fault, and refuses settings that would break a
// guarantee rather than only perform badly.
func TestConfigValidate(t *testing.T) {
	if err := ingest.DefaultConfig().Validate(); err != nil {
		t.Fatalf("the default configuration: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(c *ingest.Config)
		want   string
	}{
		// A window smaller than a batch forgets ids that the next batch's
		// early lookup in ClickHouse cannot see yet: duplicates.
		{"recent ids below batch rows", func(c *ingest.Config) { c.BatchRows, c.RecentIDs = 1000, 999 }, "--recent-ids 999 is less than --batch-rows 1000"},
		{"no recent ids", func(c *ingest.Config) { c.RecentIDs = 0 }, "--recent-ids 0"},
		{"no batch rows", func(c *ingest.Config) { c.BatchRows = 0 }, "--batch-rows"},
		{"DLQ is the events topic", func(c *ingest.Config) { c.DLQTopic = c.Kafka.Topic }, "--kafka-dlq-topic"},
		{"unknown schema policy", func(c *ingest.Config) { c.UnknownSchema = "drop" }, "--unknown-schema"},
		// An attempt under way at a rebalance delays the rejoin.
		{"store timeout beyond the rebalance", func(c *ingest.Config) { c.RebalanceTimeout, c.StoreTimeout = 30*time.Second, 16*time.Second }, "--store-timeout 16s is more than half of --kafka-rebalance-timeout 30s"},
		{"retry bounds", func(c *ingest.Config) { c.RetryMax = c.RetryMin / 2 }, "--retry-max"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ingest.DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Validate() = %v; want an error saying %q", err, c.want)
			}
		})
	}
	edge := ingest.DefaultConfig()
	edge.RecentIDs = edge.BatchRows
	if err := edge.Validate(); err != nil {
		t.Errorf("a window of exactly one batch: %v", err)
	}
}
