package witness

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

func (n *vnet) audit(t *testing.T, prev *AuditState, bcfg *BreakerConfig) (*AuditReport, *AuditState, error) {
	t.Helper()
	n.size()
	return Audit(t.Context(), AuditConfig{URL: n.srv.URL, LogKey: n.vkey, Breaker: bcfg}, prev)
}

func kinds(ds []Discrepancy) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind)
	}
	return out
}

// TestAuditClean: an honest log with every verdict replays without a
// discrepancy, and the root recomputed from the entries is the signed one.
func TestAuditClean(t *testing.T) {
	n, _ := vnetReproduced(t)
	b2 := vnetBuild("other-1.0-1.fc41", "aarch64")
	n.run(b2, append(slices.Repeat([]string{""}, 7), "x", "y", "skip")...)
	n.official(b2, vnetSubjects(b2, ""))
	n.verdicts(b2, 2)
	rep, st, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := n.l.Size()
	if len(rep.Discrepancies) != 0 || AuditExit(rep, err) != 0 {
		t.Fatalf("discrepancies %+v exit %d", rep.Discrepancies, AuditExit(rep, err))
	}
	if !rep.RootMatches || rep.To != size || rep.Entries != size || rep.Verdicts != 5 || rep.Builds != 2 || st.Next != size {
		t.Fatalf("report %+v, state at %d, log %d", rep, st.Next, size)
	}
}

// TestAuditDiscrepancies: each kind of lie inside a well-formed log is
// reported, at its index, and makes the exit code 1.
func TestAuditDiscrepancies(t *testing.T) {
	n := newVNet(t, 10)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	job := n.job(b)
	var leases []attest.Lease
	for i := range 6 {
		leases = append(leases, n.lease(b, job, n.builders[i], i))
	}
	for i := range 5 {
		n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
	}
	// A verdict made before the job closed.
	o, size := n.outcome(b, DefaultPolicy())
	early := verdictOf(o, size, BuildRecord{})
	early.Verdict = VerdictReproduced
	earlyAt := n.sign(n.witnesses[0].verdict, attest.PayloadVerdict, &early)
	// A result under a lease that was never logged.
	fake := leases[5]
	fake.LeaseID = "never-leased"
	noLease := n.result(fake, n.builders[5], vnetSubjects(b, ""))
	// A result signed by a key that was never enrolled.
	stranger := vnetBuilder{op: "stranger", key: vnetKey(t)}
	unenrolled := n.result(leases[5], stranger, vnetSubjects(b, ""))
	// An entry whose signature does not verify.
	at := n.tick()
	env, err := attest.Sign(n.coord, attest.PayloadJob, &attest.Job{JobID: "tampered", Build: b, Wanted: 1, Enqueued: at, Deadline: at.AddDate(0, 0, 7)})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	json.Unmarshal(env, &raw)
	sig := raw["signatures"].([]any)[0].(map[string]any)
	s, _ := base64.StdEncoding.DecodeString(sig["sig"].(string))
	s[0] ^= 1
	sig["sig"] = base64.StdEncoding.EncodeToString(s)
	tampered, _ := json.Marshal(raw)
	badSig := n.add(tampered)
	// The job closes while leases[5] is live and 5 of 10 slots are free:
	// a close the coordinator's rules forbid (docs/coordinator.md §Closing).
	closeAt := n.close(b, job, 5)
	// A witness that lies about the verdict.
	o, size = n.outcome(b, DefaultPolicy())
	lie := verdictOf(o, size, BuildRecord{})
	lie.Verdict = VerdictDisputed
	lieAt := n.sign(n.witnesses[1].verdict, attest.PayloadVerdict, &lie)
	n.verdicts(b, 1) // and an honest one
	// A result after the close.
	late := n.result(leases[5], n.builders[5], vnetSubjects(b, ""))
	// An alarm the recomputed breaker does not raise.
	alarmAt := n.sign(n.witnesses[2].verdict, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate: made up", Rate: 0.5, Window: 10, TreeSize: closeAt, At: n.tick()})

	rep, _, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if AuditExit(rep, err) != 1 {
		t.Fatalf("exit %d", AuditExit(rep, err))
	}
	want := map[uint64]string{
		earlyAt: DiscVerdictEarly, noLease: DiscNotCounted, unenrolled: DiscUnauthorized,
		badSig: DiscBadSignature, lieAt: DiscVerdictDiffers, alarmAt: DiscAlarmUnderived, late: DiscNotCounted,
		closeAt: DiscCoordinatorRule,
	}
	got := map[uint64]string{}
	for _, d := range rep.Discrepancies {
		got[d.Index] = d.Kind
		if d.Detail == "" {
			t.Errorf("discrepancy %+v without detail", d)
		}
	}
	for i, k := range want {
		if got[i] != k {
			t.Errorf("entry %d: %q, want %q (all: %+v)", i, got[i], k, rep.Discrepancies)
		}
	}
	if len(rep.Discrepancies) != len(want) {
		t.Errorf("%d discrepancies %v, want %d", len(rep.Discrepancies), kinds(rep.Discrepancies), len(want))
	}
}

// TestAuditResume: an audit resumed from its saved state ends in the state
// of one audit of the whole log, and reads only the new entries.
func TestAuditResume(t *testing.T) {
	n, _ := vnetReproduced(t)
	_, st1, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := json.Marshal(st1)
	if err != nil {
		t.Fatal(err)
	}
	b2 := vnetBuild("other-1.0-1.fc41", "x86_64")
	n.run(b2, append(slices.Repeat([]string{""}, 8), "evil", "evil")...)
	n.verdicts(b2, 3)
	var prev AuditState
	if err := json.Unmarshal(saved, &prev); err != nil {
		t.Fatal(err)
	}
	rep2, st2, err := n.audit(t, &prev, nil)
	if err != nil {
		t.Fatal(err)
	}
	full, stFull, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep2.From != st1.Next || rep2.To != full.To || rep2.Entries != full.To-st1.Next {
		t.Fatalf("resumed run %d..%d, first run ended at %d, log %d", rep2.From, rep2.To, st1.Next, full.To)
	}
	if !bytes.Equal(st2.Fold, stFull.Fold) || !bytes.Equal(st2.Breaker, stFull.Breaker) || !bytes.Equal(st2.Coordinator, stFull.Coordinator) || st2.Verdicts != stFull.Verdicts || st2.Discrepancies != stFull.Discrepancies {
		t.Fatalf("resumed state differs from a full replay")
	}
	// A state whose recomputed tree was tampered with ends in a root that
	// is not the checkpoint's.
	forged := prev
	forged.Range = slices.Clone(prev.Range)
	forged.Range[0] = bytes.Clone(forged.Range[0])
	forged.Range[0][0] ^= 1
	if rep, _, err := n.audit(t, &forged, nil); !errors.Is(err, ErrRootMismatch) || AuditExit(rep, err) != ExitVerification {
		t.Fatalf("forged range: %v", err)
	}
	// A state whose fold was tampered with is refused.
	bad := prev
	bad.Next++
	if _, _, err := n.audit(t, &bad, nil); !errors.Is(err, ErrState) || AuditExit(nil, err) != ExitUsage {
		t.Fatalf("tampered state: %v", err)
	}
}

// TestAuditLyingLog: the log's lies are verification failures (exit 3),
// each with its own error.
func TestAuditLyingLog(t *testing.T) {
	check := func(t *testing.T, rep *AuditReport, err, want error) {
		t.Helper()
		if !errors.Is(err, want) || AuditExit(rep, err) != ExitVerification {
			t.Fatalf("audit: %v (exit %d), want %v", err, AuditExit(rep, err), want)
		}
	}
	t.Run("fork", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		_, st, err := n.audit(t, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ns, _ := n.coord.NoteSigner(vnetOrigin)
		c := fmtlog.Checkpoint{Origin: vnetOrigin, Size: st.Next, Hash: make([]byte, 32)}
		forked, _ := note.Sign(&note.Note{Text: string(c.Marshal())}, ns)
		n.cpFunc = func([]byte) []byte { return forked }
		rep, _, err := n.audit(t, st, nil)
		check(t, rep, err, ErrFork)
	})
	t.Run("rollback", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		old, _ := n.checkpoint()
		n.enrol(vnetKey(t), attest.RoleBuilder, "late")
		_, st, err := n.audit(t, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		n.cpFunc = func([]byte) []byte { return old }
		rep, _, err := n.audit(t, st, nil)
		check(t, rep, err, ErrRollback)
	})
	t.Run("other-key", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		ns, _ := vnetKey(t).NoteSigner(vnetOrigin)
		n.cpFunc = func(cp []byte) []byte { return resign(t, cp, ns) }
		rep, _, err := n.audit(t, nil, nil)
		check(t, rep, err, ErrBadSignature)
	})
	t.Run("too-few-cosignatures", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		n.size()
		cfg := AuditConfig{URL: n.srv.URL, LogKey: n.vkey, CosignerQuorum: 2}
		for _, w := range n.witnesses {
			cfg.Cosigners = append(cfg.Cosigners, w.cosign.VerifierKey())
		}
		rep, _, err := Audit(t.Context(), cfg, nil)
		if err != nil || len(rep.Cosigners) != 3 {
			t.Fatalf("all cosigned: %v, cosigners %v", err, rep.Cosigners)
		}
		n.cosigners = 1
		rep, _, err = Audit(t.Context(), cfg, nil)
		check(t, rep, err, ErrTooFewCosignatures)
	})
	t.Run("bad-tile", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		size := n.size()
		n.lie("tile/0/000.p/"+itoa(size), make([]byte, 32*size))
		rep, _, err := n.audit(t, nil, nil)
		check(t, rep, err, ErrBadTile)
	})
	t.Run("bad-bundle", func(t *testing.T) {
		n, _ := vnetReproduced(t)
		size := n.size()
		p := "tile/entries/000.p/" + itoa(size)
		bundle, err := n.l.ReadPath(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		// Replace one byte of the last entry: the bundle still parses.
		bundle = bytes.Clone(bundle)
		bundle[len(bundle)-3] ^= 1
		n.lie(p, bundle)
		rep, _, err := n.audit(t, nil, nil)
		check(t, rep, err, ErrHiddenEntry)
	})
}

// TestAuditBreaker: the breaker recomputed with the witnesses' settings
// trips on the same outcomes; a trip without a logged alarm is reported,
// and an alarm logged after it is not.
func TestAuditBreaker(t *testing.T) {
	bcfg := DefaultBreakerConfig()
	bcfg.Window, bcfg.MinSample, bcfg.Threshold = 20, 10, 0.1
	n := newVNet(t, 10)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	// 8 agree, 2 outliers: 20% outliers in a window of 10.
	n.run(b, append(slices.Repeat([]string{""}, 8), "x", "y")...)
	rep, st, err := n.audit(t, nil, &bcfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.BreakerTripped || !slices.Contains(kinds(rep.Discrepancies), DiscTripUnlogged) {
		t.Fatalf("breaker tripped %v, discrepancies %v", rep.BreakerTripped, kinds(rep.Discrepancies))
	}
	alarm := n.sign(n.witnesses[0].verdict, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate: 2 of 10", Rate: 0.2, Window: 10, TreeSize: st.Next, At: n.tick()})
	rep, st2, err := n.audit(t, st, &bcfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Discrepancies) != 0 || !rep.BreakerTripped {
		t.Fatalf("after the alarm: %+v", rep.Discrepancies)
	}
	n.sign(n.admin, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: alarm, Reason: "checked", At: n.tick()})
	rep, _, err = n.audit(t, st2, &bcfg)
	if err != nil || rep.BreakerTripped || len(rep.Discrepancies) != 0 {
		t.Fatalf("after the clear: %v tripped %v %+v", err, rep.BreakerTripped, rep.Discrepancies)
	}
	if !strings.Contains(string(st2.Breaker), "outlier") {
		t.Errorf("breaker state does not keep the alarm: %s", st2.Breaker)
	}
}

// fuzzAuditKey is a fixed log key, so that seed states stay valid.
func fuzzAuditKey(t testing.TB) (*attest.Signer, string) {
	t.Helper()
	s, err := attest.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := attest.NoteVerifierKey("log.fuzz.test", s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey
}

// fuzzAuditSeed is a valid state of an empty log's audit.
func fuzzAuditSeed(t testing.TB) []byte {
	s, _ := fuzzAuditKey(t)
	ns, err := s.NoteSigner("log.fuzz.test")
	if err != nil {
		t.Fatal(err)
	}
	empty := EmptyTree("log.fuzz.test")
	cp, err := note.Sign(&note.Note{Text: string(fmtlog.Checkpoint{Origin: "log.fuzz.test", Size: 0, Hash: empty.Hash[:]}.Marshal())}, ns)
	if err != nil {
		t.Fatal(err)
	}
	fold, _ := NewFold(s.Verifier()).MarshalJSON()
	br, _ := NewBreaker(DefaultBreakerConfig())
	bj, _ := br.MarshalJSON()
	st, _ := json.Marshal(AuditState{Checkpoint: string(cp), Fold: fold, Breaker: bj, Counts: map[string]int{}})
	return st
}

// FuzzAuditState: a saved state is restored only when it is consistent;
// anything else is ErrState, never a panic.
func FuzzAuditState(f *testing.F) {
	s, vkey := fuzzAuditKey(f)
	lv, err := note.NewVerifier(vkey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(fuzzAuditSeed(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		var st AuditState
		if json.Unmarshal(data, &st) != nil {
			return
		}
		a := &auditor{cfg: AuditConfig{Origin: "log.fuzz.test"}, fold: NewFold(s.Verifier()), co: coord.New(coord.Config{Authority: s.KeyID()})}
		var cp Checkpoint
		if err := a.restore(&st, lv, &cp); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error %v is not ErrState", err)
			}
			return
		}
		if a.fold.Next() != st.Next || a.rng.End() != st.Next || cp.Size < st.Next || a.br == nil {
			t.Fatalf("restored an inconsistent state: fold %d range %d checkpoint %d next %d", a.fold.Next(), a.rng.End(), cp.Size, st.Next)
		}
		for i, ce := range a.events {
			if ce.Index >= st.Next || (i > 0 && ce.Index <= a.events[i-1].Index) {
				t.Fatalf("restored coordinator event %d at index %d, state at %d", i, ce.Index, st.Next)
			}
		}
	})
}

// TestAuditIndex: with CheckIndex, an entry the NVR lookup hides is
// reported (the lie that misleads verify), and an honest index is clean.
func TestAuditIndex(t *testing.T) {
	n, b := vnetReproduced(t)
	n.size()
	cfg := AuditConfig{URL: n.srv.URL, LogKey: n.vkey, CheckIndex: true}
	rep, _, err := Audit(t.Context(), cfg, nil)
	if err != nil || len(rep.Discrepancies) != 0 {
		t.Fatalf("honest index: %v %+v", err, rep.Discrepancies)
	}
	o, _ := n.outcome(b, DefaultPolicy())
	hidden := o.Outliers[0].Index
	n.hideLookup[hidden] = true
	rep, _, err = Audit(t.Context(), cfg, nil)
	if err != nil || AuditExit(rep, err) != 1 || len(rep.Discrepancies) != 1 {
		t.Fatalf("%v exit %d: %+v", err, AuditExit(rep, err), rep.Discrepancies)
	}
	if d := rep.Discrepancies[0]; d.Index != hidden || d.Kind != DiscIndexHides || !strings.Contains(d.Detail, b.NVR) {
		t.Fatalf("discrepancy %+v, want entry %d hidden from /lookup/%s", d, hidden, b.NVR)
	}
}
