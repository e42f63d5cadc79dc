package log

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/bloom"
)

// Storage is the key-value store under a Log. The Log relies on exactly
// these guarantees:
//
//   - Write applies a Batch atomically and in order; with sync=true it returns
//     only once the batch is durable. When Write fails, the batch may be
//     partially persisted (a torn write), but only as a prefix of its
//     operations: the Log orders every batch so that its commit record comes
//     last and treats anything past the last commit record as garbage.
//   - Get returns ErrNotFound for an absent key and a value the caller may keep.
//   - Scan visits keys in [start, end) in ascending byte order; the key and
//     value passed to fn are only valid during the call.
//
// A Storage is safe for concurrent use.
type Storage interface {
	Get(key []byte) ([]byte, error)
	Write(b *Batch, sync bool) error
	Scan(start, end []byte, fn func(key, value []byte) error) error
	Close() error
}

// Batch is an ordered list of writes applied by Storage.Write.
type Batch struct {
	Ops []Op
}

// Op is one write of a Batch: a Set of Key to Value, or a Delete of Key.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// Set appends a write of value under key. The batch keeps both slices.
func (b *Batch) Set(key, value []byte) { b.Ops = append(b.Ops, Op{Key: key, Value: value}) }

// Delete appends a deletion of key.
func (b *Batch) Delete(key []byte) { b.Ops = append(b.Ops, Op{Key: key, Delete: true}) }

// Len returns the number of operations in the batch.
func (b *Batch) Len() int { return len(b.Ops) }

// pebbleStorage is the production Storage.
type pebbleStorage struct {
	db *pebble.DB
}

// OpenPebble opens (creating it if needed) a Pebble database in dir as a
// Storage. Pebble's own messages go to logger at debug level (errors at error
// level).
func OpenPebble(dir string, logger *slog.Logger) (Storage, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts := &pebble.Options{
		Logger: pebbleLogger{logger},
		// The WAL holds up to one memtable of unflushed data plus one
		// recycled WAL file: 32 MiB keeps that overhead small on disk
		// while still absorbing bursts.
		MemTableSize: 32 << 20,
		Cleaner:      noRecycleCleaner{},
	}
	// Every Add looks its dedup key up, and almost every lookup misses:
	// bloom filters answer those misses without reading data blocks.
	opts.Levels = make([]pebble.LevelOptions, 7)
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Filter and index blocks of every table stay cached, so a dedup miss
	// costs no read.
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	opts.Cache = cache
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("log: open pebble in %s: %w", dir, err)
	}
	return &pebbleStorage{db: db}, nil
}

func (p *pebbleStorage) Get(key []byte) ([]byte, error) {
	v, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("log: pebble get: %w", err)
	}
	out := bytes.Clone(v)
	if err := closer.Close(); err != nil {
		return nil, fmt.Errorf("log: pebble get: %w", err)
	}
	return out, nil
}

func (p *pebbleStorage) Write(b *Batch, sync bool) error {
	pb := p.db.NewBatch()
	defer pb.Close()
	for _, op := range b.Ops {
		var err error
		if op.Delete {
			err = pb.Delete(op.Key, nil)
		} else {
			err = pb.Set(op.Key, op.Value, nil)
		}
		if err != nil {
			return fmt.Errorf("log: pebble batch: %w", err)
		}
	}
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := pb.Commit(wo); err != nil {
		return fmt.Errorf("log: pebble commit: %w", err)
	}
	return nil
}

func (p *pebbleStorage) Scan(start, end []byte, fn func(key, value []byte) error) error {
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: end})
	if err != nil {
		return fmt.Errorf("log: pebble iterator: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if err := fn(it.Key(), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("log: pebble scan: %w", err)
	}
	return nil
}

func (p *pebbleStorage) Close() error {
	// Flushing moves the WAL's contents into tables: the next Open replays
	// nothing and the WAL files no longer hold a second copy of the data.
	ferr := p.db.Flush()
	if err := p.db.Close(); err != nil {
		return fmt.Errorf("log: close pebble: %w", err)
	}
	if ferr != nil {
		return fmt.Errorf("log: flush pebble: %w", ferr)
	}
	return nil
}

// noRecycleCleaner deletes obsolete files (pebble.DeleteCleaner's Clean
// wins, being shallower), and the embedded ArchiveCleaner's marker method
// tells Pebble not to keep obsolete WAL files for reuse: recycled WALs hold
// up to a few memtables of dead bytes, more than doubling the log's disk
// overhead over its entries.
type noRecycleCleaner struct {
	pebble.DeleteCleaner
	archiveMarker
}

type archiveMarker struct{ pebble.ArchiveCleaner }

// pebbleLogger routes Pebble's printf-style messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("pebble: " + fmt.Sprintf(format, args...))
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error("pebble fatal: " + msg)
	panic("pebble: " + msg)
}
