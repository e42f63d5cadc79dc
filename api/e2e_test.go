package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/coord"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// httpTiles is a golang.org/x/mod/sumdb/tlog TileReader over plain HTTP
// GETs of the server's C2SP tlog-tiles paths: code that knows nothing of
// skyline checks what the server serves.
type httpTiles struct {
	t    testing.TB
	base string
	gets int
}

func (h *httpTiles) Height() int { return 8 }

// c2spPath maps sumdb's tile path ("tile/8/L/N", "tile/8/data/N") to C2SP
// tlog-tiles' ("tile/L/N", "tile/entries/N"): the same tiles, without the
// height element.
func c2spPath(t tlog.Tile) string {
	p := strings.Replace(t.Path(), "tile/8/", "tile/", 1)
	return strings.Replace(p, "tile/data/", "tile/entries/", 1)
}

func (h *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		resp, err := http.Get(h.base + "/" + c2spPath(t))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET %s: %s", c2spPath(t), resp.Status)
		}
		wantCache := cacheImmutable
		if t.W < 256 {
			wantCache = cachePartial
		}
		if cc := resp.Header.Get("Cache-Control"); cc != wantCache {
			h.t.Errorf("GET %s: Cache-Control %q, want %q", c2spPath(t), cc, wantCache)
		}
		if ct := resp.Header.Get("Content-Type"); ct != contentTile {
			h.t.Errorf("GET %s: Content-Type %q", c2spPath(t), ct)
		}
		h.gets++
		out[i] = b
	}
	return out, nil
}

func (h *httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// openCheckpoint verifies a C2SP tlog-checkpoint with note.Open and parses
// its body: origin, size, root hash.
func openCheckpoint(t testing.TB, cp []byte, v note.Verifier) tlog.Tree {
	t.Helper()
	n, err := note.Open(cp, note.VerifierList(v))
	if err != nil {
		t.Fatalf("checkpoint does not verify: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) != 4 || lines[0] != testOrigin || lines[3] != "" {
		t.Fatalf("checkpoint body %q", n.Text)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	root, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		t.Fatalf("root %q", lines[2])
	}
	return tlog.Tree{N: size, Hash: tlog.Hash(root)}
}

// TestEndToEnd runs the whole write and read path over real HTTP with real
// RPMs: enrol a builder and an importer, enqueue the hello package, lease
// it, rebuild it with rpmbuild, attest the digests, submit; then check the
// receipt with the builder's own code, prove inclusion from the served
// tiles with golang.org/x/mod/sumdb/tlog against the checkpoint opened with
// note.Open, read the entry back from its entry bundle, import the official
// build and find both by NVR.
func TestEndToEnd(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	srpmBytes, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	nvr := strings.TrimSuffix(filepath.Base(srpm), ".src.rpm")
	b := e.enrol(attest.RoleBuilder, "alice")
	imp := e.enrol(attest.RoleImporter, "fedora-koji")
	admin := e.client(e.admin)
	enq, err := admin.Enqueue(ctx, EnqueueBody{NVR: nvr, Arch: "x86_64", SRPMURL: "https://koji.example/" + filepath.Base(srpm), SRPMSHA256: sha(string(srpmBytes)), Wanted: 10})
	if err != nil {
		t.Fatal(err)
	}
	bc := e.client(b, "x86_64")
	lease, err := bc.Lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if lease.JobID != enq.Job.JobID {
		t.Fatalf("leased %s, enqueued %s", lease.JobID, enq.Job.JobID)
	}
	result := rpmtest.Rebuild(t, srpm, filepath.Join(os.TempDir(), "skyline-api-e2e-build"), nil)
	digests, err := rpm.DigestDir(result)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := attest.NewAttestations(attest.Build{
		ID: lease.Build, SRPMURL: lease.SRPMURL, Backend: "rpmbuild", Chroot: "host", LeaseID: lease.LeaseID,
		Started: e.clock.Now(), Finished: e.clock.Now().Add(time.Minute),
	}, digests, b)
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := bc.Submit(ctx, envs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.VerifyReceipt(envs, receipt, e.logNote, testOrigin); err != nil {
		t.Fatalf("receipt: %v", err)
	}
	index := receipt.Entries[0].Index

	// Independent check from the served bytes.
	anon := e.client(nil)
	cp, err := anon.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tree := openCheckpoint(t, cp, e.logNote)
	if uint64(tree.N) <= index {
		t.Fatalf("checkpoint size %d does not cover %d", tree.N, index)
	}
	tiles := &httpTiles{t: t, base: e.url}
	hr := tlog.TileHashReader(tree, tiles)
	proof, err := tlog.ProveRecord(tree.N, int64(index), hr)
	if err != nil {
		t.Fatalf("prove from tiles: %v", err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, int64(index), tlog.RecordHash(envs[0])); err != nil {
		t.Fatalf("inclusion from tiles: %v", err)
	}
	if tiles.gets == 0 {
		t.Fatal("no tile was read")
	}
	// The entry bundle holds the envelope byte for byte.
	dataTile := tlog.Tile{H: 8, L: -1, N: int64(index / 256), W: int(min(256, tree.N-int64(index/256)*256))}
	bundle, err := anon.ReadPath(ctx, c2spPath(dataTile))
	if err != nil {
		t.Fatal(err)
	}
	if !bundleHas(bundle, int(index%256), envs[0]) {
		t.Fatalf("entry %d not in bundle %s", index, c2spPath(dataTile))
	}
	entry, err := anon.Entry(ctx, index)
	if err != nil || !bytes.Equal(entry, envs[0]) {
		t.Fatalf("GET /entry/%d: %v", index, err)
	}

	// The official build, imported from the same RPMs (what
	// koji.ImportOfficial does: the importer key signs an official
	// attestation of the RPMs' digests).
	ic := e.client(imp)
	ods, err := rpm.DigestDir(result)
	if err != nil {
		t.Fatal(err)
	}
	oenvs, err := attest.NewAttestations(attest.Build{ID: lease.Build, SRPMURL: lease.SRPMURL, Backend: "koji", Started: time.Now().UTC(), Finished: time.Now().UTC(), Official: true}, ods, imp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.Submit(ctx, oenvs); err != nil {
		t.Fatalf("import official: %v", err)
	}
	lk, err := anon.Lookup(ctx, nvr)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, en := range lk.Entries {
		kinds[en.Type]++
	}
	if kinds[coord.IndexJob] != 1 || kinds[coord.IndexLease] != 1 || kinds[coord.IndexBuild] != len(envs) || kinds[coord.IndexOfficial] != 1 {
		t.Fatalf("lookup %s: %+v", nvr, lk.Entries)
	}
	found := false
	for _, en := range lk.Entries {
		found = found || en.Index == index && en.Type == coord.IndexBuild
	}
	if !found {
		t.Fatalf("lookup does not list entry %d as a build", index)
	}
	st, err := e.svc.Coordinator().Job(enq.Job.JobID)
	if err != nil || len(st.Results) != 1 || st.Results[0].KeyID != b.KeyID() {
		t.Fatalf("job results %+v, %v", st.Results, err)
	}
}

// bundleHas reports whether a C2SP tlog-tiles entry bundle (16-bit
// big-endian length, bytes; repeated) holds want at position i.
func bundleHas(bundle []byte, i int, want []byte) bool {
	for n := 0; len(bundle) >= 2; n++ {
		l := int(bundle[0])<<8 | int(bundle[1])
		if len(bundle) < 2+l {
			return false
		}
		if n == i {
			return bytes.Equal(bundle[2:2+l], want)
		}
		bundle = bundle[2+l:]
	}
	return false
}
