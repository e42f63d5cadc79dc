package coord

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// t0 is the fixed start of every test's clock.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// authority is the coordinator key id the tests configure.
const authority = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"

// fixture is a coordinator plus the log it was fed: every entry is appended
// to log and applied, as skyline serve would.
type fixture struct {
	t    testing.TB
	c    *Coordinator
	cfg  Config
	seed uint64

	mu  sync.Mutex
	log []Event // index i holds the entry at index i
}

// newFixture returns a fixture whose coordinator takes randomness from a
// ChaCha8 seeded with seed.
func newFixture(t testing.TB, cfg Config, seed uint64) *fixture {
	t.Helper()
	cfg.Authority = authority
	if cfg.Rand == nil {
		cfg.Rand = rand.NewChaCha8(seedBytes(seed))
	}
	return &fixture{t: t, c: New(cfg), cfg: cfg, seed: seed}
}

func seedBytes(seed uint64) [32]byte {
	return sha256.Sum256(fmt.Appendf(nil, "coord test seed %d", seed))
}

// append adds an entry to the log and returns its index, without applying.
func (f *fixture) append(e Event) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log = append(f.log, e)
	return uint64(len(f.log) - 1)
}

// apply logs and applies an entry, failing the test on error.
func (f *fixture) apply(signer string, payload any) uint64 {
	f.t.Helper()
	e := Event{Signer: signer, Payload: payload}
	i := f.append(e)
	if err := f.c.Apply(i, e); err != nil {
		f.t.Fatalf("apply %T at %d: %v", payload, i, err)
	}
	return i
}

// commit logs and applies a reservation, failing the test on error.
func (f *fixture) commit(r *Reservation) uint64 {
	f.t.Helper()
	var idx uint64
	err := f.c.Commit(r, func(r *Reservation) (uint64, error) {
		idx = f.append(Event{Signer: r.Signer, Payload: r.Payload})
		return idx, nil
	})
	if err != nil {
		f.t.Fatalf("commit %T: %v", r.Payload, err)
	}
	return idx
}

// enrol enrols a fresh Ed25519 key for operator with role; returns its id.
func (f *fixture) enrol(operator, role string) string {
	f.t.Helper()
	en := newEnrolment(f.t, operator, role)
	f.apply(authority, en)
	return en.KeyID
}

// newEnrolment returns an Enrolment of a fresh key.
func newEnrolment(t testing.TB, operator, role string) attest.Enrolment {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := attest.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return attest.Enrolment{KeyID: s.KeyID(), PublicKey: string(s.PublicPEM()), Role: role, Operator: operator, Contact: operator + "@example.org", Since: t0}
}

// build returns a valid BuildID for package n on arch.
func build(n int, arch string) attest.BuildID {
	sum := sha256.Sum256(fmt.Appendf(nil, "srpm %d", n))
	return attest.BuildID{NVR: fmt.Sprintf("pkg%d-1.0-1.fc43", n), Arch: arch, SRPMSHA256: hex.EncodeToString(sum[:])}
}

// enqueue enqueues and logs a job for package n on arch.
func (f *fixture) enqueue(n int, arch string, wanted int) attest.Job {
	f.t.Helper()
	b := build(n, arch)
	r, err := f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://src.example.org/" + b.NVR + ".src.rpm", Wanted: wanted}, t0)
	if err != nil {
		f.t.Fatalf("enqueue %d: %v", n, err)
	}
	f.commit(r)
	return r.Payload.(attest.Job)
}

// lease decides, logs and applies a lease for keyID.
func (f *fixture) lease(keyID string, arches []string, now time.Time) attest.Lease {
	f.t.Helper()
	r, err := f.c.NextLease(keyID, arches, now)
	if err != nil {
		f.t.Fatalf("next lease for %.8s: %v", keyID, err)
	}
	f.commit(r)
	return r.Payload.(attest.Lease)
}

// deliver logs a one-part result for a lease.
func (f *fixture) deliver(l attest.Lease, now time.Time) uint64 {
	f.t.Helper()
	r, err := f.c.HoldResult(l.KeyID, Result{Build: l.Build, LeaseID: l.LeaseID, ResultSet: "set-" + l.Build.NVR, Part: 0, Parts: 1}, now)
	if err != nil {
		f.t.Fatalf("hold result of %s: %v", l.LeaseID, err)
	}
	return f.commit(r)
}

// commitAll commits every reservation.
func (f *fixture) commitAll(rs []*Reservation) {
	f.t.Helper()
	for _, r := range rs {
		f.commit(r)
	}
}

// snapshot is the observable state of a coordinator.
type snapshot struct {
	Jobs   []JobStatus
	Keys   []KeyStatus
	Alarms []uint64
}

func snap(c *Coordinator) snapshot {
	return snapshot{Jobs: c.Jobs(), Keys: c.Keys(), Alarms: c.Alarms()}
}

// replay applies the fixture's log in index order to a fresh coordinator
// with the same configuration, failing on any refused entry, and returns it.
func (f *fixture) replay() *Coordinator {
	f.t.Helper()
	cfg := f.cfg
	cfg.Rand = rand.NewChaCha8(seedBytes(f.seed + 1))
	c := New(cfg)
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, e := range f.log {
		if err := c.Apply(uint64(i), e); err != nil {
			f.t.Fatalf("replay entry %d (%T): %v", i, e.Payload, err)
		}
	}
	return c
}

// checkReplay asserts that replaying the log gives the fixture's state.
func (f *fixture) checkReplay() {
	f.t.Helper()
	got, want := snap(f.replay()), snap(f.c)
	if !reflect.DeepEqual(got, want) {
		f.t.Fatalf("replayed state differs from the live state:\nreplay: %+v\nlive:   %+v", got, want)
	}
}

// checkInvariants asserts the coordinator's structural invariants: at most
// one live lease per slot, at most one lease per operator per job, attempts
// within bounds, counters and pools consistent with the slots.
func checkInvariants(t testing.TB, c *Coordinator) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	perJobOp := make(map[string]map[string]int)
	for _, l := range c.leases {
		m := perJobOp[l.l.JobID]
		if m == nil {
			m = make(map[string]int)
			perJobOp[l.l.JobID] = m
		}
		m[l.l.Operator]++
		if m[l.l.Operator] > 1 {
			t.Fatalf("operator %q has two leases on job %q", l.l.Operator, l.l.JobID)
		}
		if l.l.Attempt > c.cfg.MaxAttempts {
			t.Fatalf("lease %q is attempt %d > %d", l.l.LeaseID, l.l.Attempt, c.cfg.MaxAttempts)
		}
		s := l.job.slots[l.l.Slot]
		if !l.ended() && !l.done && s.lease != l {
			t.Fatalf("live lease %q is not its slot's lease", l.l.LeaseID)
		}
	}
	live := 0
	for _, j := range c.jobs {
		seen := make(map[*lease]bool)
		for i, s := range j.slots {
			if s.lease != nil {
				live++
				if seen[s.lease] || s.lease.l.Slot != i || s.lease.ended() || s.lease.done {
					t.Fatalf("job %q slot %d holds a bad lease", j.j.JobID, i)
				}
				seen[s.lease] = true
			}
			if s.done && s.lease != nil {
				t.Fatalf("job %q slot %d done with a live lease", j.j.JobID, i)
			}
			if s.attempts > c.cfg.MaxAttempts {
				t.Fatalf("job %q slot %d has %d attempts", j.j.JobID, i, s.attempts)
			}
		}
		inPool := j.poolAt >= 0
		if want := !j.closed && !j.closing && !j.overdue && j.free > 0; inPool != want {
			t.Fatalf("job %q in pool %v, want %v", j.j.JobID, inPool, want)
		}
		if inPool && c.pool[j.j.Build.Arch].jobs[j.poolAt] != j {
			t.Fatalf("job %q pool position is stale", j.j.JobID)
		}
		if j.closed && j.live > 0 {
			t.Fatalf("closed job %q has live leases", j.j.JobID)
		}
	}
	if live != len(c.live) {
		t.Fatalf("%d live leases in slots, %d in the live set", live, len(c.live))
	}
	inHeap, perKey := 0, 0
	for _, l := range c.expiry {
		if !l.ended() && !l.done {
			inHeap++
		}
	}
	for _, k := range c.keys {
		for l := range k.live {
			if l.ended() || l.done || l.l.KeyID != k.enrol.KeyID {
				t.Fatalf("key %.8s lists a lease that is not its live lease", k.enrol.KeyID)
			}
			perKey++
		}
	}
	if inHeap != live || perKey != live {
		t.Fatalf("%d live leases, %d on the expiry heap, %d listed by keys", live, inHeap, perKey)
	}
}

// mustErr asserts that err is target.
func mustErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}
