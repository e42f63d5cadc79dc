package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/fedora-skyline/skyline/witness"
)

// stored is the persisted form of a Tracker.
type stored struct {
	Version int             `json:"version"`
	Params  params          `json:"params"`
	State   state           `json:"state"`
	Fold    json.RawMessage `json:"fold"`
}

const stateVersion = 1

// MarshalState returns the tracker's state, for Restore.
func (t *Tracker) MarshalState() ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	fold, err := t.fold.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("stats: marshal state: %w", err)
	}
	b, err := json.Marshal(stored{Version: stateVersion, Params: t.cfg.params(), State: t.st, Fold: fold})
	if err != nil {
		return nil, fmt.Errorf("stats: marshal state: %w", err)
	}
	return b, nil
}

// Restore returns a tracker in the state MarshalState wrote. The state must
// have been made with the same numbers-changing configuration (coordinator,
// witnesses, credit rate, clamps, half-life, recent), else ErrState.
func Restore(cfg Config, data []byte) (*Tracker, error) {
	t, err := New(cfg)
	if err != nil {
		return nil, err
	}
	var s stored
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return nil, fmt.Errorf("stats: restore: %w: %v", ErrState, err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("stats: restore: trailing data: %w", ErrState)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("stats: restore: version %d: %w", s.Version, ErrState)
	}
	want := t.cfg.params()
	if !slices.Equal(s.Params.Witnesses, want.Witnesses) || s.Params.Coordinator != want.Coordinator ||
		s.Params.CreditPerHour != want.CreditPerHour || s.Params.MinBuildTime != want.MinBuildTime ||
		s.Params.MaxBuildTime != want.MaxBuildTime || s.Params.HalfLife != want.HalfLife || s.Params.Recent != want.Recent {
		return nil, fmt.Errorf("stats: restore: state made with other settings (%+v, now %+v): %w", s.Params, want, ErrState)
	}
	if err := s.State.check(); err != nil {
		return nil, err
	}
	fold := witness.NewFold(t.cfg.Coordinator)
	if err := fold.UnmarshalJSON(s.Fold); err != nil {
		return nil, fmt.Errorf("stats: restore: %w: %w", ErrState, err)
	}
	if fold.Next() != s.State.Next {
		return nil, fmt.Errorf("stats: restore: fold at %d, stats at %d: %w", fold.Next(), s.State.Next, ErrState)
	}
	t.st, t.fold = s.State, fold
	t.init()
	for i, r := range t.st.Results {
		r.Key, r.Build = t.internKey(r.Key), t.internKey(r.Build)
		t.st.Results[i] = r
	}
	return t, nil
}

// check rejects a state whose maps reference what is not there (a state
// file edited or cut short), so readers never meet a nil.
func (s *state) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("stats: restore: "+format+": %w", append(a, ErrState)...)
	}
	if s.Keys == nil || s.Operators == nil || s.Teams == nil || s.Results == nil || s.Official == nil || s.Closed == nil || s.Builds == nil || s.Days == nil || s.Breaker.Open == nil {
		return bad("missing maps")
	}
	for id, k := range s.Keys {
		if k == nil || s.Operators[k.Operator] == nil {
			return bad("key %s without its operator", id)
		}
	}
	for name, op := range s.Operators {
		if op == nil {
			return bad("operator %q empty", trunc(name))
		}
		for _, sp := range op.Teams {
			if sp.Team != "" && s.Teams[sp.Team] == nil {
				return bad("operator %q in unknown team", trunc(name))
			}
		}
	}
	for name, a := range s.Teams {
		if a == nil {
			return bad("team %q empty", trunc(name))
		}
	}
	for i, r := range s.Results {
		if s.Keys[r.Key] == nil {
			return bad("result %d by unknown key", i)
		}
	}
	for bk, b := range s.Builds {
		if b == nil || buildKey(b.Verdict.Build) != bk {
			return bad("build %q", trunc(bk))
		}
		for _, e := range b.Effects {
			if s.Keys[e.Key] == nil || s.Operators[e.Operator] == nil || (e.Team != "" && s.Teams[e.Team] == nil) {
				return bad("build %q: effect for unknown key", trunc(bk))
			}
		}
	}
	if b := s.Breaker; b.Tripped != (len(b.Open) > 0) || (b.Tripped && b.Alarm == nil) {
		return bad("breaker tripped %v with %d open alarms", b.Tripped, len(b.Open))
	}
	for d, ds := range s.Days {
		if ds == nil || ds.Day != d {
			return bad("day %q", trunc(d))
		}
	}
	return nil
}

// SaveFile writes the state to path atomically (a temporary file in the
// same directory, synced, then renamed over path).
func (t *Tracker) SaveFile(path string) error {
	data, err := t.MarshalState()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".stats-*.tmp")
	if err != nil {
		return fmt.Errorf("stats: save: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("stats: save %s: %w", path, err)
	}
	return nil
}

// LoadFile restores the state SaveFile wrote at path, or returns an empty
// tracker when there is no file yet.
func LoadFile(cfg Config, path string) (*Tracker, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(cfg)
	}
	if err != nil {
		return nil, fmt.Errorf("stats: load: %w", err)
	}
	return Restore(cfg, data)
}
