package api

import (
	"context"
	"errors"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/coord"
)

// TestLeaseSubmitReceipt runs the builder's calls through the client: a
// lease, a submission whose receipt verifies against the log key, a
// resubmission that returns the same index and is not a second result.
func TestLeaseSubmitReceipt(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	b := e.enrol(attest.RoleBuilder, "alice")
	job := e.enqueue("hello-1.0-1", 3)
	c := e.client(b, "x86_64")
	l, err := c.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l.JobID != job.JobID || l.KeyID != b.KeyID() {
		t.Fatalf("lease %+v for job %s", l, job.JobID)
	}
	if _, err := c.Lease(ctx); !errors.Is(err, builder.ErrNoWork) || !errors.Is(err, coord.ErrNoJob) {
		t.Fatalf("second lease of the operator: %v, want ErrNoWork", err)
	}
	env := attestation(t, b, l.Build, l.LeaseID, "A")
	r, err := c.Submit(ctx, [][]byte{env})
	if err != nil {
		t.Fatal(err)
	}
	acks, err := builder.VerifyReceipt([][]byte{env}, r, e.logNote, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.Coordinator().Job(job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Results) != 1 || st.Results[0].Entries[0] != acks[0].Index {
		t.Fatalf("job results %+v, want one at %d", st.Results, acks[0].Index)
	}
	res, err := c.SubmitOne(ctx, env, false)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Duplicate || res.Index != acks[0].Index {
		t.Fatalf("resubmission: %+v, want duplicate of %d", res, acks[0].Index)
	}
	st, _ = e.svc.Coordinator().Job(job.JobID)
	if len(st.Results) != 1 {
		t.Fatalf("resubmission counted: %d results", len(st.Results))
	}
}
