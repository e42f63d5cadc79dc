package coord

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// TestEnqueueSetsDeadline: a job's logged deadline is its enqueue time plus
// Config.JobTTL: 7 days by default, cut to MaxJobTTL.
func TestEnqueueSetsDeadline(t *testing.T) {
	for _, tc := range []struct {
		ttl, want time.Duration
	}{{0, 7 * 24 * time.Hour}, {time.Hour, time.Hour}, {2 * MaxJobTTL, MaxJobTTL}} {
		f := newFixture(t, Config{JobTTL: tc.ttl}, 1)
		j := f.enqueue(1, "x86_64", 1)
		if !j.Enqueued.Equal(t0) || !j.Deadline.Equal(t0.Add(tc.want)) {
			t.Errorf("JobTTL %s: enqueued %s, deadline %s, want %s", tc.ttl, j.Enqueued, j.Deadline, t0.Add(tc.want))
		}
		st, _ := f.c.Job(j.JobID)
		if !st.Job.Deadline.Equal(j.Deadline) {
			t.Errorf("status deadline %s, logged %s", st.Job.Deadline, j.Deadline)
		}
		f.checkReplay()
	}
}

// TestNoLeaseAtDeadline: a job at or past its deadline gets no lease, and
// NextLease chooses among the other jobs only.
func TestNoLeaseAtDeadline(t *testing.T) {
	f := newFixture(t, Config{JobTTL: 24 * time.Hour}, 2)
	var keys []string
	for _, op := range []string{"a", "b", "c", "d", "e", "f"} {
		keys = append(keys, f.enrol(op, attest.RoleBuilder))
	}
	early := f.enqueue(1, "x86_64", 10)
	// One second before its deadline the job is leasable.
	if l := f.lease(keys[0], []string{"x86_64"}, early.Deadline.Add(-time.Second)); l.JobID != early.JobID {
		t.Fatalf("lease for %s, want the only job", l.JobID)
	}
	// A second job enqueued 12 hours after the first: its deadline is 12
	// hours later.
	b := build(2, "x86_64")
	r, err := f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://src.example.org/" + b.NVR + ".src.rpm", Wanted: 10}, t0.Add(12*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f.commit(r)
	late := r.Payload.(attest.Job)

	// At the deadline and after it, every lease is for the late job,
	// though the early one has 9 free slots.
	for i, k := range keys[1:] {
		at := early.Deadline.Add(time.Duration(i) * time.Hour)
		l := f.lease(k, []string{"x86_64"}, at)
		if l.JobID != late.JobID {
			t.Fatalf("lease at %s for job %s, past its deadline %s", at, l.JobID, early.Deadline)
		}
	}
	if st := f.c.Stats(); st.LeasableJobs != 1 || st.OpenJobs != 2 {
		t.Fatalf("stats %+v, want 2 open jobs, 1 leasable", st)
	}
	// Past the late job's deadline too, nothing is leasable.
	k := f.enrol("g", attest.RoleBuilder)
	_, err = f.c.NextLease(k, []string{"x86_64"}, late.Deadline)
	mustErr(t, err, ErrNoJob)
	checkInvariants(t, f.c)
	f.checkReplay()
}

// TestDeadlineCloseWaitsForLiveLease: a job whose deadline passes with a
// live lease closes only once that lease has ended (expired, or delivered),
// with the results counted by then; later results are refused with
// ErrJobClosed.
func TestDeadlineCloseWaitsForLiveLease(t *testing.T) {
	for _, delivers := range []bool{false, true} {
		name := map[bool]string{false: "lease expires", true: "lease delivers"}[delivers]
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Config{JobTTL: 24 * time.Hour, LeaseTTL: 2 * time.Hour}, 3)
			a := f.enrol("a", attest.RoleBuilder)
			b := f.enrol("b", attest.RoleBuilder)
			c := f.enrol("c", attest.RoleBuilder)
			j := f.enqueue(1, "x86_64", 3)
			la := f.lease(a, []string{"x86_64"}, t0)
			f.deliver(la, t0.Add(time.Hour))
			// b's lease runs until an hour after the deadline.
			lb := f.lease(b, []string{"x86_64"}, j.Deadline.Add(-time.Hour))

			at := j.Deadline
			if rs := f.c.Closable(at); len(rs) != 0 {
				t.Fatalf("closable at the deadline with a live lease: %+v", rs[0].Payload)
			}
			_, err := f.c.NextLease(c, []string{"x86_64"}, at)
			mustErr(t, err, ErrNoJob)
			// A close decided by hand is refused while the lease is live.
			early := attest.JobClose{JobID: j.JobID, Build: j.Build, Results: 1, At: at}
			before := snap(f.c)
			mustErr(t, f.c.Apply(999, Event{Signer: authority, Payload: early}), ErrConflict)
			if !reflect.DeepEqual(before, snap(f.c)) {
				t.Fatal("a refused close changed the state")
			}

			want := 1
			if delivers {
				// A result after the deadline under a live lease counts.
				f.deliver(lb, j.Deadline.Add(30*time.Minute))
				want = 2
				at = j.Deadline.Add(30 * time.Minute)
			} else {
				if rs := f.c.Closable(lb.Expires.Add(-time.Second)); len(rs) != 0 {
					t.Fatal("closable before the last lease expired")
				}
				at = lb.Expires
				rs := f.c.Expire(at)
				if len(rs) != 1 || rs[0].Payload.(attest.LeaseEnd).LeaseID != lb.LeaseID {
					t.Fatalf("%d expiries, want b's lease", len(rs))
				}
				f.commitAll(rs)
			}
			rs := f.c.Closable(at)
			if len(rs) != 1 {
				t.Fatalf("%d closes once the last lease ended, want 1", len(rs))
			}
			jc := rs[0].Payload.(attest.JobClose)
			if jc.JobID != j.JobID || jc.Results != want || !jc.At.Equal(at) {
				t.Fatalf("close %+v, want %d results at %s", jc, want, at)
			}
			f.commit(rs[0])
			st, _ := f.c.Job(j.JobID)
			if !st.Closed || len(st.Results) != want || st.Close.Results != want {
				t.Fatalf("job after close: closed %v, %d results", st.Closed, len(st.Results))
			}
			// Results for the closed job are refused, live or replayed.
			_, err = f.c.HoldResult(b, Result{Build: lb.Build, LeaseID: lb.LeaseID, ResultSet: "late", Parts: 1}, at)
			mustErr(t, err, ErrJobClosed)
			before = snap(f.c)
			mustErr(t, f.c.Apply(1000, Event{Signer: a, Payload: Result{Build: la.Build, LeaseID: la.LeaseID, ResultSet: "late", Parts: 1}}), ErrJobClosed)
			if !reflect.DeepEqual(before, snap(f.c)) {
				t.Fatal("a refused result changed the state")
			}
			// The build may be enqueued again: a new job.
			if _, err := f.c.Enqueue(attest.Job{Build: j.Build, SRPMURL: j.SRPMURL, Wanted: 1}, at); err != nil {
				t.Fatalf("enqueue after the deadline close: %v", err)
			}
			checkInvariants(t, f.c)
			f.checkReplay()
		})
	}
}

// TestApplyDeadlineRules: Apply refuses a lease dated at or after its job's
// deadline (ErrJobExpired) and a close that only the deadline would allow
// dated before the deadline (ErrConflict), each changing nothing; the same
// close dated at the deadline is accepted, and the result count is still
// checked.
func TestApplyDeadlineRules(t *testing.T) {
	f := newFixture(t, Config{JobTTL: 24 * time.Hour, LeaseTTL: time.Hour}, 4)
	a := f.enrol("a", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 2)
	la := f.lease(a, []string{"x86_64"}, t0)
	f.deliver(la, t0.Add(time.Minute))

	b := f.enrol("b", attest.RoleBuilder)
	lease := func(issued time.Time) attest.Lease {
		return attest.Lease{LeaseID: "late", JobID: j.JobID, Build: j.Build, SRPMURL: j.SRPMURL, KeyID: b, Operator: "b", Slot: 1, Attempt: 1, Issued: issued, Expires: issued.Add(time.Hour)}
	}
	cases := []struct {
		name    string
		payload any
		want    error
		msg     string
	}{
		{"lease at the deadline", lease(j.Deadline), ErrJobExpired, "deadline"},
		{"lease after the deadline", lease(j.Deadline.Add(time.Hour)), ErrJobExpired, "deadline"},
		{"close before the deadline", attest.JobClose{JobID: j.JobID, Build: j.Build, Results: 1, At: j.Deadline.Add(-time.Second)}, ErrConflict, "before its deadline"},
		{"close at the deadline with a wrong count", attest.JobClose{JobID: j.JobID, Build: j.Build, Results: 0, At: j.Deadline}, ErrConflict, "1 are in"},
	}
	for _, tc := range cases {
		before := snap(f.c)
		err := f.c.Apply(500, Event{Signer: authority, Payload: tc.payload})
		mustErr(t, err, tc.want)
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.msg)
		}
		if !reflect.DeepEqual(before, snap(f.c)) {
			t.Fatalf("%s: refused entry changed the state", tc.name)
		}
		checkInvariants(t, f.c)
	}
	// A lease one second before the deadline is fine.
	f.apply(authority, lease(j.Deadline.Add(-time.Second)))
	f.apply(authority, attest.LeaseEnd{LeaseID: "late", JobID: j.JobID, KeyID: b, Reason: attest.LeaseExpired, At: j.Deadline.Add(time.Hour)})
	// The close refused before the deadline is accepted at it.
	f.apply(authority, attest.JobClose{JobID: j.JobID, Build: j.Build, Results: 1, At: j.Deadline})
	if st, _ := f.c.Job(j.JobID); !st.Closed || st.Close.Results != 1 {
		t.Fatalf("job %+v not closed at its deadline", st)
	}
	f.checkReplay()
}

// TestClosableIgnoresStaleClock: a job marked overdue by a decision at a
// later time is not closed by a Closable called with a time before the
// deadline, since Apply would refuse that close.
func TestClosableIgnoresStaleClock(t *testing.T) {
	f := newFixture(t, Config{JobTTL: time.Hour}, 5)
	k := f.enrol("a", attest.RoleBuilder)
	j := f.enqueue(1, "x86_64", 1)
	if _, err := f.c.NextLease(k, []string{"x86_64"}, j.Deadline); err == nil {
		t.Fatal("leased at the deadline")
	}
	if rs := f.c.Closable(j.Deadline.Add(-time.Minute)); len(rs) != 0 {
		t.Fatalf("closed before the deadline: %+v", rs[0].Payload)
	}
	rs := f.c.Closable(j.Deadline)
	if len(rs) != 1 {
		t.Fatalf("%d closes at the deadline, want 1", len(rs))
	}
	f.commitAll(rs)
	f.checkReplay()
}

// TestFuzzSeedDeadline: the FuzzApply seed "deadline" takes the deadline
// path, so the fuzz test's invariants and replay equality cover it: a job
// that is past its deadline with a live lease gets no new lease and stays
// open, then closes with fewer results than wanted once that lease
// expired; a mutated lease dated past the deadline is refused.
func TestFuzzSeedDeadline(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzApply", "deadline"))
	if err != nil {
		t.Fatal(err)
	}
	prog, err := readFuzzBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	fx := runProgram(t, fuzzKeys(t), prog)
	jobs := fx.c.Jobs()
	if len(jobs) < 1 {
		t.Fatal("no job")
	}
	j := jobs[0]
	if !j.Closed || !j.Close.At.After(j.Job.Deadline) || j.Close.Results != 1 || j.Job.Wanted != 2 {
		t.Fatalf("first job: closed %v at %s (deadline %s) with %d of %d results", j.Closed, j.Close.At, j.Job.Deadline, j.Close.Results, j.Job.Wanted)
	}
	if len(j.Slots) != 2 || j.Slots[1].Attempts != 1 || j.Slots[1].Done {
		t.Fatalf("slot 1 %+v: want one lease, expired, with an attempt left", j.Slots[1])
	}
	// Every lease of the first job was issued before its deadline.
	for _, e := range fx.log {
		if l, ok := e.Payload.(attest.Lease); ok && l.JobID == j.Job.JobID && !l.Issued.Before(j.Job.Deadline) {
			t.Fatalf("lease %s issued %s at or past the deadline %s was logged", l.LeaseID, l.Issued, j.Job.Deadline)
		}
	}
	// Replayed up to the close, the job is open and past its deadline: the
	// fuzzer's past-deadline mutation of its first lease is refused.
	c := New(fx.cfg)
	for i, e := range fx.log[:j.CloseIndex] {
		if err := c.Apply(uint64(i), e); err != nil {
			t.Fatal(err)
		}
	}
	past := mutate(fx.log[1+len(fuzzKeys(t))].Payload, 8, 6, []string{authority}).(attest.Lease)
	before := snap(c)
	mustErr(t, c.Apply(j.CloseIndex, Event{Signer: authority, Payload: past}), ErrJobExpired)
	if !reflect.DeepEqual(before, snap(c)) {
		t.Fatal("the refused lease changed the state")
	}
}

// readFuzzBytes reads a one-value []byte Go fuzz corpus file.
func readFuzzBytes(data []byte) ([]byte, error) {
	lines := strings.SplitN(string(data), "\n", 3)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		return nil, errors.New("not a corpus file")
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	return []byte(s), err
}
