package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

var (
	testBuild  = attest.BuildID{NVR: "bash-5.2.26-3.fc40", Arch: "x86_64", SRPMSHA256: strings.Repeat("ab", 32)}
	otherBuild = attest.BuildID{NVR: "bash-5.2.26-3.fc40", Arch: "aarch64", SRPMSHA256: strings.Repeat("ab", 32)}
	closeTime  = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
)

// fixture builds a BuildRecord the way a log would fill it: every entry
// gets the next log index.
type fixture struct {
	rec  BuildRecord
	next uint64
}

func newFixture() *fixture {
	return &fixture{rec: BuildRecord{Build: testBuild, Keys: map[string]KeyState{}, LeaseEnds: map[string]uint64{}}, next: 1}
}

func (f *fixture) idx() uint64 { f.next++; return f.next - 1 }

// enrol enrols key for op unless it is enrolled already.
func (f *fixture) enrol(key, op string) {
	if _, ok := f.rec.Keys[key]; !ok {
		f.rec.Keys[key] = KeyState{Operator: op, Enrolled: f.idx()}
	}
}

// lease logs a lease of build b to key and returns its id.
func (f *fixture) lease(key string, b attest.BuildID) string {
	i := f.idx()
	id := fmt.Sprintf("lease-%d", i)
	f.rec.Leases = append(f.rec.Leases, LeaseRecord{Index: i, Lease: attest.Lease{LeaseID: id, JobID: "job-1", Build: b, KeyID: key, Slot: len(f.rec.Leases), Attempt: 1}})
	return id
}

// submit logs a result by key under lease id.
func (f *fixture) submit(key, leaseID, set string) uint64 {
	i := f.idx()
	f.rec.Results = append(f.rec.Results, Result{Index: i, Build: testBuild, KeyID: key, LeaseID: leaseID, ResultSet: set, Subjects: subjects(set)})
	return i
}

// vote enrols key for op, leases it the build, and logs its result.
func (f *fixture) vote(key, op, set string) uint64 {
	f.enrol(key, op)
	return f.submit(key, f.lease(key, testBuild), set)
}

// votes logs n results of set from fresh operators named prefix0, prefix1...
func (f *fixture) votes(prefix, set string, n int) {
	for i := range n {
		f.vote(fmt.Sprintf("%s-key%d", prefix, i), fmt.Sprintf("%s%d", prefix, i), set)
	}
}

func (f *fixture) official(set string) uint64 {
	i := f.idx()
	f.rec.Official = &Result{Index: i, Build: testBuild, KeyID: "koji", ResultSet: set, Subjects: subjects(set), Time: closeTime.Add(time.Hour)}
	return i
}

func (f *fixture) close() {
	f.rec.Closed, f.rec.ClosedAt, f.rec.ClosedTime = true, f.idx(), closeTime
}

// subjects gives result set "x" two RPMs: bash (whose digest depends on the
// set) and bash-doc (the same in every set), and a set starting with
// "extra" a third RPM.
func subjects(set string) map[string]string {
	s := map[string]string{
		"bash-5.2.26-3.fc40.x86_64.rpm":     "sha256:bash-" + set,
		"bash-doc-5.2.26-3.fc40.noarch.rpm": "sha256:doc",
	}
	if strings.HasPrefix(set, "extra") {
		s["bash-debug-5.2.26-3.fc40.x86_64.rpm"] = "sha256:debug"
	}
	return s
}

// TestAgreeVerdicts runs one scenario per verdict and rule of
// ARCHITECTURE.md "Agreement".
func TestAgreeVerdicts(t *testing.T) {
	type want struct {
		verdict  string
		final    bool
		set      string
		official string
		dissent  int
		outliers []string // key ids of the outliers, by index
		split    []string
		ignored  []error // reasons of the ignored results, by index
	}
	tests := []struct {
		name   string
		policy func(*Policy)
		setup  func(f *fixture)
		want   want
	}{
		{
			name:  "reproduced, official matches",
			setup: func(f *fixture) { f.votes("op", "good", 10); f.close(); f.official("good") },
			want:  want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialMatch},
		},
		{
			name:  "reproduced, no official build logged",
			setup: func(f *fixture) { f.votes("op", "good", 10); f.close() },
			want:  want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialAbsent},
		},
		{
			name:  "reproduced at exactly quorum",
			setup: func(f *fixture) { f.votes("op", "good", 5); f.close() },
			want:  want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialAbsent},
		},
		{
			name: "dissent exactly at tolerance is reproduced, outlier named",
			setup: func(f *fixture) {
				f.votes("op", "good", 9)
				f.vote("bad-key", "bad", "evil")
				f.close()
			},
			want: want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialAbsent, dissent: 1, outliers: []string{"bad-key"}},
		},
		{
			name: "one dissent more than tolerance is disputed",
			setup: func(f *fixture) {
				f.votes("op", "good", 8)
				f.vote("bad-key0", "bad0", "evil")
				f.vote("bad-key1", "bad1", "extra")
				f.close()
			},
			want: want{verdict: VerdictDisputed, final: true, set: "good", official: OfficialAbsent, dissent: 2, outliers: []string{"bad-key0", "bad-key1"}},
		},
		{
			name: "disputed at quorum with two dissents",
			setup: func(f *fixture) {
				f.votes("op", "good", 5)
				f.votes("bad", "evil", 2)
				f.close()
			},
			want: want{verdict: VerdictDisputed, final: true, set: "good", official: OfficialAbsent, dissent: 2, outliers: []string{"bad-key0", "bad-key1"}},
		},
		{
			name: "two camps tie at quorum: disputed, nobody named",
			setup: func(f *fixture) {
				f.votes("a", "one", 5)
				f.votes("b", "two", 5)
				f.close()
			},
			want: want{verdict: VerdictDisputed, final: true, dissent: 5},
		},
		{
			name:  "official mismatch",
			setup: func(f *fixture) { f.votes("op", "good", 10); f.close(); f.official("koji") },
			want:  want{verdict: VerdictOfficialMismatch, final: true, set: "good", official: OfficialMismatch},
		},
		{
			name:   "official mismatch tolerated when the policy does not require a match",
			policy: func(p *Policy) { p.RequireOfficialMatch = false },
			setup:  func(f *fixture) { f.votes("op", "good", 10); f.close(); f.official("koji") },
			want:   want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialMismatch},
		},
		{
			name: "disputed wins over official mismatch",
			setup: func(f *fixture) {
				f.votes("op", "good", 7)
				f.votes("k", "koji", 3)
				f.close()
				f.official("koji")
			},
			want: want{verdict: VerdictDisputed, final: true, set: "good", official: OfficialMismatch, dissent: 3, outliers: []string{"k-key0", "k-key1", "k-key2"}},
		},
		{
			name: "unreproducible: every result differs",
			setup: func(f *fixture) {
				for i := range 10 {
					f.vote(fmt.Sprintf("key%d", i), fmt.Sprintf("op%d", i), fmt.Sprintf("set%d", i))
				}
				f.close()
			},
			want: want{verdict: VerdictUnreproducible, final: true, dissent: 9},
		},
		{
			name: "unreproducible: 4+4+2",
			setup: func(f *fixture) {
				f.votes("a", "one", 4)
				f.votes("b", "two", 4)
				f.votes("c", "three", 2)
				f.close()
			},
			want: want{verdict: VerdictUnreproducible, final: true, dissent: 6},
		},
		{
			name:  "insufficient: closed with too few results",
			setup: func(f *fixture) { f.votes("op", "good", 4); f.close() },
			want:  want{verdict: VerdictInsufficient, final: true},
		},
		{
			name: "insufficient: below quorum, dissent within tolerance",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.vote("bad-key", "bad", "evil")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, dissent: 1},
		},
		{
			name:  "insufficient: nothing at all",
			setup: func(f *fixture) { f.close() },
			want:  want{verdict: VerdictInsufficient, final: true},
		},
		{
			name:  "not final before the job closes, whatever the results",
			setup: func(f *fixture) { f.votes("op", "good", 10); f.official("good") },
			want:  want{verdict: VerdictInsufficient, final: false, set: "good", official: OfficialMatch},
		},
		{
			name: "not final before close even when results disagree",
			setup: func(f *fixture) {
				f.votes("op", "good", 5)
				f.votes("bad", "evil", 3)
			},
			want: want{verdict: VerdictInsufficient, final: false, set: "good", official: OfficialAbsent, dissent: 3, outliers: []string{"bad-key0", "bad-key1", "bad-key2"}},
		},
		{
			name: "result without a lease does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("nolease", "op-x")
				f.submit("nolease", "lease-never-logged", "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrNoLease}},
		},
		{
			name: "result under the lease of another build does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("k", "op-x")
				f.submit("k", f.lease("k", otherBuild), "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrLeaseOtherBuild}},
		},
		{
			name: "result claiming another build does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.vote("k", "op-x", "good")
				f.rec.Results[len(f.rec.Results)-1].Build = otherBuild
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrResultOtherBuild}},
		},
		{
			name: "result under another key's lease does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("thief", "op-x")
				f.submit("thief", f.rec.Results[0].LeaseID, "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrLeaseOtherKey}},
		},
		{
			name: "revoked key does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("k", "op-x")
				l := f.lease("k", testBuild)
				f.rec.Keys["k"] = KeyState{Operator: "op-x", Enrolled: f.rec.Keys["k"].Enrolled, Revoked: true, RevokedAt: f.idx()}
				f.submit("k", l, "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrRevoked}},
		},
		{
			name: "key revoked after its result still voted",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.vote("k", "op-x", "good")
				f.rec.Keys["k"] = KeyState{Operator: "op-x", Enrolled: f.rec.Keys["k"].Enrolled, Revoked: true, RevokedAt: f.idx()}
				f.close()
			},
			want: want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialAbsent},
		},
		{
			name: "unenrolled key does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.submit("stranger", f.lease("stranger", testBuild), "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrUnenrolled}},
		},
		{
			name: "key enrolled only after its result does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				i := f.submit("early", f.lease("early", testBuild), "good")
				f.rec.Keys["early"] = KeyState{Operator: "op-x", Enrolled: i + 1}
				f.idx()
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrUnenrolled}},
		},
		{
			name: "lease logged after the result does not count",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("k", "op-x")
				f.submit("k", "lease-"+fmt.Sprint(f.next+1), "good")
				f.lease("k", testBuild)
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrLeaseOrder}},
		},
		{
			name: "result after its lease ended does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("k", "op-x")
				l := f.lease("k", testBuild)
				f.rec.LeaseEnds[l] = f.idx()
				f.submit("k", l, "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrLeaseEnded}},
		},
		{
			name: "result logged after the job closed does not vote",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.enrol("k", "op-x")
				l := f.lease("k", testBuild)
				f.close()
				f.submit("k", l, "good")
			},
			want: want{verdict: VerdictInsufficient, final: true, ignored: []error{ErrLate}},
		},
		{
			name: "two keys of one operator voting alike count once",
			setup: func(f *fixture) {
				f.votes("op", "good", 3)
				f.vote("twin-a", "twin", "good")
				f.vote("twin-b", "twin", "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true},
		},
		{
			name: "resubmission by one key counts once",
			setup: func(f *fixture) {
				f.votes("op", "good", 4)
				f.submit("op-key0", f.rec.Results[0].LeaseID, "good")
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true},
		},
		{
			name: "operator whose keys disagree is split: one dissent, its odd result an outlier",
			setup: func(f *fixture) {
				f.votes("op", "good", 5)
				f.vote("twin-a", "twin", "good")
				f.vote("twin-b", "twin", "evil")
				f.close()
			},
			want: want{verdict: VerdictReproduced, final: true, set: "good", official: OfficialAbsent, dissent: 1, outliers: []string{"twin-b"}, split: []string{"twin"}},
		},
		{
			name: "split operator plus one dissent is beyond tolerance",
			setup: func(f *fixture) {
				f.votes("op", "good", 5)
				f.vote("twin-a", "twin", "good")
				f.vote("twin-b", "twin", "evil")
				f.vote("bad-key", "bad", "evil")
				f.close()
			},
			want: want{verdict: VerdictDisputed, final: true, set: "good", official: OfficialAbsent, dissent: 2, outliers: []string{"twin-b", "bad-key"}, split: []string{"twin"}},
		},
		{
			name: "an operator with many keys cannot outvote: 5 keys of one operator",
			setup: func(f *fixture) {
				for i := range 5 {
					f.vote(fmt.Sprintf("sybil%d", i), "sybil", "evil")
				}
				f.votes("op", "good", 4)
				f.close()
			},
			want: want{verdict: VerdictInsufficient, final: true, dissent: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture()
			tt.setup(f)
			p := DefaultPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			o, err := Agree(f.rec, p)
			if err != nil {
				t.Fatalf("Agree: %v", err)
			}
			w := tt.want
			if o.Verdict != w.verdict || o.Final != w.final || o.ResultSet != w.set || o.Official != w.official || o.Dissent != w.dissent {
				t.Errorf("got verdict %q final %v set %q official %q dissent %d; want %q %v %q %q %d",
					o.Verdict, o.Final, o.ResultSet, o.Official, o.Dissent, w.verdict, w.final, w.set, w.official, w.dissent)
			}
			var keys []string
			for _, x := range o.Outliers {
				keys = append(keys, x.KeyID)
				if x.ResultSet == o.ResultSet {
					t.Errorf("outlier %d has the agreeing result set", x.Index)
				}
				if x.Operator != f.rec.Keys[x.KeyID].Operator {
					t.Errorf("outlier %d operator %q, enrolment says %q", x.Index, x.Operator, f.rec.Keys[x.KeyID].Operator)
				}
			}
			if !slices.Equal(keys, w.outliers) {
				t.Errorf("outliers %v, want %v", keys, w.outliers)
			}
			if !slices.Equal(o.Split, w.split) {
				t.Errorf("split %v, want %v", o.Split, w.split)
			}
			if len(o.Ignored) != len(w.ignored) {
				t.Fatalf("ignored %v, want reasons %v", o.Ignored, w.ignored)
			}
			for i, ig := range o.Ignored {
				if !errors.Is(ig.Err, w.ignored[i]) {
					t.Errorf("ignored[%d] = %v, want %v", i, ig.Err, w.ignored[i])
				}
				if slices.ContainsFunc(o.Counted, func(v Vote) bool { return v.Index == ig.Index }) {
					t.Errorf("ignored result %d was counted", ig.Index)
				}
			}
		})
	}
}

// TestAgreeWhatDiffered checks that outliers and official mismatches say
// which RPMs differed, and how.
func TestAgreeWhatDiffered(t *testing.T) {
	f := newFixture()
	f.votes("op", "good", 7)
	evil := f.vote("evil-key", "evil-op", "evil")
	extra := f.vote("extra-key", "extra-op", "extra")
	f.close()
	f.official("koji")
	o, err := Agree(f.rec, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if o.Verdict != VerdictDisputed {
		t.Fatalf("verdict %q, want disputed", o.Verdict)
	}
	want := map[uint64][]RPMDiff{
		evil: {{File: "bash-5.2.26-3.fc40.x86_64.rpm", Want: "sha256:bash-good", Got: "sha256:bash-evil"}},
		extra: {
			{File: "bash-5.2.26-3.fc40.x86_64.rpm", Want: "sha256:bash-good", Got: "sha256:bash-extra"},
			{File: "bash-debug-5.2.26-3.fc40.x86_64.rpm", Got: "sha256:debug"},
		},
	}
	if len(o.Outliers) != 2 {
		t.Fatalf("outliers %+v, want 2", o.Outliers)
	}
	for _, x := range o.Outliers {
		if !reflect.DeepEqual(x.Diff, want[x.Index]) {
			t.Errorf("outlier %d diff %+v, want %+v", x.Index, x.Diff, want[x.Index])
		}
	}
	wantOfficial := []RPMDiff{{File: "bash-5.2.26-3.fc40.x86_64.rpm", Want: "sha256:bash-good", Got: "sha256:bash-koji"}}
	if o.Official != OfficialMismatch || !reflect.DeepEqual(o.OfficialDiff, wantOfficial) {
		t.Errorf("official %q diff %+v, want mismatch %+v", o.Official, o.OfficialDiff, wantOfficial)
	}

	// A file missing from the outlier's set is reported with an empty Got.
	if d := diffRPMs(subjects("extra"), subjects("extra")); d != nil {
		t.Errorf("diff of equal sets = %+v", d)
	}
	d := diffRPMs(subjects("extra"), subjects("extra2"))
	if len(d) != 1 || d[0].Got != "sha256:bash-extra2" {
		t.Errorf("diff %+v", d)
	}
	d = diffRPMs(subjects("extra"), subjects("plain"))
	if len(d) != 2 || d[1].File != "bash-debug-5.2.26-3.fc40.x86_64.rpm" || d[1].Got != "" || d[1].Want != "sha256:debug" {
		t.Errorf("missing file not reported: %+v", d)
	}
}

// TestAgreeTimes checks At and Time: the latest entry the outcome depends
// on, and the later of the close and the official build's signed time.
func TestAgreeTimes(t *testing.T) {
	f := newFixture()
	f.votes("op", "good", 6)
	f.close()
	o, err := Agree(f.rec, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if o.At != f.rec.ClosedAt || !o.Time.Equal(closeTime) {
		t.Errorf("at %d time %v, want %d %v", o.At, o.Time, f.rec.ClosedAt, closeTime)
	}
	oi := f.official("good")
	o, err = Agree(f.rec, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if o.At != oi || !o.Time.Equal(f.rec.Official.Time) {
		t.Errorf("at %d time %v, want %d %v", o.At, o.Time, oi, f.rec.Official.Time)
	}
}

// TestAgreeRejects checks that malformed policies and records get their own
// errors and that Agree never modifies its input.
func TestAgreeRejects(t *testing.T) {
	base := func() *fixture {
		f := newFixture()
		f.votes("op", "good", 5)
		f.close()
		return f
	}
	tests := []struct {
		name   string
		mutate func(*fixture, *Policy)
		want   error
	}{
		{"zero quorum", func(f *fixture, p *Policy) { p.Quorum = 0 }, ErrPolicy},
		{"fewer leases than quorum", func(f *fixture, p *Policy) { p.Leases = 4 }, ErrPolicy},
		{"negative dissent", func(f *fixture, p *Policy) { p.MaxDissent = -1 }, ErrPolicy},
		{"dissent as large as quorum", func(f *fixture, p *Policy) { p.MaxDissent = 5 }, ErrPolicy},
		{"zero policy", func(f *fixture, p *Policy) { *p = Policy{} }, ErrPolicy},
		{"index used twice", func(f *fixture, p *Policy) { f.rec.Results[1].Index = f.rec.Results[0].Index }, ErrRecord},
		{"official shares a result's index", func(f *fixture, p *Policy) {
			f.official("good")
			f.rec.Official.Index = f.rec.Results[0].Index
		}, ErrRecord},
		{"lease logged twice", func(f *fixture, p *Policy) { f.rec.Leases = append(f.rec.Leases, f.rec.Leases[0]) }, ErrRecord},
		{"lease and result at one index", func(f *fixture, p *Policy) { f.rec.Leases[0].Index = f.rec.Results[0].Index }, ErrRecord},
		{"lease end and result at one index", func(f *fixture, p *Policy) { f.rec.LeaseEnds["x"] = f.rec.Results[0].Index }, ErrRecord},
		{"close and result at one index", func(f *fixture, p *Policy) { f.rec.ClosedAt = f.rec.Results[4].Index }, ErrRecord},
		{"empty result set", func(f *fixture, p *Policy) { f.rec.Results[2].ResultSet = "" }, ErrRecord},
		{"empty key id", func(f *fixture, p *Policy) { f.rec.Results[2].KeyID = "" }, ErrRecord},
		{"empty lease id", func(f *fixture, p *Policy) { f.rec.Leases[0].Lease.LeaseID = "" }, ErrRecord},
		{"key without operator", func(f *fixture, p *Policy) { f.rec.Keys["op-key0"] = KeyState{Enrolled: 1} }, ErrRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			p := DefaultPolicy()
			tt.mutate(f, &p)
			before := cloneRecord(f.rec)
			_, err := Agree(f.rec, p)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Agree: %v, want %v", err, tt.want)
			}
			if !reflect.DeepEqual(before, f.rec) {
				t.Errorf("Agree modified its input")
			}
		})
	}
	// Nor does a successful call modify it (results are sorted on a copy).
	f := base()
	slices.Reverse(f.rec.Results)
	before := cloneRecord(f.rec)
	if _, err := Agree(f.rec, DefaultPolicy()); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(before, f.rec) {
		t.Errorf("Agree modified its input")
	}
}

func cloneRecord(r BuildRecord) BuildRecord {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	var c BuildRecord
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return c
}

// randomRecord makes a record with every kind of result: agreeing,
// dissenting, split operators, unleased, revoked, late.
func randomRecord(rng *rand.Rand) BuildRecord {
	f := newFixture()
	sets := []string{"good", "good", "good", "evil", "extra"}
	for i := range 8 + rng.IntN(8) {
		op := fmt.Sprintf("op%d", rng.IntN(10))
		key := fmt.Sprintf("key%d", i)
		set := sets[rng.IntN(len(sets))]
		switch rng.IntN(10) {
		case 0:
			f.enrol(key, op)
			f.submit(key, "nope", set)
		case 1:
			f.enrol(key, op)
			l := f.lease(key, testBuild)
			f.rec.Keys[key] = KeyState{Operator: op, Enrolled: f.rec.Keys[key].Enrolled, Revoked: true, RevokedAt: f.idx()}
			f.submit(key, l, set)
		default:
			f.vote(key, op, set)
		}
	}
	if rng.IntN(2) == 0 {
		f.official(sets[rng.IntN(len(sets))])
	}
	f.close()
	return f.rec
}

// shuffled returns rec with its slices in another order; maps are
// rebuilt, so their iteration order changes too.
func shuffled(rng *rand.Rand, rec BuildRecord) BuildRecord {
	c := cloneRecord(rec)
	rng.Shuffle(len(c.Results), func(i, j int) { c.Results[i], c.Results[j] = c.Results[j], c.Results[i] })
	rng.Shuffle(len(c.Leases), func(i, j int) { c.Leases[i], c.Leases[j] = c.Leases[j], c.Leases[i] })
	return c
}

// TestAgreeDeterministic checks that the order in which a record lists its
// entries does not change the outcome: an auditor and a witness reading the
// same log must agree.
func TestAgreeDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	verdicts := map[string]int{}
	for range 200 {
		rec := randomRecord(rng)
		want, err := Agree(rec, DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		verdicts[want.Verdict]++
		for range 5 {
			got, err := Agree(shuffled(rng, rec), DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("shuffled record changed the outcome:\n got %+v\nwant %+v", got, want)
			}
		}
	}
	// The random records must exercise more than one verdict for the
	// test to mean anything.
	if len(verdicts) < 3 {
		t.Errorf("random records reached only verdicts %v", verdicts)
	}
}

// TestPayload checks the signed verdict form of an outcome.
func TestPayload(t *testing.T) {
	f := newFixture()
	f.votes("op", "good", 9)
	bad := f.vote("bad-key", "bad", "evil")
	f.close()
	f.official("good")
	o, err := Agree(f.rec, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	v := o.Payload(1234)
	if v.Build != testBuild || v.Verdict != VerdictReproduced || v.TreeSize != 1234 || v.ResultSet != "good" || v.Official != "good" || !v.At.Equal(o.Time) {
		t.Errorf("payload %+v", v)
	}
	if len(v.Groups) != 2 || v.Groups[0].ResultSet != "good" || len(v.Groups[0].Operators) != 9 || len(v.Groups[0].Entries) != 9 || v.Groups[1].ResultSet != "evil" {
		t.Errorf("groups %+v", v.Groups)
	}
	wantOut := []attest.Outlier{{Index: bad, KeyID: "bad-key", Operator: "bad", ResultSet: "evil"}}
	if !reflect.DeepEqual(v.Outliers, wantOut) {
		t.Errorf("outliers %+v, want %+v", v.Outliers, wantOut)
	}
	// The signed verdict carries the official build's digest, not the
	// match status: attest checks Verdict.Official as a digest.
	m := newFixture()
	m.votes("op", "good", 9)
	m.close()
	m.official("koji")
	if o, err := Agree(m.rec, DefaultPolicy()); err != nil || o.Payload(1).Official != "koji" || o.Official != OfficialMismatch {
		t.Errorf("official mismatch payload: %+v, %v", o, err)
	}
	// The payload owns its slices.
	v.Groups[0].Operators[0] = "changed"
	if o.Groups[0].Operators[0] == "changed" {
		t.Error("payload shares slices with the outcome")
	}
}

// BenchmarkAgree measures one agreement of a closed build with 10 results,
// one of them dissenting, and an official build.
func BenchmarkAgree(b *testing.B) {
	f := newFixture()
	f.votes("op", "good", 9)
	f.vote("bad-key", "bad", "evil")
	f.close()
	f.official("good")
	p := DefaultPolicy()
	b.ReportAllocs()
	for b.Loop() {
		o, err := Agree(f.rec, p)
		if err != nil || o.Verdict != VerdictReproduced {
			b.Fatalf("%v %v", o.Verdict, err)
		}
	}
}
