package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"golang.org/x/mod/sumdb/note"
)

// parseCheckpointNote parses the body of a signed checkpoint written by this
// log (C2SP tlog-checkpoint, no extension lines). It does not verify the
// signature: the note comes from the log's own storage.
func parseCheckpointNote(raw []byte, origin string) (checkpoint, error) {
	i := bytes.Index(raw, []byte("\n\n"))
	if i < 0 {
		return checkpoint{}, fmt.Errorf("log: checkpoint note without signature block")
	}
	var c fmtlog.Checkpoint
	rest, err := c.Unmarshal(raw[:i+1])
	if err != nil {
		return checkpoint{}, fmt.Errorf("log: checkpoint body: %w", err)
	}
	if len(rest) > 0 {
		return checkpoint{}, fmt.Errorf("log: checkpoint has extension lines")
	}
	if c.Origin != origin {
		return checkpoint{}, fmt.Errorf("log: checkpoint origin %q, configured %q", c.Origin, origin)
	}
	if len(c.Hash) != hashSize {
		return checkpoint{}, fmt.Errorf("log: checkpoint root of %d bytes", len(c.Hash))
	}
	return checkpoint{size: c.Size, root: c.Hash, note: bytes.Clone(raw)}, nil
}

func (l *Log) checkpointLoop() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.CheckpointInterval)
	defer t.Stop()
	// Verifying the new part of the tree as it grows, between checkpoints,
	// leaves only the last few batches to verify when a checkpoint is due.
	v := time.NewTicker(max(l.cfg.CheckpointInterval/8, time.Millisecond))
	defer v.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-v.C:
			l.preverify()
		case <-t.C:
			if err := l.publish(); err != nil {
				l.logger.Error("log: checkpoint not published", "err", err)
			}
		}
	}
}

// preverify verifies the stored tree up to the current durable size.
func (l *Log) preverify() {
	l.mu.Lock()
	size, root, alarm := l.size, l.root, l.alarm
	l.mu.Unlock()
	if alarm != nil || size <= l.vrng.End() {
		return
	}
	if err := l.verifyStored(size, root); err != nil {
		l.raiseAlarm(size, err)
	}
}

func (l *Log) raiseAlarm(size uint64, err error) {
	l.mu.Lock()
	l.alarm = err
	close(l.cpCh) // wake WaitCheckpoint callers: no checkpoint is coming
	l.cpCh = make(chan struct{})
	l.mu.Unlock()
	l.m.setAlarm()
	l.logger.Error("log: ALARM: stored tree does not match the integrated tree; checkpoint signing stopped", "size", size, "err", err)
}

// publish signs and stores a checkpoint for the current tree if it grew,
// after recomputing the new part from storage.
func (l *Log) publish() error {
	l.mu.Lock()
	size, root, cpSize, hasCP, alarm := l.size, l.root, l.cp.size, l.cp.note != nil, l.alarm
	l.mu.Unlock()
	if alarm != nil || hasCP && size <= cpSize {
		return nil
	}
	if err := l.verifyStored(size, root); err != nil {
		l.raiseAlarm(size, err)
		return err
	}
	// C2SP tlog-checkpoint: origin, size, base64 root; no extension lines.
	body := fmtlog.Checkpoint{Origin: l.cfg.Origin, Size: size, Hash: root}.Marshal()
	signed, err := note.Sign(&note.Note{Text: string(body)}, l.cfg.Signer)
	if err != nil {
		return fmt.Errorf("log: sign checkpoint at %d: %w", size, err)
	}
	b := &Batch{}
	b.Set(keyCheckpoint, signed)
	if err := l.st.Write(b, true); err != nil {
		return fmt.Errorf("log: store checkpoint at %d: %w", size, err)
	}
	// The metric first: whoever WaitCheckpoint wakes sees it current.
	l.m.published(size)
	l.mu.Lock()
	l.cp = checkpoint{size: size, root: root, note: signed}
	close(l.cpCh)
	l.cpCh = make(chan struct{})
	l.mu.Unlock()
	l.logger.Debug("log: checkpoint published", "size", size)
	return nil
}

// verifyStored recomputes the tree from l.vrng's end to size from the stored
// entries, checking every leaf and tile-level node against the stored hash
// tiles and the root against the integrated one. On success l.vrng covers
// size.
func (l *Log) verifyStored(size uint64, root []byte) error {
	from := l.vrng.End()
	rng, err := rangeFactory.NewRange(0, from, cloneHashes(l.vrng.Hashes()))
	if err != nil {
		return fmt.Errorf("log: copy verified range: %w", err)
	}
	tr := newTileReader(l.st)
	var bad error
	visit := func(id compact.NodeID, h []byte) {
		if bad != nil || id.Level%TileHeight != 0 {
			return
		}
		lvl, pos := id.Level/TileHeight, id.Index%TileWidth
		t, err := tr.tile(lvl, id.Index/TileWidth)
		if err != nil {
			bad = err
			return
		}
		if uint64(len(t)) < (pos+1)*hashSize || !bytes.Equal(t[pos*hashSize:(pos+1)*hashSize], h) {
			bad = fmt.Errorf("%w: tile %d/%d position %d disagrees with the hash recomputed from the stored entries", ErrCorrupt, lvl, id.Index/TileWidth, pos)
		}
	}
	next := from
	err = l.st.Scan(entryKey(from), entryKey(size), func(k, v []byte) error {
		if idx := binary.BigEndian.Uint64(k[1:]); idx != next {
			return fmt.Errorf("%w: entry %d missing (found %d)", ErrCorrupt, next, idx)
		}
		if err := rng.Append(hasher.HashLeaf(v), visit); err != nil {
			return err
		}
		next++
		return bad
	})
	if err != nil {
		return fmt.Errorf("log: verify stored tree %d..%d: %w", from, size, err)
	}
	if next != size {
		return fmt.Errorf("%w: entries %d..%d missing", ErrCorrupt, next, size)
	}
	got, err := rootOf(rng)
	if err != nil {
		return fmt.Errorf("log: verify root at %d: %w", size, err)
	}
	if !bytes.Equal(got, root) {
		return fmt.Errorf("%w: stored entries give root %x at size %d, integrated root is %x", ErrCorrupt, got, size, root)
	}
	l.vrng = rng
	return nil
}

func cloneHashes(hs [][]byte) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = bytes.Clone(h)
	}
	return out
}

// Checkpoint returns the latest signed checkpoint note, or nil before the
// first one. Witness cosignatures will be appended here once the witness
// protocol is wired in.
func (l *Log) Checkpoint() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.cp.note)
}

// WaitCheckpoint returns the first signed checkpoint, at or after the call,
// whose tree size is at least size.
func (l *Log) WaitCheckpoint(ctx context.Context, size uint64) ([]byte, error) {
	for {
		l.mu.Lock()
		cp, ch, alarm := l.cp, l.cpCh, l.alarm
		l.mu.Unlock()
		if cp.note != nil && cp.size >= size {
			return bytes.Clone(cp.note), nil
		}
		if alarm != nil {
			return nil, fmt.Errorf("log: wait for checkpoint %d: %w", size, alarm)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("log: wait for checkpoint %d: %w", size, ctx.Err())
		case <-l.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// Alarm returns the reason checkpoint signing stopped (the stored tree
// disagreed with the integrated one), or nil.
func (l *Log) Alarm() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.alarm
}
