package store

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Config says how to reach ClickHouse.
type Config struct {
	// Addr is the native-protocol host:port.
	Addr string
	// Database holds the auditlog tables.
	Database string
	// User and Password are the ClickHouse credentials.
	User     string
	Password string
	// TLS enables TLS on the native connection; TLSInsecure skips
	// certificate verification (tests only).
	TLS         bool
	TLSInsecure bool
	// DialTimeout bounds connecting to a server.
	DialTimeout time.Duration
	// MaxOpenConns bounds the connection pool.
	MaxOpenConns int
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{
		Addr:         "localhost:9000",
		Database:     "audit",
		User:         "default",
		DialTimeout:  5 * time.Second,
		MaxOpenConns: 16,
	}
}

// RegisterFlags binds the config to flags named clickhouse-*.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Addr, "clickhouse-addr", c.Addr, "ClickHouse native-protocol `host:port`")
	fs.StringVar(&c.Database, "clickhouse-database", c.Database, "ClickHouse database")
	fs.StringVar(&c.User, "clickhouse-user", c.User, "ClickHouse user")
	fs.StringVar(&c.Password, "clickhouse-password", c.Password, "ClickHouse password")
	fs.BoolVar(&c.TLS, "clickhouse-tls", c.TLS, "use TLS to ClickHouse")
	fs.BoolVar(&c.TLSInsecure, "clickhouse-tls-insecure", c.TLSInsecure, "skip verification of ClickHouse's TLS certificate (testing only)")
	fs.DurationVar(&c.DialTimeout, "clickhouse-dial-timeout", c.DialTimeout, "timeout to connect to ClickHouse")
	fs.IntVar(&c.MaxOpenConns, "clickhouse-max-conns", c.MaxOpenConns, "most open connections to ClickHouse")
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("--clickhouse-addr is empty")
	case !identRe.MatchString(c.Database):
		return fmt.Errorf("--clickhouse-database %q: want letters, digits and underscores", c.Database)
	case c.DialTimeout <= 0:
		return errors.New("--clickhouse-dial-timeout must be positive")
	case c.MaxOpenConns < 1:
		return errors.New("--clickhouse-max-conns must be at least 1")
	}
	return nil
}

// Options returns clickhouse-go options for the config.
func (c Config) Options() *clickhouse.Options {
	opts := &clickhouse.Options{
		Addr:            []string{c.Addr},
		Auth:            clickhouse.Auth{Database: c.Database, Username: c.User, Password: c.Password},
		DialTimeout:     c.DialTimeout,
		MaxOpenConns:    c.MaxOpenConns,
		MaxIdleConns:    c.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
	}
	if c.TLS {
		opts.TLS = &tls.Config{InsecureSkipVerify: c.TLSInsecure} //nolint:gosec // opt-in for tests
	}
	return opts
}

// Open connects to ClickHouse and checks the connection with a ping.
func Open(ctx context.Context, c Config) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	conn, err := clickhouse.Open(c.Options())
	if err != nil {
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s: %w", c.Addr, err)
	}
	return conn, nil
}
