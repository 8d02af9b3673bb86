// Package sqlcheck proves that the SQL the service sends to ClickHouse means
// the same on the oldest server it supports (18.16, the Debian package the
// tests run) and on current ClickHouse (26.x, what docker-compose runs),
// without a second server: current ClickHouse runs in process through chDB
// (scripts/chdb/setup.sh builds chdb-run over its libchdb.so).
//
// The check renders each query exactly as clickhouse-go sends it to 18.16 —
// the driver binds ? placeholders on the client and logs the final text,
// which Capture records — runs that text on both engines and compares the
// rows. Nothing is rendered twice, so a difference is a difference between
// the engines, not between two renderers.
//
// Besides the hand-written shapes, TestGeneratedQueriesAgree runs the real
// query and export services on 18.16 with requests that reach every branch
// of query/filter's SQL builder and checks every distinct SELECT they sent
// (Capture.All) the same way; a request added there covers a new shape
// without writing its SQL by hand.
//
// Adding a query shape: the shapes live in the package's tests (a table of
// Shape{Name, SQL, Args}); the query and export packages add theirs in a
// file of their own, shapes_<area>_test.go, with
// `func init() { shapes = append(shapes, ...) }`.
package sqlcheck
