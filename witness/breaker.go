package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Errors of Breaker.Clear.
var (
	// ErrNotTripped: a clear was fed while the breaker is not tripped.
	ErrNotTripped = errors.New("circuit breaker not tripped")
	// ErrWrongAlarm: the clear names an alarm logged before the trip.
	ErrWrongAlarm = errors.New("clear does not follow the alarm")
)

// Reasons of an alarm: the start of attest.Alarm.Reason.
const (
	ReasonOutlierRate      = "outlier-rate"
	ReasonOfficialMismatch = "official-mismatches"
)

const (
	breakerPPM              = 1_000_000 // rates are compared in parts per million
	defaultBreakerWindow    = 5000
	defaultBreakerThreshold = 0.05
	defaultBreakerMinSample = 500
)

// BreakerConfig configures the circuit breaker (docs/agreement.md "Circuit
// breaker" justifies the defaults).
type BreakerConfig struct {
	// Window is how many of the latest counted results the outlier rate is
	// computed over (default 5000).
	Window int `toml:"window" json:"window"`
	// Threshold is the outlier rate at or above which the breaker trips
	// (default 0.05: five times the ~1% rate of flaky builds).
	Threshold float64 `toml:"threshold" json:"threshold"`
	// MinSample is how many results the window must hold before the rate
	// can trip it (default 500).
	MinSample int `toml:"min_sample" json:"min_sample"`
	// Mismatches official mismatches of distinct builds within
	// MismatchWindow trip it (defaults 2 and 24h).
	Mismatches     int           `toml:"mismatches" json:"mismatches"`
	MismatchWindow time.Duration `toml:"mismatch_window" json:"mismatch_window"`
}

// DefaultBreakerConfig returns the defaults.
func DefaultBreakerConfig() BreakerConfig {
	return BreakerConfig{
		Window:         defaultBreakerWindow,
		Threshold:      defaultBreakerThreshold,
		MinSample:      defaultBreakerMinSample,
		Mismatches:     2,
		MismatchWindow: 24 * time.Hour,
	}
}

// Validate reports whether the configuration is usable.
func (c BreakerConfig) Validate() error {
	switch {
	case c.Window < 1 || c.MinSample < 1 || c.MinSample > c.Window:
		return fmt.Errorf("witness: breaker window %d, min sample %d: %w", c.Window, c.MinSample, ErrConfig)
	case !(c.Threshold > 0 && c.Threshold <= 1):
		return fmt.Errorf("witness: breaker threshold %v not in (0, 1]: %w", c.Threshold, ErrConfig)
	case c.Mismatches < 1 || c.MismatchWindow <= 0:
		return fmt.Errorf("witness: breaker %d mismatches in %v: %w", c.Mismatches, c.MismatchWindow, ErrConfig)
	}
	return nil
}

// mismatch is one official-mismatch outcome the breaker remembers.
type mismatch struct {
	Build attest.BuildID `json:"build"`
	At    uint64         `json:"at"`
	Time  time.Time      `json:"time"`
}

// Breaker is the circuit breaker of ARCHITECTURE.md "Agreement": a rising
// outlier rate across the log, or repeated official mismatches, trip it;
// while it is tripped positive verdicts are withheld (Gate) and job
// dispatch pauses (the coordinator asks Tripped); only a logged AlarmClear
// clears it. Like Reputation it is pure state fed in log order, so an
// auditor replaying the log re-derives every trip and clear. Make one with
// NewBreaker or UnmarshalJSON; a Breaker is not safe for concurrent use.
type Breaker struct {
	cfg        BreakerConfig
	last       uint64
	window     []mark          // the latest counted results, oldest first
	inWindow   map[uint64]bool // the indices in window
	outliers   int             // outliers in window
	mismatches []mismatch
	alarm      *attest.Alarm
}

// NewBreaker returns an untripped breaker.
func NewBreaker(cfg BreakerConfig) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Breaker{cfg: cfg, inWindow: map[uint64]bool{}}, nil
}

// Tripped reports whether the breaker is tripped, and the alarm it raised.
func (b *Breaker) Tripped() (attest.Alarm, bool) {
	if b.alarm == nil {
		return attest.Alarm{}, false
	}
	return *b.alarm, true
}

// Rate returns the outlier rate over the window and the number of results
// in it.
func (b *Breaker) Rate() (float64, int) {
	if len(b.window) == 0 {
		return 0, 0
	}
	return float64(b.outliers) / float64(len(b.window)), len(b.window)
}

// Observe feeds a final outcome in log order (Outcome.At not decreasing).
// Its counted results enter the outlier window when it has an agreeing
// group; an official mismatch is remembered for MismatchWindow. When this
// outcome trips the breaker, Observe returns the alarm to sign and log;
// while tripped it keeps counting but raises no new alarm. Results already
// in the window (an outcome fed again) are not counted twice, nor is a
// second mismatch of the same build.
func (b *Breaker) Observe(o Outcome) (*attest.Alarm, error) {
	if o.At < b.last {
		return nil, fmt.Errorf("witness: breaker: outcome at %d after %d: %w", o.At, b.last, ErrOutOfOrder)
	}
	b.last = o.At
	if !o.Final || o.ResultSet == "" {
		return nil, nil
	}
	for _, v := range o.Counted {
		b.add(v.Index, v.ResultSet != o.ResultSet)
	}
	if o.Verdict == VerdictOfficialMismatch {
		b.addMismatch(o)
	}
	if b.alarm != nil {
		return nil, nil
	}
	// Rate at or above the threshold, compared in integers (parts per
	// million) so that every replay decides alike.
	if n := len(b.window); n >= b.cfg.MinSample &&
		int64(b.outliers)*breakerPPM >= int64(math.Round(b.cfg.Threshold*breakerPPM))*int64(n) {
		rate, _ := b.Rate()
		b.alarm = &attest.Alarm{
			Reason:   fmt.Sprintf("%s: %d outliers among the last %d counted results (%.2f%%, threshold %.2f%%)", ReasonOutlierRate, b.outliers, n, 100*rate, 100*b.cfg.Threshold),
			Rate:     rate,
			Window:   n,
			TreeSize: o.At + 1,
			At:       o.Time,
		}
		return b.alarmCopy(), nil
	}
	if len(b.mismatches) >= b.cfg.Mismatches {
		var builds []string
		for _, m := range b.mismatches {
			builds = append(builds, fmt.Sprintf("%s.%s at %d", m.Build.NVR, m.Build.Arch, m.At))
		}
		rate, n := b.Rate()
		b.alarm = &attest.Alarm{
			Reason:   fmt.Sprintf("%s: %d official builds differ from the volunteers' agreement within %v: %v", ReasonOfficialMismatch, len(b.mismatches), b.cfg.MismatchWindow, builds),
			Rate:     rate,
			Window:   n,
			TreeSize: o.At + 1,
			At:       o.Time,
		}
		return b.alarmCopy(), nil
	}
	return nil, nil
}

func (b *Breaker) alarmCopy() *attest.Alarm {
	a := *b.alarm
	return &a
}

// add puts one counted result into the sliding window.
func (b *Breaker) add(index uint64, outlier bool) {
	if b.inWindow == nil {
		b.inWindow = map[uint64]bool{}
	}
	if b.inWindow[index] {
		return
	}
	b.window = append(b.window, mark{Index: index, Outlier: outlier})
	b.inWindow[index] = true
	if outlier {
		b.outliers++
	}
	if len(b.window) > b.cfg.Window {
		if b.window[0].Outlier {
			b.outliers--
		}
		delete(b.inWindow, b.window[0].Index)
		// Dropping from the front by reslicing: append copies only the
		// live window when it reallocates, so this is amortized O(1).
		b.window = b.window[1:]
	}
}

// addMismatch remembers an official mismatch and forgets those more than
// MismatchWindow before the latest one (by signed time), so the ones kept
// always fit in one MismatchWindow.
func (b *Breaker) addMismatch(o Outcome) {
	if slices.ContainsFunc(b.mismatches, func(m mismatch) bool { return m.Build == o.Build }) {
		return
	}
	b.mismatches = append(b.mismatches, mismatch{Build: o.Build, At: o.At, Time: o.Time})
	latest := o.Time
	for _, m := range b.mismatches {
		if m.Time.After(latest) {
			latest = m.Time
		}
	}
	b.mismatches = slices.DeleteFunc(b.mismatches, func(m mismatch) bool {
		return latest.Sub(m.Time) > b.cfg.MismatchWindow
	})
}

// Clear feeds a logged AlarmClear (at log index index, signed by an admin:
// the caller checked the signature, the admin role, and that the entry at
// c.AlarmIndex is an alarm). The alarm must have been logged after the
// breaker tripped. Clearing empties the outlier window and the remembered
// mismatches: the admin has dealt with their cause, and keeping them would
// trip the breaker again on the next outcome.
func (b *Breaker) Clear(c attest.AlarmClear, index uint64) error {
	if index < b.last {
		return fmt.Errorf("witness: breaker: clear at %d after %d: %w", index, b.last, ErrOutOfOrder)
	}
	if b.alarm == nil {
		return fmt.Errorf("witness: breaker: clear at %d: %w", index, ErrNotTripped)
	}
	if c.AlarmIndex < b.alarm.TreeSize || c.AlarmIndex >= index {
		return fmt.Errorf("witness: breaker: clear at %d names alarm at %d, tripped at tree size %d: %w", index, c.AlarmIndex, b.alarm.TreeSize, ErrWrongAlarm)
	}
	b.last = index
	b.alarm = nil
	b.window = nil
	b.inWindow = map[uint64]bool{}
	b.outliers = 0
	b.mismatches = nil
	return nil
}

// Gate withholds a positive verdict while the breaker is tripped: a
// reproduced outcome becomes VerdictWithheld with the alarm's reason, so
// the release gate falls back to plain Koji. Other outcomes pass unchanged.
func (b *Breaker) Gate(o Outcome) Outcome {
	if b.alarm != nil && o.Verdict == VerdictReproduced {
		o.Verdict = VerdictWithheld
		o.Withheld = b.alarm.Reason
	}
	return o
}

// breakerState is the JSON form of a Breaker.
type breakerState struct {
	Config     BreakerConfig `json:"config"`
	Last       uint64        `json:"last"`
	Window     []mark        `json:"window"`
	Mismatches []mismatch    `json:"mismatches"`
	Alarm      *attest.Alarm `json:"alarm"`
}

// MarshalJSON returns the state as JSON.
func (b *Breaker) MarshalJSON() ([]byte, error) {
	return json.Marshal(breakerState{Config: b.cfg, Last: b.last, Window: b.window, Mismatches: b.mismatches, Alarm: b.alarm})
}

// UnmarshalJSON restores a state written by MarshalJSON. It rejects unknown
// fields, trailing data, an invalid configuration and an inconsistent
// window, and leaves b unchanged on error.
func (b *Breaker) UnmarshalJSON(data []byte) error {
	var s breakerState
	if err := decodeStrict(data, &s); err != nil {
		return fmt.Errorf("witness: breaker state: %w", err)
	}
	if err := s.Config.Validate(); err != nil {
		return fmt.Errorf("witness: breaker state: %w: %w", ErrState, err)
	}
	if len(s.Window) > s.Config.Window {
		return fmt.Errorf("witness: breaker state: %d results in a window of %d: %w", len(s.Window), s.Config.Window, ErrState)
	}
	seen := make(map[uint64]bool, len(s.Window))
	outliers := 0
	for _, m := range s.Window {
		if m.Index > s.Last || seen[m.Index] {
			return fmt.Errorf("witness: breaker state: result at %d duplicated or after %d: %w", m.Index, s.Last, ErrState)
		}
		seen[m.Index] = true
		if m.Outlier {
			outliers++
		}
	}
	for _, m := range s.Mismatches {
		if m.At > s.Last {
			return fmt.Errorf("witness: breaker state: mismatch at %d after %d: %w", m.At, s.Last, ErrState)
		}
	}
	if s.Alarm != nil && s.Alarm.TreeSize > s.Last+1 {
		return fmt.Errorf("witness: breaker state: alarm at tree size %d after %d: %w", s.Alarm.TreeSize, s.Last, ErrState)
	}
	*b = Breaker{cfg: s.Config, last: s.Last, window: s.Window, inWindow: seen, outliers: outliers, mismatches: s.Mismatches, alarm: s.Alarm}
	return nil
}
