package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
)

var rangeFactory = &compact.RangeFactory{Hash: hasher.HashChildren}

// tileReader reads tree nodes from the stored hash tiles, caching the tiles
// it has read. It serves one operation; it is not safe for concurrent use.
type tileReader struct {
	st    Storage
	tiles map[[2]uint64][]byte
}

func newTileReader(st Storage) *tileReader {
	return &tileReader{st: st, tiles: map[[2]uint64][]byte{}}
}

func (r *tileReader) tile(level uint, n uint64) ([]byte, error) {
	k := [2]uint64{uint64(level), n}
	if t, ok := r.tiles[k]; ok {
		return t, nil
	}
	t, err := r.st.Get(tileKey(level, n))
	if err != nil {
		return nil, fmt.Errorf("log: read tile %d/%d: %w", level, n, err)
	}
	if len(t)%hashSize != 0 || len(t) > TileWidth*hashSize {
		return nil, fmt.Errorf("%w: tile %d/%d has %d bytes", ErrCorrupt, level, n, len(t))
	}
	r.tiles[k] = t
	return t, nil
}

const hashSize = 32

// nodeHash returns the hash of a complete tree node. Nodes on a tile level
// are read directly; others are hashed up from the tile level below them
// (C2SP tlog-tiles: a tile stores only every 8th level).
func (r *tileReader) nodeHash(id compact.NodeID) ([]byte, error) {
	lvl, up := id.Level/TileHeight, id.Level%TileHeight
	first := id.Index << up
	count := uint64(1) << up
	n, off := first/TileWidth, first%TileWidth
	t, err := r.tile(lvl, n)
	if err != nil {
		return nil, err
	}
	if uint64(len(t)) < (off+count)*hashSize {
		return nil, fmt.Errorf("%w: tile %d/%d has %d hashes, node %d/%d needs %d", ErrCorrupt, lvl, n, len(t)/hashSize, id.Level, id.Index, off+count)
	}
	hs := make([][]byte, count)
	for i := range hs {
		hs[i] = t[(off+uint64(i))*hashSize : (off+uint64(i)+1)*hashSize]
	}
	for len(hs) > 1 {
		for i := 0; i < len(hs)/2; i++ {
			hs[i] = hasher.HashChildren(hs[2*i], hs[2*i+1])
		}
		hs = hs[:len(hs)/2]
	}
	return bytes.Clone(hs[0]), nil
}

// rangeAt returns the compact range [0, size) built from stored tiles.
func (r *tileReader) rangeAt(size uint64) (*compact.Range, error) {
	ids := compact.RangeNodes(0, size, nil)
	hashes := make([][]byte, len(ids))
	for i, id := range ids {
		h, err := r.nodeHash(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return rangeFactory.NewRange(0, size, hashes)
}

func rootOf(rng *compact.Range) ([]byte, error) {
	if rng.End() == 0 { // RFC 6962 section 2.1: MTH({}) = SHA-256()
		return hasher.EmptyRoot(), nil
	}
	return rng.GetRootHash(nil)
}

// proofFor fetches and rehashes the nodes of an RFC 6962 proof.
func (r *tileReader) proofFor(nodes proof.Nodes) ([][]byte, error) {
	hashes := make([][]byte, len(nodes.IDs))
	for i, id := range nodes.IDs {
		h, err := r.nodeHash(id)
		if err != nil {
			return nil, err
		}
		hashes[i] = h
	}
	return nodes.Rehash(hashes, hasher.HashChildren)
}

func (l *Log) checkSize(size uint64) error {
	cur, _ := l.Size()
	if size > cur {
		return fmt.Errorf("%w: size %d > tree size %d", ErrBeyondTree, size, cur)
	}
	return nil
}

// InclusionProof returns the RFC 6962 (section 2.1.1) inclusion proof of the
// entry at index in the tree of the given size, from the stored tiles.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error) {
	release, err := l.use()
	if err != nil {
		return nil, err
	}
	defer release()
	return l.inclusionProof(index, size)
}

func (l *Log) inclusionProof(index, size uint64) ([][]byte, error) {
	if err := l.checkSize(size); err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("%w: index %d >= size %d", ErrBeyondTree, index, size)
	}
	nodes, err := proof.Inclusion(index, size)
	if err != nil {
		return nil, fmt.Errorf("log: inclusion proof %d in %d: %w", index, size, err)
	}
	p, err := newTileReader(l.st).proofFor(nodes)
	if err != nil {
		return nil, fmt.Errorf("log: inclusion proof %d in %d: %w", index, size, err)
	}
	return p, nil
}

// InclusionProofByHash finds the entry with the given RFC 6962 leaf hash and
// returns its index and inclusion proof in the tree of the given size.
func (l *Log) InclusionProofByHash(ctx context.Context, leafHash []byte, size uint64) (uint64, [][]byte, error) {
	release, err := l.use()
	if err != nil {
		return 0, nil, err
	}
	defer release()
	if len(leafHash) != hashSize {
		return 0, nil, fmt.Errorf("%w: leaf hash of %d bytes", ErrNotFound, len(leafHash))
	}
	v, err := l.st.Get(leafKey(leafHash))
	if err != nil {
		return 0, nil, fmt.Errorf("log: leaf hash %x: %w", leafHash, err)
	}
	if len(v) != 8 {
		return 0, nil, fmt.Errorf("%w: leaf index value of %d bytes", ErrCorrupt, len(v))
	}
	idx := binary.BigEndian.Uint64(v)
	if idx >= size {
		return 0, nil, fmt.Errorf("log: leaf hash %x at index %d, not in size %d: %w", leafHash, idx, size, ErrNotFound)
	}
	p, err := l.inclusionProof(idx, size)
	return idx, p, err
}

// ConsistencyProof returns the RFC 6962 (section 2.1.2) consistency proof
// between two tree sizes, from the stored tiles.
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error) {
	release, err := l.use()
	if err != nil {
		return nil, err
	}
	defer release()
	if err := l.checkSize(to); err != nil {
		return nil, err
	}
	if from > to {
		return nil, fmt.Errorf("%w: consistency from %d to smaller %d", ErrBeyondTree, from, to)
	}
	nodes, err := proof.Consistency(from, to)
	if err != nil {
		return nil, fmt.Errorf("log: consistency proof %d to %d: %w", from, to, err)
	}
	p, err := newTileReader(l.st).proofFor(nodes)
	if err != nil {
		return nil, fmt.Errorf("log: consistency proof %d to %d: %w", from, to, err)
	}
	return p, nil
}

// recover restores the in-memory state from storage (see docs/log.md,
// "Recovery"): it discards the tail of a torn batch, rebuilds the compact
// range and the partial tiles from the stored tiles, and checks the stored
// tree against its commit record and the last signed checkpoint.
func (l *Log) recover(ctx context.Context) error {
	var size uint64
	var root []byte
	switch v, err := l.st.Get(keyState); {
	case errors.Is(err, ErrNotFound):
		root = hasher.EmptyRoot()
	case err != nil:
		return fmt.Errorf("log: read state: %w", err)
	case len(v) != 8+hashSize:
		return fmt.Errorf("%w: state record of %d bytes", ErrCorrupt, len(v))
	default:
		size, root = binary.BigEndian.Uint64(v), v[8:]
	}
	if err := l.discardTorn(size); err != nil {
		return err
	}
	tr := newTileReader(l.st)
	rng, err := tr.rangeAt(size)
	if err != nil {
		return fmt.Errorf("log: recover tree at size %d: %w", size, err)
	}
	got, err := rootOf(rng)
	if err != nil {
		return fmt.Errorf("log: recover root at size %d: %w", size, err)
	}
	if !bytes.Equal(got, root) {
		return fmt.Errorf("%w: tiles give root %x at size %d, commit record says %x", ErrCorrupt, got, size, root)
	}
	// The rightmost, incomplete tile of each level, truncated to the
	// committed width: a torn batch may have left longer tiles behind.
	l.partial = nil
	for lvl, count := uint(0), size; count > 0; lvl, count = lvl+1, count>>TileHeight {
		var p []byte
		if w := count % TileWidth; w > 0 {
			t, err := tr.tile(lvl, count/TileWidth)
			if err != nil {
				return fmt.Errorf("log: recover partial tile: %w", err)
			}
			if uint64(len(t)) < w*hashSize {
				return fmt.Errorf("%w: tile %d/%d has %d hashes, size %d needs %d", ErrCorrupt, lvl, count/TileWidth, len(t)/hashSize, size, w)
			}
			p = bytes.Clone(t[:w*hashSize])
		}
		l.partial = append(l.partial, p)
	}
	l.next, l.rng, l.size, l.root = size, rng, size, bytes.Clone(root)
	if err := l.loadFilter(size); err != nil {
		return err
	}

	// The stored tree must extend the last signed checkpoint: a restarted log
	// never signs a smaller or different tree.
	raw, err := l.st.Get(keyCheckpoint)
	if errors.Is(err, ErrNotFound) {
		// Never signed: the first checkpoint verifies the whole tree.
		l.vrng = rangeFactory.NewEmptyRange(0)
		return nil
	}
	if err != nil {
		return fmt.Errorf("log: read checkpoint: %w", err)
	}
	cp, err := parseCheckpointNote(raw, l.cfg.Origin)
	if err != nil {
		return fmt.Errorf("%w: stored checkpoint: %w", ErrCorrupt, err)
	}
	if cp.size > size {
		return fmt.Errorf("%w: stored tree size %d is smaller than the last signed checkpoint's %d", ErrCorrupt, size, cp.size)
	}
	crng, err := tr.rangeAt(cp.size)
	if err != nil {
		return fmt.Errorf("%w: tree at checkpoint size %d: %w", ErrCorrupt, cp.size, err)
	}
	croot, err := rootOf(crng)
	if err != nil {
		return fmt.Errorf("log: root at checkpoint size %d: %w", cp.size, err)
	}
	if !bytes.Equal(croot, cp.root) {
		return fmt.Errorf("%w: stored tree at size %d has root %x, last signed checkpoint says %x", ErrCorrupt, cp.size, croot, cp.root)
	}
	l.cp = cp
	l.vrng = crng
	return nil
}

// discardTorn deletes what a torn batch left past the commit record: entries
// at or beyond size and the keys derived from them. They were never
// acknowledged.
func (l *Log) discardTorn(size uint64) error {
	b := &Batch{}
	var stray []uint64
	err := l.st.Scan(entryKey(size), prefixEnd([]byte{pfxEntry}), func(k, v []byte) error {
		if len(k) != 9 {
			return fmt.Errorf("%w: entry key of %d bytes", ErrCorrupt, len(k))
		}
		idx := binary.BigEndian.Uint64(k[1:])
		stray = append(stray, idx)
		b.Delete(bytes.Clone(k))
		leaf := hasher.HashLeaf(v)
		l.deleteIfPointsAt(b, leafKey(leaf), idx)
		if l.cfg.Indexer != nil {
			dedup, keys, err := l.cfg.Indexer(v)
			if err != nil {
				l.logger.Warn("log: indexer rejects a discarded entry", "index", idx, "err", err)
				return nil
			}
			if len(dedup) > 0 {
				l.deleteIfPointsAt(b, append([]byte{pfxDedup}, dedup...), idx)
			}
			for _, key := range keys {
				b.Delete(indexKey(key.NVR, idx, key.Type))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("log: scan for torn entries: %w", err)
	}
	if len(stray) == 0 {
		return nil
	}
	if err := l.st.Write(b, true); err != nil {
		return fmt.Errorf("log: discard torn entries: %w", err)
	}
	l.logger.Warn("log: discarded unacknowledged entries of a torn batch", "size", size, "count", len(stray), "first", stray[0])
	return nil
}

// loadFilter fills the dedup filter with every stored dedup key.
func (l *Log) loadFilter(size uint64) error {
	l.filter = newDedupFilter(int(min(size, 1<<30)) + 1<<16)
	pfx := []byte{pfxDedup}
	if l.cfg.Indexer == nil {
		pfx = []byte{pfxLeaf}
	}
	err := l.st.Scan(pfx, prefixEnd(pfx), func(k, _ []byte) error {
		l.filter.add(k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("log: load dedup filter: %w", err)
	}
	return nil
}

func (l *Log) deleteIfPointsAt(b *Batch, key []byte, idx uint64) {
	v, err := l.st.Get(key)
	if err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) == idx {
		b.Delete(key)
	}
}
