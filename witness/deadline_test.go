package witness

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
)

// TestDeadlineCloseIsFinalInsufficient: a job whose slots cannot be filled
// (10 wanted, 2 builders ask) is closed by the coordinator at its deadline
// once its last lease ended (docs/coordinator.md §Closing). The witness's
// fold and agreement engine take that close as final: the verdict is a
// final insufficient, and `skyline verify` reports it with the undecided
// exit code and the witnesses' verdicts vouching for it; an audit replay
// finds nothing wrong.
func TestDeadlineCloseIsFinalInsufficient(t *testing.T) {
	ctx := context.Background()
	n := newVNet(t, 3)
	clock := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	svc, err := coord.NewService(ctx, coord.ServiceConfig{
		Log: n.l, Signer: n.coord, Now: func() time.Time { return clock },
		Coord: coord.Config{JobTTL: 24 * time.Hour, LeaseTTL: 2 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	from, _ := n.l.Size()
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	job, _, err := svc.Enqueue(ctx, attest.Job{Build: b, SRPMURL: "https://koji.example/hello.src.rpm", Wanted: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Builder 0 delivers; builder 1's lease is live at the deadline and
	// expires without a result.
	l0, _, err := svc.Lease(ctx, n.builders[0].key.KeyID(), []string{"x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "rpmbuild", LeaseID: l0.LeaseID, Started: clock, Finished: clock}, vnetSubjects(b, ""), n.builders[0].key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Submit(ctx, envs[0]); err != nil {
		t.Fatal(err)
	}
	clock = job.Deadline.Add(-time.Hour)
	if _, _, err := svc.Lease(ctx, n.builders[1].key.KeyID(), []string{"x86_64"}); err != nil {
		t.Fatal(err)
	}
	clock = job.Deadline
	if _, _, err := svc.Lease(ctx, n.builders[2].key.KeyID(), []string{"x86_64"}); !errors.Is(err, coord.ErrNoJob) {
		t.Fatalf("lease at the deadline: %v", err)
	}
	if exp, closed, err := svc.Tick(ctx); err != nil || exp != 0 || closed != 0 {
		t.Fatalf("tick at the deadline: %d expired, %d closed, %v", exp, closed, err)
	}
	clock = job.Deadline.Add(time.Hour)
	if exp, closed, err := svc.Tick(ctx); err != nil || exp != 1 || closed != 1 {
		t.Fatalf("tick after the last lease: %d expired, %d closed, %v", exp, closed, err)
	}

	// The test network's honest recorder and the witness's own fold read
	// what the coordinator logged.
	size, _ := n.l.Size()
	fold := NewFold(n.coord.Verifier())
	for i := range size {
		data, err := n.l.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		e, err := attest.Parse(data, attest.ParseOptions{})
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if i >= from {
			n.rec.add(i, e)
		}
		v, _, err := fold.Signer(e, nil)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if err := e.Verify(v); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if _, err := fold.Apply(i, e); err != nil {
			t.Fatalf("fold entry %d: %v", i, err)
		}
	}
	rec, ok := fold.Record(b)
	if !ok || !rec.Closed || !rec.ClosedTime.After(job.Deadline) {
		t.Fatalf("fold record: closed %v at %s, deadline %s", rec.Closed, rec.ClosedTime, job.Deadline)
	}
	o, err := Agree(rec, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if !o.Final || o.Verdict != VerdictInsufficient || len(o.Counted) != 1 {
		t.Fatalf("outcome final %v verdict %q with %d votes, want a final insufficient with 1", o.Final, o.Verdict, len(o.Counted))
	}

	n.verdicts(b, 3)
	rep, err := n.verify(n.policy(2), VerifyRequest{NVR: b.NVR})
	if err != nil {
		t.Fatalf("verify: %v (problems %v)", err, rep.Problems)
	}
	if rep.Status != VerdictInsufficient || VerifyExit(rep, err) != ExitUndecided || len(rep.Builds) != 1 || !rep.Builds[0].Final {
		t.Fatalf("verify: status %q exit %d builds %+v", rep.Status, VerifyExit(rep, err), rep.Builds)
	}
	vouch := 0
	for _, w := range rep.Builds[0].Witnesses {
		if w.Covers && w.Agrees && w.Verdict == VerdictInsufficient {
			vouch++
		}
	}
	if vouch != 3 {
		t.Fatalf("%d witnesses vouch for the final insufficient, want 3: %+v", vouch, rep.Builds[0].Witnesses)
	}
	arep, _, err := n.audit(t, nil, nil)
	if err != nil || len(arep.Discrepancies) != 0 || arep.Verdicts != 3 {
		t.Fatalf("audit: %v, %d verdicts checked, discrepancies %+v", err, arep.Verdicts, arep.Discrepancies)
	}
}
