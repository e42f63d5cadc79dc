package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"
)

func fetch(t *testing.T, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestReadPathServed checks the tlog-tiles read path byte for byte against
// log.ReadPath, with its content types and cache headers, full and partial
// tiles and bundles, HEAD, and the proof endpoints against sumdb/tlog.
func TestReadPathServed(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, envOptions{api: Config{Registerer: reg, Gatherer: reg}})
	ctx := context.Background()
	// 300 enrolments: a full tile and bundle (256) and partial ones.
	for range 300 {
		k := newKey(t)
		if _, err := e.svc.Enrol(ctx, attest.Enrolment{KeyID: k.KeyID(), PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: "op", Contact: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := e.log.WaitCheckpoint(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	tree := openCheckpoint(t, cp, e.logNote)
	paths := []struct {
		path, ctype, cache string
	}{
		{"checkpoint", contentCheckpoint, cacheCheckpoint},
		{"tile/0/000", contentTile, cacheImmutable},
		{"tile/entries/000", contentTile, cacheImmutable},
		{"tile/0/001.p/" + itoa(int(tree.N-256)), contentTile, cachePartial},
		{"tile/entries/001.p/" + itoa(int(tree.N-256)), contentTile, cachePartial},
		{"tile/1/000.p/1", contentTile, cachePartial},
	}
	for _, p := range paths {
		want, err := e.log.ReadPath(ctx, p.path)
		if err != nil {
			t.Fatalf("%s: %v", p.path, err)
		}
		resp, got := fetch(t, http.MethodGet, e.url+"/"+p.path)
		if resp.StatusCode != 200 || string(got) != string(want) {
			t.Errorf("GET %s: %d, %d bytes, want the log's %d bytes", p.path, resp.StatusCode, len(got), len(want))
		}
		if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != p.ctype || cc != p.cache {
			t.Errorf("GET %s: Content-Type %q Cache-Control %q, want %q %q", p.path, ct, cc, p.ctype, p.cache)
		}
		resp, got = fetch(t, http.MethodHead, e.url+"/"+p.path)
		if resp.StatusCode != 200 || len(got) != 0 || resp.ContentLength != int64(len(want)) {
			t.Errorf("HEAD %s: %d, body %d, length %d", p.path, resp.StatusCode, len(got), resp.ContentLength)
		}
	}
	// Proofs match what sumdb/tlog computes from the served tiles.
	c := e.client(nil)
	hr := tlog.TileHashReader(tree, &httpTiles{t: t, base: e.url})
	for _, idx := range []int64{0, 255, 256, tree.N - 1} {
		p, err := c.InclusionProof(ctx, uint64(idx), uint64(tree.N))
		if err != nil {
			t.Fatal(err)
		}
		entry, err := c.Entry(ctx, uint64(idx))
		if err != nil {
			t.Fatal(err)
		}
		var rp tlog.RecordProof
		for _, h := range p {
			rp = append(rp, tlog.Hash(h))
		}
		if err := tlog.CheckRecord(rp, tree.N, tree.Hash, idx, tlog.RecordHash(entry)); err != nil {
			t.Errorf("inclusion proof of %d: %v", idx, err)
		}
	}
	old := tlog.Tree{N: 100}
	if old.Hash, err = tlog.TreeHash(100, hr); err != nil {
		t.Fatal(err)
	}
	cons, err := c.ConsistencyProof(ctx, 100, uint64(tree.N))
	if err != nil {
		t.Fatal(err)
	}
	var tp tlog.TreeProof
	for _, h := range cons {
		tp = append(tp, tlog.Hash(h))
	}
	if err := tlog.CheckTree(tp, tree.N, tree.Hash, old.N, old.Hash); err != nil {
		t.Errorf("consistency proof: %v", err)
	}
	// A wrong method is told the right ones.
	resp, _ := fetch(t, http.MethodPost, e.url+"/checkpoint")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /checkpoint: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	resp, _ = fetch(t, http.MethodGet, e.url+"/submit")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /submit: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// Operations endpoints.
	resp, body := fetch(t, http.MethodGet, e.url+"/healthz")
	if resp.StatusCode != 200 || string(body) != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	resp, body = fetch(t, http.MethodGet, e.url+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `skyline_http_requests_total{code="200",route="tile"}`) {
		t.Errorf("metrics: %d\n%s", resp.StatusCode, body)
	}
	// Error bodies are JSON with a code.
	resp, body = fetch(t, http.MethodGet, e.url+"/tile/0/999")
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || resp.StatusCode != 404 || eb.Code != "not_found" || resp.Header.Get("Content-Type") != contentJSON {
		t.Errorf("tile beyond the tree: %d %s", resp.StatusCode, body)
	}
	if _, err := c.ReadPath(ctx, "tile/0/999"); !errors.Is(err, log.ErrNotFound) {
		t.Errorf("client error for a missing tile: %v", err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestDocsListEveryCode checks that docs/api.md documents every error code
// the server can send.
func TestDocsListEveryCode(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	for code := range codeErrors {
		if !strings.Contains(string(doc), "`"+code+"`") {
			t.Errorf("docs/api.md does not document code %q", code)
		}
	}
}

// flipStorage is Pebble with a switch: once armed, every entry it scans
// comes back with one bit flipped, as a failing disk would return it.
type flipStorage struct {
	log.Storage
	armed atomic.Bool
}

func (f *flipStorage) Scan(start, end []byte, fn func(key, value []byte) error) error {
	return f.Storage.Scan(start, end, func(k, v []byte) error {
		if f.armed.Load() && len(k) > 0 && k[0] == 'e' && len(v) > 0 {
			v = bytes.Clone(v)
			v[len(v)/2] ^= 1
		}
		return fn(k, v)
	})
}

// TestHealthzUnderAlarm checks that a log whose stored entries no longer
// give the integrated tree stops signing, that /healthz then answers 503
// unavailable (what a load balancer or monitor watches), and that the
// served checkpoint stays the last good one.
func TestHealthzUnderAlarm(t *testing.T) {
	pebbleStore, err := log.OpenPebble(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fs := &flipStorage{Storage: pebbleStore}
	e := newEnv(t, envOptions{store: fs})
	ctx := context.Background()
	e.enrol(attest.RoleBuilder, "alice")
	size, _ := e.log.Size()
	good, err := e.log.WaitCheckpoint(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := fetch(t, http.MethodGet, e.url+"/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz before the fault: %d %q", resp.StatusCode, body)
	}
	fs.armed.Store(true)
	e.enrol(attest.RoleBuilder, "bob") // grows the tree: the next checkpoint verifies the stored entries
	grown, _ := e.log.Size()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := e.log.WaitCheckpoint(wctx, grown); !errors.Is(err, log.ErrCorrupt) || !errors.Is(e.log.Alarm(), log.ErrCorrupt) {
		t.Fatalf("checkpoint after a stored bit flip: %v (alarm %v), want log.ErrCorrupt", err, e.log.Alarm())
	}
	resp, body := fetch(t, http.MethodGet, e.url+"/healthz")
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || resp.StatusCode != http.StatusServiceUnavailable || eb.Code != "unavailable" {
		t.Errorf("healthz under alarm: %d %q, want 503 unavailable", resp.StatusCode, body)
	}
	resp, body = fetch(t, http.MethodGet, e.url+"/checkpoint")
	if resp.StatusCode != 200 || !bytes.Equal(body, good) {
		t.Errorf("checkpoint under alarm: %d\n%s\nwant the last good one\n%s", resp.StatusCode, body, good)
	}
}
