package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
)

func runVCmd(t *testing.T, fn func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := fn(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestVerifyUsage: help, missing arguments and bad policies are usage
// errors (4); --help is 0 and documents the exit codes.
func TestVerifyUsage(t *testing.T) {
	code, _, stderr := runVCmd(t, runVerify, "--help")
	if code != exitOK || !strings.Contains(stderr, "3  verification failure") {
		t.Fatalf("--help: %d %q", code, stderr)
	}
	policy := filepath.Join("..", "..", "testdata", "policy.example.toml")
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("witness_quorum = 1\nunknown = 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{},
		{"hello-1.0-1"},
		{"--policy", policy},
		{"hello-1.0-1", "--policy", filepath.Join(t.TempDir(), "missing.toml")},
		{"hello-1.0-1", "--policy", bad},
		{"hello-1.0-1", "--policy", policy, "extra"},
		{"--policy", policy, "../etc/passwd", "--log", "http://127.0.0.1:1"},
		{"--bogus"},
	} {
		if code, _, stderr := runVCmd(t, runVerify, args...); code != witness.ExitUsage {
			t.Errorf("%q: exit %d, want 4 (%s)", args, code, stderr)
		}
	}
}

// TestVerifyUnreachable: a log that cannot be reached is a verification
// failure (3), with the NVR before or after the flags, and the JSON report
// says so.
func TestVerifyUnreachable(t *testing.T) {
	policy := filepath.Join("..", "..", "testdata", "policy.example.toml")
	for _, args := range [][]string{
		{"hello-1.0-1", "--policy", policy, "--log", "http://127.0.0.1:1", "--json"},
		{"--policy", policy, "--log", "http://127.0.0.1:1", "--json", "hello-1.0-1"},
	} {
		code, stdout, stderr := runVCmd(t, runVerify, args...)
		if code != witness.ExitVerification {
			t.Fatalf("%q: exit %d (%s)", args, code, stderr)
		}
		var rep struct {
			NVR    string `json:"nvr"`
			Status string `json:"status"`
			Exit   int    `json:"exit"`
		}
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%q: %v in %q", args, err, stdout)
		}
		if rep.NVR != "hello-1.0-1" || rep.Status != witness.StatusVerificationFailed || rep.Exit != 3 {
			t.Fatalf("%q: report %+v", args, rep)
		}
	}
}

// auditLog makes a small real log (coordinator enrolments and a job),
// exports it as static tlog-tiles files and serves them with a plain file
// server: all the audit needs.
func auditLog(t *testing.T, entries int) (url, vkey string, add func(int)) {
	t.Helper()
	coord, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := coord.NoteSigner("log.audit.test")
	if err != nil {
		t.Fatal(err)
	}
	vkey, err = attest.NoteVerifierKey("log.audit.test", coord.Public())
	if err != nil {
		t.Fatal(err)
	}
	l, err := log.Open(context.Background(), log.Config{Dir: t.TempDir(), Origin: "log.audit.test", Signer: ns, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	dir := t.TempDir()
	n := 0
	add = func(k int) {
		for range k {
			key, err := attest.GenerateKey(attest.KeyEd25519)
			if err != nil {
				t.Fatal(err)
			}
			env, err := attest.Sign(coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: key.KeyID(), PublicKey: string(key.PublicPEM()), Role: attest.RoleBuilder, Operator: "op" + strconv.Itoa(n), Contact: "x@example.org", Since: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := l.Add(context.Background(), env); err != nil {
				t.Fatal(err)
			}
			n++
		}
		if _, err := l.WaitCheckpoint(context.Background(), uint64(n)); err != nil {
			t.Fatal(err)
		}
		if err := l.Export(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
	}
	add(entries)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv.URL, vkey, add
}

// TestAuditCommand: a clean log audits to 0 with its state saved, a
// resumed audit replays only the new entries, and bad usage is 4.
func TestAuditCommand(t *testing.T) {
	url, vkey, add := auditLog(t, 5)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "log.vkey")
	if err := os.WriteFile(keyFile, []byte(vkey+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "audit.state")
	code, stdout, stderr := runVCmd(t, runAudit, "--log", url, "--pub", keyFile, "--save", state)
	if code != exitOK || !strings.Contains(stdout, "replayed entries 0..5 (5)") || !strings.Contains(stdout, "root recomputed: true") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "audit: 5/5 entries") {
		t.Errorf("no plain progress line on a non-terminal: %q", stderr)
	}
	add(3)
	code, stdout, stderr = runVCmd(t, runAudit, "--log", url, "--pub", vkey, "--from", state, "--json")
	var rep witness.AuditReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || code != exitOK {
		t.Fatalf("exit %d, %v\n%s\n%s", code, err, stdout, stderr)
	}
	if rep.From != 5 || rep.To != 8 || rep.Entries != 3 || !rep.RootMatches {
		t.Fatalf("resumed report %+v", rep)
	}
	for _, args := range [][]string{
		{},
		{"--log", url},
		{"--log", url, "--pub", "not-a-key"},
		{"--log", url, "--pub", vkey, "--from", filepath.Join(dir, "missing")},
		{"--log", url, "--pub", vkey, "extra"},
	} {
		if code, _, stderr := runVCmd(t, runAudit, args...); code != witness.ExitUsage {
			t.Errorf("%q: exit %d, want 4 (%s)", args, code, stderr)
		}
	}
	if code, _, stderr := runVCmd(t, runAudit, "--log", "http://127.0.0.1:1", "--pub", vkey); code != witness.ExitVerification {
		t.Errorf("unreachable log: exit %d (%s)", code, stderr)
	}
}

// TestAuditProgress: on a terminal the bar is redrawn in place; elsewhere
// plain lines are printed.
func TestAuditProgress(t *testing.T) {
	var tty bytes.Buffer
	p := &progress{w: &tty, tty: true, start: time.Now()}
	p.update(50, 100)
	p.update(100, 100)
	p.done()
	if out := tty.String(); !strings.HasPrefix(out, "\r[####################....................] 50/100") || !strings.Contains(out, "\r[########################################] 100/100") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("terminal output %q", out)
	}
	var plain bytes.Buffer
	p = newProgress(&plain)
	p.update(10, 100)
	p.update(20, 100) // within 5 s of the last line: not printed
	p.update(100, 100)
	p.done()
	if out := plain.String(); strings.Contains(out, "\r") || strings.Count(out, "\n") != 2 || !strings.Contains(out, "audit: 100/100 entries") {
		t.Fatalf("plain output %q", out)
	}
}

// TestVerifyState: the state file round-trips a checkpoint signed by the
// policy's log key; a missing file is no state; anything else fails.
func TestVerifyState(t *testing.T) {
	coord, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	ns, _ := coord.NoteSigner("log.state.test")
	vkey, _ := attest.NoteVerifierKey("log.state.test", coord.Public())
	ex, err := os.ReadFile(filepath.Join("..", "..", "testdata", "policy.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(ex)
	i := strings.Index(s, "[log]")
	s = s[:i] + "[log]\nvkey = \"" + vkey + "\"\n" + s[strings.Index(s, "[agreement]"):]
	pol, err := witness.ParseVerifyPolicy([]byte(s), ".")
	if err != nil {
		t.Fatal(err)
	}
	empty := witness.EmptyTree("log.state.test")
	l, err := log.Open(context.Background(), log.Config{Dir: t.TempDir(), Origin: "log.state.test", Signer: ns, CheckpointInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Add(context.Background(), []byte("entry")); err != nil {
		t.Fatal(err)
	}
	note, err := l.WaitCheckpoint(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "verify.state")
	if cp, err := loadVerifyState(path, pol); cp != nil || err != nil {
		t.Fatalf("missing state: %v %v", cp, err)
	}
	rep := &witness.VerifyReport{Checkpoint: &witness.CheckpointRef{Origin: empty.Origin, Size: 1}, CheckpointNote: note}
	if err := saveVerifyState(path, rep); err != nil {
		t.Fatal(err)
	}
	cp, err := loadVerifyState(path, pol)
	if err != nil || cp.Size != 1 || !bytes.Equal(cp.Note, note) {
		t.Fatalf("loaded %+v, %v", cp, err)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadVerifyState(path, pol); err == nil {
		t.Fatal("garbage state accepted")
	}
}
