package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
)

// coordRuleLog makes a real log, served as static tlog-tiles files, in
// which the coordinator enrols two builders, enqueues a job of 2 results,
// leases both slots, and closes the job with one result in and one lease
// live: a close its rules forbid (docs/coordinator.md §Closing). It
// returns the log's URL and key and the index of the close.
func coordRuleLog(t *testing.T) (url, vkey string, closeAt uint64) {
	t.Helper()
	ctx := context.Background()
	c, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := c.NoteSigner("log.audit.test")
	if err != nil {
		t.Fatal(err)
	}
	if vkey, err = attest.NoteVerifierKey("log.audit.test", c.Public()); err != nil {
		t.Fatal(err)
	}
	l, err := log.Open(ctx, log.Config{Dir: t.TempDir(), Origin: "log.audit.test", Signer: ns, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	add := func(s *attest.Signer, typ string, v any) uint64 {
		t.Helper()
		env, err := attest.Sign(s, typ, v)
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Add(ctx, env)
		if err != nil {
			t.Fatal(err)
		}
		return res.Index
	}
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	sum := sha256.Sum256([]byte("hello"))
	b := attest.BuildID{NVR: "hello-2.12-1.fc41", Arch: "x86_64", SRPMSHA256: hex.EncodeToString(sum[:])}
	srpm := "https://koji.example/hello-2.12-1.fc41.src.rpm"
	job := attest.Job{JobID: "job1", Build: b, SRPMURL: srpm, Wanted: 2, Enqueued: t0, Deadline: t0.Add(coord.DefaultJobTTL)}
	var builders []*attest.Signer
	for i := range 2 {
		k, err := attest.GenerateKey(attest.KeyEd25519)
		if err != nil {
			t.Fatal(err)
		}
		builders = append(builders, k)
		add(c, attest.PayloadEnrolment, &attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: fmt.Sprintf("op%d", i), Contact: "x@example.org", Since: t0})
	}
	add(c, attest.PayloadJob, &job)
	var leases []attest.Lease
	for i, k := range builders {
		le := attest.Lease{LeaseID: fmt.Sprintf("lease%d", i), JobID: job.JobID, Build: b, SRPMURL: srpm, KeyID: k.KeyID(), Operator: fmt.Sprintf("op%d", i), Slot: i, Attempt: 1, Issued: t0.Add(time.Minute), Expires: t0.Add(2 * time.Hour)}
		add(c, attest.PayloadLease, &le)
		leases = append(leases, le)
	}
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "rpmbuild", LeaseID: leases[0].LeaseID, Started: t0.Add(2 * time.Minute), Finished: t0.Add(3 * time.Minute)},
		[]attest.Subject{{Name: "hello-2.12-1.fc41.x86_64.rpm", SHA256: hex.EncodeToString(sum[:]), Skyline: hex.EncodeToString(sum[:])}}, builders[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Add(ctx, envs[0]); err != nil {
		t.Fatal(err)
	}
	closeAt = add(c, attest.PayloadJobClose, &attest.JobClose{JobID: job.JobID, Build: b, Results: 1, At: t0.Add(4 * time.Minute)})
	if _, err := l.WaitCheckpoint(ctx, closeAt+1); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := l.Export(ctx, dir); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL, vkey, closeAt
}

// TestAuditCommandCoordinatorRule: a log whose coordinator closed a job
// early audits to exit 1 (the status of every discrepancy), with the
// coordinator-rule line naming the close; --max-attempts and --max-wanted
// below 1 are usage errors (4).
func TestAuditCommandCoordinatorRule(t *testing.T) {
	url, vkey, closeAt := coordRuleLog(t)
	code, stdout, stderr := runVCmd(t, runAudit, "--log", url, "--pub", vkey)
	if code != witness.ExitRejected {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, witness.ExitRejected, stdout, stderr)
	}
	want := fmt.Sprintf("entry %d: %s hello-2.12-1.fc41.x86_64 key ", closeAt, witness.DiscCoordinatorRule)
	if !strings.Contains(stdout, want) || !strings.Contains(stdout, "1 live leases") || !strings.Contains(stdout, "discrepancies: 1 in this run") {
		t.Fatalf("output does not report the early close (%q):\n%s", want, stdout)
	}
	code, stdout, _ = runVCmd(t, runAudit, "--log", url, "--pub", vkey, "--json")
	var rep witness.AuditReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != witness.ExitRejected {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, stdout)
	}
	if len(rep.Discrepancies) != 1 || rep.Discrepancies[0].Index != closeAt || rep.Counts[witness.DiscCoordinatorRule] != 1 {
		t.Fatalf("--json report %+v", rep.Discrepancies)
	}
	for _, args := range [][]string{
		{"--log", url, "--pub", vkey, "--max-attempts", "0"},
		{"--log", url, "--pub", vkey, "--max-wanted", "-1"},
	} {
		if code, _, stderr := runVCmd(t, runAudit, args...); code != witness.ExitUsage {
			t.Errorf("%q: exit %d, want 4 (%s)", args, code, stderr)
		}
	}
	// The job wants 2 results: a server that allows at most 1 logged a
	// job its own rules refuse, which a matching --max-wanted reports.
	code, stdout, _ = runVCmd(t, runAudit, "--log", url, "--pub", vkey, "--max-wanted", "1")
	if code != witness.ExitRejected || !strings.Contains(stdout, "wanted 2 not in [1, 1]") {
		t.Fatalf("--max-wanted 1: exit %d\n%s", code, stdout)
	}
}
