package testharness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
)

func TestMain(m *testing.M) { Main(m) }

func TestClickHouseRoundTrip(t *testing.T) {
	t.Parallel()
	ch := NewClickHouse(t)
	ctx := t.Context()

	var version string
	if err := ch.Conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		t.Fatalf("SELECT version(): %v", err)
	}
	if version == "" || version[0] < '0' || version[0] > '9' {
		t.Fatalf("version() = %q, want a version number", version)
	}
	t.Logf("ClickHouse %s at %s, database %s", version, ch.Addr, ch.Database)

	var current string
	if err := ch.Conn.QueryRow(ctx, "SELECT currentDatabase()").Scan(&current); err != nil {
		t.Fatalf("SELECT currentDatabase(): %v", err)
	}
	if current != ch.Database {
		t.Fatalf("currentDatabase() = %q, want %q", current, ch.Database)
	}

	ch.Exec(t, `CREATE TABLE events (
		id UUID,
		at DateTime,
		actor String,
		n UInt32
	) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY (at, id)`)

	type row struct {
		ID    uuid.UUID
		At    time.Time
		Actor string
		N     uint32
	}
	base := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	want := []row{
		{uuid.New(), base, "alice", 1},
		{uuid.New(), base.Add(time.Hour), "bob", 2},
		{uuid.New(), base.Add(48 * time.Hour), "carol", 3},
	}
	// 18.16 rejects a batch insert without a column list.
	batch, err := ch.Conn.PrepareBatch(ctx, "INSERT INTO events (id, at, actor, n)")
	if err != nil {
		t.Fatalf("PrepareBatch: %v", err)
	}
	for _, r := range want {
		if err := batch.Append(r.ID, r.At, r.Actor, r.N); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatalf("Send: %v", err)
	}

	if got := ch.QueryUint64(t, "SELECT count() FROM events"); got != uint64(len(want)) {
		t.Fatalf("count() = %d, want %d", got, len(want))
	}
	rows, err := ch.Conn.Query(ctx, "SELECT id, at, actor, n FROM events ORDER BY n")
	if err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	defer rows.Close()
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.ID, &r.At, &r.Actor, &r.N); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		got = append(got, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("rows: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.ID != w.ID || !g.At.Equal(w.At) || g.Actor != w.Actor || g.N != w.N {
			t.Errorf("row %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestClickHouseDatabasesAreSeparate(t *testing.T) {
	t.Parallel()

	var mu sync.Mutex
	var names []string
	// The group returns only when both parallel subtests and their cleanups
	// are done, so the databases must be gone after it.
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ch := NewClickHouse(t)
				mu.Lock()
				names = append(names, ch.Database)
				mu.Unlock()

				// Same table name in both: each must see only its own row.
				ch.Exec(t, "CREATE TABLE t (who String) ENGINE = MergeTree() ORDER BY who")
				ch.Exec(t, "INSERT INTO t (who) SELECT ?", name)
				// Give the other subtest time to insert into the same table
				// if the databases were not separate.
				time.Sleep(200 * time.Millisecond)
				var who []string
				rows, err := ch.Conn.Query(t.Context(), "SELECT who FROM t")
				if err != nil {
					t.Fatalf("SELECT: %v", err)
				}
				defer rows.Close()
				for rows.Next() {
					var w string
					if err := rows.Scan(&w); err != nil {
						t.Fatalf("Scan: %v", err)
					}
					who = append(who, w)
				}
				if len(who) != 1 || who[0] != name {
					t.Fatalf("table t in %s holds %q, want only %q", ch.Database, who, name)
				}
			})
		}
	})

	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases = %q, want two different names", names)
	}
	ch := NewClickHouse(t)
	left := ch.QueryUint64(t, "SELECT count() FROM system.databases WHERE name = ? OR name = ?", names[0], names[1])
	if left != 0 {
		t.Fatalf("%d of the databases %q still exist after their tests ended", left, names)
	}
}

func TestClickHouseClientAndHTTP(t *testing.T) {
	t.Parallel()
	ch := NewClickHouse(t)

	args := append(ch.ClientArgs(), "--query", "SELECT currentDatabase()")
	out, err := exec.Command(ClickHouseClientPath(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("clickhouse-client %q: %v\n%s", args, err, out)
	}
	if got := strings.TrimSpace(string(out)); got != ch.Database {
		t.Fatalf("clickhouse-client says the database is %q, want %q", got, ch.Database)
	}

	if ch.Server().HTTPAddr == "" {
		t.Log("external server: HTTP port unknown, HTTP check not run")
		return
	}
	u := "http://" + ch.Server().HTTPAddr + "/?" + url.Values{
		"database": {ch.Database},
		"query":    {"SELECT currentDatabase()"},
	}.Encode()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != ch.Database {
		t.Fatalf("GET %s = %d %q, want 200 %q", u, resp.StatusCode, body, ch.Database)
	}
}

func TestSharedClickHouseCannotBeStopped(t *testing.T) {
	t.Parallel()
	ch := NewClickHouse(t)
	if err := ch.Server().checkOwned(); err == nil {
		t.Fatal("the shared server may be stopped by one test, which would break the others")
	}
}

func TestDedicatedClickHouseRestart(t *testing.T) {
	t.Parallel()
	ch := NewDedicatedClickHouse(t)
	srv := ch.Server()

	ch.Exec(t, "CREATE TABLE kept (n UInt64) ENGINE = MergeTree() ORDER BY n")
	ch.Exec(t, "INSERT INTO kept (n) SELECT number + 1 FROM system.numbers LIMIT 3")

	srv.Stop(t)
	if err := ping(srv.TCPAddr, "default", ""); err == nil {
		t.Fatal("the server still answers after Stop")
	}

	srv.Start(t)
	// The old connections died with the server; a new one proves the data
	// directory and ports were reused.
	conn, err := clickhouse.Open(ch.Options())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer conn.Close()
	var sum uint64
	if err := conn.QueryRow(t.Context(), "SELECT sum(n) FROM kept").Scan(&sum); err != nil {
		t.Fatalf("query after restart: %v", err)
	}
	if sum != 6 {
		t.Fatalf("sum(n) after restart = %d, want 6", sum)
	}
}

func TestParseExternalClickHouse(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, addr, user, password string
		wantErr                  bool
	}{
		{in: "127.0.0.1:9000", addr: "127.0.0.1:9000", user: "default"},
		{in: "bob:s3cr:et@db.local:9440", addr: "db.local:9440", user: "bob", password: "s3cr:et"},
		{in: "bob@[::1]:9000", addr: "[::1]:9000", user: "bob"},
		{in: "127.0.0.1", wantErr: true},
		{in: ":pw@127.0.0.1:9000", wantErr: true},
	} {
		s, err := parseExternalClickHouse(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parse(%q) = %+v, want an error", tc.in, s)
			}
			continue
		}
		if err != nil {
			t.Errorf("parse(%q): %v", tc.in, err)
			continue
		}
		if s.TCPAddr != tc.addr || s.username != tc.user || s.password != tc.password || !s.external {
			t.Errorf("parse(%q) = %q %q %q external=%v, want %q %q %q external", tc.in, s.TCPAddr, s.username, s.password, s.external, tc.addr, tc.user, tc.password)
		}
	}
}

func TestNames(t *testing.T) {
	t.Parallel()
	validDB := regexp.MustCompile(`^test_[a-z0-9_]+_[0-9a-f]{8}$`)
	validTopic := regexp.MustCompile(`^test\.[a-z0-9-]+\.[0-9a-f]{8}$`)
	for _, name := range []string{
		"TestX",
		"TestFoo/sub_case#01",
		"Test/ÄÖ ünïcode/" + strings.Repeat("Long", 40),
		"___",
	} {
		db := databaseName(name)
		if !validDB.MatchString(db) || len(db) > 60 {
			t.Errorf("databaseName(%q) = %q: not a short plain identifier", name, db)
		}
		topic := topicName(name)
		if !validTopic.MatchString(topic) || len(topic) > 249 {
			t.Errorf("topicName(%q) = %q: not a valid topic name", name, topic)
		}
	}
	if a, b := databaseName("TestX"), databaseName("TestX"); a == b {
		t.Errorf("two databases for the same test are both named %q", a)
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	t.Parallel()
	k := NewKafka(t)

	want := make(map[string]string)
	var msgs []kafka.Message
	for i := range 10 {
		key, value := fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i)
		want[key] = value
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: []byte(value)})
	}
	k.Produce(t, msgs...)

	group := "group-" + k.Topic
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     k.Brokers,
		GroupID:     group,
		Topic:       k.Topic,
		StartOffset: kafka.FirstOffset,
		MaxWait:     100 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got := make(map[string]string)
	for range len(want) {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("FetchMessage after %d messages: %v", len(got), err)
		}
		if _, dup := got[string(m.Key)]; dup {
			t.Fatalf("key %q delivered twice", m.Key)
		}
		got[string(m.Key)] = string(m.Value)
		if err := r.CommitMessages(ctx, m); err != nil {
			t.Fatalf("CommitMessages: %v", err)
		}
	}
	for key, value := range want {
		if got[key] != value {
			t.Errorf("key %q: got value %q, want %q", key, got[key], value)
		}
	}

	// The commits must have reached the broker: for partitions that start at
	// offset 0, the committed offsets add up to the number of messages.
	partitions := make([]int, k.Partitions)
	for i := range partitions {
		partitions[i] = i
	}
	resp, err := k.client().OffsetFetch(ctx, &kafka.OffsetFetchRequest{
		GroupID: group,
		Topics:  map[string][]int{k.Topic: partitions},
	})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	var committed int64
	for _, p := range resp.Topics[k.Topic] {
		if p.Error != nil {
			t.Fatalf("OffsetFetch partition %d: %v", p.Partition, p.Error)
		}
		if p.CommittedOffset > 0 {
			committed += p.CommittedOffset
		}
	}
	if committed != int64(len(want)) {
		t.Fatalf("committed offsets add up to %d, want %d", committed, len(want))
	}

	// Reading without a group sees the same messages, each exactly once,
	// and every key on one partition.
	all := k.ConsumeAll(t, k.Topic, len(want), 30*time.Second)
	if len(all) != len(want) {
		t.Fatalf("ConsumeAll returned %d messages, want %d", len(all), len(want))
	}
	usedPartitions := make(map[int]bool)
	for _, m := range all {
		if want[string(m.Key)] != string(m.Value) {
			t.Errorf("ConsumeAll: unexpected message %q=%q", m.Key, m.Value)
		}
		usedPartitions[m.Partition] = true
	}
	if len(usedPartitions) < 2 {
		t.Errorf("10 keys all hashed to %d partition(s) of %d; the hash balancer is not in use", len(usedPartitions), k.Partitions)
	}
}

func TestKafkaDLQTopic(t *testing.T) {
	t.Parallel()
	k := NewKafka(t, WithPartitions(1))
	if k.DLQTopic != k.Topic+".dlq" {
		t.Fatalf("DLQTopic = %q, want %q", k.DLQTopic, k.Topic+".dlq")
	}
	k.Produce(t, kafka.Message{Topic: k.DLQTopic, Key: []byte("k"), Value: []byte("poison")})
	got := k.ConsumeAll(t, k.DLQTopic, 1, 30*time.Second)
	if len(got) != 1 || string(got[0].Value) != "poison" || got[0].Partition != 0 {
		t.Fatalf("DLQ holds %+v, want one message \"poison\" on partition 0", got)
	}
	// Nothing leaked into the main topic.
	if n := len(k.ConsumeAll(t, k.Topic, 0, 10*time.Second)); n != 0 {
		t.Fatalf("main topic holds %d messages, want 0", n)
	}
}

func TestDedicatedKafka(t *testing.T) {
	t.Parallel()
	shared := NewKafka(t)
	k := NewDedicatedKafka(t, WithPartitions(2))
	if k.Cluster == nil {
		t.Fatal("NewDedicatedKafka gave no Cluster to control")
	}
	if strings.Join(k.Brokers, ",") == strings.Join(shared.Brokers, ",") {
		t.Fatalf("the dedicated cluster uses the shared brokers %v", k.Brokers)
	}
	k.Produce(t, kafka.Message{Key: []byte("a"), Value: []byte("1")}, kafka.Message{Key: []byte("b"), Value: []byte("2")})
	if got := k.ConsumeAll(t, k.Topic, 2, 30*time.Second); len(got) != 2 {
		t.Fatalf("ConsumeAll returned %d messages, want 2", len(got))
	}
}

func TestInsertValuesGuard(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]bool{
		"INSERT INTO t (a, b) VALUES (1, 2)":      true,
		"  insert into t values(1)":               true,
		"INSERT INTO t (a)\n\tVALUES\n(?)":        true,
		"INSERT INTO t (a) SELECT ?":              false,
		"INSERT INTO t (a, b)":                    false,
		"SELECT count() FROM t WHERE a IN (1, 2)": false,
	} {
		if got := insertValues.MatchString(sql); got != want {
			t.Errorf("insertValues.MatchString(%q) = %v, want %v", sql, got, want)
		}
	}
}

func TestMissingBinarySaysHowToInstall(t *testing.T) {
	t.Parallel()
	_, err := findBinary("clickhouse-server-that-does-not-exist")
	if err == nil {
		t.Fatal("findBinary found a binary that does not exist")
	}
	for _, want := range []string{"apt-get install -y clickhouse-server clickhouse-client", "make deps", "AUDITLOG_TEST_CLICKHOUSE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
