package rpmtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestBuildAndRebuild(t *testing.T) {
	srpm := BuildSRPM(t, "hello.spec", nil)
	if !strings.HasSuffix(srpm, "/hello-1.0-1.src.rpm") {
		t.Errorf("BuildSRPM = %s, want .../hello-1.0-1.src.rpm", srpm)
	}
	top := filepath.Join(t.TempDir(), "top")
	dir := Rebuild(t, srpm, top, map[string]string{"_buildhost": "elsewhere"})
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"hello-1.0-1.x86_64.rpm", "hello-doc-1.0-1.noarch.rpm"}; !slices.Equal(names, want) {
		t.Errorf("Rebuild result %v, want %v", names, want)
	}
	q := func(format, file string) string {
		out, err := exec.Command("rpm", "-qp", "--qf", format, file).Output()
		if err != nil {
			t.Fatalf("rpm -qp %s: %v", file, err)
		}
		return string(out)
	}
	if got := q("%{BUILDTIME} %{BUILDHOST}", filepath.Join(dir, names[0])); got != SourceDateEpoch+" elsewhere" {
		t.Errorf("BUILDTIME BUILDHOST = %q, want SOURCE_DATE_EPOCH and the overriding define", got)
	}
	if _, err := os.Stat(top); !os.IsNotExist(err) {
		t.Errorf("topdir left behind: %v", err)
	}
}

func TestSignRPMVerifies(t *testing.T) {
	dir := Rebuild(t, BuildSRPM(t, "hello.spec", nil), filepath.Join(t.TempDir(), "top"), nil)
	orig := filepath.Join(dir, "hello-doc-1.0-1.noarch.rpm")
	signed := SignRPM(t, orig)
	home := GPGHome(t)
	pub, err := exec.Command("gpg", "--homedir", home, "--armor", "--export", KeyName).Output()
	if err != nil || len(pub) == 0 {
		t.Fatalf("gpg --export: %v", err)
	}
	db := t.TempDir()
	key := filepath.Join(db, "key.asc")
	if err := os.WriteFile(key, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpm", "--dbpath", db, "--import", key).CombinedOutput(); err != nil {
		t.Fatalf("rpm --import: %v\n%s", err, out)
	}
	out, err := exec.Command("rpm", "--dbpath", db, "-Kv", signed).CombinedOutput()
	if err != nil || !regexp.MustCompile(`Header V4 RSA/SHA\d+ Signature, key ID [0-9a-f]+: OK`).Match(out) {
		t.Errorf("rpm -Kv on the signed copy: %v\n%s", err, out)
	}
	if out, _ := exec.Command("rpm", "--dbpath", db, "-Kv", orig).CombinedOutput(); strings.Contains(string(out), "Signature, key ID") {
		t.Errorf("the original was signed too:\n%s", out)
	}
}
