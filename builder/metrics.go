package builder

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the daemon's Prometheus metrics; registered only when
// Deps.Registerer is set (cmd serves them when metrics_listen is set).
type metrics struct {
	jobs      *prometheus.CounterVec // by outcome
	build     prometheus.Histogram
	ack       prometheus.Histogram
	paused    prometheus.Gauge
	badProofs prometheus.Counter
	outliers  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skyline_builder_jobs_total", Help: "Jobs finished, by outcome (acknowledged, failed, abandoned).",
		}, []string{"outcome"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skyline_builder_build_seconds", Help: "Time from lease to the end of the build, for builds that succeeded.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 10),
		}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "skyline_builder_ack_seconds", Help: "Time from the end of a build to its verified acknowledgement by the log.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skyline_builder_paused", Help: "1 while leasing is paused because the machine is in use.",
		}),
		badProofs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skyline_builder_bad_receipts_total", Help: "Receipts from the log whose checkpoint or inclusion proof did not verify.",
		}),
		outliers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skyline_builder_outlier_notices_total", Help: "Notices that a result of this builder was an outlier.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.jobs, m.build, m.ack, m.paused, m.badProofs, m.outliers} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
