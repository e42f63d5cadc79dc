package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Errors of the fold: why an entry has no effect, checked with errors.Is.
var (
	// ErrSigner: the entry's signer has no right to make this kind of
	// entry (not the coordinator, not enrolled, or enrolled with another
	// role).
	ErrSigner = errors.New("signer may not make this entry")
	// ErrEntry: the entry contradicts the log so far (a second enrolment
	// of a key, a lease of an unknown job, a clear of no alarm...).
	ErrEntry = errors.New("entry contradicts the log")
)

// Fold replays a log's entries, in log order, into what the agreement
// engine needs: the keys (enrolments and revocations by the coordinator),
// jobs, leases, lease ends, job closes, results (multi-part result sets
// reassembled) and official builds of every build (ARCHITECTURE.md "Log
// entries"). It is pure: the same entries give the same state, whoever
// folds them, so the witness, verify and audit agree. A Fold is not safe
// for concurrent use.
type Fold struct {
	// KeepSubjects keeps every result's RPM digests, so that outcomes say
	// which RPMs differed (Outcome.Outliers[].Diff). The witness does not
	// need them (verdicts name result sets only) and saves the memory.
	KeepSubjects bool

	coordinator *attest.Verifier
	st          foldState
	verifiers   map[string]*attest.Verifier // parsed enrolled keys, by key id
}

// foldState is the JSON form of a Fold.
type foldState struct {
	Next    uint64                    `json:"next"`
	Keys    map[string]*foldKey       `json:"keys"`
	Builds  map[string]*foldBuild     `json:"builds"` // by buildKey
	Jobs    map[string]attest.BuildID `json:"jobs"`
	Leases  map[string]attest.BuildID `json:"leases"`
	Pending map[string]*foldParts     `json:"pending"` // partial result sets
	Alarms  map[uint64]bool           `json:"alarms"`
}

type foldKey struct {
	Enrolment attest.Enrolment `json:"enrolment"`
	Index     uint64           `json:"index"`
	Revoked   bool             `json:"revoked,omitempty"`
	RevokedAt uint64           `json:"revoked_at,omitempty"`
}

type foldBuild struct {
	Build      attest.BuildID    `json:"build"`
	Leases     []LeaseRecord     `json:"leases"`
	Results    []Result          `json:"results"`
	LeaseEnds  map[string]uint64 `json:"lease_ends"`
	Official   *Result           `json:"official,omitempty"`
	Closed     bool              `json:"closed"`
	ClosedAt   uint64            `json:"closed_at"`
	ClosedTime time.Time         `json:"closed_time"`
}

// foldParts collects the parts of one multi-part result set.
type foldParts struct {
	First uint64            `json:"first"`
	Parts map[int]partEntry `json:"parts"`
}

type partEntry struct {
	Index uint64              `json:"index"`
	A     *attest.Attestation `json:"a"`
}

// NewFold returns an empty fold that takes coordinator entries only from
// the coordinator key.
func NewFold(coordinator *attest.Verifier) *Fold {
	return &Fold{coordinator: coordinator, st: newFoldState(), verifiers: map[string]*attest.Verifier{}}
}

func newFoldState() foldState {
	return foldState{
		Keys:    map[string]*foldKey{},
		Builds:  map[string]*foldBuild{},
		Jobs:    map[string]attest.BuildID{},
		Leases:  map[string]attest.BuildID{},
		Pending: map[string]*foldParts{},
		Alarms:  map[uint64]bool{},
	}
}

// Next returns the index of the next entry to fold.
func (f *Fold) Next() uint64 { return f.st.Next }

func buildKey(b attest.BuildID) string { return b.NVR + "\x00" + b.Arch + "\x00" + b.SRPMSHA256 }

// coordinatorKind reports whether entries of this payload type are the
// coordinator's own decisions.
func coordinatorKind(payloadType string) bool {
	switch payloadType {
	case attest.PayloadEnrolment, attest.PayloadRevocation, attest.PayloadJob,
		attest.PayloadLease, attest.PayloadLeaseEnd, attest.PayloadJobClose:
		return true
	}
	return false
}

// roleFor returns the enrolment role that may sign e, or "" for coordinator
// entries.
func roleFor(e *attest.Entry) string {
	switch v := e.Value.(type) {
	case *attest.Attestation:
		if v.Official {
			return attest.RoleImporter
		}
		return attest.RoleBuilder
	case *attest.Verdict, *attest.Alarm:
		return attest.RoleWitness
	case *attest.AlarmClear:
		return attest.RoleAdmin
	}
	return ""
}

// keyView looks up enrolled keys: the fold's, plus enrolments of the batch
// being prepared that have not been applied yet.
type keyView func(keyID string) (*foldKey, bool)

// Signer returns the verifier that must have signed e (the coordinator for
// coordinator entries, the enrolled key with the entry's role otherwise),
// as the log stands after the entries folded so far (and, through
// tentative, the enrolments of the batch before e). The key's state
// (enrolled when, revoked when) is the agreement engine's business, not
// the signature's. It returns the enrolment index the key came from, or
// -1 for the coordinator.
func (f *Fold) Signer(e *attest.Entry, tentative keyView) (*attest.Verifier, int64, error) {
	if coordinatorKind(e.PayloadType) {
		if e.KeyID != f.coordinator.KeyID() {
			return nil, 0, fmt.Errorf("witness: %s signed by %s, not the coordinator: %w", e.PayloadType, e.KeyID, ErrSigner)
		}
		return f.coordinator, -1, nil
	}
	role := roleFor(e)
	if role == attest.RoleAdmin && e.KeyID == f.coordinator.KeyID() {
		return f.coordinator, -1, nil
	}
	k, ok := f.st.Keys[e.KeyID]
	if !ok && tentative != nil {
		k, ok = tentative(e.KeyID)
	}
	if !ok {
		return nil, 0, fmt.Errorf("witness: %s signed by unenrolled key %s: %w", e.PayloadType, e.KeyID, ErrSigner)
	}
	if k.Enrolment.Role != role {
		return nil, 0, fmt.Errorf("witness: %s signed by key %s enrolled as %s: %w", e.PayloadType, e.KeyID, k.Enrolment.Role, ErrSigner)
	}
	if role != attest.RoleBuilder && k.Revoked {
		return nil, 0, fmt.Errorf("witness: %s signed by revoked key %s: %w", e.PayloadType, e.KeyID, ErrSigner)
	}
	v, err := f.verifier(k)
	if err != nil {
		return nil, 0, err
	}
	return v, int64(k.Index), nil
}

// keyring returns a Fold holding a copy of f's keys and nothing else, to
// name the signers of entries read ahead of f (Signer) while f folds the
// entries before them; enrol adds their enrolments as they are read, before
// f has decided whether they count, so f's own Signer has the last word.
func (f *Fold) keyring() *Fold {
	r := NewFold(f.coordinator)
	for id, k := range f.st.Keys {
		c := *k
		r.st.Keys[id] = &c
	}
	r.verifiers = maps.Clone(f.verifiers)
	return r
}

// enrol adds, tentatively, the enrolment logged at index to a keyring,
// unless its key is known (a second enrolment of a key is refused).
func (f *Fold) enrol(index uint64, en *attest.Enrolment) {
	if _, ok := f.st.Keys[en.KeyID]; !ok {
		f.st.Keys[en.KeyID] = &foldKey{Enrolment: *en, Index: index}
	}
}

func (f *Fold) verifier(k *foldKey) (*attest.Verifier, error) {
	if v := f.verifiers[k.Enrolment.KeyID]; v != nil {
		return v, nil
	}
	v, err := attest.ParsePublicPEM([]byte(k.Enrolment.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("witness: enrolled key %s: %w", k.Enrolment.KeyID, err)
	}
	if v.KeyID() != k.Enrolment.KeyID {
		return nil, fmt.Errorf("witness: enrolled key id %s is not its key's %s: %w", k.Enrolment.KeyID, v.KeyID(), ErrEntry)
	}
	f.verifiers[k.Enrolment.KeyID] = v
	return v, nil
}

// Change says what folding an entry changed that the caller acts on.
type Change struct {
	// Build is set when a closed build's record changed (its job closed,
	// or the official build arrived after the close): its outcome is final
	// and must be (re)computed.
	Build *attest.BuildID
	// Clear is set for a logged clearing of an alarm this log holds.
	Clear *attest.AlarmClear
	// Verdict is set for a verdict entry (the caller tells its own).
	Verdict *attest.Verdict
}

// Apply folds the entry at index, which the caller has parsed and whose
// signature it verified with the verifier Signer returned. Entries must come
// in log order without gaps; an entry that contradicts the log so far is
// refused (ErrEntry) and changes nothing but the position.
func (f *Fold) Apply(index uint64, e *attest.Entry) (Change, error) {
	if index != f.st.Next {
		return Change{}, fmt.Errorf("witness: fold entry %d, expected %d: %w", index, f.st.Next, ErrOutOfOrder)
	}
	f.st.Next++
	if !e.Verified {
		return Change{}, fmt.Errorf("witness: entry %d not verified: %w", index, ErrSigner)
	}
	if _, _, err := f.Signer(e, nil); err != nil {
		return Change{}, fmt.Errorf("witness: entry %d: %w", index, err)
	}
	bad := func(format string, args ...any) (Change, error) {
		return Change{}, fmt.Errorf("witness: entry %d: "+format+": %w", append([]any{index}, append(args, ErrEntry)...)...)
	}
	switch v := e.Value.(type) {
	case *attest.Enrolment:
		if _, ok := f.st.Keys[v.KeyID]; ok {
			return bad("key %s enrolled again", v.KeyID)
		}
		k := &foldKey{Enrolment: *v, Index: index}
		if _, err := f.verifier(k); err != nil {
			return bad("enrolment of %s: %v", v.KeyID, err)
		}
		f.st.Keys[v.KeyID] = k
	case *attest.Revocation:
		k, ok := f.st.Keys[v.KeyID]
		if !ok || k.Revoked {
			return bad("revocation of unknown or revoked key %s", v.KeyID)
		}
		k.Revoked, k.RevokedAt = true, index
	case *attest.Job:
		if _, ok := f.st.Jobs[v.JobID]; ok {
			return bad("job %s logged again", v.JobID)
		}
		f.st.Jobs[v.JobID] = v.Build
		f.build(v.Build)
	case *attest.Lease:
		b, ok := f.st.Jobs[v.JobID]
		if !ok || b != v.Build {
			return bad("lease %s of unknown job %s", v.LeaseID, v.JobID)
		}
		if _, ok := f.st.Leases[v.LeaseID]; ok {
			return bad("lease %s logged again", v.LeaseID)
		}
		f.st.Leases[v.LeaseID] = v.Build
		rec := f.build(v.Build)
		rec.Leases = append(rec.Leases, LeaseRecord{Index: index, Lease: *v})
	case *attest.LeaseEnd:
		b, ok := f.st.Leases[v.LeaseID]
		if !ok {
			return bad("end of unknown lease %s", v.LeaseID)
		}
		rec := f.build(b)
		if _, ok := rec.LeaseEnds[v.LeaseID]; !ok {
			rec.LeaseEnds[v.LeaseID] = index
		}
	case *attest.JobClose:
		b, ok := f.st.Jobs[v.JobID]
		if !ok || b != v.Build {
			return bad("close of unknown job %s", v.JobID)
		}
		rec := f.build(b)
		if rec.Closed {
			return bad("job %s closed again", v.JobID)
		}
		rec.Closed, rec.ClosedAt, rec.ClosedTime = true, index, v.At
		return Change{Build: &b}, nil
	case *attest.Attestation:
		return f.applyAttestation(index, e.KeyID, v)
	case *attest.Verdict:
		return Change{Verdict: v}, nil
	case *attest.Alarm:
		f.st.Alarms[index] = true
	case *attest.AlarmClear:
		if !f.st.Alarms[v.AlarmIndex] {
			return bad("clear of %d, which is not an alarm", v.AlarmIndex)
		}
		delete(f.st.Alarms, v.AlarmIndex)
		return Change{Clear: v}, nil
	default:
		return bad("payload %T", e.Value)
	}
	return Change{}, nil
}

func (f *Fold) build(b attest.BuildID) *foldBuild {
	k := buildKey(b)
	rec := f.st.Builds[k]
	if rec == nil {
		rec = &foldBuild{Build: b, LeaseEnds: map[string]uint64{}}
		f.st.Builds[k] = rec
	}
	return rec
}

// applyAttestation adds a result (or official build) once all its parts
// are logged (attest.Reassemble).
func (f *Fold) applyAttestation(index uint64, keyID string, a *attest.Attestation) (Change, error) {
	parts := []*attest.Attestation{a}
	first := index
	if a.ResultSet.Parts > 1 {
		pk := keyID + "\x00" + buildKey(a.Build) + "\x00" + a.ResultSet.Digest + "\x00" + a.LeaseID
		p := f.st.Pending[pk]
		if p == nil {
			p = &foldParts{First: index, Parts: map[int]partEntry{}}
			f.st.Pending[pk] = p
		}
		if _, dup := p.Parts[a.ResultSet.Part]; dup {
			return Change{}, fmt.Errorf("witness: entry %d: part %d of result set %s logged again: %w", index, a.ResultSet.Part, a.ResultSet.Digest, ErrEntry)
		}
		p.Parts[a.ResultSet.Part] = partEntry{Index: index, A: a}
		if len(p.Parts) < a.ResultSet.Parts {
			return Change{}, nil
		}
		delete(f.st.Pending, pk)
		parts = parts[:0]
		for _, n := range slices.Sorted(maps.Keys(p.Parts)) {
			parts = append(parts, p.Parts[n].A)
		}
		first = p.First
	}
	set, err := attest.Reassemble(parts)
	if err != nil {
		return Change{}, fmt.Errorf("witness: entry %d: %w: %w", index, ErrEntry, err)
	}
	r := Result{Index: first, Build: a.Build, KeyID: keyID, LeaseID: a.LeaseID, ResultSet: set.Digest, Time: a.Finished}
	if f.KeepSubjects {
		r.Subjects = make(map[string]string, len(set.Subjects))
		for _, s := range set.Subjects {
			r.Subjects[s.Name] = s.Skyline
		}
	}
	rec := f.build(a.Build)
	if a.Official {
		if rec.Official != nil {
			return Change{}, fmt.Errorf("witness: entry %d: second official build of %s: %w", index, a.Build.NVR, ErrEntry)
		}
		rec.Official = &r
		if rec.Closed {
			// The outcome's official status changes: recompute.
			b := a.Build
			return Change{Build: &b}, nil
		}
		return Change{}, nil
	}
	// A result after the close does not vote (ErrLate) and changes no
	// final outcome, so it triggers no recomputation.
	rec.Results = append(rec.Results, r)
	return Change{}, nil
}

// Skip advances past an entry that did not parse or verify: it has no
// effect on any record.
func (f *Fold) Skip(index uint64) error {
	if index != f.st.Next {
		return fmt.Errorf("witness: skip entry %d, expected %d: %w", index, f.st.Next, ErrOutOfOrder)
	}
	f.st.Next++
	return nil
}

// Record returns the build record of b for Agree, with the state of every
// key that produced one of its results.
func (f *Fold) Record(b attest.BuildID) (BuildRecord, bool) {
	rec := f.st.Builds[buildKey(b)]
	if rec == nil {
		return BuildRecord{}, false
	}
	out := BuildRecord{
		Build:      rec.Build,
		Leases:     slices.Clone(rec.Leases),
		Results:    slices.Clone(rec.Results),
		LeaseEnds:  maps.Clone(rec.LeaseEnds),
		Official:   rec.Official,
		Keys:       map[string]KeyState{},
		Closed:     rec.Closed,
		ClosedAt:   rec.ClosedAt,
		ClosedTime: rec.ClosedTime,
	}
	for _, r := range rec.Results {
		if k, ok := f.st.Keys[r.KeyID]; ok {
			out.Keys[r.KeyID] = KeyState{Operator: k.Enrolment.Operator, Enrolled: k.Index, Revoked: k.Revoked, RevokedAt: k.RevokedAt}
		}
	}
	return out, true
}

// Builds returns the number of builds the fold knows.
func (f *Fold) Builds() int { return len(f.st.Builds) }

// MarshalJSON returns the fold's state.
func (f *Fold) MarshalJSON() ([]byte, error) { return json.Marshal(f.st) }

// UnmarshalJSON restores a state written by MarshalJSON (unknown fields are
// ErrState); the coordinator key is the caller's, given to NewFold.
func (f *Fold) UnmarshalJSON(data []byte) error {
	st := newFoldState()
	if err := decodeStrict(data, &st); err != nil {
		return fmt.Errorf("witness: fold state: %w", err)
	}
	for id, k := range st.Keys {
		if k == nil || k.Enrolment.KeyID != id {
			return fmt.Errorf("witness: fold state: key %s: %w", id, ErrState)
		}
	}
	f.st = st
	f.verifiers = map[string]*attest.Verifier{}
	return nil
}
