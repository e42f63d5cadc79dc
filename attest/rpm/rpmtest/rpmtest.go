// Package rpmtest builds real RPMs for tests from the spec files in the
// module's testdata/specs, with rpmbuild, reproducibly: SOURCE_DATE_EPOCH,
// %use_source_date_epoch_as_buildtime, %clamp_mtime_to_source_date_epoch,
// a fixed %_buildhost and --nodeps (the rpm database may be empty).
package rpmtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// SourceDateEpoch is the SOURCE_DATE_EPOCH every build uses.
const SourceDateEpoch = "1700000000"

// BuildHost is the %_buildhost every build uses unless defines override it.
const BuildHost = "skyline-rpmtest"

// SpecsDir is the absolute path of the module's testdata/specs.
func SpecsDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "testdata", "specs")
}

// Spec returns the path of the shared spec file name (e.g. "hello.spec").
func Spec(name string) string { return filepath.Join(SpecsDir(), name) }

func macros(topdir string, defines map[string]string) []string {
	args := []string{
		"--nodeps",
		"--define", "_topdir " + topdir,
		"--define", "use_source_date_epoch_as_buildtime 1",
		"--define", "clamp_mtime_to_source_date_epoch 1",
		"--define", "_buildhost " + BuildHost,
	}
	keys := make([]string, 0, len(defines))
	for k := range defines {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--define", k+" "+defines[k])
	}
	return args
}

func rpmbuild(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("rpmbuild", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+SourceDateEpoch, "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rpmtest: rpmbuild %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// BuildSRPM builds the source RPM of spec (a path, or a name in SpecsDir)
// and returns its path in a test temporary directory.
func BuildSRPM(t testing.TB, spec string, defines map[string]string) (srpmPath string) {
	t.Helper()
	if !strings.ContainsRune(spec, os.PathSeparator) {
		spec = Spec(spec)
	}
	top := t.TempDir()
	out := filepath.Join(top, "SRPMS")
	args := append(macros(top, defines), "--define", "_srcrpmdir "+out, "--define", "_sourcedir "+filepath.Dir(spec), "-bs", spec)
	rpmbuild(t, args...)
	m, _ := filepath.Glob(filepath.Join(out, "*.src.rpm"))
	if len(m) != 1 {
		t.Fatalf("rpmtest: rpmbuild -bs %s made %d source RPMs", spec, len(m))
	}
	return m[0]
}

// Rebuild rebuilds srpm with rpmbuild --rebuild in topdir and returns a new
// temporary directory holding the binary RPMs (named NAME-VERSION-RELEASE.
// ARCH.rpm, the SRPM excluded). Compiled code records its build path, so
// two rebuilds are identical only at the same topdir: tests that compare
// rebuilds pass the same fixed path. topdir is emptied first and locked for
// the build (flock on topdir+".lock"), so concurrent test binaries using
// the same path take turns.
func Rebuild(t testing.TB, srpm string, topdir string, defines map[string]string) (resultDir string) {
	t.Helper()
	unlock := lock(t, topdir)
	defer unlock()
	if err := os.RemoveAll(topdir); err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	if err := os.MkdirAll(topdir, 0o755); err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	defer os.RemoveAll(topdir)
	result := t.TempDir()
	args := append(macros(topdir, defines),
		"--define", "_rpmdir "+result,
		"--define", "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm",
		"--rebuild", srpm)
	rpmbuild(t, args...)
	return result
}

func lock(t testing.TB, topdir string) func() {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(topdir), 0o755); err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	f, err := os.OpenFile(topdir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("rpmtest: lock %s: %v", topdir, err)
	}
	return func() { f.Close() }
}

// gpg holds this test binary's throwaway signing key (an armored secret
// key), made once.
var gpg struct {
	once sync.Once
	key  []byte
	err  string
}

// KeyName is the user id of the key SignRPM signs with.
const KeyName = "skyline rpmtest <rpmtest@example.org>"

func gpgCmd(home string, args ...string) *exec.Cmd {
	cmd := exec.Command("gpg", append([]string{"--batch", "--homedir", home, "--pinentry-mode", "loopback", "--passphrase", ""}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	return cmd
}

// killAgent stops the gpg-agent gpg started for home.
func killAgent(home string) {
	_ = exec.Command("gpgconf", "--homedir", home, "--kill", "gpg-agent").Run()
}

func makeKey() ([]byte, error) {
	home, err := os.MkdirTemp("", "rpmtest-gnupg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	defer killAgent(home)
	if out, err := gpgCmd(home, "--quick-gen-key", KeyName, "rsa2048", "sign", "never").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("gpg --quick-gen-key: %v\n%s", err, out)
	}
	key, err := gpgCmd(home, "--armor", "--export-secret-keys", KeyName).Output()
	if err != nil {
		return nil, fmt.Errorf("gpg --export-secret-keys: %v", err)
	}
	return key, nil
}

// GPGHome returns a GNUPGHOME for this test holding the test binary's
// throwaway key (generated on first use). Its gpg-agent is stopped and the
// directory removed when the test ends.
func GPGHome(t testing.TB) string {
	t.Helper()
	gpg.once.Do(func() {
		key, err := makeKey()
		if err != nil {
			gpg.err = err.Error()
		}
		gpg.key = key
	})
	if gpg.err != "" {
		t.Fatalf("rpmtest: %s", gpg.err)
	}
	home, err := os.MkdirTemp("", "rpmtest-gnupg-")
	if err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	t.Cleanup(func() {
		killAgent(home)
		os.RemoveAll(home)
	})
	cmd := gpgCmd(home, "--import")
	cmd.Stdin = bytes.NewReader(gpg.key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpmtest: gpg --import: %v\n%s", err, out)
	}
	return home
}

// SignRPM copies the RPM at path into a temporary directory, signs the copy
// with rpmsign --addsign and this test binary's throwaway key, and returns
// the copy's path.
func SignRPM(t testing.TB, path string) (signedCopy string) {
	t.Helper()
	home := GPGHome(t)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	signedCopy = filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(signedCopy, b, 0o644); err != nil {
		t.Fatalf("rpmtest: %v", err)
	}
	cmd := exec.Command("rpmsign", "--addsign",
		"--define", "__gpg /usr/bin/gpg",
		"--define", "_gpg_name "+KeyName,
		"--define", "_gpg_sign_cmd_extra_args --pinentry-mode loopback --passphrase ''",
		signedCopy)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("rpmtest: rpmsign %s: %v\n%s", path, err, out)
	}
	return signedCopy
}
