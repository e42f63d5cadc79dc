package witness

// What verify and audit do with a build record and a witness's verdict:
// the record as the log stood at the verdict's tree size, and the
// comparison of the verdict with the agreement recomputed on it
// (ARCHITECTURE.md "Agreement", docs/agreement.md "Inputs").

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/fedora-skyline/skyline/attest"
)

// recordAt returns rec as the log showed it at tree size n: only the
// entries below n.
func recordAt(rec BuildRecord, n uint64) BuildRecord {
	out := BuildRecord{Build: rec.Build, LeaseEnds: map[string]uint64{}, Keys: map[string]KeyState{}}
	for _, l := range rec.Leases {
		if l.Index < n {
			out.Leases = append(out.Leases, l)
		}
	}
	for id, i := range rec.LeaseEnds {
		if i < n {
			out.LeaseEnds[id] = i
		}
	}
	for _, r := range rec.Results {
		if r.Index < n {
			out.Results = append(out.Results, r)
		}
	}
	if rec.Official != nil && rec.Official.Index < n {
		out.Official = rec.Official
	}
	for id, k := range rec.Keys {
		if k.Enrolled < n {
			if k.Revoked && k.RevokedAt >= n {
				k.Revoked, k.RevokedAt = false, 0
			}
			out.Keys[id] = k
		}
	}
	if rec.Closed && rec.ClosedAt < n {
		out.Closed, out.ClosedAt, out.ClosedTime = true, rec.ClosedAt, rec.ClosedTime
	}
	return out
}

// compareVerdict lists how a witness's verdict differs from the outcome
// recomputed here: the verdict, the agreeing result set, the groups (result
// set, operators, counted entries) and the outliers. The official build's
// status and the signed time are not compared: the verdict says them in
// its own words.
func compareVerdict(v *attest.Verdict, o Outcome) []string {
	var diffs []string
	if v.Build != o.Build {
		diffs = append(diffs, fmt.Sprintf("build %v, recomputed for %v", v.Build, o.Build))
	}
	if v.Verdict != o.Verdict {
		diffs = append(diffs, fmt.Sprintf("verdict %q, recomputed %q", v.Verdict, o.Verdict))
	}
	if v.ResultSet != o.ResultSet {
		diffs = append(diffs, fmt.Sprintf("agreed result set %q, recomputed %q", v.ResultSet, o.ResultSet))
	}
	want := map[string]Group{}
	for _, g := range o.Groups {
		want[g.ResultSet] = g
	}
	got := map[string]attest.VerdictGroup{}
	for _, g := range v.Groups {
		got[g.ResultSet] = g
	}
	for rs, g := range got {
		w, ok := want[rs]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("group %s: entries %v counted by the witness were not seen here", short(rs), g.Entries))
			continue
		}
		if !slices.Equal(sortedCopy(g.Operators), sortedCopy(w.Operators)) {
			diffs = append(diffs, fmt.Sprintf("group %s: operators %v, recomputed %v", short(rs), g.Operators, w.Operators))
		}
		if missing, extra := setDiff(g.Entries, w.Entries); len(missing)+len(extra) > 0 {
			diffs = append(diffs, fmt.Sprintf("group %s: entries %v counted by the witness were not seen here, entries %v seen here were not counted by it", short(rs), missing, extra))
		}
	}
	for rs, w := range want {
		if _, ok := got[rs]; !ok {
			diffs = append(diffs, fmt.Sprintf("group %s: entries %v seen here were not counted by the witness", short(rs), w.Entries))
		}
	}
	type ol struct {
		index              uint64
		key, op, resultSet string
	}
	var a, b []ol
	for _, x := range v.Outliers {
		a = append(a, ol{x.Index, x.KeyID, x.Operator, x.ResultSet})
	}
	for _, x := range o.Outliers {
		b = append(b, ol{x.Index, x.KeyID, x.Operator, x.ResultSet})
	}
	less := func(x, y ol) int { return cmp.Compare(x.index, y.index) }
	slices.SortFunc(a, less)
	slices.SortFunc(b, less)
	if !slices.Equal(a, b) {
		diffs = append(diffs, fmt.Sprintf("outliers %v, recomputed %v", a, b))
	}
	return diffs
}

// setDiff returns the elements of a not in b and of b not in a.
func setDiff(a, b []uint64) (onlyA, onlyB []uint64) {
	in := func(s []uint64, x uint64) bool { return slices.Contains(s, x) }
	for _, x := range a {
		if !in(b, x) {
			onlyA = append(onlyA, x)
		}
	}
	for _, x := range b {
		if !in(a, x) {
			onlyB = append(onlyB, x)
		}
	}
	return onlyA, onlyB
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
