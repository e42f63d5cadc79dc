package log_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
)

const origin = "log.skyline.example/cosign-test"

type testLog struct {
	l    *log.Log
	vkey string
	v    note.Verifier
}

func openLog(t *testing.T) testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	l, err := log.Open(context.Background(), log.Config{Dir: t.TempDir(), Origin: origin, Signer: s, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return testLog{l, vkey, v}
}

func (tl testLog) add(t *testing.T, prefix string, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := tl.l.Add(ctx, fmt.Appendf(nil, "%s-%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
	size, _ := tl.l.Size()
	if _, err := tl.l.WaitCheckpoint(ctx, size); err != nil {
		t.Fatal(err)
	}
}

// specWitness is a minimal C2SP tlog-witness written from the spec alone
// (not package witness): it keeps one size and root, answers 409 with its
// size, checks the proof with sumdb tlog and cosigns with
// transparency-dev/formats' cosignature/v1 signer.
type specWitness struct {
	t      *testing.T
	logV   note.Verifier
	signer note.Signer
	vkey   string

	mu    sync.Mutex
	size  uint64
	root  tlog.Hash
	calls int
}

func newSpecWitness(t *testing.T, logV note.Verifier, name string) *specWitness {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	vkey, err := note.NewEd25519VerifierKey(name, priv.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	hash := vkey[len(name)+1 : len(name)+9]
	s, err := fnote.NewSignerForCosignatureV1("PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	if err != nil {
		t.Fatal(err)
	}
	cvkey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return &specWitness{t: t, logV: logV, signer: s, vkey: cvkey}
}

func (w *specWitness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	br := bufio.NewReader(r.Body)
	line, _ := br.ReadString('\n')
	old, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(line, "old "), "\n"), 10, 64)
	if err != nil {
		http.Error(rw, "bad old", http.StatusBadRequest)
		return
	}
	var proof tlog.TreeProof
	for {
		l, _ := br.ReadString('\n')
		l = strings.TrimSuffix(l, "\n")
		if l == "" {
			break
		}
		h, _ := base64.StdEncoding.DecodeString(l)
		proof = append(proof, tlog.Hash(h))
	}
	var cp bytes.Buffer
	cp.ReadFrom(br)
	n, err := note.Open(cp.Bytes(), note.VerifierList(w.logV))
	if err != nil {
		http.Error(rw, "bad sig", http.StatusForbidden)
		return
	}
	var c fmtlog.Checkpoint
	if _, err := c.Unmarshal([]byte(n.Text)); err != nil {
		http.Error(rw, "bad checkpoint", http.StatusBadRequest)
		return
	}
	if old != w.size {
		rw.Header().Set("Content-Type", "text/x.tlog.size")
		rw.WriteHeader(http.StatusConflict)
		fmt.Fprintf(rw, "%d\n", w.size)
		return
	}
	if old > 0 && old < c.Size {
		if err := tlog.CheckTree(proof, int64(c.Size), tlog.Hash(c.Hash), int64(old), w.root); err != nil {
			http.Error(rw, "bad proof", http.StatusUnprocessableEntity)
			return
		}
	}
	w.size, w.root = c.Size, tlog.Hash(c.Hash)
	signed, err := note.Sign(&note.Note{Text: n.Text}, w.signer)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Write(signed[len(n.Text)+1:])
}

// ourWitness runs package witness's daemon (no submission) for the log.
func ourWitness(t *testing.T, tl testLog, logURL string) (string, string) {
	dir := t.TempDir()
	cs, _ := attest.GenerateKey(attest.KeyEd25519)
	vs, _ := attest.GenerateKey(attest.KeyEd25519)
	coord, _ := attest.GenerateKey(attest.KeyEd25519)
	cf, err := attest.WriteKeyFiles(dir, "cosign", "w", cs)
	if err != nil {
		t.Fatal(err)
	}
	vf, err := attest.WriteKeyFiles(dir, "verdict", "v", vs)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "coord.pub")
	os.WriteFile(cp, coord.PublicPEM(), 0o644)
	no := false
	cfg := witness.DefaultConfig()
	cfg.StateDir, cfg.Name, cfg.CosignKey = filepath.Join(dir, "state"), "witness.example/ours", cf.Private
	cfg.VerdictKey = vf.Private
	cfg.Logs = []witness.LogConfig{{Name: "test", URL: logURL, SubmitURL: logURL, LogKey: tl.vkey, Origin: origin, CoordinatorKey: cp, Submit: &no}}
	d, err := witness.NewDaemon(cfg, witness.Env{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, d.Cosigner().VerifierKey()
}

// served serves the log's read API with the gatherer's checkpoint.
func served(t *testing.T, g *log.Gatherer) string {
	wl := g.Served()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := wl.ReadPath(r.Context(), strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestGatherCosignatures gathers from package witness's daemon and from an
// independent spec witness: the served checkpoint carries both
// cosignatures and opens with sumdb note under the log key alone and under
// the log key plus both witness keys; each witness's 409 is followed.
func TestGatherCosignatures(t *testing.T) {
	ctx := context.Background()
	tl := openLog(t)
	tl.add(t, "a", 7)
	spec := newSpecWitness(t, tl.v, "spec.example/w")
	specSrv := httptest.NewServer(spec)
	defer specSrv.Close()

	// The spec witness already cosigned size 3 of this log from elsewhere:
	// the gatherer must learn that from its 409.
	spec.size, spec.root = 0, tlog.Hash{}
	g0, _ := log.NewGatherer(tl.l, log.GathererConfig{Witnesses: []log.WitnessConfig{{URL: specSrv.URL, VerifierKey: spec.vkey}}})
	if err := g0.Gather(ctx); err != nil {
		t.Fatal(err)
	}

	plain, err := log.NewGatherer(tl.l, log.GathererConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ourURL, ourKey := ourWitness(t, tl, served(t, plain))
	g, err := log.NewGatherer(tl.l, log.GathererConfig{Witnesses: []log.WitnessConfig{
		{Name: "ours", URL: ourURL, VerifierKey: ourKey},
		{Name: "spec", URL: specSrv.URL, VerifierKey: spec.vkey},
	}})
	if err != nil {
		t.Fatal(err)
	}
	url := served(t, g)

	ourV, _ := fnote.NewVerifierForCosignatureV1(ourKey)
	specV, _ := fnote.NewVerifierForCosignatureV1(spec.vkey)
	for round, n := range []int{0, 5, 300} {
		tl.add(t, fmt.Sprintf("r%d", round), n)
		callsBefore := spec.calls
		if err := g.Gather(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		cp := g.Checkpoint()
		nn, err := note.Open(cp, note.VerifierList(tl.v, ourV, specV))
		if err != nil {
			t.Fatalf("round %d: cosigned checkpoint: %v\n%s", round, err, cp)
		}
		if len(nn.Sigs) != 3 {
			t.Fatalf("round %d: %d verified signatures, want 3", round, len(nn.Sigs))
		}
		if _, err := note.Open(cp, note.VerifierList(tl.v)); err != nil {
			t.Fatalf("round %d: log key alone: %v", round, err)
		}
		if round == 0 && spec.calls-callsBefore != 2 {
			t.Fatalf("spec witness called %d times, want 2 (409 then success)", spec.calls-callsBefore)
		}
		if round > 0 && spec.calls-callsBefore != 1 {
			t.Fatalf("round %d: spec witness called %d times, want 1", round, spec.calls-callsBefore)
		}
	}
	// The read API serves it.
	resp, err := http.Get(url + "/checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b.Bytes(), g.Checkpoint()) {
		t.Fatal("served checkpoint is not the cosigned one")
	}
	if tl.l.Checkpoint() == nil || bytes.Equal(tl.l.Checkpoint(), g.Checkpoint()) {
		t.Fatal("log's own checkpoint should carry no cosignatures")
	}
}

// TestGatherSurvivesBadWitnesses: a witness that is down, one that signs
// with another key and one that refuses do not stop the checkpoint from
// being served with the good witness's cosignature.
func TestGatherSurvivesBadWitnesses(t *testing.T) {
	ctx := context.Background()
	tl := openLog(t)
	tl.add(t, "a", 3)
	good := newSpecWitness(t, tl.v, "good.example/w")
	goodSrv := httptest.NewServer(good)
	defer goodSrv.Close()
	liar := newSpecWitness(t, tl.v, "liar.example/w")
	liarSrv := httptest.NewServer(liar)
	defer liarSrv.Close()
	other := newSpecWitness(t, tl.v, "liar.example/w") // same name, other key
	refuser := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusForbidden) }))
	defer refuser.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()

	g, err := log.NewGatherer(tl.l, log.GathererConfig{Timeout: 2 * time.Second, Witnesses: []log.WitnessConfig{
		{Name: "good", URL: goodSrv.URL, VerifierKey: good.vkey},
		{Name: "liar", URL: liarSrv.URL, VerifierKey: other.vkey},
		{Name: "refuser", URL: refuser.URL, VerifierKey: other.vkey},
		{Name: "down", URL: down.URL, VerifierKey: other.vkey},
	}})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Gather(ctx)
	if !errors.Is(err, log.ErrWitness) {
		t.Fatalf("gather: %v, want ErrWitness", err)
	}
	for _, name := range []string{"liar", "refuser", "down"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name witness %s: %v", name, err)
		}
	}
	cp := g.Checkpoint()
	goodV, _ := fnote.NewVerifierForCosignatureV1(good.vkey)
	n, err := note.Open(cp, note.VerifierList(tl.v, goodV))
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("served checkpoint: %v", err)
	}
	if len(n.UnverifiedSigs) != 0 {
		t.Fatalf("%d unverified signatures appended", len(n.UnverifiedSigs))
	}
}
