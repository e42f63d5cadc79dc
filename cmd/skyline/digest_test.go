package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
)

func digestFixture(t *testing.T) (dir string, files []string) {
	t.Helper()
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	dir = rpmtest.Rebuild(t, srpm, filepath.Join(t.TempDir(), "top"), nil)
	return dir, []string{filepath.Join(dir, "hello-1.0-1.x86_64.rpm"), filepath.Join(dir, "hello-doc-1.0-1.noarch.rpm")}
}

func TestDigestLines(t *testing.T) {
	_, files := digestFixture(t)
	var out, errb bytes.Buffer
	if code := runDigest(files, &out, &errb); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(files) {
		t.Fatalf("got %d lines, want %d: %q", len(lines), len(files), out.String())
	}
	line := regexp.MustCompile(`^([0-9a-f]{64})  ([0-9a-f]{64})  (.+)$`)
	for i, l := range lines {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("line %q does not match <skyline>  <sha256>  <file>", l)
		}
		d, err := rpm.DigestFile(files[i])
		if err != nil {
			t.Fatal(err)
		}
		if m[1] != d.Skyline || m[2] != d.SHA256 || m[3] != files[i] {
			t.Errorf("line %q, want %s  %s  %s", l, d.Skyline, d.SHA256, files[i])
		}
	}
	if errb.Len() != 0 {
		t.Errorf("stderr %q, want empty", errb.String())
	}
}

func TestDigestJSON(t *testing.T) {
	_, files := digestFixture(t)
	var out, errb bytes.Buffer
	if code := runDigest(append([]string{"--json"}, files...), &out, &errb); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	var got []rpm.Digest
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("output is not a JSON array of Digest: %v", err)
	}
	if len(got) != 2 || got[0].Name != "hello" || got[1].Name != "hello-doc" || got[0].Arch != "x86_64" {
		t.Fatalf("got %+v", got)
	}
	for i, f := range files {
		want, err := rpm.DigestFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Skyline != want.Skyline || got[i].SHA256 != want.SHA256 || got[i].File != filepath.Base(f) {
			t.Errorf("entry %d = %+v, want %+v", i, got[i], want)
		}
	}
}

func TestDigestFailures(t *testing.T) {
	dir, files := digestFixture(t)
	bad := filepath.Join(dir, "bad.rpm")
	if err := os.WriteFile(bad, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runDigest([]string{bad, files[0]}, &out, &errb)
	if code != exitFail || !strings.Contains(errb.String(), bad) || !strings.Contains(errb.String(), "truncated") {
		t.Errorf("exit %d, stderr %q: want exit 1 and an error naming %s", code, errb.String(), bad)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 || !strings.HasSuffix(out.String(), "  "+files[0]+"\n") {
		t.Errorf("stdout %q: want the good file's line only", out.String())
	}
	for _, args := range [][]string{nil, {"--bogus", files[0]}} {
		out.Reset()
		errb.Reset()
		if code := runDigest(args, &out, &errb); code != exitUsage || out.Len() != 0 {
			t.Errorf("args %q: exit %d, stdout %q; want exit 4, no output", args, code, out.String())
		}
	}
	errb.Reset()
	if code := runDigest([]string{"--help"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "<skyline digest>  <sha256 of the whole file>  <file as given>") {
		t.Errorf("--help: exit %d, %q", code, errb.String())
	}
}
