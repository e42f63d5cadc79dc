package stats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/witness"
)

// stored is the persisted form of a Tracker. The bulky parts (a record
// per result, an effect per credited result, the recent events) are stored
// apart from state in compact rows that name keys and builds by their
// position in Refs and leave out what the rest of the state says (an
// effect's key, operator and team follow from its result).
type stored struct {
	Version   int                    `json:"version"`
	Params    params                 `json:"params"`
	State     state                  `json:"state"`
	Fold      json.RawMessage        `json:"fold"`
	Refs      []string               `json:"refs"`    // key ids and build keys
	Results   []resultRow            `json:"results"` // by index
	Effects   map[string][]effectRow `json:"effects"` // by build key
	KeyRecent map[string][]eventRow  `json:"key_recent"`
	OpRecent  map[string][]eventRow  `json:"op_recent"`
}

// resultRow is a result record: [index, key ref, build ref, build time].
type resultRow [4]int64

type effectRow struct {
	Result  uint64  `json:"r"`
	Outlier bool    `json:"o,omitempty"`
	Credit  float64 `json:"c,omitempty"`
	Time    int64   `json:"t"` // Unix nanoseconds
}

// eventRow is an Event; its build and key follow from its result, except
// for a failure's key (Result 0: no entry at index 0 is a result, since
// an enrolment comes first).
type eventRow struct {
	Index  uint64  `json:"i"`
	Result uint64  `json:"r,omitempty"`
	Kind   string  `json:"k"`
	Credit float64 `json:"c,omitempty"`
	Time   int64   `json:"t"`
	Key    string  `json:"key,omitempty"`
}

const stateVersion = 2

// MarshalState returns the tracker's state, for Restore. It holds the
// tracker's lock only to copy the state; the encoding (seconds for a
// million results) runs without it.
func (t *Tracker) MarshalState() ([]byte, error) {
	s, err := t.pack()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("stats: marshal state: %w", err)
	}
	return b, nil
}

// pack copies the state into its stored form.
func (t *Tracker) pack() (*stored, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	fold, err := t.fold.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("stats: marshal state: %w", err)
	}
	s := &stored{Version: stateVersion, Params: t.cfg.params(), State: t.st.clone(), Fold: fold,
		Refs: []string{}, Effects: map[string][]effectRow{}, KeyRecent: map[string][]eventRow{}, OpRecent: map[string][]eventRow{}}
	refs := map[string]int64{}
	ref := func(v string) int64 {
		if n, ok := refs[v]; ok {
			return n
		}
		n := int64(len(s.Refs))
		refs[v] = n
		s.Refs = append(s.Refs, v)
		return n
	}
	idx := slices.Sorted(maps.Keys(t.st.Results))
	s.Results = make([]resultRow, 0, len(idx))
	for _, i := range idx {
		r := t.st.Results[i]
		s.Results = append(s.Results, resultRow{int64(i), ref(r.Key), ref(r.Build), int64(r.Dur)})
	}
	for bk, b := range t.st.Builds {
		rows := make([]effectRow, 0, len(b.Effects))
		for _, e := range b.Effects {
			rows = append(rows, effectRow{Result: e.Result, Outlier: e.Kind == KindOutlier, Credit: e.Credit, Time: e.Time.UnixNano()})
		}
		s.Effects[bk] = rows
	}
	events := func(l []Event) []eventRow {
		rows := make([]eventRow, 0, len(l))
		for _, e := range l {
			row := eventRow{Index: e.Index, Result: e.Result, Kind: e.Kind, Credit: e.Credit, Time: e.Time.UnixNano()}
			if e.Result == 0 {
				row.Key = e.KeyID
			}
			rows = append(rows, row)
		}
		return rows
	}
	for id, k := range t.st.Keys {
		s.KeyRecent[id] = events(k.Recent)
	}
	for name, op := range t.st.Operators {
		s.OpRecent[name] = events(op.Recent)
	}
	return s, nil
}

// clone copies what Apply changes in place, so that the copy can be
// encoded without the lock. Results and effects are stored as rows, and
// a build's verdict is never changed once stored, so they are not copied.
func (st *state) clone() state {
	c := *st
	c.Keys = make(map[string]*keyState, len(st.Keys))
	for id, k := range st.Keys {
		kc := *k
		c.Keys[id] = &kc
	}
	c.Operators = make(map[string]*opState, len(st.Operators))
	for name, op := range st.Operators {
		oc := *op
		oc.Teams, oc.Keys = slices.Clone(op.Teams), slices.Clone(op.Keys)
		c.Operators[name] = &oc
	}
	c.Teams = make(map[string]*Account, len(st.Teams))
	for name, a := range st.Teams {
		ac := *a
		c.Teams[name] = &ac
	}
	c.Official, c.Closed = maps.Clone(st.Official), maps.Clone(st.Closed)
	c.Builds = maps.Clone(st.Builds)
	c.Days = make(map[string]*DayStats, len(st.Days))
	for d, ds := range st.Days {
		dc := *ds
		c.Days[d] = &dc
	}
	c.Breaker.Open = slices.Clone(st.Breaker.Open)
	c.Results = nil
	return c
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
	if err := s.unpack(t); err != nil {
		return nil, err
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
	return t, nil
}

// unpack rebuilds the bulky parts of s.State from the rows, interning the
// strings in t.
func (s *stored) unpack(t *Tracker) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("stats: restore: "+format+": %w", append(a, ErrState)...)
	}
	st := &s.State
	if st.Keys == nil || st.Operators == nil || st.Builds == nil {
		return bad("missing maps")
	}
	refs := make([]string, len(s.Refs))
	for i, r := range s.Refs {
		refs[i] = t.internKey(r)
	}
	deref := func(n int64) (string, bool) {
		if n < 0 || n >= int64(len(refs)) {
			return "", false
		}
		return refs[n], true
	}
	st.Results = make(map[uint64]resultRec, len(s.Results))
	for _, row := range s.Results {
		k, ok1 := deref(row[1])
		b, ok2 := deref(row[2])
		if !ok1 || !ok2 || row[0] < 0 {
			return bad("result row %v", row)
		}
		st.Results[uint64(row[0])] = resultRec{Key: k, Build: b, Dur: time.Duration(row[3])}
	}
	result := func(i uint64) (resultRec, *keyState, *opState, error) {
		r, ok := st.Results[i]
		if !ok {
			return r, nil, nil, bad("no result %d", i)
		}
		k := st.Keys[r.Key]
		if k == nil || st.Operators[k.Operator] == nil {
			return r, nil, nil, bad("result %d by unknown key", i)
		}
		return r, k, st.Operators[k.Operator], nil
	}
	for bk, b := range st.Builds {
		if b == nil {
			return bad("build %q empty", trunc(bk))
		}
		rows := s.Effects[bk]
		b.Effects = make([]effect, 0, len(rows))
		for _, row := range rows {
			r, k, op, err := result(row.Result)
			if err != nil {
				return err
			}
			kind := KindAgreed
			if row.Outlier {
				kind = KindOutlier
			}
			b.Effects = append(b.Effects, effect{Result: row.Result, Key: r.Key, Operator: k.Operator, Team: op.teamAt(row.Result),
				Kind: kind, Credit: row.Credit, Time: time.Unix(0, row.Time).UTC()})
		}
	}
	events := func(rows []eventRow) ([]Event, error) {
		l := make([]Event, 0, len(rows))
		for _, row := range rows {
			e := Event{Index: row.Index, Result: row.Result, Kind: row.Kind, Credit: row.Credit, Time: time.Unix(0, row.Time).UTC(), KeyID: row.Key}
			if row.Result != 0 {
				r, _, _, err := result(row.Result)
				if err != nil {
					return nil, err
				}
				e.KeyID, e.Build = r.Key, splitBuildKey(r.Build)
			}
			l = append(l, e)
		}
		return l, nil
	}
	var err error
	for id, k := range st.Keys {
		if k == nil {
			return bad("key %s empty", trunc(id))
		}
		if k.Recent, err = events(s.KeyRecent[id]); err != nil {
			return err
		}
	}
	for name, op := range st.Operators {
		if op == nil {
			return bad("operator %q empty", trunc(name))
		}
		if op.Recent, err = events(s.OpRecent[name]); err != nil {
			return err
		}
	}
	return nil
}

func splitBuildKey(bk string) attest.BuildID {
	p := strings.SplitN(bk, "\x00", 3)
	for len(p) < 3 {
		p = append(p, "")
	}
	return attest.BuildID{NVR: p[0], Arch: p[1], SRPMSHA256: p[2]}
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
