// Command auditctl is the auditlog client: it emits events to Kafka and
// queries, exports and tails the audit log through the API.
package main

import "github.com/auditlog/auditlog/internal/cli"

func main() {
	cli.Main("auditctl", "auditlog client", []cli.Command{
		emitCommand(),
		queryCommand(),
		tailCommand(),
		schemasCommand(),
		exportCommand(),
	})
}
