package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// helperEnv names the file that turns this test binary into a builder
// daemon process (TestHelperBuilderProcess) for the crash test.
const helperEnv = "SKYLINE_BUILDER_TEST_HELPER"

type helperSpec struct {
	Config      Config `json:"config"`
	KeyPath     string `json:"key_path"`
	RealMachine bool   `json:"real_machine"` // ProcMachine instead of an idle fake
}

// TestHelperBuilderProcess is not a test: run by TestKilledMidBuildRestart
// in a child process, it is a builder daemon with the real key loading,
// the real mock backend (the stand-in mock on PATH) and real sleeps, until
// it is killed.
func TestHelperBuilderProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return // an ordinary test run: nothing to do
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec helperSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	signer, err := attest.LoadSigner(spec.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, origin, err := LogVerifier(spec.Config.LogKey, spec.Config.LogOrigin)
	if err != nil {
		t.Fatal(err)
	}
	var machine Machine = &fakeMachine{free: 1 << 40}
	if spec.RealMachine {
		machine = ProcMachine{}
	}
	d, err := New(spec.Config, Deps{
		Coordinator: &httpCoordinator{base: spec.Config.Coordinator, c: http.DefaultClient},
		Attest:      SignerAttester(signer),
		KeyID:       signer.KeyID(),
		LogKey:      v,
		LogOrigin:   origin,
		Machine:     machine,
		Digest:      fakeDigest,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestKilledMidBuildRestart kills a real daemon process (SIGKILL, no
// chance to clean up) in the middle of a build, then starts a new daemon
// on the same state directory: it must resume the same lease (not ask for
// a new one, not hand it back), rebuild, and submit once; the killed
// daemon's build processes must not survive it.
func TestKilledMidBuildRestart(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("hang\n") // the stand-in mock sleeps until killed
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(f.srpm) }))
	defer plain.Close()
	l := f.lease("lease-crash", time.Hour)
	l.SRPMURL = plain.URL + "/hello.src.rpm"

	dir := t.TempDir()
	pemKey, err := f.signer.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "builder.key")
	if err := os.WriteFile(keyPath, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Key = keyPath
	cfg.PollInterval = 50 * time.Millisecond
	spec, _ := json.Marshal(helperSpec{Config: cfg, KeyPath: keyPath})
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuilderProcess$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+specPath)
	cmd.Stderr = &stderr
	cmd.Stdout = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Wait until the build is running: the stand-in mock records its pid.
	var mockPid, grandchild int
	deadline := time.Now().Add(30 * time.Second)
	for mockPid == 0 || grandchild == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the build never started; daemon output:\n%s", stderr.String())
		}
		mockPid = pidFromGlob(filepath.Join(cfg.WorkDir, "job-*", "mock.pid"))
		grandchild = pidFromGlob(filepath.Join(cfg.WorkDir, "job-*", "grandchild.pid"))
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { syscall.Kill(grandchild, syscall.SIGKILL) })
	st := f.status()
	if len(st.Current) != 1 || st.Current[0].LeaseID != "lease-crash" || st.Current[0].Phase != PhaseLeased {
		t.Fatalf("state before the kill %+v; want the lease recorded", st.Current)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The build's leader dies with the daemon (PR_SET_PDEATHSIG).
	for i := 0; i < 300 && alive(mockPid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(mockPid) {
		t.Errorf("the build (pid %d) outlived the killed daemon", mockPid)
	}
	_, _, leaseCallsBefore, _ := f.si.snapshot()

	// Restart, in process, with a backend that finishes.
	f.runUntilIdle(f.daemon(writeRPMBackend("resumed build"), fakeDigest))
	subs, ended, leaseCalls, entries := f.si.snapshot()
	if len(ended) != 0 {
		t.Errorf("leases ended %v; the restarted daemon should have resumed the lease", ended)
	}
	if len(subs) != 1 || entries != 1 {
		t.Fatalf("%d submissions, %d entries; want exactly one. log:\n%s", len(subs), entries, f.logs.String())
	}
	if ids := envelopeLeaseIDs(t, subs[0]); len(ids) != 1 || ids[0] != "lease-crash" {
		t.Errorf("submitted under leases %q; want lease-crash", ids)
	}
	if leaseCallsBefore != 1 || leaseCalls != 2 {
		t.Errorf("lease requests: %d before the kill, %d in all; want 1 and 2 (the last finding no work)", leaseCallsBefore, leaseCalls)
	}
	// The grandchild that the leader's death did not take down was killed
	// by the restarted daemon through the recorded process group.
	for i := 0; i < 300 && alive(grandchild); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(grandchild) {
		t.Errorf("a build process (pid %d) of the killed daemon survived the restart", grandchild)
	}
	f.assertLog("killed what was left of this job's build")
	f.assertLog("resuming jobs from the state directory", "jobs=1")
	if st := f.status(); st.Counters.Acknowledged != 1 || len(st.Current) != 0 {
		t.Errorf("status %+v", st)
	}
	f.assertCleanWorkDir()
}

func pidFromGlob(pattern string) int {
	m, _ := filepath.Glob(pattern)
	if len(m) != 1 {
		return 0
	}
	b, err := os.ReadFile(m[0])
	if err != nil || !strings.HasSuffix(string(b), "\n") {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
