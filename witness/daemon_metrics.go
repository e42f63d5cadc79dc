package witness

import "github.com/prometheus/client_golang/prometheus"

// metrics are the witness's Prometheus metrics; a nil *metrics records
// nothing.
type metrics struct {
	checkpointSize *prometheus.GaugeVec
	refusals       *prometheus.CounterVec
	haltedLogs     *prometheus.GaugeVec
	cosignatures   *prometheus.CounterVec
	entries        *prometheus.CounterVec
	badEntries     *prometheus.CounterVec
	verdicts       *prometheus.CounterVec
	breaker        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		checkpointSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skyline_witness_checkpoint_size", Help: "Tree size of the latest checkpoint the witness cosigned."}, []string{"log"}),
		refusals:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_witness_refusals_total", Help: "Checkpoints refused as log misbehaviour, by kind (fork, rollback, bad-proof)."}, []string{"log", "kind"}),
		haltedLogs:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skyline_witness_log_halted", Help: "1 while the witness refuses a log after a fork or bad proof."}, []string{"log"}),
		cosignatures:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_witness_cosignatures_total", Help: "Cosignatures made."}, []string{"log"}),
		entries:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_witness_entries_total", Help: "Log entries read, verified and folded."}, []string{"log"}),
		badEntries:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_witness_bad_entries_total", Help: "Log entries that did not parse or verify, or were signed by a key without the right."}, []string{"log", "reason"}),
		verdicts:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_witness_verdicts_total", Help: "Verdicts and alarms submitted to the log."}, []string{"log", "kind"}),
		breaker:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "skyline_witness_breaker_tripped", Help: "1 while the circuit breaker of a log is tripped."}, []string{"log"}),
	}
	reg.MustRegister(m.checkpointSize, m.refusals, m.haltedLogs, m.cosignatures, m.entries, m.badEntries, m.verdicts, m.breaker)
	return m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) size(log string, n uint64) {
	if m != nil {
		m.checkpointSize.WithLabelValues(log).Set(float64(n))
	}
}

func (m *metrics) refused(log, kind string) {
	if m != nil {
		m.refusals.WithLabelValues(log, kind).Inc()
	}
}

func (m *metrics) halted(log string, on bool) {
	if m != nil {
		m.haltedLogs.WithLabelValues(log).Set(b2f(on))
	}
}

func (m *metrics) cosigned(log string) {
	if m != nil {
		m.cosignatures.WithLabelValues(log).Inc()
	}
}

func (m *metrics) folded(log string, n int) {
	if m != nil {
		m.entries.WithLabelValues(log).Add(float64(n))
	}
}

func (m *metrics) badEntry(log, reason string) {
	if m != nil {
		m.badEntries.WithLabelValues(log, reason).Inc()
	}
}

func (m *metrics) submitted(log, kind string) {
	if m != nil {
		m.verdicts.WithLabelValues(log, kind).Inc()
	}
}

func (m *metrics) tripped(log string, on bool) {
	if m != nil {
		m.breaker.WithLabelValues(log).Set(b2f(on))
	}
}
