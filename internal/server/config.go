package server

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/auditlog/auditlog/internal/auth"
	auditv1 "github.com/auditlog/auditlog/proto/audit/v1"
	"github.com/auditlog/auditlog/query"
)

// Exporter serves ExportEvents: over gRPC, and as a plain HTTP handler for
// the REST download at GET /v1/events:export (mounted ahead of the gateway,
// so CSV bytes are written as they are, without the gateway's framing).
// *export.Service implements it.
type Exporter interface {
	ExportEvents(*auditv1.ExportEventsRequest, auditv1.AuditService_ExportEventsServer) error
	http.Handler
}

// Config says what to serve and where.
type Config struct {
	// GRPCAddr is the gRPC listen address.
	GRPCAddr string
	// HTTPAddr is the listen address of REST, health, metrics and OpenAPI.
	HTTPAddr string
	// ShutdownTimeout bounds the graceful part of shutdown: in-flight calls
	// get this long to finish before they are cut.
	ShutdownTimeout time.Duration

	// Query serves ListEvents, GetEvent, StreamEvents and ListSchemas.
	// Required.
	Query *query.Service
	// Exporter serves ExportEvents; nil: ExportEvents is UNIMPLEMENTED.
	Exporter Exporter
	// Ready reports whether the service can answer (ClickHouse reachable),
	// for /readyz; nil: always ready.
	Ready func(context.Context) error
	// Guard authenticates every gRPC call (REST calls included: the
	// gateway goes through gRPC) and the plain HTTP export download, and
	// applies the per-token limits. Required: use auth.Insecure() tokens for
	// --insecure-no-auth.
	Guard *auth.Guard
	// TLSCertFile and TLSKeyFile, when both set, serve gRPC and HTTP over
	// TLS with this PEM certificate and key.
	TLSCertFile string
	TLSKeyFile  string
	// Registry serves /metrics and receives the request metrics. Required.
	Registry *prometheus.Registry
	// Logger logs; nil: slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of DESIGN.md.
func DefaultConfig() Config {
	return Config{GRPCAddr: ":9090", HTTPAddr: ":8080", ShutdownTimeout: 10 * time.Second}
}

// RegisterFlags binds the listen addresses and shutdown timeout to flags.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listen `address`")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "listen `address` of REST, /healthz, /readyz, /metrics and /openapi.json")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long in-flight calls may run on at shutdown before they are cut")
	fs.StringVar(&c.TLSCertFile, "tls-cert-file", c.TLSCertFile, "PEM certificate `file`: serve gRPC and HTTP over TLS (with --tls-key-file)")
	fs.StringVar(&c.TLSKeyFile, "tls-key-file", c.TLSKeyFile, "PEM private key `file` of --tls-cert-file")
}

// Validate reports the first invalid field, naming its flag.
func (c Config) Validate() error {
	switch {
	case c.GRPCAddr == "":
		return errors.New("--grpc-addr is empty")
	case c.HTTPAddr == "":
		return errors.New("--http-addr is empty")
	case c.ShutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case c.Query == nil:
		return errors.New("server: Config.Query is required")
	case c.Registry == nil:
		return errors.New("server: Config.Registry is required")
	case c.Guard == nil:
		return errors.New("server: Config.Guard is required (auth.Insecure() tokens to serve without authentication)")
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		return errors.New("--tls-cert-file and --tls-key-file go together")
	}
	return nil
}
