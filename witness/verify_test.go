package witness

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

// TestVerifyVerdicts runs one scenario per verdict through Verify against
// a real log over HTTP, with real cosignatures and signed verdicts, and
// checks the verdict, the exit code and what the report names.
func TestVerifyVerdicts(t *testing.T) {
	ten := func(v string) []string { return slices.Repeat([]string{v}, 10) }
	cases := []struct {
		name     string
		variants []string
		official string // variant of the official build; "-" for none
		closed   bool
		verdict  string
		exit     int
		outliers []string // operators named as outliers
	}{
		{"reproduced", ten(""), "", true, VerdictReproduced, 0, nil},
		{"reproduced-one-dissent", append(ten("")[:9], "evil"), "-", true, VerdictReproduced, 0, []string{"op09"}},
		{"disputed", append(ten("")[:8], "evil", "evil2"), "-", true, VerdictDisputed, 1, []string{"op08", "op09"}},
		{"official-mismatch", ten(""), "koji-tampered", true, VerdictOfficialMismatch, 1, nil},
		{"unreproducible", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}, "-", true, VerdictUnreproducible, 2, nil},
		{"insufficient-few", []string{"", "", "", "skip", "skip"}, "-", true, VerdictInsufficient, 2, nil},
		{"insufficient-open", ten(""), "-", false, VerdictInsufficient, 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newVNet(t, 10)
			b := vnetBuild("hello-2.12-1.fc41", "x86_64")
			job := n.job(b)
			count := 0
			for i, v := range tc.variants {
				l := n.lease(b, job, n.builders[i], i)
				if v != "skip" {
					n.result(l, n.builders[i], vnetSubjects(b, v))
					count++
				}
			}
			if tc.official != "-" {
				n.official(b, vnetSubjects(b, tc.official))
			}
			if tc.closed {
				n.close(b, job, count)
				n.verdicts(b, 3)
			}
			rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
			if err != nil {
				t.Fatalf("Verify: %v (problems %v)", err, rep.Problems)
			}
			if rep.Status != tc.verdict || VerifyExit(rep, err) != tc.exit {
				t.Fatalf("status %q exit %d, want %q exit %d", rep.Status, VerifyExit(rep, err), tc.verdict, tc.exit)
			}
			if len(rep.Builds) != 1 {
				t.Fatalf("%d builds reported", len(rep.Builds))
			}
			br := rep.Builds[0]
			var ops []string
			for _, o := range br.Outliers {
				ops = append(ops, o.Operator)
				if o.KeyID == "" || len(o.Diff) == 0 || !strings.Contains(o.Diff[0].File, "-libs") {
					t.Errorf("outlier %+v: key or RPM diff missing", o)
				}
			}
			if !slices.Equal(ops, tc.outliers) {
				t.Errorf("outliers %v, want %v", ops, tc.outliers)
			}
			if tc.verdict == VerdictOfficialMismatch && (len(br.OfficialDiff) != 1 || !strings.Contains(br.OfficialDiff[0].File, "-libs")) {
				t.Errorf("official diff %+v, want the -libs RPM", br.OfficialDiff)
			}
			if tc.closed {
				agree := 0
				for _, w := range br.Witnesses {
					if w.Covers && w.Agrees {
						agree++
					}
				}
				if agree != 3 {
					t.Errorf("%d witnesses vouch, want 3: %+v", agree, br.Witnesses)
				}
			}
			if len(rep.Cosigners) != 3 {
				t.Errorf("cosigners %v, want 3", rep.Cosigners)
			}
		})
	}
}

// vnetReproduced is a network with one reproduced build and three
// witnesses' verdicts.
func vnetReproduced(t *testing.T) (*vnet, attest.BuildID) {
	n := newVNet(t, 10)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	n.run(b, append(slices.Repeat([]string{""}, 9), "evil")...)
	n.verdicts(b, 3)
	return n, b
}

// TestVerifyLyingLog: every lie of the log makes Verify fail with its own
// error (exit 3), and the report says why.
func TestVerifyLyingLog(t *testing.T) {
	t.Run("honest", func(t *testing.T) {
		n, b := vnetReproduced(t)
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		if err != nil || VerifyExit(rep, err) != 0 {
			t.Fatalf("honest log: %v, exit %d", err, VerifyExit(rep, err))
		}
	})
	check := func(t *testing.T, rep *VerifyReport, err, want error) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("Verify: %v, want %v", err, want)
		}
		if VerifyExit(rep, err) != ExitVerification || rep.Status != StatusVerificationFailed || len(rep.Problems) == 0 {
			t.Fatalf("exit %d status %q problems %v", VerifyExit(rep, err), rep.Status, rep.Problems)
		}
	}
	t.Run("hidden-from-lookup", func(t *testing.T) {
		n, b := vnetReproduced(t)
		// Hide the dissenting result: locally the build looks unanimous,
		// the witnesses counted the outlier.
		o, _ := n.outcome(b, DefaultPolicy())
		if len(o.Outliers) != 1 {
			t.Fatalf("setup: %d outliers", len(o.Outliers))
		}
		n.hideLookup[o.Outliers[0].Index] = true
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrWitnessDisagrees)
		if !strings.Contains(err.Error(), "were not seen here") {
			t.Errorf("error does not name the hidden entry: %v", err)
		}
	})
	t.Run("hidden-job-close", func(t *testing.T) {
		n, b := vnetReproduced(t)
		rec, _ := n.rec.record(b)
		n.hideLookup[rec.ClosedAt] = true
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrWitnessDisagrees)
	})
	t.Run("hidden-build", func(t *testing.T) {
		// Everything but the verdicts hidden: not "no build", a lie.
		n, b := vnetReproduced(t)
		verdicts := map[uint64]bool{}
		for _, v := range n.rec.builds[b].verdicts {
			verdicts[v.Index] = true
		}
		size := n.size()
		for i := range size {
			if !verdicts[i] {
				n.hideLookup[i] = true
			}
		}
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrWitnessDisagrees)
	})
	t.Run("hidden-verdicts", func(t *testing.T) {
		n, b := vnetReproduced(t)
		for _, v := range n.rec.builds[b].verdicts {
			n.hideLookup[v.Index] = true
		}
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrTooFewVerdicts)
	})
	t.Run("stale-verdicts", func(t *testing.T) {
		// The witnesses decided before the official build arrived: their
		// verdicts do not cover it and vouch for nothing.
		n, b := vnetReproduced(t)
		n.official(b, vnetSubjects(b, ""))
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrTooFewVerdicts)
	})
	t.Run("too-few-cosignatures", func(t *testing.T) {
		n, b := vnetReproduced(t)
		n.cosigners = 1
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrTooFewCosignatures)
	})
	t.Run("other-key", func(t *testing.T) {
		n, b := vnetReproduced(t)
		other := vnetKey(t)
		ns, err := other.NoteSigner(vnetOrigin)
		if err != nil {
			t.Fatal(err)
		}
		n.cpFunc = func(cp []byte) []byte { return resign(t, cp, ns) }
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrBadSignature)
	})
	t.Run("fork", func(t *testing.T) {
		n, b := vnetReproduced(t)
		p := n.policy(2)
		rep, err := n.verify(p, VerifyRequest{NVR: b.NVR})
		if err != nil {
			t.Fatal(err)
		}
		prev := vnetTrusted(t, n, rep)
		// Another root at the same size, signed by the log key (and not
		// cosigned: witnesses refuse forks).
		ns, _ := n.coord.NoteSigner(vnetOrigin)
		c := fmtlog.Checkpoint{Origin: vnetOrigin, Size: prev.Size, Hash: make([]byte, 32)}
		forked, err := note.Sign(&note.Note{Text: string(c.Marshal())}, ns)
		if err != nil {
			t.Fatal(err)
		}
		n.cpFunc = func([]byte) []byte { return forked }
		rep, err = n.verify(p, VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrTooFewCosignatures)
		rep, err = Verify(t.Context(), VerifyConfig{Policy: p, Previous: &prev}, VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrFork)
	})
	t.Run("rollback", func(t *testing.T) {
		n, b := vnetReproduced(t)
		old, err := n.checkpoint()
		if err != nil {
			t.Fatal(err)
		}
		n.enrol(vnetKey(t), attest.RoleBuilder, "late")
		p := n.policy(2)
		rep, err := n.verify(p, VerifyRequest{NVR: b.NVR})
		if err != nil {
			t.Fatal(err)
		}
		prev := vnetTrusted(t, n, rep)
		n.cpFunc = func([]byte) []byte { return old }
		rep, err = Verify(t.Context(), VerifyConfig{Policy: p, Previous: &prev}, VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrRollback)
	})
	t.Run("bad-tile", func(t *testing.T) {
		n, b := vnetReproduced(t)
		n.size()
		size, _ := n.l.Size()
		path := "tile/0/000.p/" + itoa(size)
		if size >= 256 {
			t.Fatalf("setup: log of %d entries", size)
		}
		n.lie(path, make([]byte, 32*size))
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrBadTile)
	})
	t.Run("swapped-entry", func(t *testing.T) {
		n, b := vnetReproduced(t)
		o, _ := n.outcome(b, DefaultPolicy())
		good, err := n.l.Entry(t.Context(), o.Counted[0].Index)
		if err != nil {
			t.Fatal(err)
		}
		n.lie("entry/"+itoa(o.Outliers[0].Index), good)
		rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
		check(t, rep, err, ErrHiddenEntry)
	})
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// resign replaces a note's signatures with one by s.
func resign(t *testing.T, cp []byte, s note.Signer) []byte {
	t.Helper()
	text, err := noteText(cp)
	if err != nil {
		t.Fatal(err)
	}
	out, err := note.Sign(&note.Note{Text: text}, s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// vnetTrusted is the checkpoint a report was made against, as a later run
// would load it.
func vnetTrusted(t *testing.T, n *vnet, rep *VerifyReport) Checkpoint {
	t.Helper()
	raw, err := n.checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	v, _ := note.NewVerifier(n.vkey)
	cp, err := ParseCheckpoint(raw, vnetOrigin, v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != rep.Checkpoint.Size {
		t.Fatalf("log grew during the test: %d, report %d", cp.Size, rep.Checkpoint.Size)
	}
	return cp
}

// TestVerifyBreaker: an alarm makes Verify fail closed until an admin's
// logged clearing names it.
func TestVerifyBreaker(t *testing.T) {
	n, b := vnetReproduced(t)
	p := n.policy(2)
	alarm := n.sign(n.witnesses[0].verdict, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate: test", Rate: 0.2, Window: 500, TreeSize: 10, At: n.tick()})
	rep, err := n.verify(p, VerifyRequest{NVR: b.NVR})
	if !errors.Is(err, ErrAlarmActive) || VerifyExit(rep, err) != ExitVerification {
		t.Fatalf("with an alarm: %v, exit %d", err, VerifyExit(rep, err))
	}
	if len(rep.Alarms) != 1 || rep.Alarms[0].Index != alarm {
		t.Fatalf("alarms %+v, want the one at %d", rep.Alarms, alarm)
	}
	// A clearing by a key that is not an admin does not count.
	n.sign(n.builders[0].key, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: alarm, Reason: "not mine to clear", At: n.tick()})
	if rep, err := n.verify(p, VerifyRequest{NVR: b.NVR}); !errors.Is(err, ErrAlarmActive) {
		t.Fatalf("after a builder's clear: %v, exit %d", err, VerifyExit(rep, err))
	}
	n.sign(n.admin, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: alarm, Reason: "investigated", At: n.tick()})
	rep, err = n.verify(p, VerifyRequest{NVR: b.NVR})
	if err != nil || VerifyExit(rep, err) != 0 {
		t.Fatalf("after the admin's clear: %v, exit %d", err, VerifyExit(rep, err))
	}
}

// TestVerifyUsage: malformed requests are usage errors.
func TestVerifyUsage(t *testing.T) {
	n, b := vnetReproduced(t)
	p := n.policy(2)
	for _, req := range []VerifyRequest{{NVR: "../etc"}, {NVR: "hello"}, {NVR: b.NVR, Arch: "X86/64"}} {
		rep, err := Verify(t.Context(), VerifyConfig{Policy: p}, req)
		if !errors.Is(err, ErrUsage) || VerifyExit(rep, err) != ExitUsage {
			t.Errorf("%+v: %v exit %d", req, err, VerifyExit(rep, err))
		}
	}
	rep, err := n.verify(p, VerifyRequest{NVR: "other-1.0-1.fc41"})
	if err != nil || rep.Status != VerdictInsufficient || VerifyExit(rep, err) != ExitUndecided || len(rep.Problems) != 1 {
		t.Errorf("unknown NVR: %v exit %d", err, VerifyExit(rep, err))
	}
}

// TestVerifyRPMDir: the RPMs about to be released must be exactly the
// agreed result set; signed copies match (the digest leaves the signature
// out), a rebuilt-different RPM is named.
func TestVerifyRPMDir(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	top := filepath.Join(os.TempDir(), "skyline-witness-verify-rebuild")
	good := rpmtest.Rebuild(t, srpm, top, nil)
	evil := rpmtest.Rebuild(t, srpm, top, map[string]string{"greeting": "goodbye"})
	ds, err := rpm.DigestDir(good)
	if err != nil {
		t.Fatal(err)
	}
	var subjects []attest.Subject
	for _, d := range ds {
		subjects = append(subjects, attest.Subject{Name: d.File, SHA256: d.SHA256, Skyline: d.Skyline})
	}
	n := newVNet(t, 5)
	b := vnetBuild("hello-1.0-1", "x86_64")
	job := n.job(b)
	for i, bl := range n.builders {
		n.result(n.lease(b, job, bl, i), bl, subjects)
	}
	n.close(b, job, len(n.builders))
	n.verdicts(b, 3)
	p := n.policy(3)

	signed := t.TempDir()
	tampered := t.TempDir()
	for _, d := range ds {
		copyFile(t, rpmtest.SignRPM(t, filepath.Join(good, d.File)), filepath.Join(signed, d.File))
		src := filepath.Join(good, d.File)
		if strings.HasPrefix(d.File, "hello-1.0") {
			src = filepath.Join(evil, d.File)
		}
		copyFile(t, src, filepath.Join(tampered, d.File))
	}
	for _, tc := range []struct {
		name, dir string
		exit      int
	}{{"built", good, 0}, {"signed", signed, 0}, {"tampered", tampered, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := n.verify(p, VerifyRequest{NVR: b.NVR, RPMDir: tc.dir})
			if err != nil {
				t.Fatal(err)
			}
			if got := VerifyExit(rep, err); got != tc.exit || rep.RPMs == nil || rep.RPMs.Match != (tc.exit == 0) {
				t.Fatalf("exit %d, rpms %+v; want exit %d", got, rep.RPMs, tc.exit)
			}
			if tc.exit == 1 && (len(rep.RPMs.Diffs) != 1 || rep.RPMs.Diffs[0].File != "hello-1.0-1.x86_64.rpm" || rep.Status != StatusRPMMismatch) {
				t.Fatalf("diffs %+v status %q: want hello-1.0-1.x86_64.rpm named", rep.RPMs.Diffs, rep.Status)
			}
		})
	}
	t.Run("garbage", func(t *testing.T) {
		dir := t.TempDir()
		for _, d := range ds {
			copyFile(t, filepath.Join(good, d.File), filepath.Join(dir, d.File))
		}
		if err := os.WriteFile(filepath.Join(dir, "extra.rpm"), []byte("not an rpm"), 0o644); err != nil {
			t.Fatal(err)
		}
		rep, err := n.verify(p, VerifyRequest{NVR: b.NVR, RPMDir: dir})
		if err != nil || VerifyExit(rep, err) != 1 || len(rep.RPMs.Unreadable) != 1 || !strings.HasPrefix(rep.RPMs.Unreadable[0], "extra.rpm") {
			t.Fatalf("%v exit %d rpms %+v", err, VerifyExit(rep, err), rep.RPMs)
		}
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyUnindexedKeys: against a log that indexes only builds
// (buildsOnlyIndexer), verify finds enrolments and alarms by reading every
// entry, and reaches the same answers.
func TestVerifyUnindexedKeys(t *testing.T) {
	n := newVNetIndexed(t, 10, buildsOnlyIndexer)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	n.run(b, append(slices.Repeat([]string{""}, 8), "evil", "evil2")...)
	n.verdicts(b, 3)
	p := n.policy(2)
	rep, err := n.verify(p, VerifyRequest{NVR: b.NVR})
	if err != nil || rep.Status != VerdictDisputed || len(rep.Builds[0].Outliers) != 2 {
		t.Fatalf("%v status %q", err, rep.Status)
	}
	if !strings.Contains(strings.Join(rep.Problems, " "), "indexes no keys") {
		t.Errorf("problems %v do not say the log was scanned", rep.Problems)
	}
	alarm := n.sign(n.witnesses[1].verdict, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate: test", Rate: 0.2, Window: 500, At: n.tick()})
	if _, err := n.verify(p, VerifyRequest{NVR: b.NVR}); !errors.Is(err, ErrAlarmActive) {
		t.Fatalf("alarm at %d not found by the scan: %v", alarm, err)
	}
}

// cosignedLog is the log as `skyline serve` serves it once the witnesses'
// cosignatures are gathered: the test network's cosigned checkpoint.
type cosignedLog struct {
	*log.Log
	n *vnet
}

func (c cosignedLog) ReadPath(ctx context.Context, path string) ([]byte, error) {
	if path == "checkpoint" {
		return c.n.checkpoint()
	}
	return c.Log.ReadPath(ctx, path)
}

// TestVerifyAPIServer runs verify against the real HTTP server of
// `skyline serve` (api.Server over coord.Service and the log).
func TestVerifyAPIServer(t *testing.T) {
	n := newVNet(t, 10)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	n.run(b, append(slices.Repeat([]string{""}, 8), "evil", "evil2")...)
	n.verdicts(b, 3)
	svc, err := coord.NewService(t.Context(), coord.ServiceConfig{Log: n.l, Signer: n.coord})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{}, svc, cosignedLog{n.l, n})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	n.size()
	rep, err := Verify(t.Context(), VerifyConfig{Policy: n.policy(2), LogURL: hs.URL}, VerifyRequest{NVR: b.NVR, Arch: "x86_64"})
	if err != nil || rep.Status != VerdictDisputed || VerifyExit(rep, err) != ExitRejected {
		t.Fatalf("%v: status %q problems %v", err, rep.Status, rep.Problems)
	}
	var ops []string
	for _, o := range rep.Builds[0].Outliers {
		ops = append(ops, o.Operator)
	}
	if !slices.Equal(ops, []string{"op08", "op09"}) {
		t.Fatalf("outliers %v", ops)
	}
}

// TestVerifyCosignatureAge: with max_cosignature_age, only recent
// cosignatures count, so an old cosigned checkpoint cannot pass.
func TestVerifyCosignatureAge(t *testing.T) {
	n, b := vnetReproduced(t)
	p := n.policy(2)
	p.MaxCosignatureAge = time.Hour
	n.size()
	for _, tc := range []struct {
		now  time.Time
		want error
	}{{time.Now(), nil}, {time.Now().Add(2 * time.Hour), ErrTooFewCosignatures}} {
		rep, err := Verify(t.Context(), VerifyConfig{Policy: p, Now: func() time.Time { return tc.now }}, VerifyRequest{NVR: b.NVR})
		if !errors.Is(err, tc.want) || (tc.want == nil) != (VerifyExit(rep, err) == 0) {
			t.Fatalf("now %v: %v exit %d", tc.now, err, VerifyExit(rep, err))
		}
		if tc.want != nil && !strings.Contains(strings.Join(rep.Problems, " "), "older than 1h0m0s") {
			t.Errorf("problems %v do not name the stale cosignatures", rep.Problems)
		}
	}
}

// TestVerifyFutureVerdict: a verdict that claims a tree size beyond its
// own index (covering entries logged after it) does not vouch.
func TestVerifyFutureVerdict(t *testing.T) {
	n := newVNet(t, 10)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	n.run(b, slices.Repeat([]string{""}, 10)...)
	o, size := n.outcome(b, DefaultPolicy())
	rec, _ := n.rec.record(b)
	v := verdictOf(o, size+100, rec)
	for _, w := range n.witnesses {
		n.sign(w.verdict, attest.PayloadVerdict, &v)
	}
	rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
	if !errors.Is(err, ErrWitnessDisagrees) || VerifyExit(rep, err) != ExitVerification {
		t.Fatalf("%v exit %d", err, VerifyExit(rep, err))
	}
}

// TestVerifyArches: without --arch every build of the NVR is verified and
// the worst verdict wins; --arch picks one; --rpm-dir needs one build.
func TestVerifyArches(t *testing.T) {
	n := newVNet(t, 10)
	x86 := vnetBuild("hello-2.12-1.fc41", "x86_64")
	arm := vnetBuild("hello-2.12-1.fc41", "aarch64")
	n.run(x86, slices.Repeat([]string{""}, 10)...)
	n.run(arm, append(slices.Repeat([]string{""}, 8), "x", "y")...)
	n.verdicts(x86, 3)
	n.verdicts(arm, 3)
	p := n.policy(2)
	rep, err := n.verify(p, VerifyRequest{NVR: x86.NVR})
	if err != nil || rep.Status != VerdictDisputed || len(rep.Builds) != 2 || rep.Builds[0].Build.Arch != "aarch64" || rep.Builds[1].Verdict != VerdictReproduced {
		t.Fatalf("all arches: %v %q %+v", err, rep.Status, rep.Builds)
	}
	rep, err = n.verify(p, VerifyRequest{NVR: x86.NVR, Arch: "x86_64"})
	if err != nil || VerifyExit(rep, err) != 0 || len(rep.Builds) != 1 {
		t.Fatalf("--arch x86_64: %v exit %d", err, VerifyExit(rep, err))
	}
	rep, err = n.verify(p, VerifyRequest{NVR: x86.NVR, RPMDir: t.TempDir()})
	if !errors.Is(err, ErrUsage) || VerifyExit(rep, err) != ExitUsage {
		t.Fatalf("--rpm-dir over two builds: %v exit %d", err, VerifyExit(rep, err))
	}
}
