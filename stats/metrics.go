package stats

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the tracker's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	applied prometheus.Counter
	refused *prometheus.CounterVec
	next    prometheus.Gauge
	tripped prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "skyline_stats_entries_applied_total", Help: "Log entries the stats tracker counted."}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_stats_entries_refused_total", Help: "Log entries the stats tracker refused, by reason."}, []string{"reason"}),
		next:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "skyline_stats_next_entry", Help: "Index of the next log entry the stats tracker reads."}),
		tripped: prometheus.NewGauge(prometheus.GaugeOpts{Name: "skyline_stats_breaker_tripped", Help: "1 while the log shows the circuit breaker tripped."}),
	}
	for _, c := range []prometheus.Collector{m.applied, m.refused, m.next, m.tripped} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("stats: register metrics: %w: %v", ErrConfig, err)
		}
	}
	return m, nil
}

// reasons label refusals by their sentinel.
var reasons = []struct {
	err   error
	label string
}{{ErrEntry, "malformed"}, {ErrSigner, "signer"}, {ErrContradicts, "contradicts"}, {ErrWitness, "witness"}, {ErrStale, "stale"}}

func (m *metrics) observe(err error, next uint64, tripped bool) {
	if m == nil {
		return
	}
	m.next.Set(float64(next))
	if tripped {
		m.tripped.Set(1)
	} else {
		m.tripped.Set(0)
	}
	if err == nil {
		m.applied.Inc()
		return
	}
	label := "other"
	for _, r := range reasons {
		if errors.Is(err, r.err) {
			label = r.label
			break
		}
	}
	m.refused.WithLabelValues(label).Inc()
}
