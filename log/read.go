package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ReadPath returns the bytes served at a C2SP tlog-tiles path: "checkpoint",
// a hash tile "tile/<L>/<N>[.p/<W>]" or an entry bundle
// "tile/entries/<N>[.p/<W>]". Tiles and bundles are served for every width
// the durable tree covers (their contents never change); anything else is
// ErrNotFound, and a path that is not canonical is ErrBadPath.
func (l *Log) ReadPath(ctx context.Context, path string) ([]byte, error) {
	release, err := l.use()
	if err != nil {
		return nil, err
	}
	defer release()
	p, err := ParseTilePath(path)
	if err != nil {
		return nil, err
	}
	if p.Checkpoint {
		cp := l.Checkpoint()
		if cp == nil {
			return nil, fmt.Errorf("log: checkpoint: %w", ErrNotFound)
		}
		return cp, nil
	}
	size, _ := l.Size()
	return l.readTile(p, size)
}

// readTile returns tile p of the tree of the given size. C2SP tlog-tiles,
// partial tiles: a width-W tile holds the first W hashes of its full tile;
// since stored tile contents never change, any width the tree covers is
// served as a prefix of the stored tile.
func (l *Log) readTile(p TilePath, size uint64) ([]byte, error) {
	count := size // nodes on the tile's level (C2SP tlog-tiles: level L holds tree level 8L)
	for i := uint8(0); i < p.Level && count > 0; i++ {
		count >>= TileHeight
	}
	width := uint64(p.Width)
	if width == 0 {
		width = TileWidth
	}
	if p.Index >= (1<<64-1)/TileWidth || p.Index*TileWidth+width > count {
		return nil, fmt.Errorf("log: %s beyond tree size %d: %w", p, size, ErrNotFound)
	}
	if p.Entries {
		return l.readBundle(p.Index, width)
	}
	t, err := l.st.Get(tileKey(uint(p.Level), p.Index))
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("%w: %s missing below tree size %d", ErrCorrupt, p, size)
		}
		return nil, fmt.Errorf("log: read %s: %w", p, err)
	}
	if uint64(len(t)) < width*hashSize {
		return nil, fmt.Errorf("%w: %s has %d hashes, want %d", ErrCorrupt, p, len(t)/hashSize, width)
	}
	return t[:width*hashSize], nil
}

func (l *Log) readBundle(n, width uint64) ([]byte, error) {
	first := n * TileWidth
	var out []byte
	next := first
	err := l.st.Scan(entryKey(first), entryKey(first+width), func(k, v []byte) error {
		if idx := binary.BigEndian.Uint64(k[1:]); idx != next {
			return fmt.Errorf("%w: entry %d missing", ErrCorrupt, next)
		}
		next++
		out = AppendEntryBundle(out, v)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("log: read entry bundle %d: %w", n, err)
	}
	if next != first+width {
		return nil, fmt.Errorf("%w: entries %d..%d missing", ErrCorrupt, next, first+width)
	}
	return out, nil
}

// Entry returns the entry at index.
func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	release, err := l.use()
	if err != nil {
		return nil, err
	}
	defer release()
	if err := l.checkSize(index + 1); err != nil {
		return nil, fmt.Errorf("log: entry %d: %w", index, ErrNotFound)
	}
	e, err := l.st.Get(entryKey(index))
	if err != nil {
		return nil, fmt.Errorf("log: entry %d: %w", index, err)
	}
	return e, nil
}

// Export writes the tlog-tiles tree of the latest signed checkpoint under
// dir: the checkpoint, every full tile and entry bundle, and the partial
// ones of the checkpoint's size, so that a plain file server serves the log.
// The checkpoint is written last.
func (l *Log) Export(ctx context.Context, dir string) error {
	release, err := l.use()
	if err != nil {
		return err
	}
	defer release()
	l.mu.Lock()
	cp := l.cp
	l.mu.Unlock()
	if cp.note == nil {
		return fmt.Errorf("log: export: no checkpoint yet: %w", ErrNotFound)
	}
	write := func(p TilePath, data []byte) error {
		name := filepath.Join(dir, filepath.FromSlash(p.String()))
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("log: export: %w", err)
		}
		if err := os.WriteFile(name, data, 0o644); err != nil {
			return fmt.Errorf("log: export: %w", err)
		}
		return nil
	}
	for lvl, count := uint8(0), cp.size; count > 0; lvl, count = lvl+1, count>>TileHeight {
		for n := uint64(0); n*TileWidth < count; n++ {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("log: export: %w", err)
			}
			p := TilePath{Level: lvl, Index: n}
			if w := count - n*TileWidth; w < TileWidth {
				p.Width = uint16(w)
			}
			kinds := []bool{false}
			if lvl == 0 {
				kinds = append(kinds, true)
			}
			for _, entries := range kinds {
				p.Entries = entries
				data, err := l.readTile(p, cp.size)
				if err != nil {
					return err
				}
				q := p
				if entries {
					q.Level = 0
				}
				if err := write(q, data); err != nil {
					return err
				}
			}
		}
	}
	return write(TilePath{Checkpoint: true}, bytes.Clone(cp.note))
}
