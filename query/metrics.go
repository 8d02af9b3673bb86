package query

import "github.com/prometheus/client_golang/prometheus"

// metrics of the query service. Request latency by RPC and code is measured
// once for every RPC by internal/server's interceptors.
type metrics struct {
	returned *prometheus.CounterVec
	rejected prometheus.Counter
}

func newMetrics() metrics {
	return metrics{
		returned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auditlog_query_events_returned_total",
			Help: "Events returned to callers, by RPC.",
		}, []string{"rpc"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "auditlog_query_rejected_busy_total",
			Help: "Requests refused with RESOURCE_EXHAUSTED because every query slot stayed busy.",
		}),
	}
}

func (m metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.returned, m.rejected} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
