package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/witness"
)

func writeWitnessConfig(t *testing.T, dir, listen, logURL, extra string) string {
	t.Helper()
	vkey, err := os.ReadFile(filepath.Join(dir, "log.vkey"))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf(`state_dir = %q
listen = %q
name = "witness.test/w1"
cosign_key = %q
verdict_key = %q
poll_interval = "20ms"
%s
[[log]]
name = "test"
url = %q
log_key = %q
coordinator_key = %q
submit = false
`, filepath.Join(dir, "wstate"), listen, filepath.Join(dir, "cosign.key"), filepath.Join(dir, "verdict.key"), extra, logURL, strings.TrimSpace(string(vkey)), filepath.Join(dir, "log.pub"))
	p := filepath.Join(dir, "witness.toml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWitnessCommandConfig: --show-keys prints the cosignature key; unknown
// keys and a missing file are usage errors.
func TestWitnessCommandConfig(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "log")
	cs := writeKey(t, dir, "cosign")
	writeKey(t, dir, "verdict")
	p := writeWitnessConfig(t, dir, "127.0.0.1:0", "http://127.0.0.1:1", "")
	var out, errb bytes.Buffer
	if code := run([]string{"witness", "--config", p, "--show-keys"}, &out, &errb); code != exitOK {
		t.Fatalf("show-keys: %d %s", code, errb.String())
	}
	c, err := witness.NewCosignerFromSigner("witness.test/w1", cs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), c.VerifierKey()) {
		t.Fatalf("show-keys printed %q, want %s", out.String(), c.VerifierKey())
	}
	bad := writeWitnessConfig(t, dir, "127.0.0.1:0", "http://127.0.0.1:1", "pol_interval = \"1s\"")
	if code := run([]string{"witness", "--config", bad}, io.Discard, &errb); code != exitUsage || !strings.Contains(errb.String(), "pol_interval") {
		t.Fatalf("unknown key: %d %s", code, errb.String())
	}
	if code := run([]string{"witness", "--config", filepath.Join(dir, "missing.toml")}, io.Discard, io.Discard); code != exitUsage {
		t.Fatalf("missing config: %d", code)
	}
}

// TestServeGathersFromWitness runs `skyline serve` with a [[witness]] and
// the witness daemon on loopback: the log's checkpoint comes to carry the
// witness's cosignature, which opens with sumdb note.
func TestServeGathersFromWitness(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "log")
	writeKey(t, dir, "admin")
	cs := writeKey(t, dir, "cosign")
	writeKey(t, dir, "verdict")
	writeKey(t, dir, "builder")
	c, err := witness.NewCosignerFromSigner("witness.test/w1", cs)
	if err != nil {
		t.Fatal(err)
	}
	// The witness's address must be in serve's configuration before either
	// starts: reserve a port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	waddr := ln.Addr().String()
	ln.Close()
	cfg, err := loadServeConfig(writeConfig(t, dir, fmt.Sprintf("[[witness]]\nname = \"w1\"\nurl = \"http://%s\"\nverifier_key = %q\n", waddr, c.VerifierKey())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var serr bytes.Buffer
	go func() { done <- serve(ctx, cfg, &serr, ready) }()
	server := "http://" + <-ready

	data, err := os.ReadFile(writeWitnessConfig(t, dir, waddr, server, ""))
	if err != nil {
		t.Fatal(err)
	}
	wcfg, err := witness.ParseConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	d, err := witness.NewDaemon(wcfg, witness.Env{})
	if err != nil {
		t.Fatal(err)
	}
	wready := make(chan string, 1)
	wdone := make(chan error, 1)
	go func() {
		wdone <- runWitnessDaemon(ctx, wcfg, d, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), wready)
	}()
	<-wready
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, serr.String())
		}
		if err := <-wdone; err != nil {
			t.Errorf("witness: %v", err)
		}
	}()

	var out, errb bytes.Buffer
	if code := run([]string{"admin", "enroll", "--server", server, "--admin-key", filepath.Join(dir, "admin.key"), "--log-key", filepath.Join(dir, "log.vkey"), "--pub", filepath.Join(dir, "builder.pub"), "--operator", "alice", "--contact", "alice@example.org"}, &out, &errb); code != exitOK {
		t.Fatalf("enroll: %d %s", code, errb.String())
	}
	vkey, _ := os.ReadFile(filepath.Join(dir, "log.vkey"))
	logV, err := note.NewVerifier(strings.TrimSpace(string(vkey)))
	if err != nil {
		t.Fatal(err)
	}
	cv, err := fnote.NewVerifierForCosignatureV1(c.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(api.ClientConfig{URL: server})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		cp, err := cl.Checkpoint(ctx)
		if err == nil {
			if n, err := note.Open(cp, note.VerifierList(logV, cv)); err == nil && len(n.Sigs) == 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cosigned checkpoint served: last %q %v\n%s", cp, err, serr.String())
		}
		<-tick.C
	}
}
