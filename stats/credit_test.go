package stats

import (
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestCreditAndOutlier: three operators agree and earn the median build
// time's credit; a fourth disagrees, earns nothing and is counted as an
// outlier; the verdict, groups and outlier show on the build.
func TestCreditAndOutlier(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "witness-org", "")
	a := w.enrol(attest.RoleBuilder, "alice", "red")
	b := w.enrol(attest.RoleBuilder, "bob", "red")
	c := w.enrol(attest.RoleBuilder, "carol", "blue")
	m := w.enrol(attest.RoleBuilder, "mallory", "blue")
	// Alice claims 10 hours: the median (2h) pays, not her self-report.
	vi := w.round("hello-2.12-1.fc41", ws,
		vote{s: a, variant: "good", dur: 10 * time.Hour},
		vote{s: b, variant: "good", dur: 2 * time.Hour},
		vote{s: c, variant: "good", dur: time.Hour},
		vote{s: m, variant: "evil", dur: time.Hour})
	tr := replay(t, w.config(), w.entries)

	want := 2 * DefaultCreditPerHour
	for _, name := range []string{"alice", "bob", "carol"} {
		o := mustOperator(t, tr, name)
		if o.Credit != want || o.Agreed != 1 || o.Outliers != 0 || o.Results != 1 {
			t.Errorf("%s: credit %v agreed %d outliers %d results %d, want %v 1 0 1", name, o.Credit, o.Agreed, o.Outliers, o.Results, want)
		}
	}
	mo := mustOperator(t, tr, "mallory")
	if mo.Credit != 0 || mo.Agreed != 0 || mo.Outliers != 1 {
		t.Errorf("mallory: credit %v agreed %d outliers %d, want 0 0 1", mo.Credit, mo.Agreed, mo.Outliers)
	}
	if mo.Rank != 4 {
		t.Errorf("mallory rank %d, want 4", mo.Rank)
	}
	if red := mustTeam(t, tr, "red"); red.Credit != 2*want || red.Agreed != 2 {
		t.Errorf("team red: %+v, want credit %v agreed 2", red.Totals, 2*want)
	}
	if blue := mustTeam(t, tr, "blue"); blue.Credit != want || blue.Outliers != 1 || blue.Rank != 2 {
		t.Errorf("team blue: %+v rank %d, want credit %v outliers 1 rank 2", blue.Totals, blue.Rank, want)
	}
	if k := mustBuilder(t, tr, m.KeyID()); k.Outliers != 1 || k.Operator != "mallory" {
		t.Errorf("mallory's key: %+v", k)
	}
	bs, err := tr.Build(buildID("hello-2.12-1.fc41"))
	if err != nil {
		t.Fatal(err)
	}
	if bs.Verdict.Verdict != attest.VerdictReproduced || bs.VerdictIndex != vi || bs.BuildTime != 2*time.Hour || bs.Credit != want {
		t.Errorf("build: verdict %s at %d, build time %v, credit %v", bs.Verdict.Verdict, bs.VerdictIndex, bs.BuildTime, bs.Credit)
	}
	var agreed, outliers []string
	for _, r := range bs.Results {
		switch r.Kind {
		case KindAgreed:
			agreed = append(agreed, r.Operator)
		case KindOutlier:
			outliers = append(outliers, r.Operator)
		}
	}
	if len(agreed) != 3 || !reflect.DeepEqual(outliers, []string{"mallory"}) {
		t.Errorf("build results: agreed %v outliers %v", agreed, outliers)
	}
	if len(bs.Verdict.Outliers) != 1 || bs.Verdict.Outliers[0].Operator != "mallory" {
		t.Errorf("verdict outliers %+v", bs.Verdict.Outliers)
	}
}

// TestBuildTimeClamp: an agreed build time beyond MaxBuildTime earns
// MaxBuildTime; one under MinBuildTime earns MinBuildTime.
func TestBuildTimeClamp(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	var keys []*attest.Signer
	for _, n := range []string{"a", "b", "c"} {
		keys = append(keys, w.enrol(attest.RoleBuilder, n, ""))
	}
	w.round("long-1-1", ws, vote{s: keys[0], variant: "g", dur: 30 * time.Hour}, vote{s: keys[1], variant: "g", dur: 40 * time.Hour}, vote{s: keys[2], variant: "g", dur: 50 * time.Hour})
	w.round("short-1-1", ws, vote{s: keys[0], variant: "g", dur: time.Second}, vote{s: keys[1], variant: "g", dur: 2 * time.Second}, vote{s: keys[2], variant: "g", dur: 0})
	tr := replay(t, w.config(), w.entries)
	long, _ := tr.Build(buildID("long-1-1"))
	short, _ := tr.Build(buildID("short-1-1"))
	if long.BuildTime != DefaultMaxBuildTime || long.Credit != 24*DefaultCreditPerHour {
		t.Errorf("long build: %v, credit %v", long.BuildTime, long.Credit)
	}
	if short.BuildTime != DefaultMinBuildTime || !near(short.Credit, DefaultCreditPerHour/60) {
		t.Errorf("short build: %v, credit %v", short.BuildTime, short.Credit)
	}
}

// TestFailuresCountedApart: a failed lease counts as a failure, neither
// credit nor outlier, on the key, the operator and the team.
func TestFailuresCountedApart(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	a := w.enrol(attest.RoleBuilder, "a", "t")
	b := w.enrol(attest.RoleBuilder, "b", "")
	c := w.enrol(attest.RoleBuilder, "c", "")
	d := w.enrol(attest.RoleBuilder, "d", "t")
	w.round("pkg-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour},
		vote{s: c, variant: "g", dur: time.Hour}, vote{s: d, fail: true})
	tr := replay(t, w.config(), w.entries)
	o := mustOperator(t, tr, "d")
	if o.Failures != 1 || o.Outliers != 0 || o.Credit != 0 || o.Agreed != 0 {
		t.Errorf("d: %+v, want one failure only", o.Totals)
	}
	if k := mustBuilder(t, tr, d.KeyID()); k.Failures != 1 {
		t.Errorf("d's key failures %d", k.Failures)
	}
	if tm := mustTeam(t, tr, "t"); tm.Failures != 1 || tm.Credit != DefaultCreditPerHour || tm.Outliers != 0 {
		t.Errorf("team t: %+v", tm.Totals)
	}
	if len(o.Recent) != 1 || o.Recent[0].Kind != KindFailed {
		t.Errorf("d recent %+v", o.Recent)
	}
	h := tr.Health()
	if len(h.Days) != 1 || h.Days[0].Failures != 1 || h.Days[0].Decided != 1 || h.Days[0].Reproduced != 1 || h.Days[0].Results != 3 {
		t.Errorf("days %+v", h.Days)
	}
}

// TestRevokedBuilder: credit earned before a revocation stays, even when a
// later verdict takes the others' credit back; a verdict logged after the
// revocation gives the key nothing, though its result was logged before.
func TestRevokedBuilder(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	imp := w.enrol(attest.RoleImporter, "koji", "")
	a := w.enrol(attest.RoleBuilder, "a", "")
	b := w.enrol(attest.RoleBuilder, "b", "")
	c := w.enrol(attest.RoleBuilder, "c", "")
	w.round("one-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour}, vote{s: c, variant: "g", dur: time.Hour})

	// Round two: results logged, then c is revoked, then the job closes.
	b2 := w.job("two-1-1")
	var leases []string
	for i, s := range []*attest.Signer{a, b, c} {
		leases = append(leases, w.lease(b2, s, i))
	}
	for i, s := range []*attest.Signer{a, b, c} {
		w.result(b2, leases[i], s, "g", time.Hour)
	}
	w.revoke(c)
	w.sign(w.coord, attest.PayloadJobClose, &attest.JobClose{JobID: w.jobs[b2], Build: b2, Results: 3, At: w.now})
	w.verdict(b2, ws)
	tr := replay(t, w.config(), w.entries)
	if o := mustOperator(t, tr, "c"); o.Credit != DefaultCreditPerHour || o.Agreed != 1 {
		t.Errorf("c after revocation: %+v, want round one's credit only", o.Totals)
	}
	if o := mustOperator(t, tr, "a"); o.Credit != 2*DefaultCreditPerHour || o.Agreed != 2 {
		t.Errorf("a: %+v", o.Totals)
	}
	if k := mustBuilder(t, tr, c.KeyID()); !k.Revoked {
		t.Errorf("c's key not shown revoked")
	}

	// The official build of round one arrives and differs: a and b lose
	// round one's credit, c (revoked) keeps it.
	w.official(buildID("one-1-1"), imp, "koji-other")
	w.verdict(buildID("one-1-1"), ws)
	tr = replay(t, w.config(), w.entries)
	if o := mustOperator(t, tr, "a"); o.Credit != DefaultCreditPerHour || o.Agreed != 1 {
		t.Errorf("a after the mismatch: %+v, want round two's credit only", o.Totals)
	}
	if o := mustOperator(t, tr, "c"); o.Credit != DefaultCreditPerHour || o.Agreed != 1 {
		t.Errorf("c after the mismatch: %+v, want its credit kept", o.Totals)
	}
	bs, _ := tr.Build(buildID("one-1-1"))
	if bs.Verdict.Verdict != attest.VerdictOfficialMismatch {
		t.Errorf("round one verdict %s", bs.Verdict.Verdict)
	}
}

// TestTeamChange: an operator moves from team red to team blue; the credit
// earned in red stays with red, later credit goes to blue, whichever key
// earns it.
func TestTeamChange(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	a := w.enrol(attest.RoleBuilder, "alice", "red")
	b := w.enrol(attest.RoleBuilder, "b", "")
	c := w.enrol(attest.RoleBuilder, "c", "")
	w.round("one-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour}, vote{s: c, variant: "g", dur: time.Hour})
	// Alice enrols a second machine naming her new team.
	a2 := w.enrol(attest.RoleBuilder, "alice", "blue")
	w.round("two-1-1", ws, vote{s: a, variant: "g", dur: 2 * time.Hour}, vote{s: b, variant: "g", dur: 2 * time.Hour}, vote{s: c, variant: "g", dur: 2 * time.Hour})
	w.round("three-1-1", ws, vote{s: a2, variant: "g", dur: 3 * time.Hour}, vote{s: b, variant: "g", dur: 3 * time.Hour}, vote{s: c, variant: "g", dur: 3 * time.Hour})
	tr := replay(t, w.config(), w.entries)

	red, blue := mustTeam(t, tr, "red"), mustTeam(t, tr, "blue")
	if red.Credit != DefaultCreditPerHour || red.Agreed != 1 {
		t.Errorf("red: %+v, want round one only", red.Totals)
	}
	if blue.Credit != 5*DefaultCreditPerHour || blue.Agreed != 2 {
		t.Errorf("blue: %+v, want rounds two and three", blue.Totals)
	}
	if len(red.Members) != 0 || !reflect.DeepEqual(blue.Members, []string{"alice"}) {
		t.Errorf("members: red %v blue %v", red.Members, blue.Members)
	}
	o := mustOperator(t, tr, "alice")
	if o.Team != "blue" || o.Credit != 6*DefaultCreditPerHour || len(o.Teams) != 2 || len(o.Keys) != 2 {
		t.Errorf("alice: team %q credit %v teams %v keys %v", o.Team, o.Credit, o.Teams, o.Keys)
	}
	if blue.Rank != 1 || red.Rank != 2 {
		t.Errorf("ranks: blue %d red %d", blue.Rank, red.Rank)
	}
}

// TestRACHalfLife: the RAC of a single grant halves after exactly one
// half-life of log time, and is in credit per day.
func TestRACHalfLife(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	a := w.enrol(attest.RoleBuilder, "a", "")
	b := w.enrol(attest.RoleBuilder, "b", "")
	c := w.enrol(attest.RoleBuilder, "c", "")
	w.round("one-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour}, vote{s: c, variant: "g", dur: time.Hour})
	tr := replay(t, w.config(), w.entries)
	r0 := mustOperator(t, tr, "a").RAC
	if want := DefaultCreditPerHour * math.Ln2 / 7; !near(r0, want) {
		t.Fatalf("RAC at the grant %v, want %v (credit x ln2 / 7 days)", r0, want)
	}
	// A coordinator entry exactly seven days later moves the log's clock.
	w.tick(7 * 24 * time.Hour)
	w.job("later-1-1")
	tr = replay(t, w.config(), w.entries)
	if r := mustOperator(t, tr, "a").RAC; r != r0/2 {
		t.Errorf("RAC after 7 days %v, want exactly %v", r, r0/2)
	}
	if c := mustOperator(t, tr, "a").Credit; c != DefaultCreditPerHour {
		t.Errorf("total credit %v changed with time", c)
	}
	// A second equal grant now: the first one counts half.
	w.round("two-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour}, vote{s: c, variant: "g", dur: time.Hour})
	tr = replay(t, w.config(), w.entries)
	// The round takes two minutes of log time past the half-life.
	if r, want := mustOperator(t, tr, "a").RAC, r0*(1+math.Exp2(-(7*24*60+2)/(7*24*60.0))); !near(r, want) {
		t.Errorf("RAC after a second grant a half-life later %v, want %v", r, want)
	}
	// A builder's own finishedOn far in the future does not move the clock.
	before := tr.Snapshot().Clock
	b2 := w.job("future-1-1")
	l := w.lease(b2, a, 0)
	w.now = w.now.Add(365 * 24 * time.Hour)
	w.result(b2, l, a, "g", time.Hour)
	tr = replay(t, w.config(), w.entries)
	if got := tr.Snapshot().Clock; !got.Equal(before) {
		t.Errorf("builder time moved the clock from %v to %v", before, got)
	}
}

// TestOfficialMatchEarnsCredit: without a reproduced verdict, the group
// that matches the official build earns credit, the other does not.
func TestOfficialMatchEarnsCredit(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	imp := w.enrol(attest.RoleImporter, "koji", "")
	var k []*attest.Signer
	for _, n := range []string{"a", "b", "c", "d"} {
		k = append(k, w.enrol(attest.RoleBuilder, n, ""))
	}
	w.official(buildID("split-1-1"), imp, "x")
	w.round("split-1-1", ws, vote{s: k[0], variant: "x", dur: time.Hour}, vote{s: k[1], variant: "x", dur: time.Hour},
		vote{s: k[2], variant: "y", dur: time.Hour}, vote{s: k[3], variant: "y", dur: time.Hour})
	tr := replay(t, w.config(), w.entries)
	bs, _ := tr.Build(buildID("split-1-1"))
	if bs.Verdict.Verdict != attest.VerdictUnreproducible {
		t.Fatalf("verdict %s, want unreproducible", bs.Verdict.Verdict)
	}
	for n, want := range map[string]float64{"a": DefaultCreditPerHour, "b": DefaultCreditPerHour, "c": 0, "d": 0} {
		if o := mustOperator(t, tr, n); o.Credit != want || o.Outliers != 0 {
			t.Errorf("%s: %+v, want credit %v, no outlier", n, o.Totals, want)
		}
	}
}

// TestVerdictRefusals: a stale verdict and one from a witness the config
// does not trust change nothing and say why.
func TestVerdictRefusals(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	other := w.enrol(attest.RoleWitness, "w2", "")
	a := w.enrol(attest.RoleBuilder, "a", "")
	b := w.enrol(attest.RoleBuilder, "b", "")
	c := w.enrol(attest.RoleBuilder, "c", "")
	w.round("one-1-1", ws, vote{s: a, variant: "g", dur: time.Hour}, vote{s: b, variant: "g", dur: time.Hour}, vote{s: c, variant: "g", dur: time.Hour})
	n := len(w.entries)
	// The same verdict again (same tree size) is stale.
	e, _ := attest.Parse(w.entries[n-1], attest.ParseOptions{})
	v := *e.Value.(*attest.Verdict)
	v.Verdict = attest.VerdictDisputed
	w.sign(ws, attest.PayloadVerdict, &v)
	tr, err := New(w.config())
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := tr.Apply(uint64(i), w.entries[i]); err != nil {
			t.Fatal(err)
		}
	}
	before := tr.Snapshot()
	if err := tr.Apply(uint64(n), w.entries[n]); !errors.Is(err, ErrStale) {
		t.Fatalf("stale verdict: %v, want ErrStale", err)
	}
	after := tr.Snapshot()
	after.Next, after.Health.Next, after.Health.Refused = before.Next, before.Next, before.Health.Refused
	if !reflect.DeepEqual(before, after) {
		t.Errorf("a stale verdict changed the stats")
	}

	cfg := w.config()
	cfg.Witnesses = []string{other.KeyID()}
	tr, _ = New(cfg)
	var werr error
	for i := range n {
		if err := tr.Apply(uint64(i), w.entries[i]); err != nil {
			werr = err
		}
	}
	if !errors.Is(werr, ErrWitness) {
		t.Errorf("verdict of an untrusted witness: %v, want ErrWitness", werr)
	}
	if o := mustOperator(t, tr, "a"); o.Credit != 0 {
		t.Errorf("credit %v from an untrusted witness", o.Credit)
	}
}

// TestRefusedEntries: malformed, wrongly signed, contradicting and
// out-of-order entries get distinct errors and change no number.
func TestRefusedEntries(t *testing.T) {
	w := newWorld(t)
	a := w.enrol(attest.RoleBuilder, "a", "t")
	n := uint64(len(w.entries))
	tr := replay(t, w.config(), w.entries)
	want := tr.Snapshot()

	leaseByBuilder, err := attest.Sign(a, attest.PayloadJob, &attest.Job{JobID: "j", Build: buildID("x-1-1"), Wanted: 1, Enqueued: epoch, Deadline: epoch.Add(7 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	twice, err := attest.Sign(w.coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: a.KeyID(), PublicKey: string(a.PublicPEM()), Role: attest.RoleBuilder, Operator: "z", Contact: "z", Team: "other", Since: epoch})
	if err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte(nil), twice...)
	tampered[len(tampered)-10] ^= 1 // inside the signature's base64
	for _, tc := range []struct {
		name  string
		entry []byte
		want  error
	}{
		{"garbage", []byte("not json"), ErrEntry},
		{"unknown field", []byte(`{"payloadType":"x","payload":"","signatures":[],"extra":1}`), ErrEntry},
		{"coordinator entry signed by a builder", leaseByBuilder, ErrSigner},
		{"bad signature", tampered, ErrSigner},
		{"key enrolled twice", twice, ErrContradicts},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := tr.Next()
			if err := tr.Apply(i, tc.entry); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			got := tr.Snapshot()
			if got.Next != i+1 {
				t.Errorf("next %d, want %d", got.Next, i+1)
			}
			got.Next, got.Health.Next, got.Health.Refused = want.Next, want.Next, want.Health.Refused
			if !reflect.DeepEqual(got, want) {
				t.Errorf("refused entry changed the stats")
			}
		})
	}
	if err := tr.Apply(n, w.entries[0]); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("out of order: %v", err)
	}
	if tr.Next() != n+5 {
		t.Errorf("out-of-order entry moved next to %d", tr.Next())
	}
}

// TestNoCreditBeforeClose: a verdict computed before the job closed
// (insufficient) credits nobody and marks no outlier, even where a group
// matches the official build; after the close the verdict counts, and a
// group matching the official build earns credit though too few operators
// answered for a quorum.
func TestNoCreditBeforeClose(t *testing.T) {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "w", "")
	imp := w.enrol(attest.RoleImporter, "koji", "")
	var k []*attest.Signer
	for _, n := range []string{"a", "b", "c", "d"} {
		k = append(k, w.enrol(attest.RoleBuilder, n, ""))
	}
	open := func(nvr string, variants ...string) attest.BuildID {
		id := w.job(nvr)
		var leases []string
		for i := range variants {
			leases = append(leases, w.lease(id, k[i], i))
		}
		for i, v := range variants {
			w.result(id, leases[i], k[i], v, time.Hour)
		}
		w.verdict(id, ws)
		return id
	}
	closeJob := func(id attest.BuildID) {
		w.sign(w.coord, attest.PayloadJobClose, &attest.JobClose{JobID: w.jobs[id], Build: id, Results: 2, At: w.now})
		w.verdict(id, ws)
	}
	quorum := open("quorum-1-1", "g", "g", "g", "x")
	w.official(buildID("few-1-1"), imp, "g")
	few := open("few-1-1", "g", "g")
	tr := replay(t, w.config(), w.entries)
	for _, id := range []attest.BuildID{quorum, few} {
		if bs, _ := tr.Build(id); bs.Verdict.Verdict != attest.VerdictInsufficient {
			t.Fatalf("%s: verdict %s before the close", id.NVR, bs.Verdict.Verdict)
		}
	}
	if bs, _ := tr.Build(quorum); len(bs.Verdict.Outliers) != 1 {
		t.Fatalf("the open job's verdict names %d outliers, want 1", len(bs.Verdict.Outliers))
	}
	for _, n := range []string{"a", "d"} {
		if o := mustOperator(t, tr, n); o.Credit != 0 || o.Agreed != 0 || o.Outliers != 0 {
			t.Errorf("%s before the close: %+v", n, o.Totals)
		}
	}
	closeJob(quorum)
	closeJob(few)
	tr = replay(t, w.config(), w.entries)
	if o := mustOperator(t, tr, "a"); o.Credit != 2*DefaultCreditPerHour || o.Agreed != 2 {
		t.Errorf("a after the close: %+v, want both builds' credit", o.Totals)
	}
	if o := mustOperator(t, tr, "d"); o.Outliers != 1 || o.Credit != 0 {
		t.Errorf("d after the close: %+v, want one outlier", o.Totals)
	}
}
