package store

// bootstrapStatements create the database and the migrations ledger; Migrate
// runs them before any migration.
var bootstrapStatements = []string{
	`CREATE DATABASE IF NOT EXISTS {db} {on_cluster}`,
	`CREATE TABLE IF NOT EXISTS {db}.{table:schema_migrations} {on_cluster} (
    version    UInt32,
    name       String,
    applied_at DateTime('UTC')
)
ENGINE = {engine:ReplacingMergeTree:schema_migrations}
ORDER BY version`,
	`{distributed:schema_migrations:version}`,
}

// DDL returns every statement Migrate would run on an empty server for opts,
// in order: the bootstrap (database, schema_migrations) and then each
// migration's statements, rendered, without the ones that render to nothing
// on a single server. It is what the SQL checks run on other ClickHouse
// versions (internal/sqlcheck) and what an operator can read before
// migrating. It does not validate opts.
func DDL(opts MigrateOptions) []string {
	var out []string
	add := func(tmpl string) {
		if stmt := render(tmpl, opts); stmt != "" {
			out = append(out, stmt)
		}
	}
	for _, stmt := range bootstrapStatements {
		add(stmt)
	}
	for _, m := range migrations {
		for _, stmt := range m.Statements {
			add(stmt)
		}
	}
	return out
}
