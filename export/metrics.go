package export

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	inFlight   prometheus.Gauge
	exports    *prometheus.CounterVec
	refused    prometheus.Counter
	rows       prometheus.Counter
	bytes      prometheus.Counter
	duplicates prometheus.Counter
}

// newMetrics registers the export metrics on reg (none when reg is nil).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "auditlog_export_in_flight",
			Help: "Exports running now.",
		}),
		exports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditlog_exports_total",
			Help: "Exports that ran, by format and result (complete or failed; a client that went away counts as failed).",
		}, []string{"format", "result"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_export_refused_total",
			Help: "Exports refused because --export-max-concurrent were running.",
		}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_export_rows_total",
			Help: "Events written to export clients.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_export_bytes_total",
			Help: "Bytes of CSV and NDJSON written to export clients, before compression.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_export_duplicates_dropped_total",
			Help: "Stored copies of an event skipped by exports (expected until ClickHouse merges them away).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.inFlight, m.exports, m.refused, m.rows, m.bytes, m.duplicates} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
