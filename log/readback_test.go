package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// httpTiles is a sumdb tlog.TileReader over a plain HTTP file server. It
// spells tile paths itself (C2SP tlog-tiles), independently of TilePath.
type httpTiles struct {
	t     *testing.T
	base  string
	cache map[string][]byte // tiles by path; cleared per checkpoint
}

func (h httpTiles) get(path string) []byte {
	if b, ok := h.cache[path]; ok {
		return b
	}
	resp, err := http.Get(h.base + "/" + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s: %s %v", path, resp.Status, err)
	}
	if path != "checkpoint" {
		h.cache[path] = b
	}
	return b
}

func specIndex(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}

func specPath(kind string, n int64, w int) string {
	p := "tile/" + kind + "/" + specIndex(n)
	if w < 256 {
		p += fmt.Sprintf(".p/%d", w)
	}
	return p
}

func (h httpTiles) Height() int { return 8 }

func (h httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		out[i] = h.get(specPath(fmt.Sprint(t.L), t.N, t.W))
	}
	return out, nil
}

func (h httpTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// parseBundle is the test's own reading of an entry bundle.
func parseBundle(t *testing.T, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			t.Fatal("bundle: truncated length")
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			t.Fatal("bundle: truncated entry")
		}
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// TestIndependentReadBack exports the log, serves it with http.FileServer
// and verifies it with golang.org/x/mod/sumdb/tlog and
// transparency-dev/formats only: tiles against the checkpoint, every entry's
// inclusion, and consistency between two checkpoints.
func TestIndependentReadBack(t *testing.T) {
	k := newTestKey(t)
	l := openLog(t, testConfig(t, k))
	ctx := context.Background()
	dir := t.TempDir()
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	h := httpTiles{t, srv.URL, nil}

	var prev tlog.Tree
	for round, size := range []int{700, 66000 / 64, 1500} {
		fill(t, l, int(prev.N), size)
		waitCheckpoint(t, l, uint64(size))
		if err := l.Export(ctx, dir); err != nil {
			t.Fatal(err)
		}
		h.cache = map[string][]byte{}
		cp := openCheckpoint(t, k, h.get("checkpoint"))
		tree := tlog.Tree{N: int64(cp.Size), Hash: tlog.Hash(cp.Hash)}
		if tree.N < int64(size) {
			t.Fatalf("checkpoint size %d < %d", tree.N, size)
		}
		thr := tlog.TileHashReader(tree, h)
		var leaves []tlog.Hash
		for n := int64(0); n*256 < tree.N; n++ {
			w := int(min(256, tree.N-n*256))
			for _, e := range parseBundle(t, h.get(specPath("entries", n, w))) {
				leaves = append(leaves, tlog.RecordHash(e))
			}
		}
		if int64(len(leaves)) != tree.N {
			t.Fatalf("bundles hold %d entries, checkpoint says %d", len(leaves), tree.N)
		}
		for i, leaf := range leaves {
			p, err := tlog.ProveRecord(tree.N, int64(i), thr)
			if err != nil {
				t.Fatalf("round %d: ProveRecord(%d): %v", round, i, err)
			}
			if err := tlog.CheckRecord(p, tree.N, tree.Hash, int64(i), leaf); err != nil {
				t.Fatalf("round %d: entry %d not included: %v", round, i, err)
			}
			if i%97 == 0 {
				ours, err := l.InclusionProof(ctx, uint64(i), uint64(tree.N))
				if err != nil || len(ours) != len(p) {
					t.Fatalf("InclusionProof(%d): %d hashes, %v; tlog has %d", i, len(ours), err, len(p))
				}
				for j := range p {
					if !bytes.Equal(ours[j], p[j][:]) {
						t.Fatalf("InclusionProof(%d)[%d] differs from tlog's", i, j)
					}
				}
			}
		}
		if prev.N > 0 {
			p, err := tlog.ProveTree(tree.N, prev.N, thr)
			if err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p, tree.N, tree.Hash, prev.N, prev.Hash); err != nil {
				t.Fatalf("checkpoints %d and %d inconsistent: %v", prev.N, tree.N, err)
			}
			ours, err := l.ConsistencyProof(ctx, uint64(prev.N), uint64(tree.N))
			if err != nil || len(ours) != len(p) {
				t.Fatalf("ConsistencyProof: %d hashes, %v; tlog has %d", len(ours), err, len(p))
			}
			for j := range p {
				if !bytes.Equal(ours[j], p[j][:]) {
					t.Fatalf("ConsistencyProof[%d] differs from tlog's", j)
				}
			}
		}
		// Every exported file is what ReadPath serves, byte for byte.
		files := 0
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			want, _ := os.ReadFile(path)
			got, err := l.ReadPath(ctx, filepath.ToSlash(rel))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("ReadPath(%s) differs from the exported file: %v", rel, err)
			}
			files++
			return nil
		})
		if err != nil || files == 0 {
			t.Fatalf("walk: %d files, %v", files, err)
		}
		prev = tree
	}
}
