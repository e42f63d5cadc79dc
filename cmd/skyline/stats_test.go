package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/stats"
)

const statsOrigin = "stats.example.org/log"

// statsLog runs a real log whose key is also the coordinator's, holding
// enrolments of two builder operators, served as C2SP tlog-tiles over
// HTTP. It returns the log URL and the key's public PEM file.
func statsLog(t *testing.T) (string, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key, err := attest.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := key.NoteSigner(statsOrigin)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := log.Open(ctx, log.Config{Dir: t.TempDir(), Origin: statsOrigin, Signer: ns, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	for _, op := range []string{"alice", "<b>bob</b>"} {
		_, bpriv, _ := ed25519.GenerateKey(rand.Reader)
		b, err := attest.NewSigner(bpriv)
		if err != nil {
			t.Fatal(err)
		}
		env, err := attest.Sign(key, attest.PayloadEnrolment, &attest.Enrolment{
			KeyID: b.KeyID(), PublicKey: string(b.PublicPEM()), Role: attest.RoleBuilder,
			Operator: op, Contact: "x@example.org", Team: "red", Since: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Add(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	size, _ := l.Size()
	if _, err := l.WaitCheckpoint(ctx, size); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := l.ReadPath(r.Context(), strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	pub := filepath.Join(t.TempDir(), "log.pub")
	if err := os.WriteFile(pub, key.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return srv.URL, pub
}

func TestStatsOnce(t *testing.T) {
	url, pub := statsLog(t)
	state := filepath.Join(t.TempDir(), "stats.json")
	var out, errb bytes.Buffer
	args := []string{"--once", "--log", url, "--pub", pub, "--origin", statsOrigin, "--state", state}
	if code := runStats(args, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var h stats.Health
	if err := json.Unmarshal(out.Bytes(), &h); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if h.Next != 2 || h.Ops != 2 || h.Teams != 1 {
		t.Errorf("health %+v, want 2 entries, 2 operators, 1 team", h)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("no state saved: %v", err)
	}
	// A second run resumes from the state: nothing new to read.
	out.Reset()
	if code := runStats(args, &out, &errb); code != exitOK || !strings.Contains(out.String(), `"next": 2`) {
		t.Errorf("resume: exit %d, %s %s", code, out.String(), errb.String())
	}
}

func TestStatsUsage(t *testing.T) {
	url, pub := statsLog(t)
	other := filepath.Join(t.TempDir(), "other.pub")
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, _ := attest.NewSigner(priv)
	os.WriteFile(other, s.PublicPEM(), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no flags", nil, exitUsage, "usage"},
		{"no pub", []string{"--log", url}, exitUsage, "usage"},
		{"missing key file", []string{"--log", url, "--pub", "/nonexistent.pub"}, exitUsage, "--pub"},
		{"bad url", []string{"--once", "--log", "ftp://x", "--pub", pub}, exitUsage, "not an http"},
		{"wrong log key", []string{"--once", "--log", url, "--pub", other, "--origin", statsOrigin}, exitFail, "not signed by the log key"},
		{"unreachable", []string{"--once", "--log", "http://127.0.0.1:1", "--pub", pub, "--origin", statsOrigin}, exitFail, "fetch"},
	} {
		var out, errb bytes.Buffer
		if code := runStats(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%s: exit %d, want %d; stderr %q lacks %q", tc.name, code, tc.code, errb.String(), tc.msg)
		}
	}
}

// signalSource closes ready when the follow loop asks for the size the
// second time: its first catch-up is done.
type signalSource struct {
	stats.Source
	mu    sync.Mutex
	calls int
	ready chan struct{}
}

func (s *signalSource) Size(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	if s.calls++; s.calls == 2 {
		close(s.ready)
	}
	s.mu.Unlock()
	return s.Source.Size(ctx)
}

func TestStatsServe(t *testing.T) {
	url, pub := statsLog(t)
	var errb bytes.Buffer
	code := runStats([]string{"--log", url, "--pub", pub, "--origin", statsOrigin, "--listen", "256.0.0.1:0"}, io.Discard, &errb)
	if code != exitFail || !strings.Contains(errb.String(), "listen") {
		t.Errorf("bad listen address: exit %d %s", code, errb.String())
	}
	f, coord, err := statsFollower(url, pub, statsOrigin, "")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	tr, err := stats.New(stats.Config{Coordinator: coord, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	src := &signalSource{Source: stats.FollowerSource(f), ready: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serveStats(ctx, tr, src, "127.0.0.1:0", stats.FollowConfig{Interval: time.Millisecond}, slog.New(slog.DiscardHandler), reg, ready)
	}()
	addr := <-ready
	<-src.ready
	resp, err := http.Get("http://" + addr + "/stats/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "&lt;b&gt;bob&lt;/b&gt;") || !strings.Contains(string(body), ">alice<") {
		t.Errorf("leaderboard: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "skyline_stats_next_entry 2") {
		t.Errorf("metrics lack the next entry: %s", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serveStats: %v", err)
	}
}
