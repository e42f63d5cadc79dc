package witness

// recorder is an independent fold for the tests: it folds verified
// entries, in log order, into per-build records, so that the tests'
// witnesses compute their verdicts without the code under test.

import (
	"cmp"
	"slices"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// recorder folds verified entries, in log order, into per-build records.
type recorder struct {
	keys     map[string]KeyState // builder keys
	roles    map[string]string   // key id -> enrolled role
	revoked  map[string]uint64
	builds   map[attest.BuildID]*buildAcc
	leaseOf  map[string]attest.BuildID // lease id -> build
	pendEnds map[string]uint64         // lease ends seen before their lease
}

// buildAcc accumulates one build's entries.
type buildAcc struct {
	rec   BuildRecord
	parts map[partKey][]partAt
	seen  []uint64 // every index that fed the record
	// verdicts are the verdict entries for the build, in log order.
	verdicts []verdictAt
}

type partKey struct {
	keyID, leaseID, digest string
	official               bool
}

type partAt struct {
	index uint64
	a     *attest.Attestation
}

func newRecorder() *recorder {
	return &recorder{
		keys:     map[string]KeyState{},
		roles:    map[string]string{},
		revoked:  map[string]uint64{},
		builds:   map[attest.BuildID]*buildAcc{},
		leaseOf:  map[string]attest.BuildID{},
		pendEnds: map[string]uint64{},
	}
}

func (r *recorder) build(b attest.BuildID) *buildAcc {
	acc := r.builds[b]
	if acc == nil {
		acc = &buildAcc{rec: BuildRecord{Build: b, LeaseEnds: map[string]uint64{}, Keys: map[string]KeyState{}}, parts: map[partKey][]partAt{}}
		r.builds[b] = acc
	}
	return acc
}

// add folds the verified entry e at index. The caller has checked that e's
// signer may make it.
func (r *recorder) add(index uint64, e *attest.Entry) {
	switch v := e.Value.(type) {
	case *attest.Enrolment:
		if _, ok := r.roles[v.KeyID]; ok {
			return // a key is enrolled once; the first enrolment counts
		}
		r.roles[v.KeyID] = v.Role
		if v.Role == attest.RoleBuilder {
			r.keys[v.KeyID] = KeyState{Operator: v.Operator, Enrolled: index}
		}
	case *attest.Revocation:
		if _, ok := r.revoked[v.KeyID]; !ok {
			r.revoked[v.KeyID] = index
		}
		if k, ok := r.keys[v.KeyID]; ok && !k.Revoked {
			k.Revoked, k.RevokedAt = true, index
			r.keys[v.KeyID] = k
		}
	case *attest.Job:
		acc := r.build(v.Build)
		acc.seen = append(acc.seen, index)
	case *attest.Lease:
		acc := r.build(v.Build)
		for _, l := range acc.rec.Leases {
			if l.Lease.LeaseID == v.LeaseID {
				return // Agree refuses a lease id logged twice: keep the first
			}
		}
		acc.rec.Leases = append(acc.rec.Leases, LeaseRecord{Index: index, Lease: *v})
		acc.seen = append(acc.seen, index)
		r.leaseOf[v.LeaseID] = v.Build
		if end, ok := r.pendEnds[v.LeaseID]; ok {
			acc.rec.LeaseEnds[v.LeaseID] = end
			delete(r.pendEnds, v.LeaseID)
		}
	case *attest.LeaseEnd:
		b, ok := r.leaseOf[v.LeaseID]
		if !ok {
			if _, dup := r.pendEnds[v.LeaseID]; !dup {
				r.pendEnds[v.LeaseID] = index
			}
			return
		}
		acc := r.build(b)
		if _, dup := acc.rec.LeaseEnds[v.LeaseID]; !dup {
			acc.rec.LeaseEnds[v.LeaseID] = index
			acc.seen = append(acc.seen, index)
		}
	case *attest.JobClose:
		acc := r.build(v.Build)
		if !acc.rec.Closed {
			acc.rec.Closed, acc.rec.ClosedAt, acc.rec.ClosedTime = true, index, v.At
			acc.seen = append(acc.seen, index)
		}
	case *attest.Attestation:
		acc := r.build(v.Build)
		k := partKey{keyID: e.KeyID, leaseID: v.LeaseID, digest: v.ResultSet.Digest, official: v.Official}
		acc.parts[k] = append(acc.parts[k], partAt{index: index, a: v})
		acc.seen = append(acc.seen, index)
	case *attest.Verdict:
		acc := r.build(v.Build)
		acc.verdicts = append(acc.verdicts, verdictAt{Index: index, KeyID: e.KeyID, Verdict: v})
	}
}

// incomplete is a result set whose parts do not fit together (yet).
type incomplete struct {
	Index uint64
	KeyID string
	Err   error
}

// record returns the build's record: results reassembled from their parts,
// and the keys of its results from the enrolments folded so far.
func (r *recorder) record(b attest.BuildID) (BuildRecord, []incomplete) {
	acc := r.builds[b]
	if acc == nil {
		return BuildRecord{Build: b}, nil
	}
	rec := acc.rec
	rec.Leases = slices.Clone(rec.Leases)
	rec.Results = nil
	rec.Official = nil
	rec.Keys = map[string]KeyState{}
	var bad []incomplete
	keys := slices.SortedFunc(func(yield func(partKey) bool) {
		for k := range acc.parts {
			if !yield(k) {
				return
			}
		}
	}, func(a, b partKey) int {
		return cmp.Compare(acc.parts[a][0].index, acc.parts[b][0].index)
	})
	for _, k := range keys {
		ps := acc.parts[k]
		atts := make([]*attest.Attestation, len(ps))
		first := ps[0].index
		for i, p := range ps {
			atts[i] = p.a
			first = min(first, p.index)
		}
		set, err := attest.Reassemble(atts)
		if err != nil {
			bad = append(bad, incomplete{Index: first, KeyID: k.keyID, Err: err})
			continue
		}
		res := Result{Index: first, Build: set.Build, KeyID: k.keyID, LeaseID: k.leaseID, ResultSet: set.Digest, Subjects: map[string]string{}}
		for _, s := range set.Subjects {
			res.Subjects[s.Name] = s.Skyline
		}
		res.Time = latestFinish(atts)
		if k.official {
			// The first official build logged counts.
			if rec.Official == nil || res.Index < rec.Official.Index {
				o := res
				rec.Official = &o
			}
			continue
		}
		rec.Results = append(rec.Results, res)
		if ks, ok := r.keys[k.keyID]; ok {
			rec.Keys[k.keyID] = ks
		}
	}
	return rec, bad
}

func latestFinish(atts []*attest.Attestation) time.Time {
	var t time.Time
	for _, a := range atts {
		if a.Finished.After(t) {
			t = a.Finished
		}
	}
	return t
}
