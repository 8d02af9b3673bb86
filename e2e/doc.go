// Package e2e runs the real product end to end: the Go emitter writes events
// to a real Apache Kafka broker, `auditlog ingest` (a real subprocess) stores
// them in ClickHouse, `auditlog serve` (another subprocess) serves them, and
// the tests read them back through list, stream and export, under faults: an
// ingester killed with SIGKILL, the broker restarted, ClickHouse restarted,
// every event delivered three times. Each scenario prints one summary line
// (events sent, stored, visible, duplicates, lost).
//
// It needs the Kafka jars (scripts/kafka/kafka.sh fetch, done by make
// test-deps) and clickhouse-server; `go test -short` skips it.
package e2e
