package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// MigrateOptions says where and how to create the schema.
type MigrateOptions struct {
	// Database to create the tables in; created when missing.
	Database string
	// Cluster, when not empty, is the name of a cluster in the servers'
	// remote_servers configuration: every statement runs ON CLUSTER, tables
	// use Replicated engines (ZooKeeper path
	// /clickhouse/tables/{shard}/<database>/<table>, replica {replica}: the
	// servers need those macros) and the tables the service queries are
	// Distributed tables over them.
	Cluster string
}

// Validate reports the first invalid option, naming it.
func (o MigrateOptions) Validate() error {
	if !identRe.MatchString(o.Database) {
		return fmt.Errorf("clickhouse database %q: want letters, digits and underscores", o.Database)
	}
	if o.Cluster != "" && !identRe.MatchString(o.Cluster) {
		return fmt.Errorf("cluster %q: want letters, digits and underscores", o.Cluster)
	}
	return nil
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Migrate brings the schema up to the newest migration and returns the
// versions it applied. It is safe to run again, and safe to run after a
// failure halfway: statements are idempotent and a migration is recorded only
// once all its statements succeeded.
func Migrate(ctx context.Context, conn driver.Conn, opts MigrateOptions) ([]uint32, error) {
	return migrate(ctx, conn, opts, LatestVersion())
}

// migrate is Migrate up to version last (tests start from older schemas).
func migrate(ctx context.Context, conn driver.Conn, opts MigrateOptions, last uint32) ([]uint32, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	for _, stmt := range bootstrapStatements { // in ddl.go, shared with DDL
		if err := execRendered(ctx, conn, stmt, opts); err != nil {
			return nil, err
		}
	}
	done, err := appliedVersions(ctx, conn, opts.Database)
	if err != nil {
		return nil, err
	}
	var applied []uint32
	for _, m := range migrations {
		if done[m.Version] || m.Version > last {
			continue
		}
		for _, stmt := range m.Statements {
			if err := execRendered(ctx, conn, stmt, opts); err != nil {
				return applied, fmt.Errorf("migration %d (%s): %w", m.Version, m.Name, err)
			}
		}
		if err := recordMigration(ctx, conn, opts.Database, m); err != nil {
			return applied, fmt.Errorf("recording migration %d: %w", m.Version, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// recordMigration inserts through a batch: on ClickHouse 18.16 an INSERT …
// VALUES sent with Exec leaves the server waiting for a data block.
func recordMigration(ctx context.Context, conn driver.Conn, database string, m migration) error {
	batch, err := conn.PrepareBatch(ctx, fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, applied_at)", database))
	if err != nil {
		return err
	}
	if err := batch.Append(m.Version, m.Name, time.Now().UTC().Truncate(time.Second)); err != nil {
		batch.Abort()
		return err
	}
	return batch.Send()
}

// appliedVersions returns the migrations recorded in database.
func appliedVersions(ctx context.Context, conn driver.Conn, database string) (map[uint32]bool, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT version FROM %s.schema_migrations", database))
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	defer rows.Close()
	done := map[uint32]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		done[v] = true
	}
	return done, rows.Err()
}

// LatestVersion is the version of the newest migration this binary knows.
func LatestVersion() uint32 { return migrations[len(migrations)-1].Version }

func execRendered(ctx context.Context, conn driver.Conn, tmpl string, opts MigrateOptions) error {
	stmt := render(tmpl, opts)
	if stmt == "" {
		return nil
	}
	if err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%w\nstatement:\n%s", err, stmt)
	}
	return nil
}

var (
	tableRe       = regexp.MustCompile(`\{table:(\w+)\}`)
	engineRe      = regexp.MustCompile(`\{engine:(\w+)(?:\(([\w, ]*)\))?:(\w+)\}`)
	distributedRe = regexp.MustCompile(`^\{distributed:(\w+):(.+)\}$`)
)

// render turns a statement template into SQL. On a single server {table:x}
// is x, {engine:E:x} is E ({engine:E(args):x} is E(args)) and
// {distributed:...} is no statement at all. On a
// cluster {table:x} is x_local, {engine:E:x} is ReplicatedE with a ZooKeeper
// path per shard, and {distributed:x:key} creates x as a Distributed table
// over x_local sharded by key.
func render(tmpl string, opts MigrateOptions) string {
	cluster := opts.Cluster != ""
	if m := distributedRe.FindStringSubmatch(tmpl); m != nil {
		if !cluster {
			return ""
		}
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s AS %s.%s_local ENGINE = Distributed(%s, %s, %s_local, %s)",
			opts.Database, m[1], opts.Cluster, opts.Database, m[1], opts.Cluster, opts.Database, m[1], m[2])
	}
	onCluster := ""
	if cluster {
		onCluster = "ON CLUSTER " + opts.Cluster
	}
	out := strings.NewReplacer("{db}", opts.Database, "{on_cluster}", onCluster).Replace(tmpl)
	out = tableRe.ReplaceAllStringFunc(out, func(s string) string {
		name := tableRe.FindStringSubmatch(s)[1]
		if cluster {
			return name + "_local"
		}
		return name
	})
	return engineRe.ReplaceAllStringFunc(out, func(s string) string {
		m := engineRe.FindStringSubmatch(s)
		engine, params, table := m[1], m[2], m[3]
		if !cluster {
			if params == "" {
				return engine
			}
			return engine + "(" + params + ")"
		}
		if params != "" {
			params = ", " + params
		}
		return fmt.Sprintf("Replicated%s('/clickhouse/tables/{shard}/%s/%s_local', '{replica}'%s)", engine, opts.Database, table, params)
	})
}
