package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
)

func keygen(t *testing.T, dir, name string, extra ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := runKeygen(append([]string{"--name", name, "--dir", dir}, extra...), &out, &errb); code != exitOK {
		t.Fatalf("keygen exit %d: %s", code, errb.String())
	}
}

func TestKeygenCommand(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	if code := runKeygen([]string{"--name", "b1", "--dir", dir, "--note-name", "skyline.example/b1"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	v, err := attest.LoadVerifier(filepath.Join(dir, "b1.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != v.KeyID() {
		t.Fatalf("printed %q, key id %s", out.String(), v.KeyID())
	}
	vkey, _ := os.ReadFile(filepath.Join(dir, "b1.vkey"))
	if !strings.HasPrefix(string(vkey), "skyline.example/b1+") {
		t.Fatalf("vkey %q", vkey)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "b1.key"))
	if code := runKeygen([]string{"--name", "b1", "--dir", dir}, &out, &errb); code != exitFail {
		t.Fatalf("second keygen exit %d, want %d", code, exitFail)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "b1.key"))
	if !bytes.Equal(before, after) {
		t.Fatal("keygen overwrote the private key")
	}
	for _, args := range [][]string{{}, {"--name", "x", "--type", "rsa"}, {"--name", "x", "extra"}} {
		if code := runKeygen(append(args, "--dir", dir), &out, &errb); code != exitUsage {
			t.Errorf("keygen %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	keygen(t, dir, "e1", "--type", "ecdsa-p256")
	if _, err := os.Stat(filepath.Join(dir, "e1.vkey")); err == nil {
		t.Fatal("ecdsa key got a vkey")
	}
}

func TestAttestSignVerify(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	result := rpmtest.Rebuild(t, srpm, filepath.Join(t.TempDir(), "top"), nil)
	keys := t.TempDir()
	keygen(t, keys, "b1")
	keygen(t, keys, "b2", "--type", "ecdsa-p256")

	var out, errb bytes.Buffer
	code := runAttest([]string{"sign", "--key", filepath.Join(keys, "b1.key"), "--nvr", "hello-1.0-1", "--arch", "x86_64",
		"--srpm", srpm, "--srpm-url", "https://example.org/hello-1.0-1.src.rpm", "--lease", "L1", result}, &out, &errb)
	if code != exitOK {
		t.Fatalf("sign exit %d: %s", code, errb.String())
	}
	env := filepath.Join(t.TempDir(), "env.jsonl")
	if err := os.WriteFile(env, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e, err := attest.Parse(bytes.TrimSpace(out.Bytes()), attest.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := e.Attestation()
	digests, err := rpm.DigestDir(result)
	if err != nil {
		t.Fatal(err)
	}
	sd, _ := rpm.DigestFile(srpm)
	if a.Build.SRPMSHA256 != sd.SHA256 || len(a.Subjects) != len(digests) || a.LeaseID != "L1" {
		t.Fatalf("attestation %+v", a)
	}
	for i, d := range digests {
		if a.Subjects[i].Name != d.File || a.Subjects[i].Skyline != d.Skyline || a.Subjects[i].SHA256 != d.SHA256 {
			t.Fatalf("subject %d %+v, digest %+v", i, a.Subjects[i], d)
		}
	}

	out.Reset()
	errb.Reset()
	if code := runAttest([]string{"verify", "--pub", filepath.Join(keys, "b1.pub"), env}, &out, &errb); code != exitOK {
		t.Fatalf("verify exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "rebuild hello-1.0-1 x86_64") || !strings.Contains(out.String(), a.ResultSet.Digest) {
		t.Fatalf("verify output %q", out.String())
	}
	out.Reset()
	if code := runAttest([]string{"verify", "--json", "--pub", filepath.Join(keys, "b1.pub"), env}, &out, &errb); code != exitOK {
		t.Fatalf("verify --json exit %d: %s", code, errb.String())
	}
	var js []verifiedEntry
	if err := json.Unmarshal(out.Bytes(), &js); err != nil || len(js) != 1 || js[0].ResultSet != a.ResultSet.Digest {
		t.Fatalf("verify --json %q: %v", out.String(), err)
	}

	// Another key: verification fails, exit 1.
	errb.Reset()
	if code := runAttest([]string{"verify", "--pub", filepath.Join(keys, "b2.pub"), env}, &out, &errb); code != exitFail {
		t.Fatalf("verify with another key: exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(errb.String(), "key id mismatch") {
		t.Fatalf("stderr %q", errb.String())
	}
	// A flipped signature bit: exit 1, and stderr says why.
	raw, _ := os.ReadFile(env)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	sigs := m["signatures"].([]any)[0].(map[string]any)
	sig, _ := base64.StdEncoding.DecodeString(sigs["sig"].(string))
	sig[3] ^= 0x10
	sigs["sig"] = base64.StdEncoding.EncodeToString(sig)
	bad, _ := json.Marshal(m)
	tampered := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(tampered, bad, 0o644)
	errb.Reset()
	if code := runAttest([]string{"verify", "--pub", filepath.Join(keys, "b1.pub"), tampered}, &out, &errb); code != exitFail {
		t.Fatalf("tampered: exit %d, want %d", code, exitFail)
	}
	if !strings.Contains(errb.String(), "signature does not verify") {
		t.Fatalf("tampered: stderr %q", errb.String())
	}
	// Usage errors: exit 4.
	for _, args := range [][]string{{}, {"frob"}, {"verify", env}, {"sign", "--key", filepath.Join(keys, "b1.key"), result},
		{"sign", "--key", filepath.Join(keys, "b1.key"), "--nvr", "../x", "--arch", "x86_64", "--srpm", srpm, result}} {
		if code := runAttest(args, &out, &errb); code != exitUsage {
			t.Errorf("attest %v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code := runAttest([]string{"sign", "--help"}, &out, &errb); code != exitOK {
		t.Errorf("sign --help exit %d", code)
	}
}
