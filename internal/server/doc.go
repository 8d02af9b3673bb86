// Package server wires the API of auditlog: one gRPC server (the
// audit.v1.AuditService of package query plus ExportEvents from package
// export, grpc.health.v1 and reflection) and one HTTP server carrying the
// grpc-gateway REST API on the paths of DESIGN.md, the raw CSV/NDJSON
// download at GET /v1/events:export, /openapi.json, /healthz, /readyz and
// /metrics.
//
// The gateway reaches the gRPC server over a private loopback listener, so
// REST calls pass the same interceptors (metrics, later auth) and the same
// error translation (internal/apierr) as gRPC calls, and server streaming
// (StreamEvents as newline-delimited JSON) works. REST renders events with
// one custom marshaler (see marshaler.go): the contract's JSON exactly as
// internal/event renders it, everything else as protojson with the proto
// field names and unpopulated fields emitted.
//
// New binds the listeners (wire first); Run serves until its context ends,
// then shuts down in a fixed order: health NOT_SERVING, gRPC GracefulStop
// with a deadline then Stop, HTTP Shutdown. Closing ClickHouse is left to
// the caller, after Run returns.
package server
