package builder

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
)

// standInPath puts testdata/bin (the stand-in mock) first on the
// children's PATH.
func standInPath(t testing.TB) string {
	t.Helper()
	bin, err := filepath.Abs("testdata/bin")
	if err != nil {
		t.Fatal(err)
	}
	return bin + ":" + DefaultConfig().Path
}

// mockJob makes a job directory with a fake SRPM whose content tells the
// stand-in mock what to do, and returns the SRPM and result paths.
func mockJob(t *testing.T, mode string) (jobDir, srpm, results string) {
	t.Helper()
	jobDir = t.TempDir()
	srpm = filepath.Join(jobDir, "job.src.rpm")
	if err := os.WriteFile(srpm, []byte(mode+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	results = filepath.Join(jobDir, "results")
	if err := os.Mkdir(results, 0o755); err != nil {
		t.Fatal(err)
	}
	return jobDir, srpm, results
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

func TestMockBackendCommandLineEnvironmentAndPriority(t *testing.T) {
	rpmA := filepath.Join(t.TempDir(), "hello-1.0-1.x86_64.rpm")
	rpmB := filepath.Join(t.TempDir(), "hello-doc-1.0-1.noarch.rpm")
	for _, f := range []string{rpmA, rpmB} {
		if err := os.WriteFile(f, []byte("rpm"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	jobDir, srpm, results := mockJob(t, "ok\n"+rpmA+"\n"+rpmB)
	m := &Mock{Chroot: "fedora-41-x86_64", Args: []string{"--isolation=simple"}, Child: Child{Path: standInPath(t), LogTail: 4096}}
	if err := m.Build(context.Background(), srpm, results); err != nil {
		t.Fatalf("Build: %v", err)
	}
	want := []string{"-r", "fedora-41-x86_64", "--rebuild", srpm, "--resultdir", results + ".mock",
		"--uniqueext", "skyline-" + filepath.Base(jobDir), "--isolation=simple"}
	if got := readLines(t, filepath.Join(jobDir, "mock.args")); !slices.Equal(got, want) {
		t.Errorf("mock ran with\n%q\nwant\n%q", got, want)
	}
	// Only these variables reach the build; nothing of the test's own
	// environment (which has, e.g., GOPATH-like variables) leaks.
	env := readLines(t, filepath.Join(jobDir, "mock.env"))
	var names []string
	for _, kv := range env {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	for _, n := range names {
		switch n {
		case "PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_", "OLDPWD":
		default:
			t.Errorf("build environment has %q; want only PATH, HOME, LANG, TZ (and what sh adds)", n)
		}
	}
	for _, kv := range []string{"LANG=C.UTF-8", "TZ=UTC", "PATH=" + standInPath(t), "HOME=" + results + ".home"} {
		if !slices.Contains(env, kv) {
			t.Errorf("build environment lacks %s: %q", kv, env)
		}
	}
	prio := strings.Join(readLines(t, filepath.Join(jobDir, "mock.prio")), "\n")
	for _, want := range []string{"19\n", "SCHED_IDLE", "idle"} {
		if !strings.Contains(prio, want) {
			t.Errorf("build priority %q lacks %q (nice 19, SCHED_IDLE, idle I/O class)", prio, want)
		}
	}
	ents, err := os.ReadDir(results)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, []string{"hello-1.0-1.x86_64.rpm", "hello-doc-1.0-1.noarch.rpm"}) {
		t.Errorf("result dir holds %q; want the two binary RPMs and no source RPM", got)
	}
}

func TestMockBackendFailures(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		want     error
		tailHas  string
		statusOK bool
	}{
		{"fail", ErrBuildFailed, "Bad exit status from /var/tmp/rpm-tmp.1234 (%build)", false},
		{"norpms", ErrNoRPMs, "stand-in mock: rebuilding job.src.rpm", true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			_, srpm, results := mockJob(t, tc.mode)
			m := &Mock{Chroot: "fedora-41-x86_64", Child: Child{Path: standInPath(t), LogTail: 4096}}
			err := m.Build(context.Background(), srpm, results)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Build = %v; want %v", err, tc.want)
			}
			var be *BuildError
			if !errors.As(err, &be) {
				t.Fatalf("Build error %T is not a *BuildError", err)
			}
			if !strings.Contains(be.Tail, tc.tailHas) {
				t.Errorf("log tail %q lacks %q", be.Tail, tc.tailHas)
			}
			if (be.Status == "exit status 0") != tc.statusOK {
				t.Errorf("status %q", be.Status)
			}
		})
	}
}

func alive(pid int) bool {
	// A zombie still answers kill(0); read its state instead.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func waitFile(t *testing.T, path string) int {
	t.Helper()
	for range 500 {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", path)
	return 0
}

func TestBuildTimeoutKillsTheProcessGroup(t *testing.T) {
	jobDir, srpm, results := mockJob(t, "hang")
	m := &Mock{Chroot: "fedora-41-x86_64", Child: Child{Path: standInPath(t), KillGrace: 200 * time.Millisecond}}
	// The time limit fires once the build and its grandchild are running
	// (a fixed deadline could fire before a loaded machine starts them).
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- m.Build(ctx, srpm, results) }()
	var pids []int
	for _, f := range []string{"mock.pid", "grandchild.pid"} {
		pids = append(pids, waitFile(t, filepath.Join(jobDir, f)))
	}
	start := time.Now()
	cancel(ErrBuildTimeout)
	if err := <-done; !errors.Is(err, ErrBuildTimeout) {
		t.Fatalf("Build = %v; want ErrBuildTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Build returned %v after the time limit; the kill grace is 200ms", d)
	}
	for i, f := range []string{"mock.pid", "grandchild.pid"} {
		pid := pids[i]
		// SIGKILL is delivered asynchronously: allow the kernel a moment.
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s (pid %d) outlived the timed-out build", f, pid)
		}
	}
}

// hostArchRPMs returns the digests of the RPMs in dir keyed by file name.
func digestsByName(t *testing.T, dir string) map[string]string {
	t.Helper()
	ds, err := rpm.DigestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, d := range ds {
		m[d.File] = d.Skyline
	}
	return m
}

// TestRpmbuildBackendTwoBuildersAgree runs two rebuilds of the same SRPM at
// the same time, in different private directories, one through a user
// namespace as an unprivileged daemon would: both see the one fixed build
// path, so their RPMs have the same skyline digest.
func TestRpmbuildBackendTwoBuildersAgree(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	buildPath := filepath.Join(os.TempDir(), "skyline-build-test")
	var wg sync.WaitGroup
	dirs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		dirs[i] = filepath.Join(t.TempDir(), "results")
		if err := os.Mkdir(dirs[i], 0o755); err != nil {
			t.Fatal(err)
		}
		r := &Rpmbuild{BuildPath: buildPath, UserNamespace: i == 1, Child: Child{Path: DefaultConfig().Path, LogTail: 4096}}
		wg.Go(func() { errs[i] = r.Build(context.Background(), srpm, dirs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			var be *BuildError
			if errors.As(err, &be) {
				t.Logf("log tail:\n%s", be.Tail)
			}
			t.Fatalf("build %d: %v", i, err)
		}
	}
	a, b := digestsByName(t, dirs[0]), digestsByName(t, dirs[1])
	if len(a) != 2 {
		t.Fatalf("build made %d RPMs (%v); want hello and hello-doc", len(a), a)
	}
	for name, d := range a {
		if b[name] != d {
			t.Errorf("%s: builder 1 digest %s, builder 2 digest %s", name, d, b[name])
		}
	}
	// The build time is the changelog's, not the clock's.
	epoch, err := SourceDateEpoch(context.Background(), srpm, DefaultConfig().Path)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Unix(); epoch != want {
		t.Errorf("SOURCE_DATE_EPOCH %d; want the changelog's %d", epoch, want)
	}
}

func TestRpmbuildBackendFailure(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "broken.spec")
	body := strings.Join([]string{
		"Name: broken", "Version: 1", "Release: 1", "Summary: s", "License: MIT",
		"%description", "d", "%prep", "%build", "echo compiling; echo 'error: the compiler is broken' >&2; exit 7",
		"%install", "%files", "%changelog", "* Thu Jan 01 2026 t <t@example.org> - 1-1", "- x", "",
	}, "\n")
	if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	srpm := rpmtest.BuildSRPM(t, spec, nil)
	results := filepath.Join(t.TempDir(), "results")
	if err := os.Mkdir(results, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Rpmbuild{BuildPath: filepath.Join(os.TempDir(), "skyline-build-test"), Child: Child{Path: DefaultConfig().Path, LogTail: 4096}}
	err := r.Build(context.Background(), srpm, results)
	var be *BuildError
	if !errors.As(err, &be) || !errors.Is(err, ErrBuildFailed) {
		t.Fatalf("Build = %v; want a *BuildError wrapping ErrBuildFailed", err)
	}
	if !strings.Contains(be.Tail, "the compiler is broken") {
		t.Errorf("log tail %q lacks the build's error output", be.Tail)
	}
}

// TestRpmbuildBuildCannotReadTheKey: the build runs as the daemon's user,
// so the key must be hidden from it: a spec that tries to read the key
// file and list a secret directory finds them empty, with and without a
// user namespace.
func TestRpmbuildBuildCannotReadTheKey(t *testing.T) {
	secrets := t.TempDir()
	key := filepath.Join(secrets, "builder.key")
	if err := os.WriteFile(key, []byte("-----BEGIN PRIVATE KEY-----\nsecret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(secrets, "credentials")
	if err := os.Mkdir(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(creds, "other"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(t.TempDir(), "snoop.spec")
	body := strings.Join([]string{
		"Name: snoop", "Version: 1", "Release: 1", "Summary: s", "License: MIT", "BuildArch: noarch",
		"%description", "d", "%prep", "%build",
		"if [ -s " + key + " ]; then echo 'LEAK: read the key'; exit 1; fi",
		"if [ -n \"$(ls -A " + creds + ")\" ]; then echo 'LEAK: listed the credentials'; exit 1; fi",
		"%install", "mkdir -p %{buildroot}/usr/share/snoop", "echo ok > %{buildroot}/usr/share/snoop/ok",
		"%files", "/usr/share/snoop/ok",
		"%changelog", "* Thu Jan 01 2026 t <t@example.org> - 1-1", "- x", "",
	}, "\n")
	if err := os.WriteFile(spec, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	srpm := rpmtest.BuildSRPM(t, spec, nil)
	for _, userns := range []bool{false, true} {
		results := filepath.Join(t.TempDir(), "results")
		if err := os.Mkdir(results, 0o755); err != nil {
			t.Fatal(err)
		}
		r := &Rpmbuild{BuildPath: filepath.Join(os.TempDir(), "skyline-build-test"), UserNamespace: userns,
			Hide: []string{key, creds, filepath.Join(secrets, "absent")}, Child: Child{Path: DefaultConfig().Path, LogTail: 4096}}
		if err := r.Build(context.Background(), srpm, results); err != nil {
			var be *BuildError
			if errors.As(err, &be) {
				t.Logf("log tail:\n%s", be.Tail)
			}
			t.Fatalf("user namespace %v: %v", userns, err)
		}
	}
	// The hiding is private to the build: the daemon still reads the key.
	if b, err := os.ReadFile(key); err != nil || !strings.Contains(string(b), "secret") {
		t.Errorf("after the build the key reads %q, %v", b, err)
	}
	// And without hiding, the same spec fails: the check is real.
	results := filepath.Join(t.TempDir(), "results")
	if err := os.Mkdir(results, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Rpmbuild{BuildPath: filepath.Join(os.TempDir(), "skyline-build-test"), Child: Child{Path: DefaultConfig().Path, LogTail: 4096}}
	var be *BuildError
	if err := r.Build(context.Background(), srpm, results); !errors.As(err, &be) || !strings.Contains(be.Tail, "LEAK: read the key") {
		t.Errorf("unhidden build = %v; want it to fail reading the key", err)
	}
}
