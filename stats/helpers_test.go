package stats

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/witness"
)

// world writes a log of real signed entries: a coordinator, builder and
// witness keys, jobs, leases, attestations and verdicts that the real
// agreement engine (witness.Agree) computes.
type world struct {
	t       testing.TB
	coord   *attest.Signer
	entries [][]byte
	now     time.Time
	seq     int
	ops     map[string]string // key id -> operator
	fold    *witness.Fold
	policy  witness.Policy
	jobs    map[attest.BuildID]string
}

var epoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newWorld(t testing.TB) *world {
	w := &world{t: t, now: epoch, ops: map[string]string{}, jobs: map[attest.BuildID]string{},
		policy: witness.Policy{Leases: 10, Quorum: 3, MaxDissent: 1, RequireOfficialMatch: true}}
	w.coord = w.key(0)
	w.fold = witness.NewFold(w.coord.Verifier())
	return w
}

func (w *world) config() Config { return Config{Coordinator: w.coord.Verifier()} }

// key returns a deterministic ed25519 signer.
func (w *world) key(n int) *attest.Signer {
	w.t.Helper()
	seed := sha256.Sum256(fmt.Appendf(nil, "stats test key %d", n))
	s, err := attest.NewSigner(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

func (w *world) tick(d time.Duration) { w.now = w.now.Add(d) }

// add logs an envelope and folds it into the witness's fold.
func (w *world) add(env []byte) uint64 {
	w.t.Helper()
	i := uint64(len(w.entries))
	w.entries = append(w.entries, env)
	e, err := attest.Parse(env, attest.ParseOptions{})
	if err != nil {
		w.t.Fatalf("entry %d: %v", i, err)
	}
	v, _, err := w.fold.Signer(e, nil)
	if err != nil {
		w.t.Fatalf("entry %d: %v", i, err)
	}
	if err := e.Verify(v); err != nil {
		w.t.Fatal(err)
	}
	if _, err := w.fold.Apply(i, e); err != nil {
		w.t.Fatalf("fold entry %d: %v", i, err)
	}
	return i
}

// addRaw logs an entry the witness's fold skips (malformed or repeated).
func (w *world) addRaw(env []byte) {
	w.t.Helper()
	if err := w.fold.Skip(uint64(len(w.entries))); err != nil {
		w.t.Fatal(err)
	}
	w.entries = append(w.entries, env)
}

func (w *world) sign(s *attest.Signer, pt string, payload any) uint64 {
	w.t.Helper()
	env, err := attest.Sign(s, pt, payload)
	if err != nil {
		w.t.Fatal(err)
	}
	return w.add(env)
}

// enrol enrols a new key with role for operator in team.
func (w *world) enrol(role, operator, team string) *attest.Signer {
	w.seq++
	s := w.key(w.seq)
	w.enrolKey(s, role, operator, team)
	return s
}

func (w *world) enrolKey(s *attest.Signer, role, operator, team string) uint64 {
	w.ops[s.KeyID()] = operator
	return w.sign(w.coord, attest.PayloadEnrolment, &attest.Enrolment{
		KeyID: s.KeyID(), PublicKey: string(s.PublicPEM()), Role: role, Operator: operator,
		Contact: operator + "@example.org", Team: team, Since: w.now,
	})
}

func (w *world) revoke(s *attest.Signer) uint64 {
	return w.sign(w.coord, attest.PayloadRevocation, &attest.Revocation{KeyID: s.KeyID(), Operator: w.ops[s.KeyID()], Reason: "test", Until: w.now})
}

func hexOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func buildID(nvr string) attest.BuildID {
	return attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: hexOf("srpm " + nvr)}
}

// vote is one builder's result in a round: its signer and the result set
// variant it produces ("good" for the agreeing one) and its build time.
type vote struct {
	s       *attest.Signer
	variant string
	dur     time.Duration
	fail    bool // the lease ends failed instead
}

// job logs a job for nvr.
func (w *world) job(nvr string) attest.BuildID {
	b := buildID(nvr)
	id := "job-" + nvr
	w.jobs[b] = id
	w.sign(w.coord, attest.PayloadJob, &attest.Job{JobID: id, Build: b, SRPMURL: "https://example.org/" + nvr + ".src.rpm", Wanted: 10, Enqueued: w.now, Deadline: w.now.Add(7 * 24 * time.Hour)})
	return b
}

func (w *world) lease(b attest.BuildID, s *attest.Signer, slot int) string {
	id := fmt.Sprintf("lease-%s-%d", b.NVR, slot)
	w.sign(w.coord, attest.PayloadLease, &attest.Lease{LeaseID: id, JobID: w.jobs[b], Build: b, KeyID: s.KeyID(), Operator: w.ops[s.KeyID()], Slot: slot, Issued: w.now, Expires: w.now.Add(48 * time.Hour)})
	return id
}

func (w *world) result(b attest.BuildID, lease string, s *attest.Signer, variant string, dur time.Duration) uint64 {
	return w.attest(b, lease, s, variant, dur, false)
}

func (w *world) attest(b attest.BuildID, lease string, s *attest.Signer, variant string, dur time.Duration, official bool) uint64 {
	w.t.Helper()
	name := b.NVR + ".x86_64.rpm"
	envs, err := attest.NewSubjectAttestations(attest.Build{
		ID: b, SRPMURL: "https://example.org/" + b.NVR + ".src.rpm", Backend: "rpmbuild", Chroot: "fedora-41-x86_64",
		LeaseID: lease, Started: w.now.Add(-dur), Finished: w.now, Official: official,
	}, []attest.Subject{{Name: name, SHA256: hexOf(variant + name), Skyline: hexOf("sky" + variant + name)}}, s)
	if err != nil {
		w.t.Fatal(err)
	}
	first := uint64(len(w.entries))
	for _, env := range envs {
		w.add(env)
	}
	return first
}

func (w *world) official(b attest.BuildID, imp *attest.Signer, variant string) uint64 {
	return w.attest(b, "", imp, variant, time.Hour, true)
}

// round runs a whole job: leases, results (or failed lease ends), close,
// and the verdict witness ws signs. It returns the verdict's index.
func (w *world) round(nvr string, ws *attest.Signer, votes ...vote) uint64 {
	w.t.Helper()
	b := w.job(nvr)
	leases := make([]string, len(votes))
	for i, v := range votes {
		leases[i] = w.lease(b, v.s, i)
	}
	w.tick(time.Minute)
	for i, v := range votes {
		if v.fail {
			w.sign(w.coord, attest.PayloadLeaseEnd, &attest.LeaseEnd{LeaseID: leases[i], JobID: w.jobs[b], KeyID: v.s.KeyID(), Reason: attest.LeaseFailed, At: w.now})
			continue
		}
		w.result(b, leases[i], v.s, v.variant, v.dur)
	}
	w.tick(time.Minute)
	w.sign(w.coord, attest.PayloadJobClose, &attest.JobClose{JobID: w.jobs[b], Build: b, Results: len(votes), At: w.now})
	return w.verdict(b, ws)
}

// verdict logs ws's verdict on b as the agreement engine computes it now.
func (w *world) verdict(b attest.BuildID, ws *attest.Signer) uint64 {
	w.t.Helper()
	rec, ok := w.fold.Record(b)
	if !ok {
		w.t.Fatalf("no record of %v", b)
	}
	o, err := witness.Agree(rec, w.policy)
	if err != nil {
		w.t.Fatal(err)
	}
	v := o.Payload(uint64(len(w.entries)))
	if v.At.IsZero() {
		v.At = w.now // an open job's outcome has no decision time
	}
	// attest.Verdict.Official is the official result set (hex), the
	// engine's Outcome.Official a status word.
	v.Official = ""
	if rec.Official != nil {
		v.Official = rec.Official.ResultSet
	}
	return w.sign(ws, attest.PayloadVerdict, &v)
}

// replay applies every entry to a new tracker, failing on any refusal.
func replay(t testing.TB, cfg Config, entries [][]byte) *Tracker {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if err := tr.Apply(uint64(i), e); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	return tr
}

func mustOperator(t testing.TB, tr *Tracker, name string) OperatorStats {
	t.Helper()
	o, err := tr.Operator(name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustTeam(t testing.TB, tr *Tracker, name string) TeamStats {
	t.Helper()
	o, err := tr.Team(name)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func mustBuilder(t testing.TB, tr *Tracker, id string) BuilderStats {
	t.Helper()
	o, err := tr.Builder(id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}
