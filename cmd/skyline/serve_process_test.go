package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/witness"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// mainEnv makes the test binary run skyline's main instead of the tests,
// so that a test can start `skyline serve` as a real process and kill it.
const mainEnv = "SKYLINE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(mainEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// serveProc is `skyline serve` running as a child process.
type serveProc struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

func startServeProc(t *testing.T, config, addr string) *serveProc {
	t.Helper()
	p := &serveProc{cmd: exec.Command(os.Args[0], "serve", "--config", config, "--listen", addr)}
	p.cmd.Env = append(os.Environ(), mainEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			p.kill()
			t.Fatalf("skyline serve not healthy after 30s: %v\n%s", err, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *serveProc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// acked is a submission the server acknowledged.
type acked struct {
	env   []byte
	index uint64
}

// crashWorld is what the builders and the admin were told before a crash.
type crashWorld struct {
	mu       sync.Mutex
	subs     []acked
	inFlight [][]byte // submissions whose answer never came, under acknowledged leases
	jobs     []string // acknowledged enqueued NVRs
}

// serveFixture is what a test of a real `skyline serve` process needs: its
// configuration (rate limits off: the load comes from one address and few
// keys), a fixed address to restart it on, the log's note verifier and
// clients.
type serveFixture struct {
	config, addr string
	verifier     note.Verifier
	admin        *attest.Signer
}

const processOrigin = "skyline.test" // writeConfig's origin

// newServeFixture writes the configuration; edit, if set, rewrites it.
func newServeFixture(t *testing.T, edit func(string) string) *serveFixture {
	t.Helper()
	dir := t.TempDir()
	logKey := writeKey(t, dir, "log")
	f := &serveFixture{admin: writeKey(t, dir, "admin"), config: writeConfig(t, dir, "key_rate = -1\nsubmit_rate = -1\n")}
	if edit != nil {
		body, err := os.ReadFile(f.config)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.config, []byte(edit(string(body))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vkey, err := attest.NoteVerifierKey(processOrigin, logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if f.verifier, err = note.NewVerifier(vkey); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	ln.Close()
	return f
}

// client is an API client of the served log signing with s.
func (f *serveFixture) client(t *testing.T, s *attest.Signer) *api.Client {
	t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: "http://" + f.addr, Signer: s, Origin: processOrigin, HTTP: &http.Client{Timeout: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// enrolBuilder enrols a new builder key for operator.
func (f *serveFixture) enrolBuilder(t *testing.T, adminc *api.Client, operator string) *attest.Signer {
	t.Helper()
	key, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adminc.Enrol(t.Context(), api.EnrolBody{PublicKey: string(key.PublicPEM()), Role: attest.RoleBuilder,
		Operator: operator, Contact: "op@example.org"}); err != nil {
		t.Fatal(err)
	}
	return key
}

// TestServeCrashLosesNothingAcknowledged runs a real `skyline serve`
// process under concurrent enqueues, leases and submissions, kills it with
// SIGKILL at a random moment, restarts it, and checks that nothing it had
// acknowledged was lost: every acknowledged submission is in the log at
// its index, byte for byte, and a resubmission answers with that index;
// every acknowledged lease still holds (a result under it is accepted
// after the restart); every acknowledged job is listed; a submission
// whose answer was lost can be resubmitted (new or duplicate, never
// refused); and the log after the restart is consistent with the last
// checkpoint seen before the kill.
func TestServeCrashLosesNothingAcknowledged(t *testing.T) {
	const (
		builders = 10
		rounds   = 5
	)
	f := newServeFixture(t, nil)
	client := func(s *attest.Signer) *api.Client { return f.client(t, s) }
	adminc := client(f.admin)
	srv := startServeProc(t, f.config, f.addr)
	defer func() { srv.kill() }()
	ctx := t.Context()
	keys := make([]*attest.Signer, builders)
	for i := range keys {
		keys[i] = f.enrolBuilder(t, adminc, fmt.Sprintf("op%d", i))
	}
	w := &crashWorld{}
	nextJob := 0
	enqueue := func(ctx context.Context) error {
		nvr := fmt.Sprintf("crash%d-1.0-1", nextJob)
		_, err := adminc.Enqueue(ctx, api.EnqueueBody{NVR: nvr, Arch: "x86_64", SRPMURL: "https://koji.example/" + nvr + ".src.rpm",
			SRPMSHA256: fmt.Sprintf("%064x", nextJob+1), Wanted: 3})
		nextJob++
		if err == nil {
			w.mu.Lock()
			w.jobs = append(w.jobs, nvr)
			w.mu.Unlock()
		}
		return err
	}
	for range 30 {
		if err := enqueue(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var lastCP []byte
	for round := range rounds {
		// Load: every builder leases and submits back to back, the admin
		// enqueues; all stop at their first error, which the kill causes.
		rctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		newAcks := make(chan struct{}, 1<<16)
		for i, key := range keys {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := client(key)
				for rctx.Err() == nil {
					l, err := c.Lease(rctx)
					if errors.Is(err, coord.ErrNoJob) {
						time.Sleep(5 * time.Millisecond) // the admin enqueues more
						continue
					}
					if err != nil {
						return
					}
					env, err := crashAttestation(l, key, i)
					if err != nil {
						t.Error(err)
						return
					}
					res, err := c.SubmitOne(rctx, env, false)
					w.mu.Lock()
					if err != nil {
						w.inFlight = append(w.inFlight, env)
					} else {
						w.subs = append(w.subs, acked{env, res.Index})
					}
					w.mu.Unlock()
					if err != nil {
						return
					}
					newAcks <- struct{}{}
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rctx.Err() == nil {
				if enqueue(rctx) != nil {
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		// Kill once the round has some acknowledgements, at a random
		// moment after, with requests in flight.
		deadline := time.After(20 * time.Second)
		for n := 0; n < 15; n++ {
			select {
			case <-newAcks:
			case <-deadline:
				stop()
				wg.Wait()
				t.Fatalf("round %d: only %d submissions acknowledged in 20s\n%s", round, n, srv.out.String())
			}
		}
		if cp, err := adminc.Checkpoint(ctx); err == nil {
			lastCP = cp
		}
		time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
		srv.kill()
		stop()
		wg.Wait()

		srv = startServeProc(t, f.config, f.addr)
		w.mu.Lock()
		subs, inFlight, jobs := append([]acked(nil), w.subs...), w.inFlight, append([]string(nil), w.jobs...)
		w.inFlight = nil
		w.mu.Unlock()
		if len(subs) == 0 {
			t.Fatalf("round %d: no submission acknowledged before the kill; output:\n%s", round, srv.out.String())
		}
		t.Logf("round %d: %d submissions and %d jobs acknowledged so far, %d answers lost in the kill", round, len(subs), len(jobs), len(inFlight))

		for _, a := range subs {
			got, err := adminc.Entry(ctx, a.index)
			if err != nil || !bytes.Equal(got, a.env) {
				t.Fatalf("round %d: acknowledged submission at %d lost or changed: %v", round, a.index, err)
			}
			res, err := adminc.SubmitOne(ctx, a.env, false)
			if err != nil || !res.Duplicate || res.Index != a.index {
				t.Fatalf("round %d: resubmitting the entry at %d: %+v %v, want a duplicate at %d", round, a.index, res, err, a.index)
			}
		}
		// A submission whose answer was lost is resubmitted as a builder
		// would: accepted, either now or as the duplicate of its first
		// arrival. This also proves each of those acknowledged leases held.
		for _, env := range inFlight {
			res, err := adminc.SubmitOne(ctx, env, false)
			if err != nil {
				t.Fatalf("round %d: resubmitting a submission whose answer was lost: %v", round, err)
			}
			w.mu.Lock()
			w.subs = append(w.subs, acked{env, res.Index})
			w.mu.Unlock()
		}
		all, err := adminc.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, j := range all {
			listed[j.Job.Build.NVR] = true
		}
		for _, nvr := range jobs {
			if !listed[nvr] {
				t.Fatalf("round %d: acknowledged job %s lost", round, nvr)
			}
		}
		checkConsistent(t, adminc, f.verifier, lastCP)
	}
}

// crashAttestation is a builder's signed result for lease l.
func crashAttestation(l *attest.Lease, key *attest.Signer, builder int) ([]byte, error) {
	subjects := []attest.Subject{{
		Name:    l.Build.NVR + ".x86_64.rpm",
		SHA256:  fmt.Sprintf("%064x", builder+1),
		Skyline: fmt.Sprintf("%064x", 7),
	}}
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: l.Build, SRPMURL: l.SRPMURL, Backend: "rpmbuild", Chroot: "crash",
		LeaseID: l.LeaseID, Started: l.Issued, Finished: l.Issued.Add(time.Minute)}, subjects, key)
	if err != nil {
		return nil, err
	}
	return envs[0], nil
}

// checkConsistent checks that the log now served is a signed extension of
// the checkpoint cp seen before the kill.
func checkConsistent(t *testing.T, c *api.Client, v note.Verifier, cp []byte) {
	t.Helper()
	if cp == nil {
		t.Fatal("no checkpoint seen before the kill")
	}
	oldN, oldH := openCheckpoint(t, v, cp)
	var newN int64
	var newH tlog.Hash
	for deadline := time.Now().Add(20 * time.Second); ; {
		now, err := c.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if newN, newH = openCheckpoint(t, v, now); newN >= oldN || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if newN < oldN {
		t.Fatalf("checkpoint went back from %d to %d after the restart", oldN, newN)
	}
	proof, err := c.ConsistencyProof(t.Context(), uint64(oldN), uint64(newN))
	if err != nil {
		t.Fatal(err)
	}
	tp := make(tlog.TreeProof, len(proof))
	for i, h := range proof {
		copy(tp[i][:], h)
	}
	if err := tlog.CheckTree(tp, newN, newH, oldN, oldH); err != nil {
		t.Fatalf("log after the restart (%d) is not an extension of the checkpoint before the kill (%d): %v", newN, oldN, err)
	}
}

// openCheckpoint verifies a checkpoint of the served log and returns its
// size and root.
func openCheckpoint(t *testing.T, v note.Verifier, cp []byte) (int64, tlog.Hash) {
	t.Helper()
	c, err := witness.ParseCheckpoint(cp, processOrigin, v)
	if err != nil {
		t.Fatal(err)
	}
	return int64(c.Size), c.Hash
}

// TestServeGracefulStop sends SIGTERM to a real `skyline serve` process
// while ten submissions wait for the checkpoint that will prove them
// (?wait=1, a 3 s checkpoint interval): each must still get its full
// answer, with an inclusion proof against a signed checkpoint that covers
// it, and the process must exit 0.
func TestServeGracefulStop(t *testing.T) {
	slow := func(config string) string {
		out := strings.Replace(config, `checkpoint_interval = "10ms"`, `checkpoint_interval = "3s"`, 1)
		if out == config {
			t.Fatal("test config has no checkpoint_interval line to slow down")
		}
		return out
	}
	f := newServeFixture(t, slow)
	srv := startServeProc(t, f.config, f.addr)
	defer srv.kill()
	ctx := t.Context()
	adminc := f.client(t, f.admin)
	if _, err := adminc.Enqueue(ctx, api.EnqueueBody{NVR: "graceful-1.0-1", Arch: "x86_64", SRPMURL: "https://koji.example/graceful-1.0-1.src.rpm",
		SRPMSHA256: fmt.Sprintf("%064x", 1), Wanted: 10}); err != nil {
		t.Fatal(err)
	}
	envs := make([][]byte, 10)
	for i := range envs {
		key := f.enrolBuilder(t, adminc, fmt.Sprintf("op%d", i))
		l, err := f.client(t, key).Lease(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if envs[i], err = crashAttestation(l, key, i); err != nil {
			t.Fatal(err)
		}
	}
	answers := make([]*api.SubmitResponse, len(envs))
	errs := make([]error, len(envs))
	var wg sync.WaitGroup
	for i, env := range envs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i], errs[i] = adminc.SubmitOne(ctx, env, true)
		}()
	}
	// Every submission is logged and now waits for its checkpoint.
	for deadline := time.Now().Add(20 * time.Second); ; {
		jobs, err := adminc.Jobs(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) == 1 && len(jobs[0].Results) == len(envs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("submissions not all applied after 20s: %+v", jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("skyline serve after SIGTERM: %v\n%s", err, srv.out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("skyline serve still running 30s after SIGTERM\n%s", srv.out.String())
	}
	wg.Wait()
	for i, a := range answers {
		if errs[i] != nil {
			t.Fatalf("submission %d in flight at SIGTERM: %v", i, errs[i])
		}
		if a.Checkpoint == "" || len(a.Proof) == 0 {
			t.Fatalf("submission %d answered without its proof: %+v", i, a)
		}
		size, root := openCheckpoint(t, f.verifier, []byte(a.Checkpoint))
		proof := make(tlog.RecordProof, len(a.Proof))
		for j, h := range a.Proof {
			copy(proof[j][:], h)
		}
		if err := tlog.CheckRecord(proof, size, root, int64(a.Index), tlog.RecordHash(envs[i])); err != nil {
			t.Fatalf("submission %d: inclusion proof of %d in %d: %v", i, a.Index, size, err)
		}
	}
}
