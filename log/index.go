package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
)

// Lookup returns the entries indexed under nvr, in index order. The index is
// a convenience for finding entries, not evidence: completeness comes from
// witnesses replaying the log.
func (l *Log) Lookup(ctx context.Context, nvr string) ([]IndexRef, error) {
	release, err := l.use()
	if err != nil {
		return nil, err
	}
	defer release()
	if nvr == "" || bytes.IndexByte([]byte(nvr), 0) >= 0 {
		return nil, fmt.Errorf("%w: bad NVR %q", ErrInvalidEntry, truncate(nvr, 64))
	}
	size, _ := l.Size()
	prefix := indexPrefix(nvr)
	var refs []IndexRef
	err = l.st.Scan(prefix, prefixEnd(prefix), func(k, _ []byte) error {
		rest := k[len(prefix):]
		if len(rest) < 8 {
			return fmt.Errorf("%w: index key of %d bytes", ErrCorrupt, len(k))
		}
		if idx := binary.BigEndian.Uint64(rest); idx < size {
			refs = append(refs, IndexRef{Index: idx, Type: string(rest[8:])})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("log: lookup %q: %w", nvr, err)
	}
	return refs, nil
}

// RebuildIndex drops the deduplication and NVR index and rebuilds them by
// replaying every entry through the Indexer. Adds wait while it runs. If it
// fails, the log stops accepting Adds (ErrFailed) until it is reopened and
// RebuildIndex succeeds.
func (l *Log) RebuildIndex(ctx context.Context) error {
	if l.cfg.Indexer == nil {
		return fmt.Errorf("%w: RebuildIndex needs an Indexer", ErrConfig)
	}
	return l.barrier(ctx, func() error {
		err := l.rebuildIndex(ctx)
		if err != nil {
			l.mu.Lock()
			if l.failed == nil {
				l.failed = fmt.Errorf("%w: rebuild index: %w", ErrFailed, err)
			}
			l.mu.Unlock()
		}
		return err
	})
}

const rebuildChunk = 8192

func (l *Log) rebuildIndex(ctx context.Context) error {
	size, _ := l.Size()
	b := &Batch{}
	inBatch := map[string]bool{} // dedup keys set in b, not yet visible to Get
	flush := func(sync bool) error {
		if b.Len() == 0 && !sync {
			return nil
		}
		if err := l.st.Write(b, sync); err != nil {
			return fmt.Errorf("log: rebuild index: %w", err)
		}
		b = &Batch{}
		clear(inBatch)
		return nil
	}
	for _, pfx := range []byte{pfxDedup, pfxIndex} {
		err := l.st.Scan([]byte{pfx}, []byte{pfx + 1}, func(k, _ []byte) error {
			b.Delete(bytes.Clone(k))
			if b.Len() >= rebuildChunk {
				return flush(false)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("log: rebuild index: drop: %w", err)
		}
	}
	if err := flush(false); err != nil {
		return err
	}
	next := uint64(0)
	err := l.st.Scan(entryKey(0), entryKey(size), func(k, v []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		idx := binary.BigEndian.Uint64(k[1:])
		if idx != next {
			return fmt.Errorf("%w: entry %d missing", ErrCorrupt, next)
		}
		next++
		dedup, keys, err := l.cfg.Indexer(v)
		if err != nil {
			return fmt.Errorf("indexer rejects stored entry %d: %w", idx, err)
		}
		if err := checkIndexKeys(keys); err != nil {
			return fmt.Errorf("stored entry %d: %w", idx, err)
		}
		if len(dedup) > 0 {
			dk := append([]byte{pfxDedup}, dedup...)
			// The first entry with a dedup key owns it, as in Add.
			if _, err := l.st.Get(dk); err != nil && !inBatch[string(dk)] {
				b.Set(dk, u64(idx))
				inBatch[string(dk)] = true
				l.filter.add(dk)
			}
		}
		for _, key := range keys {
			b.Set(indexKey(key.NVR, idx, key.Type), nil)
		}
		if b.Len() >= rebuildChunk {
			return flush(false)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("log: rebuild index: replay: %w", err)
	}
	return flush(true)
}
