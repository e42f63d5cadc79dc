package witness

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// foldFeeder parses, verifies (with the key the fold asks for) and folds
// entries one at a time.
type foldFeeder struct {
	t    *testing.T
	f    *Fold
	next uint64
}

func (ff *foldFeeder) feed(env []byte) (Change, error) {
	ff.t.Helper()
	e, err := attest.Parse(env, attest.ParseOptions{})
	if err != nil {
		ff.t.Fatal(err)
	}
	idx := ff.next
	ff.next++
	v, _, err := ff.f.Signer(e, nil)
	if err != nil {
		if serr := ff.f.Skip(idx); serr != nil {
			ff.t.Fatal(serr)
		}
		return Change{}, err
	}
	if err := e.Verify(v); err != nil {
		ff.t.Fatal(err)
	}
	return ff.f.Apply(idx, e)
}

func (ff *foldFeeder) must(env []byte) Change {
	ff.t.Helper()
	ch, err := ff.feed(env)
	if err != nil {
		ff.t.Fatal(err)
	}
	return ch
}

func mustSign(t *testing.T, k *attest.Signer, typ string, p any) []byte {
	t.Helper()
	env, err := attest.Sign(k, typ, p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestFoldMultiPartResults: result sets too large for one entry arrive in
// parts, interleaved between builders; each counts once, at its first
// part's index, once all parts are in.
func TestFoldMultiPartResults(t *testing.T) {
	coord := newSigner(t)
	ff := &foldFeeder{t: t, f: NewFold(coord.Verifier())}
	ff.f.KeepSubjects = true
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	b := attest.BuildID{NVR: "texlive-2024-1.fc41", Arch: "x86_64", SRPMSHA256: hexSum("texlive")}
	var builders []*attest.Signer
	for i := range 5 {
		k := newSigner(t)
		builders = append(builders, k)
		ff.must(mustSign(t, coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: fmt.Sprintf("op%d", i), Contact: "c@example.org", Since: t0}))
	}
	ff.must(mustSign(t, coord, attest.PayloadJob, &attest.Job{JobID: "j", Build: b, Wanted: 5, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}))
	var subs []attest.Subject
	for i := range 900 {
		name := fmt.Sprintf("texlive-pkg%04d-2024-1.fc41.x86_64.rpm", i)
		subs = append(subs, attest.Subject{Name: name, SHA256: hexSum("f" + name), Skyline: hexSum("s" + name)})
	}
	var parts [][][]byte
	for i, k := range builders {
		l := attest.Lease{LeaseID: fmt.Sprintf("l%d", i), JobID: "j", Build: b, KeyID: k.KeyID(), Operator: fmt.Sprintf("op%d", i), Slot: i, Issued: t0, Expires: t0.Add(time.Hour)}
		ff.must(mustSign(t, coord, attest.PayloadLease, &l))
		envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "mock", LeaseID: l.LeaseID, Started: t0, Finished: t0}, subs, k)
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) < 2 {
			t.Fatalf("%d parts; the test needs a split result set", len(envs))
		}
		parts = append(parts, envs)
	}
	// Interleave: part 1 of everyone, then part 2 of everyone...
	firsts := map[int]uint64{}
	for p := range parts[0] {
		for i := range parts {
			if p == 0 {
				firsts[i] = ff.next
			}
			ff.must(parts[i][p])
		}
	}
	ch := ff.must(mustSign(t, coord, attest.PayloadJobClose, &attest.JobClose{JobID: "j", Build: b, Results: 5, At: t0}))
	if ch.Build == nil || *ch.Build != b {
		t.Fatalf("close changed %+v", ch)
	}
	rec, ok := ff.f.Record(b)
	if !ok || len(rec.Results) != 5 {
		t.Fatalf("record with %d results", len(rec.Results))
	}
	for i, r := range rec.Results {
		if r.Index != firsts[i] || len(r.Subjects) != 900 || r.ResultSet != attest.ResultSetDigest(subs) {
			t.Fatalf("result %d at %d (first part at %d), %d subjects", i, r.Index, firsts[i], len(r.Subjects))
		}
	}
	o, err := Agree(rec, DefaultPolicy())
	if err != nil || o.Verdict != VerdictReproduced || len(o.Counted) != 5 {
		t.Fatalf("outcome %+v %v", o, err)
	}
}

// TestFoldRefuses: entries that contradict the log, or come from the wrong
// signer, change nothing but the position.
func TestFoldRefuses(t *testing.T) {
	coord, stranger := newSigner(t), newSigner(t)
	ff := &foldFeeder{t: t, f: NewFold(coord.Verifier())}
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	k := newSigner(t)
	b := attest.BuildID{NVR: "a-1-1", Arch: "x86_64", SRPMSHA256: hexSum("a")}
	enrol := mustSign(t, coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: "op", Contact: "c@example.org", Since: t0})
	ff.must(enrol)
	ff.must(mustSign(t, coord, attest.PayloadJob, &attest.Job{JobID: "j", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}))
	ff.must(mustSign(t, coord, attest.PayloadJobClose, &attest.JobClose{JobID: "j", Build: b, At: t0}))
	for _, tc := range []struct {
		name string
		env  []byte
		want error
	}{
		{"enrolled twice", mustSign(t, coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: "op2", Contact: "c@example.org", Since: t0}), ErrEntry},
		{"lease of an unknown job", mustSign(t, coord, attest.PayloadLease, &attest.Lease{LeaseID: "l", JobID: "nope", Build: b, KeyID: k.KeyID(), Operator: "op", Issued: t0, Expires: t0.Add(time.Hour)}), ErrEntry},
		{"job logged twice", mustSign(t, coord, attest.PayloadJob, &attest.Job{JobID: "j", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}), ErrEntry},
		{"closed twice", mustSign(t, coord, attest.PayloadJobClose, &attest.JobClose{JobID: "j", Build: b, At: t0}), ErrEntry},
		{"revocation of an unknown key", mustSign(t, coord, attest.PayloadRevocation, &attest.Revocation{KeyID: stranger.KeyID(), Operator: "x", Reason: "r", Until: t0}), ErrEntry},
		{"job by a stranger", mustSign(t, stranger, attest.PayloadJob, &attest.Job{JobID: "j2", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}), ErrSigner},
		{"enrolment by a builder", mustSign(t, k, attest.PayloadEnrolment, &attest.Enrolment{KeyID: stranger.KeyID(), PublicKey: string(stranger.PublicPEM()), Role: attest.RoleBuilder, Operator: "s", Contact: "c@example.org", Since: t0}), ErrSigner},
		{"verdict by a builder", mustSign(t, k, attest.PayloadVerdict, &attest.Verdict{Build: b, Verdict: attest.VerdictInsufficient, At: t0}), ErrSigner},
		{"alarm clear of no alarm", mustSign(t, coord, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: 1, Reason: "r", At: t0}), ErrEntry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ff.t = t
			before, _ := ff.f.MarshalJSON()
			next := ff.f.Next()
			_, err := ff.feed(tc.env)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if ff.f.Next() != next+1 {
				t.Fatalf("position %d after %d", ff.f.Next(), next)
			}
			after, _ := ff.f.MarshalJSON()
			// Only the position may differ.
			var a, b Fold
			if err := a.UnmarshalJSON(before); err != nil {
				t.Fatal(err)
			}
			if err := b.UnmarshalJSON(after); err != nil {
				t.Fatal(err)
			}
			a.st.Next, b.st.Next = 0, 0
			ja, _ := a.MarshalJSON()
			jb, _ := b.MarshalJSON()
			if string(ja) != string(jb) {
				t.Fatalf("state changed:\n%s\n%s", ja, jb)
			}
		})
	}
	// Out of order is refused outright.
	e, _ := attest.Parse(enrol, attest.ParseOptions{})
	if _, err := ff.f.Apply(ff.f.Next()+3, e); !errors.Is(err, ErrOutOfOrder) {
		t.Fatalf("out of order: %v", err)
	}
	if err := (&Fold{}).UnmarshalJSON([]byte(`{"next":1,"bogus":2}`)); !errors.Is(err, ErrState) {
		t.Fatalf("unknown field in state: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	keys := writeWitnessKeys(t, newSigner(t))
	lk := newLogKey(t, testOrigin)
	base := fmt.Sprintf("name = \"w.example/w1\"\ncosign_key = %q\nverdict_key = %q\nstate_dir = \"/tmp/x\"\n", keys.cosignPath, keys.verdictPath)
	logSec := fmt.Sprintf("[[log]]\nname = \"fedora\"\nurl = \"https://log.example\"\nlog_key = %q\ncoordinator_key = %q\n", lk.vkey, keys.coordPath)
	cfg, err := ParseConfig([]byte(base + "[breaker]\nmismatch_window = \"12h\"\n" + logSec))
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Logs[0]
	if l.Origin != testOrigin || l.SubmitURL != l.URL || !l.Submits() || cfg.PollInterval != 10*time.Second || cfg.Policy != DefaultPolicy() || cfg.Breaker.MismatchWindow != 12*time.Hour || cfg.Breaker.Window != 5000 {
		t.Fatalf("defaults not filled: %+v", cfg)
	}
	for _, tc := range []struct{ name, data string }{
		{"unknown key", base + "pol_interval = \"1s\"\n" + logSec},
		{"unknown log key", base + logSec + "sumbit = false\n"},
		{"no logs", base},
		{"same key twice", fmt.Sprintf("name = \"w\"\ncosign_key = %q\nverdict_key = %q\n", keys.cosignPath, keys.cosignPath) + logSec},
		{"bad log key", base + "[[log]]\nname = \"f\"\nurl = \"https://l\"\nlog_key = \"nope\"\ncoordinator_key = \"/c\"\n"},
		{"bad log name", base + "[[log]]\nname = \"../etc\"\nurl = \"https://l\"\nlog_key = " + fmt.Sprintf("%q", lk.vkey) + "\ncoordinator_key = \"/c\"\n"},
		{"bad policy", base + "[policy]\nquorum = 0\n" + logSec},
		{"bad url", base + "[[log]]\nname = \"f\"\nurl = \"ftp://l\"\nlog_key = " + fmt.Sprintf("%q", lk.vkey) + "\ncoordinator_key = \"/c\"\n"},
	} {
		if _, err := ParseConfig([]byte(tc.data)); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v, want ErrConfig", tc.name, err)
		}
	}
}

func TestStore(t *testing.T) {
	st, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadRefusal("../x"); !errors.Is(err, ErrConfig) {
		t.Fatalf("path-like log name: %v", err)
	}
	if r, err := st.LoadRefusal("l"); r != nil || err != nil {
		t.Fatalf("no refusal: %v %v", r, err)
	}
	fork := Refusal{Kind: RefusedFork, Reason: "two roots", At: time.Now().UTC(), Trusted: []byte("a"), Refused: []byte("b")}
	if err := st.SaveRefusal("l", fork); err != nil {
		t.Fatal(err)
	}
	// A later rollback does not hide the fork on record.
	if err := st.SaveRefusal("l", Refusal{Kind: RefusedRollback, Reason: "older"}); err != nil {
		t.Fatal(err)
	}
	if r, err := st.LoadRefusal("l"); err != nil || r.Kind != RefusedFork || !r.Halts() || !errors.Is(r.Err(), ErrFork) {
		t.Fatalf("refusal %+v %v", r, err)
	}
	if err := st.write("l", fileRefusal, []byte(`{"kind":"fork","extra":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadRefusal("l"); !errors.Is(err, ErrState) {
		t.Fatalf("corrupt refusal: %v", err)
	}
	if err := st.SaveFold("l", []byte("[1]")); !errors.Is(err, ErrState) {
		t.Fatalf("non-object snapshot: %v", err)
	}
	k := newLogKey(t, testOrigin)
	if err := st.write("l", fileCheckpoint, signNote(t, newLogKey(t, testOrigin), testOrigin+"\n1\n"+EmptyTree(testOrigin).Hash.String()+"\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadCheckpoint("l", testOrigin, k.verifier); !errors.Is(err, ErrState) || !errors.Is(err, ErrBadSignature) {
		t.Fatalf("checkpoint signed by another key in state: %v", err)
	}
}
