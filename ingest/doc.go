// Package ingest is the ingester: it consumes audit events from Kafka as a
// member of a consumer group, validates them (envelope and payload schema),
// drops duplicates, writes them to ClickHouse in columnar batches, and only
// then commits the Kafka offsets. Every message it cannot store goes to the
// quarantine table and the DLQ topic with a reason naming the field at fault;
// nothing is dropped silently.
//
// The pipeline, one consumer group generation at a time:
//
//	partition fetchers (one per assigned partition; decode + validate,
//	  at most GOMAXPROCS of them at once, so the storer keeps a core)
//	  -> bounded channel (back-pressure: fetchers block when it is full)
//	  -> batcher (batches by rows, bytes and time)
//	  -> storer (one batch at a time, in order, while the batcher collects
//	     the next one, so decoding and writing overlap)
//	  -> dedup: within the batch, against a bounded window of recently
//	     stored ids, against ids already in ClickHouse (event_ids)
//	  -> INSERT INTO events and quarantine; produce to the DLQ
//	  -> commit offsets with the generation the messages were read in.
//
// ClickHouse failures are retried with capped exponential backoff, holding
// the batch and committing nothing; the next batch fills up and waits, and
// the fetchers block.
//
// Why the kafka-go ConsumerGroup and not the group-managed kafka.Reader: the
// Reader hides generations, keeps handing out messages fetched before a
// rebalance and commits whatever it is given with the current generation
// (kafka-go issue #1398), so a batch of a partition this member lost could
// still be committed. Here every message carries the generation it was read
// in; a batch is committed with that generation only, which the coordinator
// refuses once the group has moved on, and when a generation ends the
// buffered messages of that generation are dropped before the next one
// starts (the partition's new owner reads them again from the committed
// offset; deduplication makes that safe).
//
// Duplicates that can still reach the events table: two members inserting
// the same id at the same moment (during a rebalance, before either sees the
// other's rows), or an insert whose acknowledgement was lost and that the
// next member repeats before the rows are visible. In events such copies sit
// next to each other, so readers drop them by comparing with the previous
// row and ReplacingMergeTree removes them at merge time; in
// events_by_ingest a copy written in another second than the first is never
// merged away, so the stream must drop ids it has already sent. The tests
// count events_by_ingest rows to prove the ingester itself writes no copy.
package ingest
