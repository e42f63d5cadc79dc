package coord_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
)

// TestServiceTickClosesAtDeadline: the service's tick closes a job whose
// slots cannot be filled (one builder for three slots) once its deadline
// has passed and its last lease ended, and a restarted service replays the
// log to the same state.
func TestServiceTickClosesAtDeadline(t *testing.T) {
	e := newSvcEnv(t, coord.Config{JobTTL: 24 * time.Hour, LeaseTTL: time.Hour})
	ctx := context.Background()
	a := e.enrol(attest.RoleBuilder, "alice")
	b := e.enrol(attest.RoleBuilder, "bob")
	job := e.enqueue("hello-1.0-1", 3)
	if want := job.Enqueued.Add(24 * time.Hour); !job.Deadline.Equal(want) {
		t.Fatalf("deadline %s, want %s", job.Deadline, want)
	}
	la, _, err := e.svc.Lease(ctx, a.KeyID(), []string{"x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Submit(ctx, result(t, a, la, "A")); err != nil {
		t.Fatal(err)
	}
	// Bob's lease is live at the deadline.
	e.clock.Advance(23*time.Hour + 30*time.Minute)
	if _, _, err := e.svc.Lease(ctx, b.KeyID(), []string{"x86_64"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Minute)
	if exp, cl, err := e.svc.Tick(ctx); err != nil || exp != 0 || cl != 0 {
		t.Fatalf("tick at the deadline: %d expired, %d closed, %v", exp, cl, err)
	}
	c := e.enrol(attest.RoleBuilder, "carol")
	if _, _, err := e.svc.Lease(ctx, c.KeyID(), []string{"x86_64"}); !errors.Is(err, coord.ErrNoJob) {
		t.Fatalf("lease past the deadline: %v", err)
	}
	e.clock.Advance(30 * time.Minute)
	if exp, cl, err := e.svc.Tick(ctx); err != nil || exp != 1 || cl != 1 {
		t.Fatalf("tick after the last lease expired: %d expired, %d closed, %v", exp, cl, err)
	}
	st, err := e.svc.Coordinator().Job(job.JobID)
	if err != nil || !st.Closed || st.Close.Results != 1 || st.Close.At.Before(job.Deadline) {
		t.Fatalf("job after the deadline: %+v %v", st, err)
	}
	before := e.svc.Jobs()
	e.log.Close()
	e.open()
	after := e.svc.Jobs()
	if len(after) != 1 || !after[0].Closed || after[0].CloseIndex != before[0].CloseIndex || !after[0].Job.Deadline.Equal(job.Deadline) {
		t.Fatalf("replayed job %+v, was %+v", after, before)
	}
}
