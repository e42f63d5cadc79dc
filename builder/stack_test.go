package builder_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

// stackCheckpoint is the log's checkpoint interval in TestRealStack, which
// the acknowledgement waits for; -builder.stack-checkpoint=1s measures the
// log's default.
var stackCheckpoint = flag.Duration("builder.stack-checkpoint", 10*time.Millisecond, "the log's checkpoint_interval in TestRealStack")

// TestRealStack runs the daemon against the real thing: the log on Pebble,
// the coordinator service and the api HTTP server on a loopback listener,
// with the api client as the Coordinator. An admin enrols the builder key
// and enqueues a job for a real SRPM served over TLS; the daemon leases it,
// rebuilds it with rpmbuild, submits, and verifies the log's receipt.
func TestRealStack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const origin = "log.builder-test.example"
	logKey, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	key, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := logKey.NoteSigner(origin)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := attest.NoteVerifierKey(origin, logKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	lg, err := log.Open(ctx, log.Config{Dir: t.TempDir(), Origin: origin, Signer: ns, Indexer: coord.Indexer, CheckpointInterval: *stackCheckpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	svc, err := coord.NewService(ctx, coord.ServiceConfig{Log: lg, Signer: logKey, AdminKeys: []*attest.Verifier{admin.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{}, svc, lg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	url := "http://" + ln.Addr().String()
	client := func(s *attest.Signer) *api.Client {
		c, err := api.NewClient(api.ClientConfig{URL: url, Signer: s, Origin: origin, Arches: []string{"x86_64"}, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	srpmPath := rpmtest.BuildSRPM(t, "hello.spec", nil)
	srpm, err := os.ReadFile(srpmPath)
	if err != nil {
		t.Fatal(err)
	}
	// A package whose build fails with a long log full of control
	// characters: its failure report must still be one the coordinator
	// accepts.
	spec := filepath.Join(t.TempDir(), "broken.spec")
	if err := os.WriteFile(spec, []byte(strings.Join([]string{
		"Name: broken", "Version: 1", "Release: 1", "Summary: s", "License: MIT",
		"%description", "d", "%prep", "%build",
		`for i in $(seq 300); do printf 'warning %d:\t\033[1mnoise\033[0m\n' $i; done; echo 'error: the compiler is broken' >&2; exit 1`,
		"%install", "%files", "%changelog", "* Thu Jan 01 2026 t <t@example.org> - 1-1", "- x", "",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	broken, err := os.ReadFile(rpmtest.BuildSRPM(t, spec, nil))
	if err != nil {
		t.Fatal(err)
	}
	files := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/broken") {
			w.Write(broken)
			return
		}
		w.Write(srpm)
	}))
	defer files.Close()
	sum := sha256.Sum256(srpm)
	brokenSum := sha256.Sum256(broken)
	if _, err := client(admin).Enrol(ctx, api.EnrolBody{PublicKey: string(key.PublicPEM()), Role: attest.RoleBuilder, Operator: "alice", Contact: "alice@example.org"}); err != nil {
		t.Fatal(err)
	}
	if _, err := client(admin).Enqueue(ctx, api.EnqueueBody{NVR: "hello-1.0-1", Arch: "x86_64", SRPMURL: files.URL + "/hello-1.0-1.src.rpm", SRPMSHA256: hex.EncodeToString(sum[:]), Wanted: 1}); err != nil {
		t.Fatal(err)
	}

	for _, j := range []api.EnqueueBody{
		// The lease says one sha256, the server sends other bytes.
		{NVR: "hello-1.0-2", Arch: "x86_64", SRPMURL: files.URL + "/hello-1.0-2.src.rpm", SRPMSHA256: strings.Repeat("ab", 32), Wanted: 1},
		{NVR: "broken-1-1", Arch: "x86_64", SRPMURL: files.URL + "/broken-1-1.src.rpm", SRPMSHA256: hex.EncodeToString(brokenSum[:]), Wanted: 1},
	} {
		if _, err := client(admin).Enqueue(ctx, j); err != nil {
			t.Fatal(err)
		}
	}

	cfg := builder.DefaultConfig()
	cfg.Coordinator, cfg.Key, cfg.LogKey = url, "/nonexistent/in-memory", vkey
	cfg.StateDir, cfg.WorkDir = filepath.Join(t.TempDir(), "state"), filepath.Join(t.TempDir(), "work")
	cfg.Backend = builder.BackendRpmbuild
	cfg.BuildPath = filepath.Join(os.TempDir(), "skyline-build-test")
	cfg.Arches = []string{"x86_64"}
	cfg.MaxCPUBusy = 1 // other tests keep this machine busy
	cfg.MinFreeDisk = 1 << 20
	logV, logOrigin, err := builder.LogVerifier(cfg.LogKey, "")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	var logs bytes.Buffer
	var coordinator builder.Coordinator = client(key)
	d, err := builder.New(cfg, builder.Deps{
		Coordinator: stopWhenIdle{coordinator, stop},
		Attest:      builder.SignerAttester(key),
		KeyID:       key.KeyID(),
		LogKey:      logV,
		LogOrigin:   logOrigin,
		HTTPClient:  files.Client(),
		Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(runCtx); err != nil {
		t.Fatal(err)
	}
	if errors.Is(runCtx.Err(), context.DeadlineExceeded) {
		t.Fatalf("the daemon did not finish; log:\n%s", logs.String())
	}
	st, err := builder.ReadStatus(cfg.StateDir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if st.Counters.Acknowledged != 1 || st.Counters.Failed != 2 || len(st.Recent) != 3 || len(st.Current) != 0 {
		t.Fatalf("status %+v; want one acknowledged result and two failures. log:\n%s", st, logs.String())
	}
	if strings.Contains(logs.String(), "could not report the lease's end") {
		t.Errorf("the coordinator refused a failure report; log:\n%s", logs.String())
	}
	// The coordinator logged both failures, with the build's last words.
	jobs, err := client(admin).Jobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("%d jobs; want 3", len(jobs))
	}
	var ack *builder.Done
	for i := range st.Recent {
		if st.Recent[i].Outcome == builder.OutcomeAcknowledged {
			ack = &st.Recent[i]
		}
	}
	var failedEnds int
	for i := uint64(0); ; i++ {
		entry, err := lg.Entry(ctx, i)
		if err != nil {
			break
		}
		e, err := attest.Parse(entry, attest.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if le, ok := e.Value.(*attest.LeaseEnd); ok && le.Reason == attest.LeaseFailed {
			failedEnds++
			if strings.Contains(le.Detail, "build failed") &&
				(!strings.HasPrefix(le.Detail, "builder: rpmbuild --rebuild job.src.rpm: exit status 1: build failed | ") ||
					!strings.Contains(le.Detail, "error: the compiler is broken | + exit 1 | error: Bad exit status")) {
				t.Errorf("logged failure detail %q lacks what happened or the end of the build log", le.Detail)
			}
		}
	}
	if failedEnds != 2 {
		t.Errorf("%d failed lease ends in the log; want 2", failedEnds)
	}
	if ack == nil || len(ack.Acks) != 1 {
		t.Fatalf("no acknowledged job in %+v", st.Recent)
	}
	t.Logf("real stack (checkpoint_interval %v): lease to build end %.3fs, build end to verified acknowledgement %.4fs: ratio %.4f",
		*stackCheckpoint, ack.BuildSeconds, ack.AckSeconds, ack.AckSeconds/ack.BuildSeconds)
	// The entry the daemon proved is the attestation it signed.
	entry, err := lg.Entry(ctx, ack.Acks[0].Index)
	if err != nil {
		t.Fatal(err)
	}
	e, err := attest.Parse(entry, attest.ParseOptions{Keys: func(id string) (*attest.Verifier, error) { return key.Verifier(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := e.Value.(*attest.Attestation); !ok || a.Build.NVR != "hello-1.0-1" || len(a.Subjects) != 2 {
		t.Errorf("logged entry %+v", e.Value)
	}
}

// stopWhenIdle ends the run when the coordinator has no more work.
type stopWhenIdle struct {
	builder.Coordinator
	stop func()
}

func (s stopWhenIdle) Lease(ctx context.Context) (*attest.Lease, error) {
	l, err := s.Coordinator.Lease(ctx)
	if errors.Is(err, builder.ErrNoWork) {
		s.stop()
	}
	return l, err
}
