package koji

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ListenMetrics are the Prometheus metrics of koji-listen. A nil
// *ListenMetrics records nothing.
type ListenMetrics struct {
	messages   *prometheus.CounterVec // by outcome
	imports    *prometheus.CounterVec // by source and status
	failures   *prometheus.CounterVec // by source and kind (transient, permanent)
	checkpoint prometheus.Gauge
	connected  prometheus.Gauge
}

// NewListenMetrics makes the metrics and registers them with reg (when
// not nil).
func NewListenMetrics(reg prometheus.Registerer) (*ListenMetrics, error) {
	m := &ListenMetrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skyline_koji_messages_total",
			Help: "fedora-messaging deliveries, by outcome (handled, requeued, malformed, unknown-schema, other-instance, not-complete, not-imported).",
		}, []string{"outcome"}),
		imports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skyline_koji_imports_total",
			Help: "Builds handled by the importer, by source (amqp, poll) and status (imported, already-handled, skipped, refused).",
		}, []string{"source", "status"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skyline_koji_import_failures_total",
			Help: "Imports that failed, by source and kind (transient: retried; permanent: not imported).",
		}, []string{"source", "kind"}),
		checkpoint: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skyline_koji_poll_checkpoint_seconds",
			Help: "The poller's checkpoint: completion time (Unix seconds) of the newest build handled in order.",
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skyline_koji_broker_connected",
			Help: "1 while subscribed to the broker.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.imports, m.failures, m.checkpoint, m.connected} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *ListenMetrics) message(outcome string) {
	if m != nil {
		m.messages.WithLabelValues(outcome).Inc()
	}
}

func (m *ListenMetrics) imported(source string, st ImportStatus) {
	if m != nil {
		m.imports.WithLabelValues(source, st.String()).Inc()
	}
}

func (m *ListenMetrics) failed(source string, transient bool) {
	if m != nil {
		kind := "permanent"
		if transient {
			kind = "transient"
		}
		m.failures.WithLabelValues(source, kind).Inc()
	}
}

func (m *ListenMetrics) setCheckpoint(unix float64) {
	if m != nil {
		m.checkpoint.Set(unix)
	}
}

func (m *ListenMetrics) setConnected(up bool) {
	if m != nil {
		v := 0.0
		if up {
			v = 1
		}
		m.connected.Set(v)
	}
}
