package coord

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// TestFollowAppliesBrokenRules: each coordinator entry that breaks one of
// the coordinator's rules is refused by Apply (state unchanged) and, by
// Follow, applied as logged with the rule returned (coordinator.md
// §Auditing), so the entry after it that builds on it fits.
func TestFollowAppliesBrokenRules(t *testing.T) {
	type scene struct {
		f    *fixture
		j    attest.Job
		a, b string // builder keys of operators a and b
		la   attest.Lease
	}
	setup := func(t *testing.T) *scene {
		f := newFixture(t, Config{JobTTL: 24 * time.Hour, LeaseTTL: time.Hour}, 7)
		s := &scene{f: f, a: f.enrol("a", attest.RoleBuilder), b: f.enrol("b", attest.RoleBuilder)}
		s.j = f.enqueue(1, "x86_64", 2)
		s.la = f.lease(s.a, []string{"x86_64"}, t0)
		return s
	}
	lease := func(s *scene, id, key, op string, slot, attempt int, issued time.Time) attest.Lease {
		return attest.Lease{LeaseID: id, JobID: s.j.JobID, Build: s.j.Build, SRPMURL: s.j.SRPMURL, KeyID: key, Operator: op, Slot: slot, Attempt: attempt, Issued: issued, Expires: issued.Add(time.Hour)}
	}
	cases := []struct {
		name string
		// entry is the entry that breaks a rule; after is an entry that
		// fits only once entry is applied.
		entry func(s *scene) any
		after func(s *scene) Event
		want  error
		check func(t *testing.T, s *scene)
	}{
		{
			name: "early expiry, then the slot re-leased",
			entry: func(s *scene) any {
				return attest.LeaseEnd{LeaseID: s.la.LeaseID, JobID: s.j.JobID, KeyID: s.a, Reason: attest.LeaseExpired, At: t0.Add(time.Minute)}
			},
			after: func(s *scene) Event {
				return Event{Signer: authority, Payload: lease(s, "friend", s.b, "b", s.la.Slot, 2, t0.Add(2*time.Minute))}
			},
			want: ErrConflict,
			check: func(t *testing.T, s *scene) {
				st, _ := s.f.c.Job(s.j.JobID)
				if st.Slots[s.la.Slot].Live != "friend" || st.Slots[s.la.Slot].Attempts != 2 {
					t.Fatalf("slot %+v, want the friend's lease as attempt 2", st.Slots[s.la.Slot])
				}
			},
		},
		{
			name: "close before the job may close",
			entry: func(s *scene) any {
				return attest.JobClose{JobID: s.j.JobID, Build: s.j.Build, Results: 0, At: t0.Add(time.Minute)}
			},
			want: ErrConflict,
			check: func(t *testing.T, s *scene) {
				if st, _ := s.f.c.Job(s.j.JobID); !st.Closed {
					t.Fatal("job not closed as logged")
				}
			},
		},
		{
			name:  "lease at the deadline",
			entry: func(s *scene) any { return lease(s, "late", s.b, "b", 1, 1, s.j.Deadline) },
			after: func(s *scene) Event {
				return Event{Signer: s.b, Payload: Result{Build: s.j.Build, LeaseID: "late", ResultSet: "set", Parts: 1}}
			},
			want: ErrJobExpired,
		},
		{
			name:  "second lease of the job to one operator",
			entry: func(s *scene) any { return lease(s, "again", s.a, "a", 1, 1, t0.Add(time.Minute)) },
			after: func(s *scene) Event {
				return Event{Signer: s.a, Payload: Result{Build: s.j.Build, LeaseID: "again", ResultSet: "set", Parts: 1}}
			},
			want: ErrConflict,
		},
		{
			name:  "attempt beyond MaxAttempts",
			entry: func(s *scene) any { return lease(s, "fourth", s.b, "b", 1, DefaultMaxAttempts+1, t0.Add(time.Minute)) },
			want:  ErrInvalid,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := setup(t)
			entry := Event{Signer: authority, Payload: tc.entry(s)}
			before := snap(s.f.c)
			mustErr(t, s.f.c.Apply(100, entry), tc.want)
			if !reflect.DeepEqual(before, snap(s.f.c)) {
				t.Fatal("Apply changed the state on a refused entry")
			}
			viol, err := s.f.c.Follow(100, entry)
			if err != nil {
				t.Fatalf("Follow refused the entry: %v", err)
			}
			mustErr(t, viol, tc.want)
			if reflect.DeepEqual(before, snap(s.f.c)) {
				t.Fatal("Follow did not apply the entry")
			}
			if tc.after != nil {
				if viol, err := s.f.c.Follow(101, tc.after(s)); viol != nil || err != nil {
					t.Fatalf("the entry after it: violation %v, error %v", viol, err)
				}
			}
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// TestFollowRefusesWhatDoesNotFit: entries that do not fit the state are
// refused by Follow as by Apply, with no violation and no change.
func TestFollowRefusesWhatDoesNotFit(t *testing.T) {
	f := newFixture(t, Config{}, 8)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 1)
	la := f.lease(a, []string{"x86_64"}, t0)
	cases := []struct {
		name    string
		payload any
		want    error
	}{
		{"slot taken", attest.Lease{LeaseID: "taken", JobID: j.JobID, Build: j.Build, SRPMURL: j.SRPMURL, KeyID: b, Operator: "b", Slot: la.Slot, Attempt: 2, Issued: t0, Expires: t0.Add(time.Hour)}, ErrConflict},
		{"unknown job", attest.Lease{LeaseID: "nojob", JobID: "nojob", Build: j.Build, SRPMURL: j.SRPMURL, KeyID: b, Operator: "b", Slot: 0, Attempt: 1, Issued: t0, Expires: t0.Add(time.Hour)}, ErrUnknownJob},
		{"end of no lease", attest.LeaseEnd{LeaseID: "none", JobID: j.JobID, KeyID: b, Reason: attest.LeaseExpired, At: t0}, ErrNoLease},
		{"result under another key's lease", Result{Build: j.Build, LeaseID: la.LeaseID, ResultSet: "set", Parts: 1}, ErrNotLeaseHolder},
	}
	for _, tc := range cases {
		signer := authority
		if _, ok := tc.payload.(Result); ok {
			signer = b
		}
		before := snap(f.c)
		viol, err := f.c.Follow(100, Event{Signer: signer, Payload: tc.payload})
		mustErr(t, err, tc.want)
		if viol != nil || !reflect.DeepEqual(before, snap(f.c)) {
			t.Fatalf("%s: violation %v, state changed %v", tc.name, viol, !reflect.DeepEqual(before, snap(f.c)))
		}
	}
	// A clean log followed gives no violation and the state Apply gives.
	c := New(f.cfg)
	for i, e := range f.log {
		if viol, err := c.Follow(uint64(i), e); viol != nil || err != nil {
			t.Fatalf("entry %d: violation %v, error %v", i, viol, err)
		}
	}
	if got, want := snap(c), snap(f.c); !reflect.DeepEqual(got, want) || !slices.Equal(got.Alarms, want.Alarms) {
		t.Fatalf("followed state %+v, applied %+v", got, want)
	}
}

// FuzzFollow: a log the coordinator built (a FuzzApply program) is
// followed without a violation into the state Apply gives; then mutated
// copies of its entries (leases out of order, past the deadline, to other
// keys; early expiries and closes; wrong counts) are followed: an entry
// Follow refuses changes nothing, one it applies never panics the
// coordinator, and the entries after it are still followed.
func FuzzFollow(f *testing.F) {
	ens := fuzzKeys(f)
	f.Add([]byte{0, 0, 1, 0, 1, 1, 2, 0, 5, 0}, []byte{8, 2, 9, 6, 8, 3})
	f.Add([]byte{0, 7, 0, 9, 1, 2, 1, 3, 4, 200, 5, 0, 1, 4}, []byte{8, 1, 8, 13, 9, 0, 8, 27})
	f.Fuzz(func(t *testing.T, prog, muts []byte) {
		fx := runProgram(t, ens, prog)
		c := New(fx.cfg)
		for i, e := range fx.log {
			if viol, err := c.Follow(uint64(i), e); viol != nil || err != nil {
				t.Fatalf("entry %d of a log Apply accepted: violation %v, error %v", i, viol, err)
			}
		}
		if !reflect.DeepEqual(snap(c), snap(fx.c)) {
			t.Fatal("followed state differs from the applied state")
		}
		keys := make([]string, len(ens))
		for i, en := range ens {
			keys[i] = en.KeyID
		}
		if len(muts) > 200 {
			muts = muts[:200]
		}
		for step := 0; step+1 < len(muts); step += 2 {
			op, arg := 8+muts[step]%2, muts[step+1]
			e := fx.log[int(arg)%len(fx.log)]
			e.Payload = mutate(e.Payload, op, arg, keys)
			before := snap(c)
			if _, err := c.Follow(uint64(len(fx.log)+step), e); err != nil && !reflect.DeepEqual(before, snap(c)) {
				t.Fatalf("step %d: refused %T (%v) changed the state", step, e.Payload, err)
			}
		}
	})
}
