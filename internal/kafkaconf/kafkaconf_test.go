package kafkaconf

import (
	"flag"
	"strings"
	"testing"

	"github.com/auditlog/auditlog/internal/config"
)

func TestFlagsAndEnvironment(t *testing.T) {
	t.Setenv("AUDITLOG_KAFKA_BROKERS", "k1:9092, k2:9093")
	t.Setenv("AUDITLOG_KAFKA_TOPIC", "from-env")
	t.Setenv("AUDITLOG_KAFKA_SASL_MECHANISM", "scram-sha-512")
	t.Setenv("AUDITLOG_KAFKA_SASL_USER", "alice")
	c := DefaultConfig()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := config.Parse(fs, []string{"--kafka-topic", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Brokers.String(); got != "k1:9092,k2:9093" {
		t.Errorf("brokers %q, want the environment's", got)
	}
	if c.Topic != "from-flag" {
		t.Errorf("topic %q: a flag must win over the environment", c.Topic)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	d, err := c.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	if d.SASLMechanism == nil || d.SASLMechanism.Name() != "SCRAM-SHA-512" {
		t.Errorf("dialer SASL mechanism %v, want SCRAM-SHA-512", d.SASLMechanism)
	}
	tr, err := c.Transport()
	if err != nil {
		t.Fatal(err)
	}
	if tr.SASL == nil || tr.TLS != nil {
		t.Errorf("transport SASL %v, TLS %v: want SASL and no TLS", tr.SASL, tr.TLS)
	}
}

func TestDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.Brokers.String() != "localhost:9092" || c.Topic != "audit.events" {
		t.Errorf("defaults %v %q, want localhost:9092 and audit.events (DESIGN.md)", c.Brokers, c.Topic)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestValidateNamesTheFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		flag string
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, "--kafka-brokers"},
		{"broker without port", func(c *Config) { c.Brokers = []string{"kafka"} }, "--kafka-brokers"},
		{"no topic", func(c *Config) { c.Topic = "" }, "--kafka-topic"},
		{"bad mechanism", func(c *Config) { c.SASLMechanism = "gssapi" }, "--kafka-sasl-mechanism"},
		{"mechanism without user", func(c *Config) { c.SASLMechanism = "plain" }, "--kafka-sasl-user"},
		{"user without mechanism", func(c *Config) { c.SASLUser = "bob" }, "--kafka-sasl-mechanism"},
		{"CA without TLS", func(c *Config) { c.TLSCAFile = "/ca.pem" }, "--kafka-tls"},
		{"zero dial timeout", func(c *Config) { c.DialTimeout = 0 }, "--kafka-dial-timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.flag) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.flag)
			}
		})
	}
}

func TestTLSCAFileMustHoldCertificates(t *testing.T) {
	c := DefaultConfig()
	c.TLS = true
	c.TLSCAFile = t.TempDir() + "/missing.pem"
	if _, err := c.Dialer(); err == nil || !strings.Contains(err.Error(), "--kafka-tls-ca-file") {
		t.Errorf("Dialer() with a missing CA file: %v, want an error naming --kafka-tls-ca-file", err)
	}
}
