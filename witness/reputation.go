package witness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Reputation defaults (docs/agreement.md "Reputation").
const (
	DefaultReputationWindow = 50 // results remembered per key and per operator
	DefaultMaxOutliers      = 1  // more outliers than this in the window flags
)

// Errors of Reputation and Breaker.
var (
	// ErrOutOfOrder: an outcome or clear was fed out of log order.
	ErrOutOfOrder = errors.New("fed out of log order")
	// ErrState: persisted state is malformed or inconsistent.
	ErrState = errors.New("malformed state")
	// ErrConfig: a reputation or breaker configuration is not usable.
	ErrConfig = errors.New("invalid configuration")
)

// Kinds of a Notice subject.
const (
	SubjectKey      = "key"
	SubjectOperator = "operator"
)

// Notice tells a builder key's owner, or an operator, that its results were
// outliers too often (ARCHITECTURE.md "Agreement": builders whose results
// were outliers more than once are told so, through their daemon).
type Notice struct {
	Kind     string   `json:"kind"` // SubjectKey or SubjectOperator
	ID       string   `json:"id"`   // key id or operator name
	Outliers []uint64 `json:"outliers"`
	Results  int      `json:"results"` // results in the window
	Message  string   `json:"message"`
}

// mark is one counted result in a history window.
type mark struct {
	Index   uint64 `json:"index"`
	Outlier bool   `json:"outlier,omitempty"`
}

// Reputation remembers, for every builder key and every operator, whether
// each of its last Window counted results was an outlier ("last" in the
// order outcomes are fed, which is the log order of the entries that
// decided them). It is pure state:
// feed it final outcomes in log order with Observe; the same outcomes in the
// same order give the same state, and MarshalJSON/UnmarshalJSON persist it.
// A Reputation is not safe for concurrent use.
type Reputation struct {
	window, maxOutliers int
	last                uint64
	keys, ops           map[string][]mark
}

// NewReputation returns an empty Reputation that keeps window results per
// subject and flags a subject with more than maxOutliers outliers among
// them.
func NewReputation(window, maxOutliers int) (*Reputation, error) {
	if window < 1 || maxOutliers < 0 || maxOutliers >= window {
		return nil, fmt.Errorf("witness: reputation window %d, max outliers %d: %w", window, maxOutliers, ErrConfig)
	}
	return &Reputation{window: window, maxOutliers: maxOutliers, keys: map[string][]mark{}, ops: map[string][]mark{}}, nil
}

// Observe records the counted results of a final outcome that has an
// agreeing group (reproduced, official-mismatch, disputed with outliers):
// only there is "outlier" defined. Other outcomes are no-ops. It returns a
// notice for every key and operator that an outlier of this outcome leaves
// flagged. Outcomes must come in log order (Outcome.At not decreasing);
// a result already recorded (an outcome fed again after the official build
// arrived) is not counted twice.
func (r *Reputation) Observe(o Outcome) ([]Notice, error) {
	if r.keys == nil || r.ops == nil {
		return nil, fmt.Errorf("witness: reputation not made by NewReputation or UnmarshalJSON: %w", ErrConfig)
	}
	if o.At < r.last {
		return nil, fmt.Errorf("witness: reputation: outcome at %d after %d: %w", o.At, r.last, ErrOutOfOrder)
	}
	r.last = o.At
	if !o.Final || o.ResultSet == "" {
		return nil, nil
	}
	var notices []Notice
	for _, v := range o.Counted {
		outlier := v.ResultSet != o.ResultSet
		newKey := r.record(r.keys, v.KeyID, v.Index, outlier)
		newOp := r.record(r.ops, v.Operator, v.Index, outlier)
		if !outlier {
			continue
		}
		if n, ok := r.notice(SubjectKey, v.KeyID); ok && newKey {
			notices = append(notices, n)
		}
		if n, ok := r.notice(SubjectOperator, v.Operator); ok && newOp {
			notices = append(notices, n)
		}
	}
	return notices, nil
}

// record appends a mark to id's window unless index is already there, and
// reports whether it did.
func (r *Reputation) record(m map[string][]mark, id string, index uint64, outlier bool) bool {
	h := m[id]
	if slices.ContainsFunc(h, func(x mark) bool { return x.Index == index }) {
		return false
	}
	h = append(h, mark{Index: index, Outlier: outlier})
	if len(h) > r.window {
		h = slices.Delete(h, 0, len(h)-r.window)
	}
	m[id] = h
	return true
}

// notice returns the notice for a subject when it is flagged.
func (r *Reputation) notice(kind, id string) (Notice, bool) {
	m := r.keys
	what := "builder key " + id
	check := "check that machine for failing hardware, a broken or modified build environment, or a compromise, and rotate its key if in doubt"
	if kind == SubjectOperator {
		m = r.ops
		what = "operator " + id
		check = "check each of its machines for failing hardware, a broken or modified build environment, or a compromise"
	}
	h := m[id]
	var out []uint64
	for _, x := range h {
		if x.Outlier {
			out = append(out, x.Index)
		}
	}
	if len(out) <= r.maxOutliers {
		return Notice{}, false
	}
	return Notice{
		Kind:     kind,
		ID:       id,
		Outliers: out,
		Results:  len(h),
		Message:  fmt.Sprintf("%s: %d of its last %d counted results disagreed with the agreeing builders (entries %v); %s", what, len(out), len(h), out, check),
	}, true
}

// Flagged returns the notices of every flagged key and operator, keys
// first, each sorted by id.
func (r *Reputation) Flagged() []Notice {
	var ns []Notice
	for _, kind := range []string{SubjectKey, SubjectOperator} {
		m := r.keys
		if kind == SubjectOperator {
			m = r.ops
		}
		ids := make([]string, 0, len(m))
		for id := range m {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if n, ok := r.notice(kind, id); ok {
				ns = append(ns, n)
			}
		}
	}
	return ns
}

// IsFlagged reports whether the key or operator (kind SubjectKey or
// SubjectOperator) is flagged.
func (r *Reputation) IsFlagged(kind, id string) bool {
	_, ok := r.notice(kind, id)
	return ok
}

// reputationState is the JSON form of a Reputation.
type reputationState struct {
	Window      int               `json:"window"`
	MaxOutliers int               `json:"max_outliers"`
	Last        uint64            `json:"last"`
	Keys        map[string][]mark `json:"keys"`
	Operators   map[string][]mark `json:"operators"`
}

// MarshalJSON returns the state as JSON (map keys sorted, so equal states
// give equal bytes).
func (r *Reputation) MarshalJSON() ([]byte, error) {
	return json.Marshal(reputationState{Window: r.window, MaxOutliers: r.maxOutliers, Last: r.last, Keys: r.keys, Operators: r.ops})
}

// UnmarshalJSON restores a state written by MarshalJSON. It rejects unknown
// fields, trailing data and inconsistent windows (longer than the window,
// indices not ascending, an empty id) and leaves r unchanged on error.
func (r *Reputation) UnmarshalJSON(data []byte) error {
	var s reputationState
	if err := decodeStrict(data, &s); err != nil {
		return fmt.Errorf("witness: reputation state: %w", err)
	}
	if s.Window < 1 || s.MaxOutliers < 0 || s.MaxOutliers >= s.Window {
		return fmt.Errorf("witness: reputation state: window %d, max outliers %d: %w", s.Window, s.MaxOutliers, ErrState)
	}
	for _, m := range []map[string][]mark{s.Keys, s.Operators} {
		for id, h := range m {
			if err := checkMarks(id, h, s.Window, s.Last); err != nil {
				return fmt.Errorf("witness: reputation state: %w", err)
			}
		}
	}
	if s.Keys == nil {
		s.Keys = map[string][]mark{}
	}
	if s.Operators == nil {
		s.Operators = map[string][]mark{}
	}
	*r = Reputation{window: s.Window, maxOutliers: s.MaxOutliers, last: s.Last, keys: s.Keys, ops: s.Operators}
	return nil
}

// checkMarks checks one persisted window.
func checkMarks(id string, h []mark, window int, last uint64) error {
	if id == "" || len(h) == 0 || len(h) > window {
		return fmt.Errorf("subject %q with %d marks (window %d): %w", id, len(h), window, ErrState)
	}
	seen := make(map[uint64]bool, len(h))
	for _, x := range h {
		if x.Index > last || seen[x.Index] {
			return fmt.Errorf("subject %q: mark at index %d duplicated or after %d: %w", id, x.Index, last, ErrState)
		}
		seen[x.Index] = true
	}
	return nil
}

// decodeStrict decodes one JSON value into v, rejecting unknown fields and
// trailing data. The state is written by the witness itself; the check is
// against corruption, not an adversary.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", ErrState, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data: %w", ErrState)
	}
	return nil
}
