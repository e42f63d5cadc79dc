package coord_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

type svcClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *svcClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *svcClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type svcEnv struct {
	t     *testing.T
	dir   string
	key   *attest.Signer
	clock *svcClock
	cfg   coord.Config
	log   *log.Log
	svc   *coord.Service
}

func svcKey(t *testing.T) *attest.Signer {
	t.Helper()
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// open opens (or reopens) the log in e.dir and replays it into a service.
func (e *svcEnv) open() {
	e.t.Helper()
	ns, err := e.key.NoteSigner("svc.test")
	if err != nil {
		e.t.Fatal(err)
	}
	lg, err := log.Open(context.Background(), log.Config{Dir: e.dir, Origin: "svc.test", Signer: ns, Indexer: coord.Indexer, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { lg.Close() })
	svc, err := coord.NewService(context.Background(), coord.ServiceConfig{Log: lg, Signer: e.key, Coord: e.cfg, Now: e.clock.Now, TickInterval: time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	e.log, e.svc = lg, svc
}

func newSvcEnv(t *testing.T, cfg coord.Config) *svcEnv {
	e := &svcEnv{t: t, dir: t.TempDir(), key: svcKey(t), clock: &svcClock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}, cfg: cfg}
	e.open()
	return e
}

func (e *svcEnv) enrol(role, op string) *attest.Signer {
	e.t.Helper()
	k := svcKey(e.t)
	if _, err := e.svc.Enrol(context.Background(), attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: role, Operator: op, Contact: op + "@example.org"}); err != nil {
		e.t.Fatal(err)
	}
	return k
}

func hexSHA(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (e *svcEnv) enqueue(nvr string, wanted int) attest.Job {
	e.t.Helper()
	j, _, err := e.svc.Enqueue(context.Background(), attest.Job{Build: attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: hexSHA(nvr)}, SRPMURL: "https://koji.example/x.src.rpm", Wanted: wanted})
	if err != nil {
		e.t.Fatal(err)
	}
	return j
}

func result(t *testing.T, k *attest.Signer, l attest.Lease, r string) []byte {
	t.Helper()
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: l.Build, Backend: "rpmbuild", Chroot: "c", LeaseID: l.LeaseID, Started: l.Issued, Finished: l.Issued},
		[]attest.Subject{{Name: l.Build.NVR + ".x86_64.rpm", SHA256: hexSHA("f" + r), Skyline: hexSHA("s" + r)}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return envs[0]
}

// TestServiceTickExpiresAndCloses checks the background decisions: a lease
// past its expiry is ended as expired, and a job whose slots are spent is
// closed, both logged and folded into the state.
func TestServiceTickExpiresAndCloses(t *testing.T) {
	e := newSvcEnv(t, coord.Config{MaxAttempts: 1, LeaseTTL: time.Hour})
	ctx := context.Background()
	b := e.enrol(attest.RoleBuilder, "alice")
	job := e.enqueue("hello-1.0-1", 1)
	l, _, err := e.svc.Lease(ctx, b.KeyID(), []string{"x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	if exp, cl, err := e.svc.Tick(ctx); err != nil || exp != 0 || cl != 0 {
		t.Fatalf("tick before expiry: %d expired, %d closed, %v", exp, cl, err)
	}
	e.clock.Advance(time.Hour)
	if exp, cl, err := e.svc.Tick(ctx); err != nil || exp != 1 || cl != 1 {
		t.Fatalf("tick after expiry: %d expired, %d closed, %v", exp, cl, err)
	}
	st, err := e.svc.Coordinator().Job(job.JobID)
	if err != nil || !st.Closed || len(st.Live) != 0 {
		t.Fatalf("job after tick: %+v %v", st, err)
	}
	if _, err := e.svc.Submit(ctx, result(t, b, l, "A")); !errors.Is(err, coord.ErrJobClosed) && !errors.Is(err, coord.ErrLeaseExpired) {
		t.Fatalf("result after expiry: %v", err)
	}
	refs, err := e.log.Lookup(ctx, "hello-1.0-1")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, r := range refs {
		kinds[r.Type]++
	}
	if kinds[coord.IndexJob] != 1 || kinds[coord.IndexLease] != 1 || kinds[coord.IndexJobClose] != 1 {
		t.Fatalf("index %+v", refs)
	}
}

// TestServiceReplay checks that a restarted service, replaying the log,
// has the same jobs, keys and notices as the one that wrote it.
func TestServiceReplay(t *testing.T) {
	e := newSvcEnv(t, coord.Config{})
	ctx := context.Background()
	a := e.enrol(attest.RoleBuilder, "alice")
	b := e.enrol(attest.RoleBuilder, "bob")
	w := e.enrol(attest.RoleWitness, "wendy")
	e.enqueue("hello-1.0-1", 2)
	la, _, err := e.svc.Lease(ctx, a.KeyID(), []string{"x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	lb, _, err := e.svc.Lease(ctx, b.KeyID(), []string{"x86_64"})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := e.svc.Submit(ctx, result(t, a, la, "A"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := e.svc.Submit(ctx, result(t, b, lb, "B"))
	if err != nil {
		t.Fatal(err)
	}
	// A verdict naming alice in the agreeing group and bob as the outlier.
	v := attest.Verdict{Build: la.Build, Verdict: attest.VerdictDisputed, TreeSize: rb.Index + 1, ResultSet: attest.ResultSetDigest([]attest.Subject{{Name: la.Build.NVR + ".x86_64.rpm", SHA256: hexSHA("fA"), Skyline: hexSHA("sA")}}),
		At: e.clock.Now()}
	v.Groups = []attest.VerdictGroup{{ResultSet: v.ResultSet, Operators: []string{"alice"}, Entries: []uint64{ra.Index}}}
	v.Outliers = []attest.Outlier{{Index: rb.Index, KeyID: b.KeyID(), Operator: "bob", ResultSet: hexSHA("other")}}
	venv, err := attest.Sign(w, attest.PayloadVerdict, &v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Submit(ctx, venv); err != nil {
		t.Fatal(err)
	}
	if ns := e.svc.Notices(a.KeyID()); len(ns) != 1 || ns[0].Kind != "agreed" {
		t.Fatalf("alice's notices %+v", ns)
	}
	if ns := e.svc.Notices(b.KeyID()); len(ns) != 1 || ns[0].Kind != "outlier" {
		t.Fatalf("bob's notices %+v", ns)
	}
	snapshot := func() string {
		out, _ := json.Marshal([]any{e.svc.Jobs(), e.svc.Coordinator().Keys(), e.svc.Notices(a.KeyID()), e.svc.Notices(b.KeyID())})
		return string(out)
	}
	before := snapshot()
	e.log.Close()
	e.open()
	if after := snapshot(); after != before {
		t.Fatalf("replayed state differs:\n%s\n%s", before, after)
	}
	// And the replayed service goes on: a resubmission is a duplicate.
	res, err := e.svc.Submit(ctx, result(t, a, la, "A"))
	if err != nil || !res.Duplicate || res.Index != ra.Index {
		t.Fatalf("resubmission after restart: %+v %v", res, err)
	}
}

// TestServiceAlarmPausesLeasing checks that an alarm from an enrolled
// witness is logged and pauses leasing, and that one from a builder key is
// refused.
func TestServiceAlarmPausesLeasing(t *testing.T) {
	e := newSvcEnv(t, coord.Config{})
	ctx := context.Background()
	b := e.enrol(attest.RoleBuilder, "alice")
	w := e.enrol(attest.RoleWitness, "wendy")
	e.enqueue("hello-1.0-1", 2)
	alarm := attest.Alarm{Reason: "outlier rate", Rate: 0.5, Window: 100, TreeSize: 3, At: e.clock.Now()}
	bad, err := attest.Sign(b, attest.PayloadAlarm, &alarm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Submit(ctx, bad); !errors.Is(err, coord.ErrRole) {
		t.Fatalf("alarm by a builder: %v", err)
	}
	good, err := attest.Sign(w, attest.PayloadAlarm, &alarm)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Submit(ctx, good); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.svc.Lease(ctx, b.KeyID(), []string{"x86_64"}); !errors.Is(err, coord.ErrPaused) {
		t.Fatalf("lease during an alarm: %v", err)
	}
}

// TestServiceRunStops checks that Run, the owned background loop, ticks
// and returns once its context is cancelled.
func TestServiceRunStops(t *testing.T) {
	e := newSvcEnv(t, coord.Config{MaxAttempts: 1, LeaseTTL: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	b := e.enrol(attest.RoleBuilder, "alice")
	job := e.enqueue("hello-1.0-1", 1)
	if _, _, err := e.svc.Lease(ctx, b.KeyID(), []string{"x86_64"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	// The loop ticks every millisecond: once the log holds the lease end
	// and the job close (entries 3 and 4), stop it; Run returns only after
	// its tick has applied what it logged.
	if _, err := e.log.WaitCheckpoint(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	st, err := e.svc.Coordinator().Job(job.JobID)
	if err != nil || !st.Closed {
		t.Fatalf("job not closed by Run: %+v %v", st, err)
	}
}
