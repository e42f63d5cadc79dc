package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

func TestAddAssignsDenseIndices(t *testing.T) {
	l := openLog(t, testConfig(t, newTestKey(t)))
	const writers, per = 16, 25
	var mu sync.Mutex
	got := map[uint64]string{}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				e := entryN(w*per + i)
				r, err := l.Add(context.Background(), []byte(e))
				if err != nil || r.Duplicate {
					t.Errorf("Add: %+v %v", r, err)
					return
				}
				mu.Lock()
				if prev, ok := got[r.Index]; ok {
					t.Errorf("index %d given to %q and %q", r.Index, prev, e)
				}
				got[r.Index] = e
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if size, _ := l.Size(); size != writers*per {
		t.Fatalf("size %d, want %d", size, writers*per)
	}
	for i := range uint64(writers * per) {
		e, err := l.Entry(context.Background(), i)
		if err != nil || string(e) != got[i] {
			t.Fatalf("Entry(%d) = %q, %v; want %q", i, e, err, got[i])
		}
	}
	if _, err := l.Entry(context.Background(), writers*per); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Entry past the end: %v, want ErrNotFound", err)
	}
}

func TestAddDeduplicates(t *testing.T) {
	t.Run("exact bytes without indexer", func(t *testing.T) {
		l := openLog(t, testConfig(t, newTestKey(t)))
		first := add(t, l, "a")
		add(t, l, "b")
		again := add(t, l, "a")
		if first.Duplicate || !again.Duplicate || again.Index != first.Index {
			t.Fatalf("first %+v, again %+v: want the same index, Duplicate on the second", first, again)
		}
		if size, _ := l.Size(); size != 2 {
			t.Fatalf("size %d after a duplicate, want 2", size)
		}
	})
	t.Run("concurrent duplicates in flight", func(t *testing.T) {
		l := openLog(t, testConfig(t, newTestKey(t)))
		var wg sync.WaitGroup
		res := make([]AddResult, 64)
		for i := range res {
			wg.Go(func() { res[i] = add(t, l, "same") })
		}
		wg.Wait()
		fresh := 0
		for _, r := range res {
			if r.Index != 0 {
				t.Fatalf("duplicate got index %d, want 0", r.Index)
			}
			if !r.Duplicate {
				fresh++
			}
		}
		if fresh != 1 {
			t.Fatalf("%d Adds reported a fresh entry, want exactly 1", fresh)
		}
	})
	t.Run("indexer dedup key", func(t *testing.T) {
		cfg := testConfig(t, newTestKey(t))
		cfg.Indexer = testIndexer
		l := openLog(t, cfg)
		a := add(t, l, "foo-1.0-1.fc42|build|payload")
		b := add(t, l, "foo-1.0-1.fc42|other|payload") // same dedup key, other bytes
		c := add(t, l, "no-dedup")
		d := add(t, l, "no-dedup") // empty dedup key: never deduplicated
		if !b.Duplicate || b.Index != a.Index || c.Duplicate || d.Duplicate || c.Index == d.Index {
			t.Fatalf("got %+v %+v %+v %+v", a, b, c, d)
		}
	})
	t.Run("survives restart", func(t *testing.T) {
		cfg := testConfig(t, newTestKey(t))
		l := openLog(t, cfg)
		first := add(t, l, "kept")
		l.Close()
		l = openLog(t, cfg)
		if r := add(t, l, "kept"); !r.Duplicate || r.Index != first.Index {
			t.Fatalf("after restart: %+v, want duplicate of %d", r, first.Index)
		}
	})
}

func TestAddRejectsInvalidEntries(t *testing.T) {
	cfg := testConfig(t, newTestKey(t))
	cfg.Indexer = func(e []byte) ([]byte, []IndexKey, error) {
		if bytes.HasPrefix(e, []byte("nul")) {
			return nil, []IndexKey{{NVR: "a\x00b", Type: "t"}}, nil
		}
		return testIndexer(e)
	}
	cfg.MaxEntrySize = 100
	l := openLog(t, cfg)
	add(t, l, "ok")
	for _, e := range []string{"", strings.Repeat("x", 101), "bad entry", "nul entry"} {
		if _, err := l.Add(context.Background(), []byte(e)); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("Add(%.20q) = %v, want ErrInvalidEntry", e, err)
		}
	}
	if size, _ := l.Size(); size != 1 {
		t.Fatalf("size %d after rejected entries, want 1", size)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	k := newTestKey(t)
	for name, cfg := range map[string]Config{
		"no origin":  {Dir: t.TempDir(), Signer: k.signer},
		"no signer":  {Dir: t.TempDir(), Origin: testOrigin},
		"no dir":     {Origin: testOrigin, Signer: k.signer},
		"entry size": {Dir: t.TempDir(), Origin: testOrigin, Signer: k.signer, MaxEntrySize: 70000},
	} {
		if _, err := Open(context.Background(), cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Open = %v, want ErrConfig", name, err)
		}
	}
}

// countingStorage counts Writes and makes each synced one take syncDelay,
// standing in for a slow fsync.
type countingStorage struct {
	Storage
	syncDelay time.Duration
	mu        sync.Mutex
	syncs     int
}

func (c *countingStorage) Write(b *Batch, sync bool) error {
	if sync {
		c.mu.Lock()
		c.syncs++
		c.mu.Unlock()
		time.Sleep(c.syncDelay)
	}
	return c.Storage.Write(b, sync)
}

func (c *countingStorage) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.syncs
}

// TestGroupCommit checks that one writer pays one sync per entry while many
// concurrent writers share few syncs, with no batching timer.
func TestGroupCommit(t *testing.T) {
	newLog := func() (*Log, *countingStorage) {
		cs := &countingStorage{Storage: newFaultStorage(newMemDB()), syncDelay: 2 * time.Millisecond}
		cfg := testConfig(t, newTestKey(t))
		cfg.Storage = cs
		cfg.CheckpointInterval = time.Hour
		return openLog(t, cfg), cs
	}
	l, cs := newLog()
	for i := range 20 {
		add(t, l, entryN(i))
	}
	if got := cs.count(); got != 20 {
		t.Errorf("single writer: %d syncs for 20 entries, want 20", got)
	}
	l, cs = newLog()
	const n = 1000
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { add(t, l, entryN(i)) })
	}
	wg.Wait()
	got := cs.count()
	t.Logf("1000 concurrent writers: %d syncs", got)
	if got > n/10 {
		t.Errorf("1000 concurrent writers: %d syncs, want at most %d", got, n/10)
	}
}

// refTree computes roots with a compact range over leaf hashes computed in
// the test, independently of the stored tiles.
func refRoots(entries []string) [][]byte {
	rf := &compact.RangeFactory{Hash: hasher.HashChildren}
	r := rf.NewEmptyRange(0)
	roots := [][]byte{hasher.EmptyRoot()}
	for _, e := range entries {
		r.Append(hasher.HashLeaf([]byte(e)), nil)
		root, _ := r.GetRootHash(nil)
		roots = append(roots, root)
	}
	return roots
}

func TestProofs(t *testing.T) {
	l := openLog(t, testConfig(t, newTestKey(t)))
	const n = 600
	entries := fill(t, l, 0, n)
	roots := refRoots(entries)
	ctx := context.Background()
	sizes := []uint64{1, 2, 3, 7, 8, 255, 256, 257, 511, 512, 513, 599, 600}
	for _, size := range sizes {
		for _, idx := range []uint64{0, 1, size / 2, size - 1} {
			if idx >= size {
				continue
			}
			p, err := l.InclusionProof(ctx, idx, size)
			if err != nil {
				t.Fatalf("InclusionProof(%d, %d): %v", idx, size, err)
			}
			leaf := hasher.HashLeaf([]byte(entries[idx]))
			if err := proof.VerifyInclusion(hasher, idx, size, leaf, p, roots[size]); err != nil {
				t.Fatalf("inclusion %d in %d does not verify: %v", idx, size, err)
			}
			i2, p2, err := l.InclusionProofByHash(ctx, leaf, size)
			if err != nil || i2 != idx || len(p2) != len(p) {
				t.Fatalf("InclusionProofByHash: %d %v, want index %d", i2, err, idx)
			}
		}
		for _, from := range sizes {
			if from > size {
				continue
			}
			p, err := l.ConsistencyProof(ctx, from, size)
			if err != nil {
				t.Fatalf("ConsistencyProof(%d, %d): %v", from, size, err)
			}
			if err := proof.VerifyConsistency(hasher, from, size, p, roots[from], roots[size]); err != nil {
				t.Fatalf("consistency %d -> %d does not verify: %v", from, size, err)
			}
		}
	}
	if _, err := l.InclusionProof(ctx, 0, n+1); !errors.Is(err, ErrBeyondTree) {
		t.Errorf("proof beyond the tree: %v, want ErrBeyondTree", err)
	}
	if _, err := l.InclusionProof(ctx, 5, 5); !errors.Is(err, ErrBeyondTree) {
		t.Errorf("index == size: %v, want ErrBeyondTree", err)
	}
	if _, err := l.ConsistencyProof(ctx, 10, 5); !errors.Is(err, ErrBeyondTree) {
		t.Errorf("consistency backwards: %v, want ErrBeyondTree", err)
	}
	if _, _, err := l.InclusionProofByHash(ctx, hasher.HashLeaf([]byte("absent")), n); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown leaf hash: %v, want ErrNotFound", err)
	}
	if _, _, err := l.InclusionProofByHash(ctx, hasher.HashLeaf([]byte(entries[500])), 400); !errors.Is(err, ErrNotFound) {
		t.Errorf("leaf beyond the size: %v, want ErrNotFound", err)
	}
	if size, root := l.Size(); !bytes.Equal(root, roots[n]) || size != n {
		t.Fatalf("Size() = %d %x, want %d %x", size, root, n, roots[n])
	}
}

func TestCheckpoints(t *testing.T) {
	k := newTestKey(t)
	l := openLog(t, testConfig(t, k))
	entries := fill(t, l, 0, 300)
	raw := waitCheckpoint(t, l, 300)
	cp := openCheckpoint(t, k, raw)
	if cp.Size != 300 || !bytes.Equal(cp.Hash, refRoots(entries)[300]) || cp.Origin != testOrigin {
		t.Fatalf("checkpoint %+v, want size 300 and the reference root", cp)
	}
	if body, _, _ := strings.Cut(string(raw), "\n\n"); strings.Count(body, "\n") != 2 {
		t.Fatalf("checkpoint body has extension lines:\n%s", raw)
	}
	if !bytes.Equal(l.Checkpoint(), raw) {
		t.Fatalf("Checkpoint() differs from the waited-for checkpoint")
	}
	if got, err := l.ReadPath(context.Background(), "checkpoint"); err != nil || !bytes.Equal(got, raw) {
		t.Fatalf("ReadPath(checkpoint): %v", err)
	}
	// No new checkpoint while the tree does not grow.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.WaitCheckpoint(ctx, 301); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitCheckpoint beyond the tree: %v, want deadline", err)
	}
}

func TestReadPath(t *testing.T) {
	cfg := testConfig(t, newTestKey(t))
	cfg.CheckpointInterval = time.Hour
	l := openLog(t, cfg)
	ctx := context.Background()
	if _, err := l.ReadPath(ctx, "checkpoint"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("checkpoint of a log that never signed one: %v, want ErrNotFound", err)
	}
	entries := fill(t, l, 0, 520)
	bundle, err := l.ReadPath(ctx, "tile/entries/002.p/8")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEntryBundle(bundle)
	if err != nil || len(got) != 8 || string(got[7]) != entries[519] {
		t.Fatalf("bundle 2.p/8: %d entries, %v", len(got), err)
	}
	tile, err := l.ReadPath(ctx, "tile/0/001")
	if err != nil || len(tile) != 256*32 || !bytes.Equal(tile[:32], hasher.HashLeaf([]byte(entries[256]))) {
		t.Fatalf("tile/0/001: %d bytes, %v", len(tile), err)
	}
	if tile1, err := l.ReadPath(ctx, "tile/1/000.p/2"); err != nil || len(tile1) != 64 {
		t.Fatalf("tile/1/000.p/2: %d bytes, %v", len(tile1), err)
	}
	// A partial tile of a full one is its prefix (contents never change).
	if p, err := l.ReadPath(ctx, "tile/0/000.p/3"); err != nil || !bytes.Equal(p, mustRead(t, l, "tile/0/000")[:3*32]) {
		t.Fatalf("tile/0/000.p/3 is not the first 3 hashes of tile/0/000: %v", err)
	}
	for _, p := range []string{"tile/0/002", "tile/0/002.p/9", "tile/entries/003.p/1", "tile/1/000.p/3", "tile/1/001", "tile/2/000.p/1", "tile/entries/x001/000"} {
		if _, err := l.ReadPath(ctx, p); !errors.Is(err, ErrNotFound) {
			t.Errorf("ReadPath(%q) = %v, want ErrNotFound", p, err)
		}
	}
	for _, p := range []string{"", "tile", "tile/0", "tile/0/1", "tile/0/0001", "tile/00/000", "tile/0/x000/001", "tile/0/000.p/0", "tile/0/000.p/256",
		"tile/0/000.p/08", "tile/64/000", "/tile/0/000", "tile/0/000/", "tile/entries/000.p/", "tile/0/../000", "checkpoint/", "tile/data/000", "tile/0/x1/000", "tile/0/001 "} {
		if _, err := l.ReadPath(ctx, p); !errors.Is(err, ErrBadPath) {
			t.Errorf("ReadPath(%q) = %v, want ErrBadPath", p, err)
		}
	}
}

func mustRead(t *testing.T, l *Log, p string) []byte {
	t.Helper()
	b, err := l.ReadPath(context.Background(), p)
	if err != nil {
		t.Fatalf("ReadPath(%q): %v", p, err)
	}
	return b
}

func TestLookupAndRebuildIndex(t *testing.T) {
	cfg := testConfig(t, newTestKey(t))
	cfg.Indexer = testIndexer
	l := openLog(t, cfg)
	ctx := context.Background()
	add(t, l, "foo-1-1|build|a")
	add(t, l, "bar-2-1|build|b")
	add(t, l, "foo-1-1|official|c")
	add(t, l, "plain entry")
	add(t, l, "foo-1-1|verdict|d")
	want := []IndexRef{{0, "build"}, {2, "official"}, {4, "verdict"}}
	got, err := l.Lookup(ctx, "foo-1-1")
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Lookup = %v, %v; want %v", got, err, want)
	}
	if got, _ := l.Lookup(ctx, "foo-1"); len(got) != 0 {
		t.Fatalf("Lookup of a prefix NVR = %v, want none", got)
	}
	if _, err := l.Lookup(ctx, ""); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("Lookup(\"\") = %v", err)
	}
	// Damage the index: drop one ref and one dedup key, add a bogus ref.
	b := &Batch{}
	b.Delete(indexKey("foo-1-1", 2, "official"))
	b.Delete([]byte("da"))
	b.Set(indexKey("foo-1-1", 3, "bogus"), nil)
	if err := l.st.Write(b, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Lookup(ctx, "foo-1-1"); slices.Equal(got, want) {
		t.Fatal("damaging the index did not change Lookup")
	}
	if err := l.RebuildIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Lookup(ctx, "foo-1-1"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after RebuildIndex: %v, %v; want %v", got, err, want)
	}
	if r := add(t, l, "zzz|build|a"); !r.Duplicate || r.Index != 0 {
		t.Fatalf("dedup after rebuild: %+v, want duplicate of 0", r)
	}
	if r := add(t, l, "foo-1-1|build|e"); r.Duplicate || r.Index != 5 {
		t.Fatalf("add after rebuild: %+v", r)
	}
	if got, _ := l.Lookup(ctx, "foo-1-1"); len(got) != 4 {
		t.Fatalf("Lookup after a new add: %v", got)
	}
	noIdx := openLog(t, testConfig(t, newTestKey(t)))
	if err := noIdx.RebuildIndex(ctx); !errors.Is(err, ErrConfig) {
		t.Fatalf("RebuildIndex without Indexer: %v", err)
	}
}

// TestAlarmOnStoredBitFlip flips one stored bit in the not yet checkpointed
// part of the tree and checks that no checkpoint is signed.
func TestAlarmOnStoredBitFlip(t *testing.T) {
	for _, target := range []string{"entry", "leaf tile", "level-1 tile"} {
		t.Run(target, func(t *testing.T) {
			k := newTestKey(t)
			cfg := testConfig(t, k)
			cfg.CheckpointInterval = time.Hour // publish is driven by hand
			l := openLog(t, cfg)
			fill(t, l, 0, 100)
			if err := l.publish(); err != nil {
				t.Fatal(err)
			}
			before := l.Checkpoint()
			fill(t, l, 100, 600)
			var key []byte
			var bit int
			switch target {
			case "entry":
				key, bit = entryKey(300), 3
			case "leaf tile":
				key, bit = tileKey(0, 1), 32*5*8+1
			case "level-1 tile":
				key, bit = tileKey(1, 0), 32*8+7
			}
			v, err := l.st.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			v[bit/8] ^= 1 << (bit % 8)
			b := &Batch{}
			b.Set(key, v)
			if err := l.st.Write(b, true); err != nil {
				t.Fatal(err)
			}
			err = l.publish()
			if !errors.Is(err, ErrCorrupt) || !errors.Is(l.Alarm(), ErrCorrupt) {
				t.Fatalf("publish after bit flip = %v, Alarm = %v; want ErrCorrupt", err, l.Alarm())
			}
			if !bytes.Equal(l.Checkpoint(), before) {
				t.Fatal("a checkpoint was signed over the corrupted tree")
			}
			if _, err := l.WaitCheckpoint(context.Background(), 600); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("WaitCheckpoint under alarm: %v", err)
			}
			if err := l.publish(); err != nil || !bytes.Equal(l.Checkpoint(), before) {
				t.Fatalf("signing resumed under alarm: %v", err)
			}
		})
	}
}

func TestRecoveryResumes(t *testing.T) {
	k := newTestKey(t)
	cfg := testConfig(t, k)
	l := openLog(t, cfg)
	entries := fill(t, l, 0, 300)
	cp1 := openCheckpoint(t, k, waitCheckpoint(t, l, 300))
	entries = append(entries, fill(t, l, 300, 310)...) // integrated, not checkpointed before Close
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, cfg)
	if size, root := l.Size(); size != 310 || !bytes.Equal(root, refRoots(entries)[310]) {
		t.Fatalf("after reopen: size %d root %x", size, root)
	}
	entries = append(entries, fill(t, l, 310, 700)...) // fill checks the indices continue at 310
	cp2 := openCheckpoint(t, k, waitCheckpoint(t, l, 700))
	if !bytes.Equal(cp2.Hash, refRoots(entries)[cp2.Size]) {
		t.Fatalf("checkpoint after restart: root %x differs from the reference", cp2.Hash)
	}
	p, err := l.ConsistencyProof(context.Background(), cp1.Size, cp2.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := proof.VerifyConsistency(hasher, cp1.Size, cp2.Size, p, cp1.Hash, cp2.Hash); err != nil {
		t.Fatalf("checkpoints across a restart are inconsistent: %v", err)
	}
}

func TestRecoveryRefusesDisagreeingTree(t *testing.T) {
	k := newTestKey(t)
	setup := func(t *testing.T) (Config, *memDB) {
		db := newMemDB()
		cfg := testConfig(t, k)
		cfg.Storage = newFaultStorage(db)
		l := openLog(t, cfg)
		fill(t, l, 0, 600)
		waitCheckpoint(t, l, 600)
		l.Close()
		cfg.Storage = newFaultStorage(db)
		return cfg, db
	}
	put := func(db *memDB, key, val []byte) {
		db.mu.Lock()
		db.data[string(key)] = val
		db.mu.Unlock()
	}
	t.Run("tile changed under the checkpoint", func(t *testing.T) {
		cfg, db := setup(t)
		// Level-1 tile: its first hash is a node of the compact range of 600.
		tile := bytes.Clone(db.data[string(tileKey(1, 0))])
		tile[0] ^= 1
		put(db, tileKey(1, 0), tile)
		_, err := Open(context.Background(), cfg)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "600") {
			t.Fatalf("Open = %v, want ErrCorrupt naming size 600", err)
		}
	})
	t.Run("tree smaller than the checkpoint", func(t *testing.T) {
		cfg, db := setup(t)
		rng, err := newTileReader(newFaultStorage(db)).rangeAt(500)
		if err != nil {
			t.Fatal(err)
		}
		root500, _ := rootOf(rng)
		put(db, keyState, append(u64(500), root500...))
		_, err = Open(context.Background(), cfg)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "600") {
			t.Fatalf("Open = %v, want ErrCorrupt naming sizes 500 and 600", err)
		}
	})
	t.Run("checkpoint of another tree", func(t *testing.T) {
		cfg, db := setup(t)
		other := openLog(t, testConfig(t, k))
		fillWith(t, other, 0, 600, func(i int) string { return fmt.Sprint("other ", i) })
		put(db, keyCheckpoint, waitCheckpoint(t, other, 600))
		_, err := Open(context.Background(), cfg)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "last signed checkpoint") {
			t.Fatalf("Open = %v, want ErrCorrupt about the last signed checkpoint", err)
		}
	})
	t.Run("unchanged store opens", func(t *testing.T) {
		cfg, _ := setup(t)
		l := openLog(t, cfg)
		if size, _ := l.Size(); size != 600 {
			t.Fatalf("size %d", size)
		}
	})
}

// TestTornBatch crashes the storage in the middle of a batch and checks that
// nothing of it is visible after restart.
func TestTornBatch(t *testing.T) {
	db := newMemDB()
	cfg := testConfig(t, newTestKey(t))
	cfg.Indexer = testIndexer
	cfg.CheckpointInterval = time.Hour
	fs := newFaultStorage(db)
	cfg.Storage = fs
	l := openLog(t, cfg)
	for i := range 10 {
		add(t, l, fmt.Sprintf("pkg-%d|build|p%d", i, i))
	}
	// The next batch persists its entry, leaf, dedup and index keys, then crashes.
	fs.inject(faultTorn, 0, 4)
	if _, err := l.Add(context.Background(), []byte("pkg-x|build|torn")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Add during a torn write: %v, want ErrFailed", err)
	}
	if _, err := l.Add(context.Background(), []byte("after")); !errors.Is(err, ErrFailed) {
		t.Fatalf("Add after a failed write: %v, want ErrFailed", err)
	}
	l.Close()
	db.mu.Lock()
	_, strayEntry := db.data[string(entryKey(10))]
	db.mu.Unlock()
	if !strayEntry {
		t.Fatal("the torn write did not persist its first operations; the test proves nothing")
	}
	cfg.Storage = newFaultStorage(db)
	l = openLog(t, cfg)
	ctx := context.Background()
	if size, _ := l.Size(); size != 10 {
		t.Fatalf("size %d after torn batch, want 10", size)
	}
	if refs, _ := l.Lookup(ctx, "pkg-x"); len(refs) != 0 {
		t.Fatalf("torn entry visible in the NVR index: %v", refs)
	}
	if _, err := l.Entry(ctx, 10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("torn entry readable: %v", err)
	}
	if r := add(t, l, "pkg-x|build|torn"); r.Duplicate || r.Index != 10 {
		t.Fatalf("re-adding the torn entry: %+v, want fresh index 10", r)
	}
	db.mu.Lock()
	n := 0
	for k := range db.data {
		if k[0] == pfxIndex && strings.Contains(k, "pkg-x") {
			n++
		}
	}
	db.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d index keys for pkg-x, want 1", n)
	}
}

// TestCloseWhileAdding closes the log under concurrent Adds: every Add
// returns (an index or ErrClosed), and every method fails cleanly after.
func TestCloseWhileAdding(t *testing.T) {
	l := openLog(t, testConfig(t, newTestKey(t)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[uint64]bool{}
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				r, err := l.Add(context.Background(), []byte(fmt.Sprint(w, "-", i)))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Add: %v", err)
					return
				}
				mu.Lock()
				acked[r.Index] = true
				mu.Unlock()
			}
		})
	}
	waitCheckpoint(t, l, 50)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ctx := context.Background()
	if _, err := l.Add(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if _, err := l.ReadPath(ctx, "tile/0/000.p/1"); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadPath after Close: %v", err)
	}
	if _, err := l.InclusionProof(ctx, 0, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("InclusionProof after Close: %v", err)
	}
	if _, err := l.Lookup(ctx, "x"); !errors.Is(err, ErrClosed) {
		t.Errorf("Lookup after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if len(acked) < 50 {
		t.Fatalf("only %d acks before Close", len(acked))
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, newTestKey(t))
	cfg.Registerer = reg
	l := openLog(t, cfg)
	fill(t, l, 0, 40)
	add(t, l, entryN(3)) // a duplicate
	waitCheckpoint(t, l, 40)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		switch {
		case m.GetCounter() != nil:
			got[mf.GetName()] = m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"skyline_log_entries_total": 40, "skyline_log_duplicates_total": 1, "skyline_log_tree_size": 40, "skyline_log_checkpoint_size": 40, "skyline_log_alarm": 0}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	cfg.Dir = t.TempDir()
	if _, err := Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("a second log registering the same metrics: %v, want a registration error", err)
	}
}
