package log

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the log's Prometheus metrics; a nil *metrics records nothing.
type metrics struct {
	entries    prometheus.Counter
	duplicates prometheus.Counter
	batches    prometheus.Counter
	batchSize  prometheus.Histogram
	treeSize   prometheus.Gauge
	cpSize     prometheus.Gauge
	alarm      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		entries:    prometheus.NewCounter(prometheus.CounterOpts{Name: "skyline_log_entries_total", Help: "Entries appended (durable)."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "skyline_log_duplicates_total", Help: "Adds answered with an existing index."}),
		batches:    prometheus.NewCounter(prometheus.CounterOpts{Name: "skyline_log_batches_total", Help: "Batches committed (one fsync each)."}),
		batchSize:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "skyline_log_batch_entries", Help: "Entries per committed batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 8)}),
		treeSize:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "skyline_log_tree_size", Help: "Durable tree size."}),
		cpSize:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "skyline_log_checkpoint_size", Help: "Tree size of the latest signed checkpoint."}),
		alarm:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "skyline_log_alarm", Help: "1 when checkpoint signing stopped because the stored tree disagreed with the integrated one."}),
	}
	for _, c := range []prometheus.Collector{m.entries, m.duplicates, m.batches, m.batchSize, m.treeSize, m.cpSize, m.alarm} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("log: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) committed(p *prepared) {
	if m == nil || p.root == nil {
		return
	}
	n := 0
	for _, r := range p.reqs {
		if !r.res.Duplicate {
			n++
		}
	}
	m.entries.Add(float64(n))
	m.batches.Inc()
	m.batchSize.Observe(float64(n))
	m.treeSize.Set(float64(p.size))
}

func (m *metrics) duplicate() {
	if m != nil {
		m.duplicates.Inc()
	}
}

func (m *metrics) published(size uint64) {
	if m != nil {
		m.cpSize.Set(float64(size))
	}
}

func (m *metrics) setAlarm() {
	if m != nil {
		m.alarm.Set(1)
	}
}
