// Package witness follows a skyline log, checks it, and computes what the log
// says about each build: the agreement engine (agreement.go), builder
// reputation and the circuit breaker. The agreement rules are those of
// ARCHITECTURE.md "Agreement" and docs/agreement.md; the code here is pure
// (no I/O, no clocks) so that the witness, `skyline verify` and
// `skyline audit` all run the one implementation on the same inputs and
// reach the same verdicts.
package witness

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Verdicts of an Outcome (docs/agreement.md "Verdicts").
const (
	// VerdictReproduced: at least Quorum operators agree, dissent is within
	// MaxDissent, and the official build matches when it is logged.
	VerdictReproduced = "reproduced"
	// VerdictDisputed: a group reached quorum but more operators than
	// MaxDissent disagree with it; the outliers are named.
	VerdictDisputed = "disputed"
	// VerdictOfficialMismatch: the volunteers agree with each other, not
	// with the official Koji build.
	VerdictOfficialMismatch = "official-mismatch"
	// VerdictUnreproducible: enough operators returned results, but they
	// disagree beyond tolerance and no group reaches quorum.
	VerdictUnreproducible = "unreproducible"
	// VerdictInsufficient: too few results, or the job is not closed yet.
	VerdictInsufficient = "insufficient"
	// VerdictWithheld: the agreement was positive but the circuit breaker is
	// tripped, so it is not released (see Breaker.Gate).
	VerdictWithheld = "withheld"
)

// Official build status of an Outcome.
const (
	OfficialAbsent   = "absent"   // no official build is logged for the build
	OfficialMatch    = "match"    // the official result set equals the agreeing group's
	OfficialMismatch = "mismatch" // it differs
	// With no agreeing group the official build is not compared and
	// Outcome.Official is empty.
)

// Errors of Agree. ErrPolicy and ErrRecord reject the whole call; the
// others explain why one result did not vote (Outcome.Ignored).
var (
	// ErrPolicy: the policy is not usable (see Policy.Validate).
	ErrPolicy = errors.New("invalid agreement policy")
	// ErrRecord: the build record is malformed (two entries at one index,
	// a lease id logged twice, empty key ids or result sets).
	ErrRecord = errors.New("malformed build record")

	// ErrResultOtherBuild: the result claims another build.
	ErrResultOtherBuild = errors.New("result is for another build")
	// ErrNoLease: the result names no lease that is logged.
	ErrNoLease = errors.New("result without a logged lease")
	// ErrLeaseOtherBuild: the result's lease is for another build.
	ErrLeaseOtherBuild = errors.New("lease is for another build")
	// ErrLeaseOtherKey: the result's lease was issued to another key.
	ErrLeaseOtherKey = errors.New("lease was issued to another key")
	// ErrLeaseOrder: the lease was logged after the result.
	ErrLeaseOrder = errors.New("lease logged after the result")
	// ErrLeaseEnded: the lease had ended (failed, abandoned, expired) when
	// the result was logged.
	ErrLeaseEnded = errors.New("lease ended before the result")
	// ErrUnenrolled: the key was not enrolled when the result was logged.
	ErrUnenrolled = errors.New("key not enrolled")
	// ErrRevoked: the key was revoked when the result was logged.
	ErrRevoked = errors.New("key revoked")
	// ErrLate: the result was logged after the job closed.
	ErrLate = errors.New("result logged after the job closed")
)

// Policy is the agreement policy. The zero value is not valid; start from
// DefaultPolicy.
type Policy struct {
	// Leases is how many leases the coordinator issues per job (default
	// 10). Agree does not count leases; the figure is used for the
	// acceptance probabilities of docs/agreement.md and by the coordinator.
	Leases int `toml:"leases" json:"leases"`
	// Quorum is how many distinct operators must agree on one result set
	// (default 5).
	Quorum int `toml:"quorum" json:"quorum"`
	// MaxDissent is how many operators may disagree with the agreeing group
	// for the build to still be reproduced (default 1).
	MaxDissent int `toml:"max_dissent" json:"max_dissent"`
	// RequireOfficialMatch makes a logged official build that differs from
	// the agreeing group an official-mismatch (default true).
	RequireOfficialMatch bool `toml:"require_official_match" json:"require_official_match"`
}

// DefaultPolicy returns the policy of ARCHITECTURE.md "Agreement": 10
// leases, quorum 5 operators, at most 1 dissent, official build must match.
func DefaultPolicy() Policy {
	return Policy{Leases: 10, Quorum: 5, MaxDissent: 1, RequireOfficialMatch: true}
}

// Validate reports whether the policy is usable: 1 <= Quorum <= Leases,
// 0 <= MaxDissent < Quorum (so that two groups can never both be accepted).
func (p Policy) Validate() error {
	switch {
	case p.Quorum < 1:
		return fmt.Errorf("witness: quorum %d < 1: %w", p.Quorum, ErrPolicy)
	case p.Leases < p.Quorum:
		return fmt.Errorf("witness: %d leases < quorum %d: %w", p.Leases, p.Quorum, ErrPolicy)
	case p.MaxDissent < 0:
		return fmt.Errorf("witness: max dissent %d < 0: %w", p.MaxDissent, ErrPolicy)
	case p.MaxDissent >= p.Quorum:
		return fmt.Errorf("witness: max dissent %d >= quorum %d: %w", p.MaxDissent, p.Quorum, ErrPolicy)
	}
	return nil
}

// Result is a verified build result (a builder attestation, or the official
// build) at its log index. The caller has checked the signature and
// reassembled multi-part result sets: a Result is the whole set.
type Result struct {
	Index     uint64         // log index of the attestation (first part's)
	Build     attest.BuildID // the build the attestation is for
	KeyID     string         // signing key
	LeaseID   string         // lease the builder claims (empty for the official build)
	ResultSet string         // result-set digest
	// Subjects maps each RPM file name to its skyline-rpm-v1 digest; it is
	// only used to say which RPMs differed.
	Subjects map[string]string
	// Time is the signed time of the entry (the provenance's finishedOn for
	// builders and the Koji importer). Only the official build's is used.
	Time time.Time
}

// LeaseRecord is a logged lease and its log index.
type LeaseRecord struct {
	Index uint64
	Lease attest.Lease
}

// KeyState is what the log says about a builder key: its enrolment and
// revocation.
type KeyState struct {
	Operator string // from the enrolment: operators cannot be claimed by builders
	Enrolled uint64 // log index of the enrolment
	Revoked  bool
	// RevokedAt is the log index from which the key's results stop counting
	// (the revocation entry's index).
	RevokedAt uint64
}

// BuildRecord is everything the log says about one build up to some tree
// size, already verified. Leases may include leases for other builds (a
// result naming one does not vote).
type BuildRecord struct {
	Build   attest.BuildID
	Leases  []LeaseRecord
	Results []Result
	// LeaseEnds maps a lease id to the log index of its LeaseEnd entry.
	LeaseEnds map[string]uint64
	// Official is the official Koji build, when it is logged.
	Official *Result
	// Keys maps builder key ids to their state.
	Keys map[string]KeyState
	// Closed says that the job's JobClose entry is logged, at ClosedAt and
	// with the signed time ClosedTime.
	Closed     bool
	ClosedAt   uint64
	ClosedTime time.Time
}

// Vote is a result that counted.
type Vote struct {
	Index     uint64 `json:"index"`
	KeyID     string `json:"key_id"`
	Operator  string `json:"operator"`
	ResultSet string `json:"result_set"`
}

// RPMDiff is one RPM whose digest differs between two result sets.
type RPMDiff struct {
	File string `json:"file"`
	Want string `json:"want,omitempty"` // digest in the reference set; empty: the file is not in it
	Got  string `json:"got,omitempty"`  // digest in the other set; empty: the file is missing from it
}

// Outlier is a counted result outside the agreeing group, with the RPMs that
// differed.
type Outlier struct {
	Vote
	Diff []RPMDiff `json:"diff,omitempty"`
}

// Group is one result set and who voted for it.
type Group struct {
	ResultSet string   `json:"result_set"`
	Operators []string `json:"operators"` // operators whose one vote is this set, sorted
	Entries   []uint64 `json:"entries"`   // every counted result with this set, ascending
}

// Ignored is a result that did not vote, and why (one of the Err* reasons,
// checked with errors.Is).
type Ignored struct {
	Index uint64
	KeyID string
	Err   error
}

// Outcome is the agreement result for one build.
type Outcome struct {
	Build   attest.BuildID
	Verdict string
	// Final is true once the job is closed. Before that Verdict is
	// VerdictInsufficient whatever the results say.
	Final bool
	// ResultSet is the agreeing group's set: the one group with the most
	// operators, at least Quorum of them. Empty when there is none.
	ResultSet string
	Groups    []Group   // by operators descending, then result set
	Counted   []Vote    // every result that voted, by index
	Outliers  []Outlier // counted results outside the agreeing group, by index
	// Split lists operators whose keys voted for different result sets: the
	// operator's vote is void and counts as one dissent; its results outside
	// the agreeing group are outliers, its results inside it are not.
	Split    []string
	Dissent  int    // operators not voting for the agreeing group (split ones included)
	Official string // OfficialAbsent, OfficialMatch or OfficialMismatch
	// OfficialResultSet is the official build's result-set digest, when
	// it is logged.
	OfficialResultSet string
	OfficialDiff      []RPMDiff // official build vs the agreeing group, on mismatch
	Ignored           []Ignored // by index
	// At is the largest log index the outcome depends on, and Time the
	// signed time it is decided at: the later of the job close and the
	// official build. The breaker's 24-hour window uses Time.
	At   uint64
	Time time.Time
	// Withheld says why a positive verdict was withheld (Breaker.Gate).
	Withheld string
}

// Agree computes the agreement outcome of one build under p
// (ARCHITECTURE.md "Agreement"). It is pure and deterministic: the order of
// rec's slices and maps does not matter. It returns an error only when p or
// rec is malformed; results that may not vote are listed in
// Outcome.Ignored.
func Agree(rec BuildRecord, p Policy) (Outcome, error) {
	if err := p.Validate(); err != nil {
		return Outcome{}, err
	}
	leases, err := checkRecord(rec)
	if err != nil {
		return Outcome{}, err
	}
	results := slices.Clone(rec.Results)
	slices.SortFunc(results, func(a, b Result) int { return cmp.Compare(a.Index, b.Index) })

	o := Outcome{Build: rec.Build, Final: rec.Closed}
	if rec.Closed {
		o.At, o.Time = rec.ClosedAt, rec.ClosedTime
	}
	if rec.Official != nil {
		o.OfficialResultSet = rec.Official.ResultSet
		o.At = max(o.At, rec.Official.Index)
		if rec.Official.Time.After(o.Time) {
			o.Time = rec.Official.Time
		}
	}

	subjects := map[uint64]map[string]string{}
	for _, r := range results {
		o.At = max(o.At, r.Index)
		if err := eligible(rec, leases, r); err != nil {
			o.Ignored = append(o.Ignored, Ignored{Index: r.Index, KeyID: r.KeyID, Err: err})
			continue
		}
		o.Counted = append(o.Counted, Vote{Index: r.Index, KeyID: r.KeyID, Operator: rec.Keys[r.KeyID].Operator, ResultSet: r.ResultSet})
		subjects[r.Index] = r.Subjects
	}

	// One vote per operator: identical votes from several keys (or
	// resubmissions) count once; an operator whose results differ is split
	// and votes for nothing.
	opSets := map[string]map[string]bool{}
	groups := map[string]*Group{}
	for _, v := range o.Counted {
		if opSets[v.Operator] == nil {
			opSets[v.Operator] = map[string]bool{}
		}
		opSets[v.Operator][v.ResultSet] = true
		g := groups[v.ResultSet]
		if g == nil {
			g = &Group{ResultSet: v.ResultSet, Operators: []string{}}
			groups[v.ResultSet] = g
		}
		g.Entries = append(g.Entries, v.Index)
	}
	voters := 0
	for _, op := range slices.Sorted(maps.Keys(opSets)) {
		sets := opSets[op]
		if len(sets) > 1 {
			o.Split = append(o.Split, op)
			continue
		}
		voters++
		for set := range sets {
			groups[set].Operators = append(groups[set].Operators, op)
		}
	}
	for _, g := range groups {
		o.Groups = append(o.Groups, *g)
	}
	slices.SortFunc(o.Groups, func(a, b Group) int {
		if c := cmp.Compare(len(b.Operators), len(a.Operators)); c != 0 {
			return c
		}
		return cmp.Compare(a.ResultSet, b.ResultSet)
	})

	operators := voters + len(o.Split)
	best := 0
	if len(o.Groups) > 0 {
		best = len(o.Groups[0].Operators)
	}
	unique := len(o.Groups) < 2 || len(o.Groups[1].Operators) < best
	o.Dissent = operators - best
	if best >= p.Quorum && unique {
		o.ResultSet = o.Groups[0].ResultSet
		ref := subjects[o.Groups[0].Entries[0]]
		for _, v := range o.Counted {
			if v.ResultSet != o.ResultSet {
				o.Outliers = append(o.Outliers, Outlier{Vote: v, Diff: diffRPMs(ref, subjects[v.Index])})
			}
		}
		o.Official = OfficialAbsent
		if rec.Official != nil {
			o.Official = OfficialMatch
			if rec.Official.ResultSet != o.ResultSet {
				o.Official = OfficialMismatch
				o.OfficialDiff = diffRPMs(ref, rec.Official.Subjects)
			}
		}
	}

	switch {
	case !rec.Closed:
		// Never decide on the first results to arrive (ARCHITECTURE.md
		// "Agreement": colluders would race to the quorum).
		o.Verdict = VerdictInsufficient
	case o.ResultSet != "" && o.Dissent > p.MaxDissent:
		o.Verdict = VerdictDisputed
	case o.ResultSet != "" && o.Official == OfficialMismatch && p.RequireOfficialMatch:
		o.Verdict = VerdictOfficialMismatch
	case o.ResultSet != "":
		o.Verdict = VerdictReproduced
	case best >= p.Quorum:
		// Two groups tie at quorum or above: two camps, no agreeing group,
		// so no outliers can be named.
		o.Verdict = VerdictDisputed
	case operators >= p.Quorum && o.Dissent > p.MaxDissent:
		// Enough operators answered, no group reaches quorum, and they
		// disagree beyond tolerance (a tie at the top included).
		o.Verdict = VerdictUnreproducible
	default:
		o.Verdict = VerdictInsufficient
	}
	return o, nil
}

// checkRecord rejects malformed records and indexes the leases by id.
func checkRecord(rec BuildRecord) (map[string]LeaseRecord, error) {
	// Every index names one entry: leases, lease ends, results, the
	// official build and the close may not share one.
	seen := make(map[uint64]bool, len(rec.Leases)+len(rec.LeaseEnds)+len(rec.Results)+2)
	entry := func(what string, i uint64) error {
		if seen[i] {
			return fmt.Errorf("witness: %s at %d: index used twice: %w", what, i, ErrRecord)
		}
		seen[i] = true
		return nil
	}
	leases := make(map[string]LeaseRecord, len(rec.Leases))
	for _, l := range rec.Leases {
		if l.Lease.LeaseID == "" || l.Lease.KeyID == "" {
			return nil, fmt.Errorf("witness: lease at %d: empty lease or key id: %w", l.Index, ErrRecord)
		}
		if _, dup := leases[l.Lease.LeaseID]; dup {
			return nil, fmt.Errorf("witness: lease %q logged twice: %w", l.Lease.LeaseID, ErrRecord)
		}
		if err := entry("lease", l.Index); err != nil {
			return nil, err
		}
		leases[l.Lease.LeaseID] = l
	}
	for id, i := range rec.LeaseEnds {
		if err := entry("end of lease "+id, i); err != nil {
			return nil, err
		}
	}
	if rec.Closed {
		if err := entry("job close", rec.ClosedAt); err != nil {
			return nil, err
		}
	}
	check := func(what string, r Result) error {
		if r.ResultSet == "" {
			return fmt.Errorf("witness: %s at %d: empty result set: %w", what, r.Index, ErrRecord)
		}
		return entry(what, r.Index)
	}
	for _, r := range rec.Results {
		if r.KeyID == "" {
			return nil, fmt.Errorf("witness: result at %d: empty key id: %w", r.Index, ErrRecord)
		}
		if err := check("result", r); err != nil {
			return nil, err
		}
	}
	if rec.Official != nil {
		if err := check("official build", *rec.Official); err != nil {
			return nil, err
		}
	}
	for id, k := range rec.Keys {
		if k.Operator == "" {
			return nil, fmt.Errorf("witness: key %s: empty operator: %w", id, ErrRecord)
		}
	}
	return leases, nil
}

// eligible says whether r may vote: ARCHITECTURE.md "Agreement" and "Trust
// and failure rules" (results without a lease do not vote).
func eligible(rec BuildRecord, leases map[string]LeaseRecord, r Result) error {
	if r.Build != rec.Build {
		return fmt.Errorf("witness: result at %d for %v: %w", r.Index, r.Build, ErrResultOtherBuild)
	}
	if rec.Closed && r.Index > rec.ClosedAt {
		return fmt.Errorf("witness: result at %d, job closed at %d: %w", r.Index, rec.ClosedAt, ErrLate)
	}
	k, ok := rec.Keys[r.KeyID]
	if !ok || k.Enrolled >= r.Index {
		return fmt.Errorf("witness: result at %d by key %s: %w", r.Index, r.KeyID, ErrUnenrolled)
	}
	if k.Revoked && r.Index >= k.RevokedAt {
		return fmt.Errorf("witness: result at %d by key %s revoked at %d: %w", r.Index, r.KeyID, k.RevokedAt, ErrRevoked)
	}
	l, ok := leases[r.LeaseID]
	if !ok {
		return fmt.Errorf("witness: result at %d names lease %q: %w", r.Index, r.LeaseID, ErrNoLease)
	}
	if l.Lease.Build != rec.Build {
		return fmt.Errorf("witness: result at %d: lease %q is for %v: %w", r.Index, r.LeaseID, l.Lease.Build, ErrLeaseOtherBuild)
	}
	if l.Lease.KeyID != r.KeyID {
		return fmt.Errorf("witness: result at %d: lease %q held by key %s: %w", r.Index, r.LeaseID, l.Lease.KeyID, ErrLeaseOtherKey)
	}
	if l.Index >= r.Index {
		return fmt.Errorf("witness: result at %d: lease %q logged at %d: %w", r.Index, r.LeaseID, l.Index, ErrLeaseOrder)
	}
	if end, ok := rec.LeaseEnds[r.LeaseID]; ok && end < r.Index {
		return fmt.Errorf("witness: result at %d: lease %q ended at %d: %w", r.Index, r.LeaseID, end, ErrLeaseEnded)
	}
	return nil
}

// diffRPMs lists the RPMs whose digests differ between the reference set
// want and got, by file name.
func diffRPMs(want, got map[string]string) []RPMDiff {
	var d []RPMDiff
	for f, w := range want {
		if g := got[f]; g != w {
			d = append(d, RPMDiff{File: f, Want: w, Got: g})
		}
	}
	for f, g := range got {
		if _, ok := want[f]; !ok {
			d = append(d, RPMDiff{File: f, Got: g})
		}
	}
	slices.SortFunc(d, func(a, b RPMDiff) int { return cmp.Compare(a.File, b.File) })
	return d
}

// Payload returns the outcome as the verdict a witness signs and logs,
// computed at treeSize.
func (o Outcome) Payload(treeSize uint64) attest.Verdict {
	v := attest.Verdict{
		Build:     o.Build,
		Verdict:   o.Verdict,
		TreeSize:  treeSize,
		ResultSet: o.ResultSet,
		Groups:    make([]attest.VerdictGroup, 0, len(o.Groups)),
		Official:  o.OfficialResultSet, // attest.Verdict.Official is a digest
		At:        o.Time,
	}
	for _, g := range o.Groups {
		v.Groups = append(v.Groups, attest.VerdictGroup{
			ResultSet: g.ResultSet,
			Operators: slices.Clone(g.Operators),
			Entries:   slices.Clone(g.Entries),
		})
	}
	for _, x := range o.Outliers {
		v.Outliers = append(v.Outliers, attest.Outlier{Index: x.Index, KeyID: x.KeyID, Operator: x.Operator, ResultSet: x.ResultSet})
	}
	return v
}
