package coord

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

func TestEnqueue(t *testing.T) {
	f := newFixture(t, Config{}, 1)
	j := f.enqueue(1, "x86_64", 0)
	if j.Wanted != 10 || len(j.JobID) != 32 || !j.Enqueued.Equal(t0) {
		t.Fatalf("job %+v: want wanted 10, a 32-hex id, enqueued at t0", j)
	}
	st, err := f.c.Job(j.JobID)
	if err != nil || len(st.Slots) != 10 || st.Closed {
		t.Fatalf("Job(%q) = %+v, %v: want 10 open slots", j.JobID, st, err)
	}

	// The BuildID is the enqueue key: a second enqueue of an open build is
	// refused, before and after the first is logged.
	b := build(2, "x86_64")
	r, err := f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://example.org/a.src.rpm"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://example.org/a.src.rpm"}, t0)
	mustErr(t, err, ErrDuplicateJob)
	f.commit(r)
	_, err = f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://example.org/b.src.rpm", Wanted: 3}, t0)
	mustErr(t, err, ErrDuplicateJob)
	// The same NVR on another arch, or with another SRPM, is another build.
	other := b
	other.Arch = "aarch64"
	if _, err := f.c.Enqueue(attest.Job{Build: other, SRPMURL: "https://example.org/a.src.rpm"}, t0); err != nil {
		t.Fatalf("enqueue on another arch: %v", err)
	}

	// A released enqueue frees the key.
	b3 := build(3, "x86_64")
	r3, err := f.c.Enqueue(attest.Job{Build: b3, SRPMURL: "https://example.org/c.src.rpm"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	r3.Release()
	if _, err := f.c.Enqueue(attest.Job{Build: b3, SRPMURL: "https://example.org/c.src.rpm"}, t0); err != nil {
		t.Fatalf("enqueue after release: %v", err)
	}
}

func TestEnqueueInvalid(t *testing.T) {
	good := attest.Job{Build: build(1, "x86_64"), SRPMURL: "https://example.org/p.src.rpm", Wanted: 5}
	tests := []struct {
		name string
		mod  func(*attest.Job)
	}{
		{"nvr without release", func(j *attest.Job) { j.Build.NVR = "bash-5.2" }},
		{"nvr with slash", func(j *attest.Job) { j.Build.NVR = "../bash-5.2-1" }},
		{"nvr with newline", func(j *attest.Job) { j.Build.NVR = "bash-5.2-1\n" }},
		{"empty arch", func(j *attest.Job) { j.Build.Arch = "" }},
		{"arch with space", func(j *attest.Job) { j.Build.Arch = "x86 64" }},
		{"short sha256", func(j *attest.Job) { j.Build.SRPMSHA256 = "abcd" }},
		{"uppercase sha256", func(j *attest.Job) { j.Build.SRPMSHA256 = strings.ToUpper(j.Build.SRPMSHA256) }},
		{"ftp url", func(j *attest.Job) { j.SRPMURL = "ftp://example.org/p.src.rpm" }},
		{"url without host", func(j *attest.Job) { j.SRPMURL = "https:///p.src.rpm" }},
		{"url with password", func(j *attest.Job) { j.SRPMURL = "https://u:p@example.org/p.src.rpm" }},
		{"negative wanted", func(j *attest.Job) { j.Wanted = -1 }},
		{"wanted above max", func(j *attest.Job) { j.Wanted = 101 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, Config{}, 1)
			j := good
			tt.mod(&j)
			before := snap(f.c)
			_, err := f.c.Enqueue(j, t0)
			mustErr(t, err, ErrInvalid)
			if !reflect.DeepEqual(before, snap(f.c)) || len(f.c.pending) != 0 || len(f.c.enqs) != 0 {
				t.Fatal("a refused enqueue changed the state")
			}
			if _, err := f.c.Enqueue(good, t0); err != nil {
				t.Fatalf("valid enqueue after a refused one: %v", err)
			}
		})
	}
}

func TestNextLeaseEligibility(t *testing.T) {
	f := newFixture(t, Config{}, 2)
	alice1 := f.enrol("alice", attest.RoleBuilder)
	alice2 := f.enrol("alice", attest.RoleBuilder)
	bob := f.enrol("bob", attest.RoleBuilder)
	carol := f.enrol("carol", attest.RoleBuilder)
	witness := f.enrol("wit", attest.RoleWitness)
	revoked := f.enrol("mallory", attest.RoleBuilder)
	f.apply(authority, attest.Revocation{KeyID: revoked, Operator: "mallory", Reason: "stolen", Until: t0})

	if _, err := f.c.NextLease(bob, []string{"x86_64"}, t0); !errors.Is(err, ErrNoJob) {
		t.Fatalf("empty queue: %v, want ErrNoJob", err)
	}
	j := f.enqueue(1, "x86_64", 2)

	_, err := f.c.NextLease(bob, []string{"aarch64", "s390x"}, t0)
	mustErr(t, err, ErrNoJob) // wrong arch
	_, err = f.c.NextLease(strings.Repeat("ab", 32), []string{"x86_64"}, t0)
	mustErr(t, err, ErrUnknownKey)
	_, err = f.c.NextLease(witness, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNotBuilder)
	_, err = f.c.NextLease(revoked, []string{"x86_64"}, t0)
	mustErr(t, err, ErrRevoked)
	_, err = f.c.NextLease(bob, nil, t0)
	mustErr(t, err, ErrInvalid)

	l := f.lease(alice1, []string{"aarch64", "x86_64"}, t0)
	if l.JobID != j.JobID || l.Operator != "alice" || l.Slot != 0 || l.Attempt != 1 || !l.Expires.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("lease %+v: want job %s, alice, slot 0, attempt 1, 2h TTL", l, j.JobID)
	}
	// The operator's other key is not eligible for the job it holds.
	_, err = f.c.NextLease(alice2, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNoJob)
	f.lease(bob, []string{"x86_64"}, t0)
	// Both slots are taken.
	_, err = f.c.NextLease(carol, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNoJob)
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestReservationHoldsSlotAndOperator(t *testing.T) {
	f := newFixture(t, Config{}, 3)
	a1 := f.enrol("alice", attest.RoleBuilder)
	a2 := f.enrol("alice", attest.RoleBuilder)
	bob := f.enrol("bob", attest.RoleBuilder)
	carol := f.enrol("carol", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 2)

	r1, err := f.c.NextLease(a1, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	// While alice's lease is being logged, her other key gets nothing.
	_, err = f.c.NextLease(a2, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNoJob)
	r2, err := f.c.NextLease(bob, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Payload.(attest.Lease).Slot == r2.Payload.(attest.Lease).Slot {
		t.Fatal("two outstanding reservations share a slot")
	}
	// Both slots reserved: the job is not leasable and not closable.
	_, err = f.c.NextLease(carol, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNoJob)
	if rs := f.c.Closable(t0); len(rs) != 0 {
		t.Fatalf("job with reserved slots is closable: %+v", rs[0].Payload)
	}
	// A failed log releases the reservation.
	logErr := errors.New("disk full")
	err = f.c.Commit(r1, func(*Reservation) (uint64, error) { return 0, logErr })
	mustErr(t, err, logErr)
	l := f.lease(a2, []string{"x86_64"}, t0)
	if l.Slot != r1.Payload.(attest.Lease).Slot {
		t.Fatalf("alice's second key got slot %d, want the released slot %d", l.Slot, r1.Payload.(attest.Lease).Slot)
	}
	f.commit(r2)
	r1.Release() // released twice: no effect
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestExpiryReleasesAtMostTwicePerSlot(t *testing.T) {
	f := newFixture(t, Config{LeaseTTL: time.Hour}, 4)
	ops := []string{"a", "b", "c", "d"}
	keys := make([]string, len(ops))
	for i, op := range ops {
		keys[i] = f.enrol(op, attest.RoleBuilder)
	}
	j := f.enqueue(1, "x86_64", 1)
	now := t0
	for attempt := 1; attempt <= 3; attempt++ {
		l := f.lease(keys[attempt-1], []string{"x86_64"}, now)
		if l.Slot != 0 || l.Attempt != attempt {
			t.Fatalf("lease %d: slot %d attempt %d", attempt, l.Slot, l.Attempt)
		}
		if rs := f.c.Expire(now.Add(59 * time.Minute)); len(rs) != 0 {
			t.Fatalf("lease expired before its TTL: %+v", rs[0].Payload)
		}
		now = now.Add(time.Hour)
		rs := f.c.Expire(now)
		if len(rs) != 1 {
			t.Fatalf("attempt %d: %d expiries at the TTL, want 1", attempt, len(rs))
		}
		le := rs[0].Payload.(attest.LeaseEnd)
		if le.LeaseID != l.LeaseID || le.Reason != attest.LeaseExpired || le.KeyID != l.KeyID {
			t.Fatalf("expiry %+v of lease %+v", le, l)
		}
		// An expiry being logged is not decided twice.
		if again := f.c.Expire(now); len(again) != 0 {
			t.Fatal("Expire returned an outstanding expiry again")
		}
		f.commit(rs[0])
		// The expired lease's operator does not get the job again.
		_, err := f.c.NextLease(keys[attempt-1], []string{"x86_64"}, now)
		mustErr(t, err, ErrNoJob)
	}
	// Three attempts spent: the fourth operator gets nothing, the job closes
	// with no result.
	_, err := f.c.NextLease(keys[3], []string{"x86_64"}, now)
	mustErr(t, err, ErrNoJob)
	rs := f.c.Closable(now)
	if len(rs) != 1 {
		t.Fatalf("%d closable jobs, want the spent one", len(rs))
	}
	jc := rs[0].Payload.(attest.JobClose)
	if jc.JobID != j.JobID || jc.Results != 0 {
		t.Fatalf("close %+v, want job %s with 0 results", jc, j.JobID)
	}
	f.commit(rs[0])
	st, _ := f.c.Job(j.JobID)
	if !st.Closed || st.Slots[0].Attempts != 3 {
		t.Fatalf("job status %+v: want closed after 3 attempts", st)
	}
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestEndLeaseOnlyByHolder(t *testing.T) {
	f := newFixture(t, Config{}, 5)
	a1 := f.enrol("alice", attest.RoleBuilder)
	a2 := f.enrol("alice", attest.RoleBuilder)
	bob := f.enrol("bob", attest.RoleBuilder)
	carol := f.enrol("carol", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 1)
	l := f.lease(a1, []string{"x86_64"}, t0)

	_, err := f.c.EndLease(bob, l.LeaseID, attest.LeaseFailed, "", t0)
	mustErr(t, err, ErrNotLeaseHolder)
	_, err = f.c.EndLease(a2, l.LeaseID, attest.LeaseAbandoned, "", t0) // same operator, other key
	mustErr(t, err, ErrNotLeaseHolder)
	_, err = f.c.EndLease(a1, l.LeaseID, attest.LeaseExpired, "", t0)
	mustErr(t, err, ErrInvalid)
	_, err = f.c.EndLease(a1, "nope", attest.LeaseFailed, "", t0)
	mustErr(t, err, ErrNoLease)
	_, err = f.c.EndLease(a1, l.LeaseID, attest.LeaseFailed, "bad\x00detail", t0)
	mustErr(t, err, ErrInvalid)

	r, err := f.c.EndLease(a1, l.LeaseID, attest.LeaseFailed, "mock exited 1", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	le := r.Payload.(attest.LeaseEnd)
	if le.Reason != attest.LeaseFailed || le.Detail != "mock exited 1" || le.KeyID != a1 {
		t.Fatalf("lease end %+v", le)
	}
	_, err = f.c.EndLease(a1, l.LeaseID, attest.LeaseAbandoned, "", t0)
	mustErr(t, err, ErrBusy)
	f.commit(r)
	_, err = f.c.EndLease(a1, l.LeaseID, attest.LeaseAbandoned, "", t0)
	mustErr(t, err, ErrLeaseEnded)

	l2 := f.lease(bob, []string{"x86_64"}, t0)
	if l2.Slot != 0 || l2.Attempt != 2 {
		t.Fatalf("re-lease %+v: want slot 0 attempt 2", l2)
	}
	r, err = f.c.EndLease(bob, l2.LeaseID, attest.LeaseAbandoned, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	f.commit(r)
	if l3 := f.lease(carol, []string{"x86_64"}, t0); l3.Attempt != 3 {
		t.Fatalf("third lease is attempt %d", l3.Attempt)
	}
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestCloseOnWantedResults(t *testing.T) {
	f := newFixture(t, Config{}, 6)
	var leases []attest.Lease
	j := f.enqueue(1, "x86_64", 3)
	for _, op := range []string{"a", "b", "c"} {
		leases = append(leases, f.lease(f.enrol(op, attest.RoleBuilder), []string{"x86_64"}, t0))
	}
	late := f.enrol("d", attest.RoleBuilder)
	var idx []uint64
	for i, l := range leases {
		if rs := f.c.Closable(t0); len(rs) != 0 {
			t.Fatalf("closable after %d of 3 results", i)
		}
		idx = append(idx, f.deliver(l, t0))
	}
	rs := f.c.Closable(t0)
	if len(rs) != 1 {
		t.Fatalf("%d closable, want 1", len(rs))
	}
	if again := f.c.Closable(t0); len(again) != 0 {
		t.Fatal("an outstanding close was decided twice")
	}
	jc := rs[0].Payload.(attest.JobClose)
	if jc.JobID != j.JobID || jc.Results != 3 || jc.Build != j.Build {
		t.Fatalf("close %+v", jc)
	}
	f.commit(rs[0])
	st, _ := f.c.Job(j.JobID)
	if !st.Closed || len(st.Results) != 3 || len(st.Live) != 0 {
		t.Fatalf("status %+v: want closed with 3 results", st)
	}
	for i, d := range st.Results {
		if d.LeaseID != leases[i].LeaseID || d.Operator != leases[i].Operator || !reflect.DeepEqual(d.Entries, []uint64{idx[i]}) {
			t.Fatalf("delivery %d: %+v", i, d)
		}
	}
	_, err := f.c.NextLease(late, []string{"x86_64"}, t0)
	mustErr(t, err, ErrNoJob)
	mustErr(t, f.c.CheckResult(leases[0].KeyID, j.Build, leases[0].LeaseID, t0), ErrJobClosed)
	// The build may be enqueued again once its job is closed.
	if _, err := f.c.Enqueue(attest.Job{Build: j.Build, SRPMURL: j.SRPMURL}, t0); err != nil {
		t.Fatalf("re-enqueue after close: %v", err)
	}
	if js := f.c.JobsFor(j.Build); len(js) != 1 || !js[0].Closed {
		t.Fatalf("JobsFor = %+v", js)
	}
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestCloseOnSpentLeases(t *testing.T) {
	f := newFixture(t, Config{MaxAttempts: 1}, 7)
	j := f.enqueue(1, "x86_64", 2)
	la := f.lease(f.enrol("a", attest.RoleBuilder), []string{"x86_64"}, t0)
	lb := f.lease(f.enrol("b", attest.RoleBuilder), []string{"x86_64"}, t0)
	f.deliver(la, t0)
	if rs := f.c.Closable(t0); len(rs) != 0 {
		t.Fatal("closable while a lease is live")
	}
	r, err := f.c.EndLease(lb.KeyID, lb.LeaseID, attest.LeaseFailed, "", t0)
	if err != nil {
		t.Fatal(err)
	}
	f.commit(r)
	rs := f.c.Closable(t0)
	if len(rs) != 1 || rs[0].Payload.(attest.JobClose).Results != 1 || rs[0].Payload.(attest.JobClose).JobID != j.JobID {
		t.Fatalf("closable = %d, want job %s with 1 result", len(rs), j.JobID)
	}
	// A released close makes the job closable again.
	rs[0].Release()
	rs = f.c.Closable(t0)
	if len(rs) != 1 {
		t.Fatal("released close not decided again")
	}
	f.commit(rs[0])
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestAlarmPausesLeasing(t *testing.T) {
	f := newFixture(t, Config{}, 8)
	wit := f.enrol("witness-org", attest.RoleWitness)
	admin := f.enrol("fedora", attest.RoleAdmin)
	bob := f.enrol("bob", attest.RoleBuilder)
	carol := f.enrol("carol", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 5)

	pending, err := f.c.NextLease(carol, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	alarm := attest.Alarm{Reason: "outlier rate", Rate: 0.3, Window: 100, TreeSize: 10, At: t0}
	mustErr(t, f.c.Apply(99, Event{Signer: bob, Payload: alarm}), ErrSigner)
	ai := f.apply(wit, alarm)
	if got := f.c.Alarms(); !reflect.DeepEqual(got, []uint64{ai}) {
		t.Fatalf("Alarms() = %v, want [%d]", got, ai)
	}
	_, err = f.c.NextLease(bob, []string{"x86_64"}, t0)
	mustErr(t, err, ErrPaused)
	// A lease decided before the alarm but logged after it is refused.
	err = f.c.Commit(pending, func(r *Reservation) (uint64, error) {
		return f.append(Event{Signer: r.Signer, Payload: r.Payload}), nil
	})
	mustErr(t, err, ErrPaused)
	if st := f.c.Jobs()[0]; len(st.Live) != 0 {
		t.Fatal("a lease was applied while paused")
	}

	mustErr(t, f.c.Apply(100, Event{Signer: bob, Payload: attest.AlarmClear{AlarmIndex: ai, Reason: "x", At: t0}}), ErrSigner)
	mustErr(t, f.c.Apply(100, Event{Signer: admin, Payload: attest.AlarmClear{AlarmIndex: ai + 1, Reason: "x", At: t0}}), ErrNoAlarm)
	f.apply(admin, attest.AlarmClear{AlarmIndex: ai, Reason: "false alarm", At: t0})
	if len(f.c.Alarms()) != 0 {
		t.Fatal("alarm still active after its clearing")
	}
	f.lease(bob, []string{"x86_64"}, t0)
	f.lease(carol, []string{"x86_64"}, t0)
	checkInvariants(t, f.c)
	// The refused lease is in the log: replay refuses it too.
	c := New(Config{Authority: authority})
	var refused int
	for i, e := range f.log {
		if err := c.Apply(uint64(i), e); err != nil {
			if !errors.Is(err, ErrPaused) {
				t.Fatalf("replay entry %d: %v", i, err)
			}
			refused++
		}
	}
	if refused != 1 || !reflect.DeepEqual(snap(c), snap(f.c)) {
		t.Fatalf("replay refused %d entries (want 1) or differs", refused)
	}
}

func TestCheckResult(t *testing.T) {
	f := newFixture(t, Config{LeaseTTL: time.Hour}, 9)
	a := f.enrol("a", attest.RoleBuilder)
	a2 := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	c := f.enrol("c", attest.RoleBuilder)
	d := f.enrol("d", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 4)
	other := f.enqueue(2, "aarch64", 1)
	la := f.lease(a, []string{"x86_64"}, t0)
	lb := f.lease(b, []string{"x86_64"}, t0)
	lc := f.lease(c, []string{"x86_64"}, t0)
	ld := f.lease(d, []string{"x86_64"}, t0)

	// b's lease expires, c abandons, d delivers, then a's key is revoked.
	r, _ := f.c.EndLease(c, lc.LeaseID, attest.LeaseAbandoned, "", t0)
	f.commit(r)
	f.deliver(ld, t0)
	f.commitAll(f.c.Expire(t0.Add(time.Hour)))
	lo := f.lease(d, []string{"aarch64"}, t0.Add(time.Hour))
	tests := []struct {
		name    string
		key     string
		build   attest.BuildID
		lease   string
		now     time.Time
		wantErr error
	}{
		{"unknown key", strings.Repeat("0", 64), j.Build, la.LeaseID, t0, ErrUnknownKey},
		{"no lease", a, j.Build, "0123", t0, ErrNoLease},
		{"other key of the holder's operator", a2, j.Build, la.LeaseID, t0, ErrNotLeaseHolder},
		{"another builder's lease", b, j.Build, la.LeaseID, t0, ErrNotLeaseHolder},
		{"other build", d, j.Build, lo.LeaseID, t0, ErrBuildMismatch},
		{"expired lease", b, j.Build, lb.LeaseID, t0, ErrLeaseExpired},
		{"abandoned lease", c, j.Build, lc.LeaseID, t0, ErrLeaseEnded},
		{"delivered lease", d, j.Build, ld.LeaseID, t0, ErrDelivered},
		{"past expiry", d, other.Build, lo.LeaseID, t0.Add(2 * time.Hour), ErrLeaseExpired},
		{"live lease", d, other.Build, lo.LeaseID, t0.Add(2*time.Hour - time.Second), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := f.c.CheckResult(tt.key, tt.build, tt.lease, tt.now)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckResult = %v, want %v", err, tt.wantErr)
			}
		})
	}
	// A live lease of a revoked key does not take results.
	e := f.enrol("e", attest.RoleBuilder)
	le := f.lease(e, []string{"x86_64"}, t0.Add(time.Hour))
	f.apply(authority, attest.Revocation{KeyID: e, Operator: "e", Reason: "compromised", Until: t0})
	mustErr(t, f.c.CheckResult(e, j.Build, le.LeaseID, t0.Add(time.Hour)), ErrRevoked)
	checkInvariants(t, f.c)
	f.checkReplay()
}

func TestResultCountsOnlyUnderItsLease(t *testing.T) {
	f := newFixture(t, Config{}, 10)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 1)
	l := f.lease(a, []string{"x86_64"}, t0)
	before := snap(f.c)
	// A result from a key without the lease is refused by Apply too, and
	// does not count.
	res := Result{Build: j.Build, LeaseID: l.LeaseID, ResultSet: "s", Part: 0, Parts: 1}
	mustErr(t, f.c.Apply(50, Event{Signer: b, Payload: res}), ErrNotLeaseHolder)
	wrong := res
	wrong.Build = build(9, "x86_64")
	mustErr(t, f.c.Apply(51, Event{Signer: a, Payload: wrong}), ErrBuildMismatch)
	if !reflect.DeepEqual(before, snap(f.c)) {
		t.Fatal("a refused result changed the state")
	}
	if rs := f.c.Closable(t0); len(rs) != 0 {
		t.Fatal("job closable on a refused result")
	}
}

func TestResultParts(t *testing.T) {
	f := newFixture(t, Config{}, 11)
	a := f.enrol("a", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 1)
	l := f.lease(a, []string{"x86_64"}, t0)
	part := func(i int) Result {
		return Result{Build: j.Build, LeaseID: l.LeaseID, ResultSet: "texlive-set", Part: i, Parts: 3}
	}
	r, err := f.c.HoldResult(a, part(2), t0)
	if err != nil {
		t.Fatal(err)
	}
	// A held lease is not expired nor ended while the part is logged.
	if rs := f.c.Expire(t0.Add(3 * time.Hour)); len(rs) != 0 {
		t.Fatal("a lease with a result being logged was expired")
	}
	_, err = f.c.EndLease(a, l.LeaseID, attest.LeaseAbandoned, "", t0)
	mustErr(t, err, ErrBusy)
	f.commit(r)
	f.commit(mustHold(t, f.c, a, part(0)))
	if rs := f.c.Closable(t0); len(rs) != 0 {
		t.Fatal("closable with 2 of 3 parts in")
	}
	_, err = f.c.HoldResult(a, part(0), t0)
	mustErr(t, err, ErrDuplicate)
	bad := part(1)
	bad.ResultSet = "other-set"
	_, err = f.c.HoldResult(a, bad, t0)
	mustErr(t, err, ErrConflict)
	bad = part(1)
	bad.Parts = 4
	_, err = f.c.HoldResult(a, bad, t0)
	mustErr(t, err, ErrConflict)
	bad = part(3)
	_, err = f.c.HoldResult(a, bad, t0)
	mustErr(t, err, ErrInvalid)
	p1 := f.commit(mustHold(t, f.c, a, part(1)))
	rs := f.c.Closable(t0)
	if len(rs) != 1 || rs[0].Payload.(attest.JobClose).Results != 1 {
		t.Fatal("job not closable with all parts in")
	}
	st, _ := f.c.Job(j.JobID)
	if d := st.Results[0]; d.ResultSet != "texlive-set" || len(d.Entries) != 3 || d.Entries[2] != p1 {
		t.Fatalf("delivery %+v", d)
	}
	f.commit(rs[0])
	checkInvariants(t, f.c)
	f.checkReplay()
}

func mustHold(t *testing.T, c *Coordinator, keyID string, r Result) *Reservation {
	t.Helper()
	res, err := c.HoldResult(keyID, r, t0)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestExpireRevokedHolder(t *testing.T) {
	f := newFixture(t, Config{}, 12)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 1)
	l := f.lease(a, []string{"x86_64"}, t0)
	// An early expiry is refused while the holder is trusted.
	early := attest.LeaseEnd{LeaseID: l.LeaseID, JobID: l.JobID, KeyID: a, Reason: attest.LeaseExpired, At: t0.Add(time.Minute)}
	mustErr(t, f.c.Apply(77, Event{Signer: authority, Payload: early}), ErrConflict)
	f.apply(authority, attest.Revocation{KeyID: a, Operator: "a", Reason: "compromised", Until: t0})
	rs := f.c.Expire(t0.Add(time.Minute))
	if len(rs) != 1 {
		t.Fatalf("%d expiries, want the revoked holder's lease", len(rs))
	}
	if le := rs[0].Payload.(attest.LeaseEnd); le.LeaseID != l.LeaseID || le.Detail != "holder key revoked" {
		t.Fatalf("expiry %+v", le)
	}
	f.commit(rs[0])
	if l2 := f.lease(b, []string{"x86_64"}, t0.Add(time.Minute)); l2.Attempt != 2 {
		t.Fatalf("re-lease attempt %d, want 2", l2.Attempt)
	}
	k, _ := f.c.Key(a)
	if !k.Revoked || k.Revocation.Reason != "compromised" || k.RevokedIndex == 0 {
		t.Fatalf("key status %+v", k)
	}
	if op, err := f.c.Operator(a); op != "a" || err != nil {
		t.Fatalf("Operator = %q, %v", op, err)
	}
	_, err := f.c.Operator("nobody")
	mustErr(t, err, ErrUnknownKey)
	f.checkReplay()
}

func TestApplyRefusesBadEntries(t *testing.T) {
	f := newFixture(t, Config{LeaseTTL: time.Hour}, 13)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 2)
	l := f.lease(a, []string{"x86_64"}, t0)
	enA, _ := f.c.Key(a)

	lease := func(mod func(*attest.Lease)) attest.Lease {
		n := attest.Lease{LeaseID: "fresh", JobID: j.JobID, Build: j.Build, SRPMURL: j.SRPMURL, KeyID: b, Operator: "b", Slot: 1, Attempt: 1, Issued: t0, Expires: t0.Add(time.Hour)}
		mod(&n)
		return n
	}
	foreign := newEnrolment(t, "z", attest.RoleBuilder)
	foreign.KeyID = strings.Repeat("1", 64)
	tests := []struct {
		name    string
		signer  string
		payload any
		want    error
	}{
		{"lease not by the coordinator", b, lease(func(*attest.Lease) {}), ErrSigner},
		{"lease for unknown job", authority, lease(func(n *attest.Lease) { n.JobID = "nojob" }), ErrUnknownJob},
		{"lease with another build", authority, lease(func(n *attest.Lease) { n.Build = build(5, "x86_64") }), ErrConflict},
		{"lease of a taken slot", authority, lease(func(n *attest.Lease) { n.Slot = l.Slot }), ErrConflict},
		{"lease out of attempt order", authority, lease(func(n *attest.Lease) { n.Attempt = 2 }), ErrConflict},
		{"second lease for an operator", authority, lease(func(n *attest.Lease) { n.KeyID, n.Operator = a, "a" }), ErrConflict},
		{"lease with a wrong operator", authority, lease(func(n *attest.Lease) { n.Operator = "a" }), ErrConflict},
		{"lease slot out of range", authority, lease(func(n *attest.Lease) { n.Slot = 2 }), ErrInvalid},
		{"lease expiring before issue", authority, lease(func(n *attest.Lease) { n.Expires = t0 }), ErrInvalid},
		{"lease reusing an id", authority, lease(func(n *attest.Lease) { n.LeaseID = l.LeaseID }), ErrDuplicate},
		{"lease to unknown key", authority, lease(func(n *attest.Lease) { n.KeyID = strings.Repeat("2", 64) }), ErrUnknownKey},
		{"lease end by another key", authority, attest.LeaseEnd{LeaseID: l.LeaseID, JobID: j.JobID, KeyID: b, Reason: attest.LeaseFailed, At: t0}, ErrNotLeaseHolder},
		{"lease end with a bad reason", authority, attest.LeaseEnd{LeaseID: l.LeaseID, JobID: j.JobID, KeyID: a, Reason: "bored", At: t0}, ErrInvalid},
		{"early expiry", authority, attest.LeaseEnd{LeaseID: l.LeaseID, JobID: j.JobID, KeyID: a, Reason: attest.LeaseExpired, At: t0}, ErrConflict},
		{"close of an open job", authority, attest.JobClose{JobID: j.JobID, Build: j.Build, Results: 0, At: t0}, ErrConflict},
		{"close of an unknown job", authority, attest.JobClose{JobID: "x", Build: j.Build, At: t0}, ErrUnknownJob},
		{"job for an open build", authority, attest.Job{JobID: "j2", Build: j.Build, SRPMURL: j.SRPMURL, Wanted: 1, Enqueued: t0, Deadline: j.Deadline}, ErrDuplicateJob},
		{"job reusing an id", authority, attest.Job{JobID: j.JobID, Build: build(3, "x86_64"), SRPMURL: j.SRPMURL, Wanted: 1, Enqueued: t0, Deadline: j.Deadline}, ErrDuplicate},
		{"job with zero wanted", authority, attest.Job{JobID: "j3", Build: build(3, "x86_64"), SRPMURL: j.SRPMURL, Wanted: 0, Enqueued: t0, Deadline: j.Deadline}, ErrInvalid},
		{"job without a deadline", authority, attest.Job{JobID: "j4", Build: build(3, "x86_64"), SRPMURL: j.SRPMURL, Wanted: 1, Enqueued: t0}, ErrInvalid},
		{"job with its deadline at its enqueue", authority, attest.Job{JobID: "j4", Build: build(3, "x86_64"), SRPMURL: j.SRPMURL, Wanted: 1, Enqueued: t0, Deadline: t0}, ErrInvalid},
		{"job with its deadline beyond MaxJobTTL", authority, attest.Job{JobID: "j4", Build: build(3, "x86_64"), SRPMURL: j.SRPMURL, Wanted: 1, Enqueued: t0, Deadline: t0.Add(MaxJobTTL + time.Second)}, ErrInvalid},
		{"lease at the job's deadline", authority, lease(func(n *attest.Lease) { n.Issued, n.Expires = j.Deadline, j.Deadline.Add(time.Hour) }), ErrJobExpired},
		{"re-enrolment", authority, enA.Enrolment, ErrDuplicate},
		{"enrolment with a foreign key id", authority, foreign, ErrInvalid},
		{"enrolment with a bad role", authority, func() attest.Enrolment { e := newEnrolment(t, "z", "boss"); return e }(), ErrInvalid},
		{"revocation of an unknown key", authority, attest.Revocation{KeyID: strings.Repeat("3", 64), Operator: "a", Reason: "r", Until: t0}, ErrUnknownKey},
		{"revocation naming another operator", authority, attest.Revocation{KeyID: a, Operator: "b", Reason: "r", Until: t0}, ErrConflict},
		{"clear of no alarm", authority, attest.AlarmClear{AlarmIndex: 3, At: t0}, ErrNoAlarm},
		{"nil pointer", authority, (*attest.Lease)(nil), ErrUnsupported},
		{"unknown payload", authority, "hello", ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(f.c)
			err := f.c.Apply(1000, Event{Signer: tt.signer, Payload: tt.payload})
			mustErr(t, err, tt.want)
			if !reflect.DeepEqual(before, snap(f.c)) {
				t.Fatal("a refused entry changed the state")
			}
			checkInvariants(t, f.c)
		})
	}
	// Pointers to payloads are applied like values; verdicts are ignored.
	if err := f.c.Apply(1001, Event{Signer: authority, Payload: &attest.Verdict{}}); err != nil {
		t.Fatal(err)
	}
	n := lease(func(*attest.Lease) {})
	if err := f.c.Apply(1002, Event{Signer: authority, Payload: &n}); err != nil {
		t.Fatalf("apply *attest.Lease: %v", err)
	}
}

func TestReplayGivesSameState(t *testing.T) {
	f := newFixture(t, Config{LeaseTTL: time.Hour}, 14)
	wit := f.enrol("w", attest.RoleWitness)
	admin := f.enrol("adm", attest.RoleAdmin)
	var keys []string
	for i := range 12 {
		keys = append(keys, f.enrol(string(rune('a'+i%6)), attest.RoleBuilder))
	}
	for n := range 8 {
		arch := []string{"x86_64", "aarch64"}[n%2]
		f.enqueue(n, arch, 3)
	}
	now := t0
	for round := range 6 {
		for i, k := range keys {
			r, err := f.c.NextLease(k, []string{"x86_64", "aarch64", "noarch"}, now)
			if errors.Is(err, ErrNoJob) || errors.Is(err, ErrRevoked) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			f.commit(r)
			l := r.Payload.(attest.Lease)
			switch (i + round) % 4 {
			case 0:
				f.deliver(l, now)
			case 1:
				r, err := f.c.EndLease(k, l.LeaseID, attest.LeaseFailed, "build failed", now)
				if err != nil {
					t.Fatal(err)
				}
				f.commit(r)
			}
			// Others are left to expire.
		}
		if round == 2 {
			ai := f.apply(wit, attest.Alarm{Reason: "r", At: now})
			f.apply(admin, attest.AlarmClear{AlarmIndex: ai, Reason: "ok", At: now})
			f.apply(authority, attest.Revocation{KeyID: keys[3], Operator: "d", Reason: "lost", Until: now})
		}
		now = now.Add(time.Hour)
		f.commitAll(f.c.Expire(now))
		f.commitAll(f.c.Closable(now))
		checkInvariants(t, f.c)
	}
	closed := 0
	for _, st := range f.c.Jobs() {
		if st.Closed {
			closed++
		}
	}
	if closed == 0 || len(f.log) < 50 {
		t.Fatalf("scenario too small: %d closed jobs, %d entries", closed, len(f.log))
	}
	f.checkReplay()
	// Replaying twice gives the same state as well.
	if !reflect.DeepEqual(snap(f.replay()), snap(f.replay())) {
		t.Fatal("two replays differ")
	}
}

func TestSeededRandomnessIsReproducible(t *testing.T) {
	run := func(seed uint64) []string {
		f := newFixture(t, Config{}, seed)
		k := f.enrol("a", attest.RoleBuilder)
		for n := range 50 {
			f.enqueue(n, "x86_64", 1)
		}
		var got []string
		for range 20 {
			got = append(got, f.lease(k, []string{"x86_64"}, t0).Build.NVR)
		}
		return got
	}
	a, b, c := run(1), run(1), run(2)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave different choices")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds gave the same 20 choices out of 50 jobs")
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("entropy gone") }

func TestRandomnessFailure(t *testing.T) {
	f := newFixture(t, Config{}, 15)
	k := f.enrol("a", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 1)
	f.c.cfg.Rand = failReader{}
	before := snap(f.c)
	if _, err := f.c.NextLease(k, []string{"x86_64"}, t0); err == nil || !strings.Contains(err.Error(), "entropy gone") {
		t.Fatalf("NextLease with failing randomness: %v", err)
	}
	if _, err := f.c.Enqueue(attest.Job{Build: build(2, "x86_64"), SRPMURL: "https://e.org/x"}, t0); err == nil {
		t.Fatal("Enqueue with failing randomness succeeded")
	}
	if !reflect.DeepEqual(before, snap(f.c)) || len(f.c.pending) != 0 {
		t.Fatal("failed decisions changed the state")
	}
}

// waitFlag spins until flag, read under the coordinator's lock, is true.
func waitFlag(c *Coordinator, flag func() bool) {
	for {
		c.mu.Lock()
		ok := flag()
		c.mu.Unlock()
		if ok {
			return
		}
		runtime.Gosched()
	}
}

func TestRevokeDrainsOutstanding(t *testing.T) {
	f := newFixture(t, Config{}, 16)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 2)
	r, err := f.c.NextLease(a, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		r   *Reservation
		err error
	}
	done := make(chan result, 1)
	go func() {
		rv, err := f.c.Revoke(context.Background(), a, "key lost", t0)
		done <- result{rv, err}
	}()
	waitFlag(f.c, func() bool { return f.c.keys[a].revoking })
	// While the revocation waits for a's outstanding lease, a gets nothing
	// new and the revocation is not decided.
	_, err = f.c.NextLease(a, []string{"x86_64"}, t0)
	mustErr(t, err, ErrRevoked)
	select {
	case res := <-done:
		t.Fatalf("Revoke returned with a lease outstanding: %+v", res)
	default:
	}
	l := r.Payload.(attest.Lease)
	f.commit(r)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	rv := res.r.Payload.(attest.Revocation)
	if rv.KeyID != a || rv.Operator != "a" || rv.Reason != "key lost" || res.r.PayloadType() != attest.PayloadRevocation {
		t.Fatalf("revocation %+v", rv)
	}
	_, err = f.c.Revoke(context.Background(), a, "again", t0)
	mustErr(t, err, ErrBusy)
	f.commit(res.r)
	mustErr(t, f.c.CheckResult(a, l.Build, l.LeaseID, t0), ErrRevoked)
	if rs := f.c.Expire(t0); len(rs) != 1 || rs[0].Payload.(attest.LeaseEnd).LeaseID != l.LeaseID {
		t.Fatal("the revoked key's live lease was not expired")
	}

	// A revocation given up (context cancelled) leaves the key usable.
	lb := f.lease(b, []string{"x86_64"}, t0)
	h, err := f.c.HoldResult(b, Result{Build: lb.Build, LeaseID: lb.LeaseID, ResultSet: "s", Parts: 1}, t0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		waitFlag(f.c, func() bool { return f.c.keys[b].revoking })
		cancel()
	}()
	_, err = f.c.Revoke(ctx, b, "r", t0)
	mustErr(t, err, context.Canceled)
	f.commit(h)
	if k, _ := f.c.Key(b); k.Revoked {
		t.Fatal("a cancelled revocation revoked the key")
	}
	f.checkReplay()
}

func TestHoldAlarmDrainsLeases(t *testing.T) {
	f := newFixture(t, Config{}, 17)
	wit := f.enrol("w", attest.RoleWitness)
	a := f.enrol("a", attest.RoleBuilder)
	b := f.enrol("b", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 2)
	r, err := f.c.NextLease(a, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.c.HoldAlarm(context.Background(), a, attest.Alarm{Reason: "x", At: t0})
	mustErr(t, err, ErrSigner)
	done := make(chan *Reservation, 1)
	go func() {
		h, err := f.c.HoldAlarm(context.Background(), wit, attest.Alarm{Reason: "outliers", At: t0})
		if err != nil {
			t.Error(err)
		}
		done <- h
	}()
	waitFlag(f.c, func() bool { return f.c.pausing > 0 })
	_, err = f.c.NextLease(b, []string{"x86_64"}, t0)
	mustErr(t, err, ErrPaused)
	select {
	case <-done:
		t.Fatal("HoldAlarm returned with a lease outstanding")
	default:
	}
	f.commit(r) // the outstanding lease is logged before the alarm
	h := <-done
	f.commit(h)
	if len(f.c.Alarms()) != 1 {
		t.Fatal("alarm not active")
	}
	_, err = f.c.NextLease(b, []string{"x86_64"}, t0)
	mustErr(t, err, ErrPaused)
	f.checkReplay()
}

func TestEnrol(t *testing.T) {
	f := newFixture(t, Config{}, 18)
	en := newEnrolment(t, "alice", attest.RoleBuilder)
	en.Since = time.Time{}
	r, err := f.c.Enrol(en, t0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.c.Enrol(en, t0)
	mustErr(t, err, ErrDuplicate)
	f.commit(r)
	k, err := f.c.Key(en.KeyID)
	if err != nil || !k.Enrolment.Since.Equal(t0) || k.Enrolment.Operator != "alice" {
		t.Fatalf("Key = %+v, %v", k, err)
	}
	_, err = f.c.Enrol(en, t0)
	mustErr(t, err, ErrDuplicate)
	rv, err := f.c.Revoke(context.Background(), en.KeyID, "gone", t0)
	if err != nil {
		t.Fatal(err)
	}
	f.commit(rv)
	_, err = f.c.Enrol(en, t0)
	mustErr(t, err, ErrRevoked)
	bad := newEnrolment(t, "", attest.RoleBuilder)
	_, err = f.c.Enrol(bad, t0)
	mustErr(t, err, ErrInvalid)
	if ks := f.c.Keys(); len(ks) != 1 {
		t.Fatalf("%d keys, want 1", len(ks))
	}
}

func TestStatsAndLogging(t *testing.T) {
	var buf bytes.Buffer
	f := newFixture(t, Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))}, 19)
	a := f.enrol("a", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 1)
	f.enqueue(2, "x86_64", 1)
	f.lease(a, []string{"x86_64"}, t0)
	r, err := f.c.NextLease(a, []string{"x86_64"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{OpenJobs: 2, LeasableJobs: 0, LiveLeases: 1, Outstanding: 1}
	if got := f.c.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	r.Release()
	if got := f.c.Stats(); got.LeasableJobs != 1 || got.Outstanding != 0 {
		t.Fatalf("Stats after release = %+v", got)
	}
	mustErr(t, f.c.Apply(99, Event{Signer: authority, Payload: attest.JobClose{JobID: "nope", At: t0}}), ErrUnknownJob)
	if !strings.Contains(buf.String(), "entry refused") || !strings.Contains(buf.String(), "index=99") {
		t.Fatalf("refusal not logged: %q", buf.String())
	}
}

func TestJobStatusJSONRoundTrip(t *testing.T) {
	f := newFixture(t, Config{}, 20)
	a := f.enrol("a", attest.RoleBuilder)
	f.enqueue(1, "x86_64", 2)
	f.enqueue(2, "x86_64", 1)
	l := f.lease(a, []string{"x86_64"}, t0)
	f.deliver(l, t0)
	f.commitAll(f.c.Closable(t0))
	jobs := f.c.Jobs()
	data, err := json.Marshal(jobs)
	if err != nil {
		t.Fatal(err)
	}
	var back []JobStatus
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, jobs) {
		t.Fatalf("JSON round trip differs:\n%s", data)
	}
	if !strings.Contains(string(data), `"result_set":"set-`) || !strings.Contains(string(data), `"lease_id":"`+l.LeaseID) {
		t.Fatalf("unexpected JSON: %s", data)
	}
}
