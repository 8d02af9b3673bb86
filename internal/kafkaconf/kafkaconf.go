// Package kafkaconf is the Kafka connection configuration shared by every
// program of auditlog that talks to Kafka (the ingester, `auditctl emit`, the
// dev command): brokers, topic, client id, TLS and SASL, bound to flags named
// kafka-* (and so to AUDITLOG_KAFKA_* variables), and the kafka-go Dialer and
// Transport built from them. Settings that belong to one program, such as the
// ingester's consumer group, live in that program's own Config.
package kafkaconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/auditlog/auditlog/internal/config"
)

// SASL mechanisms accepted by Config.SASLMechanism.
const (
	SASLNone        = ""
	SASLPlain       = "plain"
	SASLScramSHA256 = "scram-sha-256"
	SASLScramSHA512 = "scram-sha-512"
)

// Config says how to reach the Kafka cluster and which topic holds the
// events.
type Config struct {
	// Brokers are the bootstrap host:port addresses.
	Brokers config.StringList
	// Topic is the audit events topic.
	Topic string
	// ClientID names this program to the brokers (their logs and quotas).
	ClientID string
	// DialTimeout bounds connecting to one broker.
	DialTimeout time.Duration

	// TLS enables TLS to the brokers.
	TLS bool
	// TLSCAFile is a PEM file of CA certificates to trust instead of the
	// system pool; empty uses the system pool.
	TLSCAFile string
	// TLSInsecure skips verification of the brokers' certificates (testing
	// only).
	TLSInsecure bool

	// SASLMechanism is one of "", "plain", "scram-sha-256", "scram-sha-512";
	// empty means no SASL.
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials.
	SASLUser     string
	SASLPassword string
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{
		Brokers:     config.StringList{"localhost:9092"},
		Topic:       "audit.events",
		ClientID:    "auditlog",
		DialTimeout: 10 * time.Second,
	}
}

// RegisterFlags binds the config to flags named kafka-*.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Var(&c.Brokers, "kafka-brokers", "comma-separated Kafka bootstrap brokers (`host:port,...`)")
	fs.StringVar(&c.Topic, "kafka-topic", c.Topic, "Kafka `topic` of the audit events")
	fs.StringVar(&c.ClientID, "kafka-client-id", c.ClientID, "client `id` sent to the Kafka brokers")
	fs.DurationVar(&c.DialTimeout, "kafka-dial-timeout", c.DialTimeout, "timeout to connect to one Kafka broker")
	fs.BoolVar(&c.TLS, "kafka-tls", c.TLS, "use TLS to the Kafka brokers")
	fs.StringVar(&c.TLSCAFile, "kafka-tls-ca-file", c.TLSCAFile, "PEM `file` of CA certificates for the brokers (default: the system pool)")
	fs.BoolVar(&c.TLSInsecure, "kafka-tls-insecure", c.TLSInsecure, "skip verification of the brokers' TLS certificates (testing only)")
	fs.StringVar(&c.SASLMechanism, "kafka-sasl-mechanism", c.SASLMechanism, "SASL `mechanism`: plain, scram-sha-256 or scram-sha-512 (default: no SASL)")
	fs.StringVar(&c.SASLUser, "kafka-sasl-user", c.SASLUser, "SASL user name")
	fs.StringVar(&c.SASLPassword, "kafka-sasl-password", c.SASLPassword, "SASL password")
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("--kafka-brokers is empty")
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("--kafka-brokers: %q is not host:port", b)
		}
	}
	switch {
	case c.Topic == "":
		return errors.New("--kafka-topic is empty")
	case c.DialTimeout <= 0:
		return errors.New("--kafka-dial-timeout must be positive")
	case !c.TLS && (c.TLSCAFile != "" || c.TLSInsecure):
		return errors.New("--kafka-tls-ca-file and --kafka-tls-insecure need --kafka-tls")
	}
	switch strings.ToLower(c.SASLMechanism) {
	case SASLNone:
		if c.SASLUser != "" || c.SASLPassword != "" {
			return errors.New("--kafka-sasl-user and --kafka-sasl-password need --kafka-sasl-mechanism")
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return fmt.Errorf("--kafka-sasl-user is empty but --kafka-sasl-mechanism is %s", c.SASLMechanism)
		}
	default:
		return fmt.Errorf("--kafka-sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
	}
	return nil
}

// TLSConfig returns the TLS settings, nil when TLS is off.
func (c Config) TLSConfig() (*tls.Config, error) {
	if !c.TLS {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecure} //nolint:gosec // opt-in for tests
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-tls-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--kafka-tls-ca-file %s: no PEM certificate in it", c.TLSCAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// SASL returns the SASL mechanism, nil when SASL is off.
func (c Config) SASL() (sasl.Mechanism, error) {
	switch strings.ToLower(c.SASLMechanism) {
	case SASLNone:
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: c.SASLUser, Password: c.SASLPassword}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, c.SASLUser, c.SASLPassword)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, c.SASLUser, c.SASLPassword)
	default:
		return nil, fmt.Errorf("--kafka-sasl-mechanism %q: want plain, scram-sha-256 or scram-sha-512", c.SASLMechanism)
	}
}

// security validates the config and returns its TLS config and SASL
// mechanism (each nil when off), shared by Dialer and Transport.
func (c Config) security() (*tls.Config, sasl.Mechanism, error) {
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, nil, err
	}
	mech, err := c.SASL()
	if err != nil {
		return nil, nil, err
	}
	return tc, mech, nil
}

// Dialer returns a kafka-go Dialer for Readers and consumer groups.
func (c Config) Dialer() (*kafka.Dialer, error) {
	tc, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{
		ClientID:      c.ClientID,
		Timeout:       c.DialTimeout,
		DualStack:     true,
		TLS:           tc,
		SASLMechanism: mech,
	}, nil
}

// Transport returns a kafka-go Transport for Writers and Clients. Close its
// idle connections (CloseIdleConnections) when done with it.
func (c Config) Transport() (*kafka.Transport, error) {
	tc, mech, err := c.security()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{
		ClientID:    c.ClientID,
		DialTimeout: c.DialTimeout,
		TLS:         tc,
		SASL:        mech,
	}, nil
}
