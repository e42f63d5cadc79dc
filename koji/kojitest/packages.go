package kojitest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/koji"
)

// SigKey returns Koji's name for rpmtest's throwaway signing key: the
// short (8 hex digit), lower-case key id.
func SigKey(t testing.TB) string {
	t.Helper()
	cmd := exec.Command("gpg", "--batch", "--with-colons", "--list-keys", rpmtest.KeyName)
	cmd.Env = append(cmd.Environ(), "GNUPGHOME="+rpmtest.GPGHome(t))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kojitest: gpg --list-keys: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 4 && f[0] == "pub" && len(f[4]) == 16 {
			return strings.ToLower(f[4][8:])
		}
	}
	t.Fatalf("kojitest: no public key in gpg output %q", out)
	return ""
}

// AddHelloBuild builds testdata/specs/hello.spec for real (rpmbuild -bs,
// then --rebuild), signs every RPM with rpmsign and rpmtest's throwaway
// key, and adds the build (SRPM, hello, hello-doc) to the fake hub as a
// COMPLETE build on volume. It returns the build id and the signing key id.
func (h *FakeHub) AddHelloBuild(t testing.TB, volume string, completionTS float64) (buildID int64, sigkey string) {
	t.Helper()
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	result := rpmtest.Rebuild(t, srpm, filepath.Join(t.TempDir(), "top"), nil)
	bins, err := filepath.Glob(filepath.Join(result, "*.rpm"))
	if err != nil || len(bins) == 0 {
		t.Fatalf("kojitest: no binary RPMs in %s", result)
	}
	sigkey = SigKey(t)
	var files []RPMFile
	for _, p := range append([]string{srpm}, bins...) {
		files = append(files, RPMFile{Path: p, Signed: map[string]string{sigkey: rpmtest.SignRPM(t, p)}})
	}
	id := h.AddBuild(t, BuildSpec{Name: "hello", Version: "1.0", Release: "1", Volume: volume,
		State: koji.BuildComplete, CompletionTS: completionTS}, files)
	return id, sigkey
}
