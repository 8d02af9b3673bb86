package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Retention drops whole monthly partitions. Every event table is partitioned
// by toYYYYMM(occurred_at) (quarantine by toYYYYMM(received_at)), so a
// partition is one calendar month in UTC. A month is dropped only when it
// lies entirely before the cutoff, i.e. when its YYYYMM is strictly less than
// the cutoff's: the month that contains the cutoff is kept whole, so no
// event newer than the cutoff is ever dropped, and events up to a month
// older than the cutoff may remain until the next month's run.
//
// An event that arrives late with an occurred_at in a dropped month creates
// that partition again; the next run drops it.

// retentionTables are the tables retention drops partitions from, with the
// column their partition key is built on.
var retentionTables = []struct{ name, timeColumn string }{
	{"events", "occurred_at"},
	{"events_by_ingest", "occurred_at"},
	{"event_ids", "occurred_at"},
	{"quarantine", "received_at"},
}

var partitionRe = regexp.MustCompile(`^[0-9]{6}$`)

// PartitionsOlderThan returns the partitions that DropPartitionsOlderThan
// would drop, as "table partition" (e.g. "events 202401"), in the order it
// would drop them: events, events_by_ingest, event_ids, quarantine, each
// oldest month first. On a cluster (cluster != "") it reads the parts of every
// replica and names the _local tables.
func PartitionsOlderThan(ctx context.Context, conn driver.Conn, database string, cutoff time.Time, cluster string) ([]string, error) {
	parts, err := oldPartitions(ctx, conn, database, cutoff, cluster)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p.table + " " + p.id
	}
	return out, nil
}

// DropPartitionsOlderThan drops every monthly partition of the event tables
// (events, events_by_ingest, event_ids) and of quarantine whose month lies
// entirely before cutoff (see the rule above), and returns what it dropped as
// PartitionsOlderThan names it. On a cluster it runs ALTER TABLE … ON CLUSTER
// on the _local tables. It stops at the first failure, returning what was
// dropped so far; running it again finishes the job.
func DropPartitionsOlderThan(ctx context.Context, conn driver.Conn, database string, cutoff time.Time, cluster string) ([]string, error) {
	parts, err := oldPartitions(ctx, conn, database, cutoff, cluster)
	if err != nil {
		return nil, err
	}
	onCluster := ""
	if cluster != "" {
		onCluster = " ON CLUSTER " + cluster
	}
	var dropped []string
	for _, p := range parts {
		// p.id passed partitionRe: six digits, safe in the statement. The
		// partition key is a UInt32, so the value is written as a number.
		stmt := fmt.Sprintf("ALTER TABLE %s.%s%s DROP PARTITION %s", database, p.table, onCluster, p.id)
		if err := conn.Exec(ctx, stmt); err != nil {
			return dropped, fmt.Errorf("retention: %s: %w", stmt, err)
		}
		dropped = append(dropped, p.table+" "+p.id)
	}
	return dropped, nil
}

type partition struct{ table, id string }

func oldPartitions(ctx context.Context, conn driver.Conn, database string, cutoff time.Time, cluster string) ([]partition, error) {
	if err := (MigrateOptions{Database: database, Cluster: cluster}).Validate(); err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	if cutoff.IsZero() {
		return nil, errors.New("retention: zero cutoff")
	}
	cutoffMonth := monthOf(cutoff)
	suffix := ""
	source := "system.parts"
	if cluster != "" {
		suffix = "_local"
		// Each shard holds its own parts: ask every one of them.
		source = fmt.Sprintf("cluster('%s', system.parts)", cluster)
	}
	tables := make([]string, len(retentionTables))
	order := map[string]int{}
	for i, t := range retentionTables {
		tables[i] = t.name + suffix
		order[tables[i]] = i
	}
	// Table names come from the list above, the database passed identRe.
	query := fmt.Sprintf(`SELECT DISTINCT table, partition FROM %s
WHERE active AND database = '%s' AND table IN ('%s')
ORDER BY table, partition`, source, database, strings.Join(tables, "', '"))
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("retention: listing partitions: %w", err)
	}
	defer rows.Close()
	var out []partition
	for rows.Next() {
		var p partition
		if err := rows.Scan(&p.table, &p.id); err != nil {
			return nil, fmt.Errorf("retention: listing partitions: %w", err)
		}
		if !partitionRe.MatchString(p.id) {
			// Not a toYYYYMM partition: a table this code did not create.
			return nil, fmt.Errorf("retention: %s.%s has partition %q, not a YYYYMM month: refusing to guess", database, p.table, p.id)
		}
		month, _ := strconv.Atoi(p.id)
		if month < cutoffMonth {
			out = append(out, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retention: listing partitions: %w", err)
	}
	// Drop in the order of retentionTables: events first, so that a run that
	// fails halfway leaves the lookup table (used for dedup) the fullest.
	sort.SliceStable(out, func(i, j int) bool {
		if order[out[i].table] != order[out[j].table] {
			return order[out[i].table] < order[out[j].table]
		}
		return out[i].id < out[j].id
	})
	return out, nil
}

// monthOf returns YYYYMM of t in UTC, as toYYYYMM does for DateTime('UTC').
func monthOf(t time.Time) int {
	t = t.UTC()
	return t.Year()*100 + int(t.Month())
}

// MinRetention is the shortest retention accepted: a shorter one is far more
// likely a missing unit ("400s" for "400d") than a wish to drop the previous
// months of audit data.
const MinRetention = 24 * time.Hour

// RunRetention drops old partitions (older than olderThan, see
// DropPartitionsOlderThan) now and then every `every`, until ctx is done. A
// failed run is logged and retried at the next tick. It returns nil when ctx
// is done, and an error only for invalid arguments.
func RunRetention(ctx context.Context, conn driver.Conn, database, cluster string, olderThan, every time.Duration, logger *slog.Logger) error {
	if olderThan < MinRetention {
		return fmt.Errorf("retention: older-than %v is shorter than the minimum %v", olderThan, MinRetention)
	}
	if every <= 0 {
		return fmt.Errorf("retention: interval %v must be positive", every)
	}
	if logger == nil {
		logger = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-olderThan)
		dropped, err := DropPartitionsOlderThan(ctx, conn, database, cutoff, cluster)
		switch {
		case err != nil && ctx.Err() == nil:
			logger.Error("retention run failed", "database", database, "cutoff", cutoff.UTC(), "dropped", dropped, "err", err)
		case len(dropped) > 0:
			logger.Info("retention dropped partitions", "database", database, "cutoff", cutoff.UTC(), "dropped", dropped)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Age is a flag.Value for a retention age: a Go duration ("9600h") or a
// number of days ("400d").
type Age time.Duration

func (a *Age) String() string {
	if a == nil || *a == 0 {
		return ""
	}
	d := time.Duration(*a)
	if d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// Set parses s with ParseAge.
func (a *Age) Set(s string) error {
	d, err := ParseAge(s)
	if err != nil {
		return err
	}
	*a = Age(d)
	return nil
}

// ParseAge parses a Go duration ("9600h", "36h30m") or a whole number of
// days with a d suffix ("400d").
func ParseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%q: want a whole number of days, e.g. 400d", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want days (400d) or a Go duration (9600h)", s)
	}
	return d, nil
}
