package witness

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// recordFromBytes turns fuzz input into a well-formed build record: each
// byte pair is one log entry (enrolment, revocation, lease, lease end,
// result, official build or job close) at the next index, so the fuzzer
// explores every eligibility rule and vote pattern.
func recordFromBytes(data []byte) BuildRecord {
	f := newFixture()
	var leases []string
	sets := []string{"good", "evil", "extra"}
	for i := 0; i+1 < len(data); i += 2 {
		op, arg := data[i]%8, int(data[i+1])
		key := fmt.Sprint("key", arg%8)
		switch op {
		case 0:
			f.enrol(key, fmt.Sprint("op", (arg>>3)%8))
		case 1:
			if k, ok := f.rec.Keys[key]; ok && !k.Revoked {
				k.Revoked, k.RevokedAt = true, f.idx()
				f.rec.Keys[key] = k
			}
		case 2:
			b := testBuild
			if arg&0x80 != 0 {
				b = otherBuild
			}
			leases = append(leases, f.lease(key, b))
		case 3:
			if len(leases) > 0 {
				l := leases[arg%len(leases)]
				if _, ok := f.rec.LeaseEnds[l]; !ok {
					f.rec.LeaseEnds[l] = f.idx()
				}
			}
		case 4, 5:
			// bits 0-2 key, 3-4 result set, 5-6 lease: the key's latest,
			// any logged one, or none.
			l := "unlogged"
			switch mode := (arg >> 5) & 3; {
			case mode < 2:
				for _, lr := range f.rec.Leases {
					if lr.Lease.KeyID == key {
						l = lr.Lease.LeaseID
					}
				}
			case mode == 2 && len(leases) > 0:
				l = leases[arg%len(leases)]
			}
			f.submit(key, l, sets[(arg>>3)%3])
		case 6:
			f.official(sets[arg%3])
		case 7:
			if !f.rec.Closed {
				f.close()
			}
		}
	}
	return f.rec
}

var verdicts = []string{VerdictReproduced, VerdictDisputed, VerdictOfficialMismatch, VerdictUnreproducible, VerdictInsufficient}

var reasons = []error{ErrResultOtherBuild, ErrNoLease, ErrLeaseOtherBuild, ErrLeaseOtherKey, ErrLeaseOrder, ErrLeaseEnded, ErrUnenrolled, ErrRevoked, ErrLate}

// FuzzAgree checks the invariants of every outcome: a known verdict, final
// exactly when closed, every result either counted or ignored for a known
// reason, outliers outside the agreeing group, reproduced only with a
// quorum and dissent within tolerance, and the same outcome whatever the
// order of the record's entries.
func FuzzAgree(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rec := recordFromBytes(data)
		p := DefaultPolicy()
		o, err := Agree(rec, p)
		if err != nil {
			t.Fatalf("well-formed record rejected: %v", err)
		}
		if !slices.Contains(verdicts, o.Verdict) {
			t.Fatalf("verdict %q", o.Verdict)
		}
		if o.Final != rec.Closed || (!rec.Closed && o.Verdict != VerdictInsufficient) {
			t.Fatalf("final %v verdict %q for closed %v", o.Final, o.Verdict, rec.Closed)
		}
		if len(o.Counted)+len(o.Ignored) != len(rec.Results) {
			t.Fatalf("%d counted + %d ignored != %d results", len(o.Counted), len(o.Ignored), len(rec.Results))
		}
		for _, ig := range o.Ignored {
			if !slices.ContainsFunc(reasons, func(r error) bool { return errors.Is(ig.Err, r) }) {
				t.Fatalf("ignored for unknown reason %v", ig.Err)
			}
		}
		for _, x := range o.Outliers {
			if x.ResultSet == o.ResultSet || !slices.Contains(o.Counted, x.Vote) {
				t.Fatalf("outlier %+v (agreeing set %q)", x, o.ResultSet)
			}
		}
		if o.Verdict == VerdictReproduced {
			if len(o.Groups[0].Operators) < p.Quorum || o.Dissent > p.MaxDissent || o.Official == OfficialMismatch || o.ResultSet != o.Groups[0].ResultSet {
				t.Fatalf("reproduced without the rules holding: %+v", o)
			}
		}
		if o.ResultSet == "" && len(o.Outliers) != 0 {
			t.Fatalf("outliers without an agreeing group")
		}
		r := cloneRecord(rec)
		slices.Reverse(r.Results)
		slices.Reverse(r.Leases)
		o2, err := Agree(r, p)
		if err != nil || !reflect.DeepEqual(o, o2) {
			t.Fatalf("reordered record changed the outcome: %v\n%+v\n%+v", err, o, o2)
		}
	})
}

// TestRecordFromBytesCoversVerdicts makes sure the fuzz generator can reach
// every verdict, so FuzzAgree explores them all.
func TestRecordFromBytesCoversVerdicts(t *testing.T) {
	seen := map[string]bool{}
	for _, data := range fuzzAgreeSeeds() {
		o, err := Agree(recordFromBytes(data), DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		seen[o.Verdict] = true
	}
	for _, v := range verdicts {
		if !seen[v] {
			t.Errorf("no seed reaches %q", v)
		}
	}
}

// fuzzAgreeSeeds returns seed inputs of recordFromBytes reaching every
// verdict; testdata/fuzz/FuzzAgree holds the same seeds.
func fuzzAgreeSeeds() [][]byte {
	// voters enrols keys key0..key(n-1) for operators op0..op(n-1), leases
	// each the build, and submits result set sets[i] for key i.
	voters := func(sets ...byte) []byte {
		var b []byte
		for i := range sets {
			b = append(b, 0, byte(i)|byte(i)<<3)
		}
		for i := range sets {
			b = append(b, 2, byte(i))
		}
		for i, s := range sets {
			b = append(b, 4, byte(i)|s<<3)
		}
		return b
	}
	closed := func(b []byte, more ...byte) []byte { return append(append(b, 7, 0), more...) }
	return [][]byte{
		closed(voters(0, 0, 0, 0, 0, 1)),                           // reproduced, one dissent
		closed(voters(0, 0, 0, 0, 0, 1, 2)),                        // disputed
		closed(voters(0, 0, 0, 0, 0), 6, 1),                        // official mismatch
		closed(voters(0, 1, 2, 0, 1, 2)),                           // unreproducible
		closed(voters(0, 0, 0, 0)),                                 // insufficient
		voters(0, 0, 0, 0, 0, 0, 0),                                // not closed
		closed(append(voters(0, 0, 0, 0, 0), 1, 3, 3, 0, 5, 0x40)), // revoked, ended, any lease
	}
}
