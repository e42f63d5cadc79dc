package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
)

func TestBuilderEnrollRequest(t *testing.T) {
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := attest.WriteKeyFiles(dir, "b", "b", s); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"builder", "enroll-request", "--key", filepath.Join(dir, "b.key"), "--operator", "Alice", "--contact", "alice@example.org"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var req builder.EnrollRequest
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		t.Fatal(err)
	}
	if req.KeyID != s.KeyID() || req.PublicKey != string(s.PublicPEM()) || req.Operator != "Alice" || req.Contact != "alice@example.org" {
		t.Errorf("enroll request %+v", req)
	}
	if strings.Contains(out.String(), "PRIVATE") {
		t.Errorf("enroll request prints the private key")
	}
	for _, args := range [][]string{
		{"builder", "enroll-request", "--operator", "Alice", "--contact", "a@b"},
		{"builder", "enroll-request", "--key", filepath.Join(dir, "b.key"), "--contact", "a@b"},
		{"builder", "frobnicate"},
	} {
		if code := run(args, &out, &errb); code != exitUsage {
			t.Errorf("%q: exit %d; want %d", args, code, exitUsage)
		}
	}
}

func TestBuilderStatusAndConfigErrors(t *testing.T) {
	state := t.TempDir()
	if _, err := builder.OpenState(state); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"builder", "status", "--state-dir", state, "--json"}, &out, &errb); code != exitOK {
		t.Fatalf("status exit %d: %s", code, errb.String())
	}
	var st builder.Status
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || st.Current == nil {
		t.Errorf("status json %q: %v", out.String(), err)
	}
	if code := run([]string{"builder", "status", "--state-dir", filepath.Join(state, "missing")}, &out, &errb); code != exitFail {
		t.Errorf("status of a missing state dir: exit %d; want %d", code, exitFail)
	}
	bad := filepath.Join(t.TempDir(), "builder.toml")
	if err := os.WriteFile(bad, []byte("coordinator = \"https://x\"\nno_such_key = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	// Plain `skyline builder --config` is `builder run`.
	if code := run([]string{"builder", "--config", bad}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "no_such_key") {
		t.Errorf("bad config: exit %d, %q; want %d naming the unknown key", code, errb.String(), exitUsage)
	}
	// The daemon's help names the other builder subcommands.
	errb.Reset()
	if code := run([]string{"builder", "--help"}, &out, &errb); code != exitOK || !strings.Contains(errb.String(), "skyline builder status") || !strings.Contains(errb.String(), "skyline builder enroll-request") {
		t.Errorf("builder --help: exit %d, %q; want 0 naming status and enroll-request", code, errb.String())
	}
}
