package api

import (
	"context"
	"errors"
	"testing"
	"time"

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

// TestEndLeaseAndPolledReceipt checks the holder's lease end (and that a
// result under the ended lease is refused), and the client's fallback when
// the server answers before a checkpoint covers the entry: it polls the
// checkpoint and the inclusion proof, and the receipt still verifies.
func TestEndLeaseAndPolledReceipt(t *testing.T) {
	e := newEnv(t, envOptions{api: Config{WaitTimeout: time.Nanosecond}})
	ctx := context.Background()
	a := e.enrol(attest.RoleBuilder, "alice")
	b := e.enrol(attest.RoleBuilder, "bob")
	e.enqueue("hello-1.0-1", 3)
	ca, cb := e.client(a, "x86_64"), e.client(b, "x86_64")
	la, err := ca.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := cb.EndLease(ctx, la.LeaseID, attest.LeaseFailed, "not mine"); !errors.Is(err, coord.ErrNotLeaseHolder) {
		t.Fatalf("end by another builder: %v", err)
	}
	if err := ca.EndLease(ctx, la.LeaseID, attest.LeaseFailed, "build failed: exit 1"); err != nil {
		t.Fatal(err)
	}
	_, err = ca.Submit(ctx, [][]byte{attestation(t, a, la.Build, la.LeaseID, "A")})
	if !errors.Is(err, coord.ErrLeaseEnded) || !errors.Is(err, builder.ErrRejected) {
		t.Fatalf("result under an ended lease: %v", err)
	}
	lb, err := cb.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	env := attestation(t, b, lb.Build, lb.LeaseID, "B")
	res, err := cb.SubmitOne(ctx, env, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.Checkpoint != "" || res.Proof != nil {
		t.Fatalf("answer with a 1ns wait carries a proof: %+v", res)
	}
	r, err := cb.Submit(ctx, [][]byte{env})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.VerifyReceipt([][]byte{env}, r, e.logNote, testOrigin); err != nil {
		t.Fatalf("polled receipt: %v", err)
	}
}

// TestEnqueueRoles checks who may enqueue: an admin or Koji's importer
// key, not a witness or a builder.
func TestEnqueueRoles(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	imp := e.enrol(attest.RoleImporter, "koji")
	wit := e.enrol(attest.RoleWitness, "wendy")
	bld := e.enrol(attest.RoleBuilder, "bob")
	body := func(nvr string) EnqueueBody {
		return EnqueueBody{NVR: nvr, Arch: "x86_64", SRPMURL: "https://koji.example/x.src.rpm", SRPMSHA256: sha(nvr)}
	}
	if _, err := e.client(imp).Enqueue(ctx, body("a-1-1")); err != nil {
		t.Fatalf("importer: %v", err)
	}
	for _, k := range []*attest.Signer{wit, bld} {
		if _, err := e.client(k).Enqueue(ctx, body("b-1-1")); !errors.Is(err, coord.ErrRole) {
			t.Fatalf("enqueue by a non-admin: %v", err)
		}
	}
	if _, err := e.client(e.admin).Enqueue(ctx, body("a-1-1")); !errors.Is(err, coord.ErrDuplicateJob) {
		t.Fatalf("second enqueue of a build: %v", err)
	}
	if n := len(e.svc.Jobs()); n != 1 {
		t.Fatalf("%d jobs", n)
	}
}
