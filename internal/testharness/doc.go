// Package testharness gives tests real servers instead of mocks: a real
// ClickHouse and a Kafka cluster, each test with its own database or topic so
// that parallel tests never see each other's data.
//
// ClickHouse. The first test that calls NewClickHouse starts one throwaway
// clickhouse-server (the Debian 18.16 package) in a temporary directory on
// free ports; every later test in the same test binary shares it and gets a
// fresh database, dropped when the test ends. Tests that need to stop and
// restart the server use NewDedicatedClickHouse, which starts a private
// server, so that a restart never disturbs tests running in parallel. A
// missing clickhouse-server binary fails the test (it never skips) with the
// command that installs it.
//
// Kafka. NewKafka gives each test its own topic (and a matching ".dlq"
// topic) on an in-process kfake cluster shared by the test binary;
// NewDedicatedKafka gives a private kfake cluster that the test may control.
// Topics are created through kafka-go, so the same code works on a real
// broker. StartRealKafka starts a private Apache Kafka broker (a JVM, through
// scripts/kafka/kafka.sh) that a test may stop, kill and start again on the
// same address; it needs `scripts/kafka/kafka.sh fetch` to have been run once.
//
// Every package that uses the harness must run its tests through Main, so
// that the servers it started are stopped and their directories removed:
//
//	func TestMain(m *testing.M) { testharness.Main(m) }
//
// Environment variables:
//
//	AUDITLOG_TEST_CLICKHOUSE  host:port (or user:password@host:port) of a
//	                          running ClickHouse native-protocol endpoint to
//	                          use instead of starting one. NewDedicatedClickHouse
//	                          still starts a local server, because a test that
//	                          restarts a server cannot restart someone else's.
//	AUDITLOG_TEST_KAFKA       comma-separated brokers of a real Kafka cluster
//	                          to use instead of kfake. NewDedicatedKafka still
//	                          uses kfake, for the same reason.
package testharness
