package ingest

import "github.com/prometheus/client_golang/prometheus"

// Dedup layers, the values of the "layer" label.
const (
	layerBatch  = "batch"  // the same id earlier in the same batch
	layerRecent = "recent" // the window of recently stored ids
	layerStored = "stored" // event_ids in ClickHouse
)

// metrics are the ingester's Prometheus metrics. Duplicates and quarantined
// messages are expected outcomes, counted apart from failures.
type metrics struct {
	consumed       prometheus.Counter
	inserted       prometheus.Counter
	unvalidated    prometheus.Counter
	duplicates     *prometheus.CounterVec
	conflicts      prometheus.Counter
	quarantined    *prometheus.CounterVec
	revokedDropped prometheus.Counter
	storeFailures  prometheus.Counter
	commitFailures prometheus.Counter
	batchSize      prometheus.Histogram
	insertLatency  prometheus.Histogram
	lag            *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns, sub = "auditlog", "ingest"
	m := &metrics{
		consumed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "messages_consumed_total", Help: "Kafka messages read from the events topic."}),
		inserted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_inserted_total", Help: "Events written to ClickHouse."}),
		unvalidated: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "events_unvalidated_total", Help: "Events stored without a schema for their (action, version)."}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "duplicates_dropped_total", Help: "Redeliveries of an already seen event dropped, by the dedup layer that caught them."},
			[]string{"layer"}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "conflicts_total", Help: "Events whose id was already seen with different content (quarantined)."}),
		quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "quarantined_total", Help: "Messages written to the quarantine table (and then to the DLQ), by reason class."},
			[]string{"reason"}),
		revokedDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "revoked_messages_dropped_total", Help: "Buffered messages dropped because their consumer group generation ended (read again by the partition's owner)."}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "store_failures_total", Help: "Failed attempts to store a batch (retried)."}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "commit_failures_total", Help: "Offset commits refused or failed (the messages are read again and deduplicated)."}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "batch_messages", Help: "Messages per stored batch.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9)}),
		insertLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "insert_duration_seconds", Help: "Time to store one batch in ClickHouse (one attempt).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "lag_messages", Help: "Messages in the partition after the last one fetched, as of that fetch."},
			[]string{"topic", "partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.inserted, m.unvalidated, m.duplicates, m.conflicts, m.quarantined,
			m.revokedDropped, m.storeFailures, m.commitFailures, m.batchSize, m.insertLatency, m.lag)
	}
	return m
}
