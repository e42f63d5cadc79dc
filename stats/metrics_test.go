package stats

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered returns the values reg gathers, by name and label value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			switch {
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			}
		}
	}
	return out
}

// TestMetrics: every entry is counted applied or refused by reason, and the
// next-entry gauge follows Apply; registering twice is a config error.
func TestMetrics(t *testing.T) {
	w := richWorld(t)
	reg := prometheus.NewRegistry()
	cfg := w.config()
	cfg.Registerer = reg
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	applyAll(t, tr, w.entries, 0, len(w.entries))
	g := gathered(t, reg)
	applied := g["skyline_stats_entries_applied_total"]
	malformed := g["skyline_stats_entries_refused_total/malformed"]
	stale := g["skyline_stats_entries_refused_total/stale"]
	if malformed != 1 || stale != 1 || applied != float64(len(w.entries)-2) {
		t.Errorf("applied %v, malformed %v, stale %v of %d entries", applied, malformed, stale, len(w.entries))
	}
	if n := g["skyline_stats_next_entry"]; n != float64(len(w.entries)) {
		t.Errorf("next gauge %v", n)
	}
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("second registration: %v, want ErrConfig", err)
	}
}
