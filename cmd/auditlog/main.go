// Command auditlog is the auditlog server: it ingests audit events from Kafka
// into ClickHouse, serves them over gRPC and REST, manages the ClickHouse
// schema, and runs everything in one process for development.
package main

import "github.com/auditlog/auditlog/internal/cli"

func main() {
	cli.Main("auditlog", "audit log ingestion and query service", []cli.Command{
		retentionCommand(),
		migrateCommand(),
		devCommand(),
		serveCommand(),
		ingestCommand(),
	})
}
