// Package log is skyline's append-only Merkle log: it sequences entries,
// deduplicates them, integrates them into an RFC 6962 tree
// (github.com/transparency-dev/merkle), stores hash tiles and entry bundles
// in the C2SP tlog-tiles layout (https://c2sp.org/tlog-tiles), signs C2SP
// tlog-checkpoint notes (https://c2sp.org/tlog-checkpoint) and serves
// inclusion and consistency proofs, all on a Pebble key-value store.
//
// An Add returns only once its entry is durable: sequencing and integration
// happen in one atomic, fsynced storage batch, and batches form while the
// previous one is being synced (group commit without a timer). A separate
// goroutine signs a checkpoint at a fixed interval when the tree grew, after
// recomputing the new part of the tree from what is stored.
//
// The log is generic over entry bytes; what it deduplicates and indexes by
// NVR comes from the caller's Indexer. The storage layout, group commit and
// recovery are described in docs/log.md.
package log

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
)

// Storage keys. Every key starts with a one-byte table prefix.
const (
	pfxEntry = 'e' // e | index(8)            -> entry bytes
	pfxLeaf  = 'h' // h | leaf hash(32)       -> index(8)
	pfxDedup = 'd' // d | dedup key           -> index(8)
	pfxIndex = 'i' // i | nvr | 0 | index(8) | type -> empty
	pfxTile  = 't' // t | level(1) | N(8)     -> concatenated hashes (1..256)
)

var (
	keyState      = []byte("s") // size(8) | root(32): the commit record of every batch
	keyCheckpoint = []byte("c") // the latest signed checkpoint note
)

// hasher is the RFC 6962 section 2.1 tree hash (leaf prefix 0x00, node 0x01).
var hasher = rfc6962.DefaultHasher

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func entryKey(idx uint64) []byte { return binary.BigEndian.AppendUint64([]byte{pfxEntry}, idx) }

func leafKey(leaf []byte) []byte { return append([]byte{pfxLeaf}, leaf...) }

func tileKey(level uint, n uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{pfxTile, byte(level)}, n)
}

func indexPrefix(nvr string) []byte {
	k := append([]byte{pfxIndex}, nvr...)
	return append(k, 0)
}

func indexKey(nvr string, idx uint64, typ string) []byte {
	k := binary.BigEndian.AppendUint64(indexPrefix(nvr), idx)
	return append(k, typ...)
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Log is an append-only Merkle log. Its methods are safe for concurrent use.
type Log struct {
	cfg    Config
	st     Storage
	logger *slog.Logger
	m      *metrics

	reqs    chan *request
	commits chan *prepared
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// Owned by the sequencer goroutine (and Open before it starts).
	next    uint64
	rng     *compact.Range
	partial [][]byte // per tile level: the hashes of the rightmost, incomplete tile
	// pending maps the dedup keys of recent batches to their index and
	// batch generation; recent lists those batches' keys, oldest first.
	// Batches up to gcGen have been dropped from pending.
	pending map[string]pendingKey
	recent  []recentBatch
	gen     uint64 // generation of the last prepared batch
	gcGen   uint64

	// committedGen is the generation of the last durable batch.
	committedGen atomic.Uint64
	// filter holds every dedup key stored or being stored.
	filter *dedupFilter

	// Owned by the checkpoint goroutine: the tree as recomputed from storage
	// up to the last signed checkpoint.
	vrng *compact.Range

	mu     sync.Mutex
	size   uint64 // durable, integrated tree size
	root   []byte // its root hash
	failed error
	alarm  error
	cp     checkpoint
	cpCh   chan struct{} // closed and replaced on every publication
	closed bool

	// stMu guards the storage against Close: public methods hold it for
	// reading while they use l.st; done is closed once the goroutines exited.
	stMu     sync.RWMutex
	stClosed bool
	done     chan struct{}
}

// checkpoint is a signed checkpoint of the log.
type checkpoint struct {
	size uint64
	root []byte
	note []byte
	// Room for witness cosignatures (C2SP tlog-cosignature): a later
	// SetCosignatures appends signature lines to note and serves the result.
}

type pendingKey struct {
	index, gen uint64
}

type recentBatch struct {
	gen  uint64
	keys []string
}

// keepGens is how many committed batch generations stay in Log.pending, so
// that an Add's lookup of its dedup key in storage, done before it was
// queued, is still covered by pending when the sequencer sees it.
const keepGens = 8

type request struct {
	entry    []byte
	leaf     []byte
	dedupKey []byte // storage key used for deduplication; nil: none
	// checkedGen: the dedup key was absent from storage with every batch up
	// to this generation durable.
	checkedGen uint64
	keys       []IndexKey
	barrier    func() error

	res  AddResult
	err  error
	done chan struct{}
}

type prepared struct {
	batch *Batch
	gen   uint64
	size  uint64
	root  []byte
	reqs  []*request
	// barrier runs in the committer once every earlier batch committed.
	barrier func() error
	result  chan error
}

// Open opens or creates the log described by cfg, recovers its state from
// storage and starts its goroutines. It refuses to start, with ErrCorrupt,
// when the stored tree disagrees with itself or with the last signed
// checkpoint.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	st := cfg.Storage
	if st == nil {
		var err error
		if st, err = OpenPebble(cfg.Dir, cfg.Logger); err != nil {
			return nil, err
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		st.Close()
		return nil, err
	}
	l := &Log{
		cfg:     cfg,
		st:      st,
		logger:  cfg.Logger,
		m:       m,
		reqs:    make(chan *request, cfg.MaxPending),
		commits: make(chan *prepared),
		pending: make(map[string]pendingKey),
		cpCh:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if err := l.recover(ctx); err != nil {
		st.Close()
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.wg.Add(3)
	go l.sequence()
	go l.commit()
	go l.checkpointLoop()
	return l, nil
}

func (c *Config) fill() error {
	if c.Origin == "" || strings.ContainsAny(c.Origin, "\n") {
		return fmt.Errorf("%w: Origin must be one non-empty line", ErrConfig)
	}
	if c.Signer == nil {
		return fmt.Errorf("%w: Signer is required", ErrConfig)
	}
	if c.Dir == "" && c.Storage == nil {
		return fmt.Errorf("%w: Dir or Storage is required", ErrConfig)
	}
	if c.CheckpointInterval < 0 || c.MaxEntrySize < 0 || c.MaxEntrySize > 65535 || c.MaxBatchEntries < 0 || c.MaxBatchBytes < 0 || c.MaxPending < 0 {
		return fmt.Errorf("%w: negative limit or MaxEntrySize above 65535", ErrConfig)
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.MaxEntrySize == 0 {
		c.MaxEntrySize = DefaultMaxEntrySize
	}
	if c.MaxBatchEntries == 0 {
		c.MaxBatchEntries = DefaultMaxBatchEntries
	}
	if c.MaxBatchBytes == 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Close stops the log's goroutines, after committing the batches already
// formed, and closes its storage. Adds still queued fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	l.wg.Wait()
	close(l.done)
	l.stMu.Lock()
	defer l.stMu.Unlock()
	l.stClosed = true
	return l.st.Close()
}

// use takes the storage for a public method; it fails once the log is closed.
func (l *Log) use() (release func(), err error) {
	l.stMu.RLock()
	if l.stClosed {
		l.stMu.RUnlock()
		return nil, ErrClosed
	}
	return l.stMu.RUnlock, nil
}

// Add appends entry to the log and returns its index once it is durable. An
// entry whose dedup key is already in the log is not added again: the result
// names the existing index with Duplicate set. If ctx ends first, Add returns
// its error and the entry may or may not be in the log.
func (l *Log) Add(ctx context.Context, entry []byte) (AddResult, error) {
	if len(entry) == 0 || len(entry) > l.cfg.MaxEntrySize {
		return AddResult{}, fmt.Errorf("%w: size %d not in 1..%d", ErrInvalidEntry, len(entry), l.cfg.MaxEntrySize)
	}
	r := &request{entry: bytes.Clone(entry), done: make(chan struct{})}
	r.leaf = hasher.HashLeaf(r.entry) // RFC 6962 section 2.1: SHA-256(0x00 || entry)
	if l.cfg.Indexer == nil {
		r.dedupKey = leafKey(r.leaf)
	} else {
		dedup, keys, err := l.cfg.Indexer(r.entry)
		if err != nil {
			return AddResult{}, fmt.Errorf("%w: indexer: %w", ErrInvalidEntry, err)
		}
		if err := checkIndexKeys(keys); err != nil {
			return AddResult{}, err
		}
		if len(dedup) > 0 {
			r.dedupKey = append([]byte{pfxDedup}, dedup...)
		}
		r.keys = keys
	}
	if r.dedupKey != nil {
		if res, dup, err := l.lookupDedup(r); err != nil || dup {
			return res, err
		}
	}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return AddResult{}, fmt.Errorf("log: add: %w", ctx.Err())
	case <-l.ctx.Done():
		return AddResult{}, ErrClosed
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return AddResult{}, fmt.Errorf("log: add: waiting for commit: %w", ctx.Err())
	case <-l.done:
		select {
		case <-r.done:
			return r.res, r.err
		default:
			return AddResult{}, ErrClosed
		}
	}
}

// lookupDedup looks r's dedup key up in storage, in the Add's goroutine so
// that lookups run in parallel; the sequencer's pending map covers the
// batches that became durable since. dup reports a durable duplicate.
func (l *Log) lookupDedup(r *request) (res AddResult, dup bool, err error) {
	release, err := l.use()
	if err != nil {
		return AddResult{}, false, err
	}
	defer release()
	r.checkedGen = l.committedGen.Load()
	var v []byte
	err = ErrNotFound
	if l.filter.mayContain(r.dedupKey) {
		v, err = l.st.Get(r.dedupKey)
	}
	switch {
	case err == nil && len(v) == 8:
		if idx := binary.BigEndian.Uint64(v); idx < l.durableSize() {
			l.m.duplicate()
			return AddResult{Index: idx, Duplicate: true}, true, nil
		}
	case err != nil && !errors.Is(err, ErrNotFound):
		return AddResult{}, false, fmt.Errorf("log: dedup lookup: %w", err)
	}
	return AddResult{}, false, nil
}

func checkIndexKeys(keys []IndexKey) error {
	for _, k := range keys {
		if k.NVR == "" || strings.IndexByte(k.NVR, 0) >= 0 || len(k.NVR) > 1024 || len(k.Type) > 1024 {
			return fmt.Errorf("%w: index key %q/%q: NVR must be 1..1024 bytes without NUL, Type at most 1024 bytes", ErrInvalidEntry, truncate(k.NVR, 64), truncate(k.Type, 64))
		}
	}
	return nil
}

func (l *Log) fail(r *request, err error) {
	r.err = err
	close(r.done)
}

// sequence forms batches from the queued Adds: everything that arrived while
// the previous batch was being prepared or synced goes into the next one.
func (l *Log) sequence() {
	defer l.wg.Done()
	defer close(l.commits)
	var barrier *request
	for {
		var first *request
		select {
		case first = <-l.reqs:
		case <-l.ctx.Done():
			l.drain()
			return
		}
		batch := []*request{}
		if first.barrier != nil {
			barrier = first
		} else {
			batch = append(batch, first)
			n := len(first.entry)
		collect:
			for len(batch) < l.cfg.MaxBatchEntries && n < l.cfg.MaxBatchBytes {
				select {
				case r := <-l.reqs:
					if r.barrier != nil {
						barrier = r
						break collect
					}
					batch = append(batch, r)
					n += len(r.entry)
				default:
					break collect
				}
			}
		}
		if len(batch) > 0 {
			p := l.prepare(batch)
			if p != nil {
				select {
				case l.commits <- p:
				case <-l.ctx.Done():
					for _, r := range p.reqs {
						l.fail(r, ErrClosed)
					}
					l.drain()
					return
				}
			}
		}
		if barrier != nil {
			p := &prepared{barrier: barrier.barrier, result: make(chan error, 1)}
			select {
			case l.commits <- p:
				barrier.err = <-p.result
				close(barrier.done)
			case <-l.ctx.Done():
				l.fail(barrier, ErrClosed)
				l.drain()
				return
			}
			barrier = nil
		}
	}
}

func (l *Log) drain() {
	for {
		select {
		case r := <-l.reqs:
			l.fail(r, ErrClosed)
		default:
			return
		}
	}
}

// prepare assigns indices, integrates the new leaves into the in-memory tree
// and builds the storage batch. Duplicates of durable entries are answered
// at once; duplicates of entries still in flight ride along with the batch.
func (l *Log) prepare(batch []*request) *prepared {
	l.mu.Lock()
	failed := l.failed
	l.mu.Unlock()
	if failed != nil {
		for _, r := range batch {
			l.fail(r, failed)
		}
		return nil
	}
	l.gcPending()
	l.gen++
	b := &Batch{Ops: make([]Op, 0, 3*len(batch)+8)}
	p := &prepared{batch: b, gen: l.gen}
	var keys []string
	dirty := map[uint]uint64{}
	visit := func(id compact.NodeID, h []byte) {
		// C2SP tlog-tiles: a tile at level L holds the hashes of tree level 8L.
		if id.Level%TileHeight != 0 {
			return
		}
		lvl := id.Level / TileHeight
		for uint(len(l.partial)) <= lvl {
			l.partial = append(l.partial, nil)
		}
		pos := id.Index % TileWidth
		if pos == 0 {
			l.partial[lvl] = l.partial[lvl][:0]
		}
		l.partial[lvl] = append(l.partial[lvl], h...)
		if pos == TileWidth-1 {
			b.Set(tileKey(lvl, id.Index/TileWidth), bytes.Clone(l.partial[lvl]))
			delete(dirty, lvl)
		} else {
			dirty[lvl] = id.Index / TileWidth
		}
	}
	added := 0
	for _, r := range batch {
		if r.dedupKey != nil {
			if pk, ok := l.pending[string(r.dedupKey)]; ok {
				r.res = AddResult{Index: pk.index, Duplicate: true}
				if pk.gen <= l.committedGen.Load() {
					l.m.duplicate()
					close(r.done)
				} else {
					p.reqs = append(p.reqs, r) // answered once its original is durable
				}
				continue
			}
			if r.checkedGen < l.gcGen {
				// Queued so long that pending no longer covers every batch
				// since its lookup: look again.
				v, err := l.st.Get(r.dedupKey)
				switch {
				case err == nil && len(v) == 8 && binary.BigEndian.Uint64(v) < l.next:
					r.res = AddResult{Index: binary.BigEndian.Uint64(v), Duplicate: true}
					l.m.duplicate()
					close(r.done)
					continue
				case err != nil && !errors.Is(err, ErrNotFound):
					l.fail(r, fmt.Errorf("log: dedup lookup: %w", err))
					continue
				}
			}
		}
		idx := l.next
		l.next++
		added++
		if r.dedupKey != nil {
			k := string(r.dedupKey)
			l.pending[k] = pendingKey{idx, p.gen}
			keys = append(keys, k)
			l.filter.add(r.dedupKey)
		}
		// Entry first: recovery finds a torn batch's other keys from its entries.
		b.Set(entryKey(idx), r.entry)
		b.Set(leafKey(r.leaf), u64(idx))
		if r.dedupKey != nil && r.dedupKey[0] == pfxDedup {
			b.Set(r.dedupKey, u64(idx))
		}
		for _, k := range r.keys {
			b.Set(indexKey(k.NVR, idx, k.Type), nil)
		}
		if err := l.rng.Append(r.leaf, visit); err != nil {
			// Only possible if the in-memory range is corrupt.
			panic(fmt.Sprintf("log: append leaf %d: %v", idx, err))
		}
		r.res = AddResult{Index: idx}
		p.reqs = append(p.reqs, r)
	}
	l.recent = append(l.recent, recentBatch{p.gen, keys})
	if len(p.reqs) == 0 {
		return nil
	}
	p.size = l.next
	if added > 0 {
		for lvl, n := range dirty {
			b.Set(tileKey(lvl, n), bytes.Clone(l.partial[lvl]))
		}
		root, err := l.rng.GetRootHash(nil)
		if err != nil {
			panic(fmt.Sprintf("log: root at %d: %v", l.next, err))
		}
		p.root = root
		// The commit record goes last (see Storage).
		b.Set(keyState, append(u64(p.size), root...))
	}
	return p
}

// commit writes the prepared batches in order, each with one fsync, and
// acknowledges their Adds.
func (l *Log) commit() {
	defer l.wg.Done()
	for p := range l.commits {
		if p.barrier != nil {
			l.mu.Lock()
			err := l.failed
			l.mu.Unlock()
			if err == nil {
				err = p.barrier()
			}
			p.result <- err
			continue
		}
		l.mu.Lock()
		err := l.failed
		l.mu.Unlock()
		if err == nil && p.batch.Len() > 0 {
			if werr := l.st.Write(p.batch, true); werr != nil {
				err = fmt.Errorf("%w: commit batch to size %d: %w", ErrFailed, p.size, werr)
				l.logger.Error("log: storage write failed; refusing further adds until reopened", "size", p.size, "err", werr)
			}
		}
		l.mu.Lock()
		if err != nil && l.failed == nil {
			l.failed = err
		}
		if err == nil && p.root != nil {
			l.size, l.root = p.size, p.root
		}
		l.mu.Unlock()
		if err == nil {
			l.committedGen.Store(p.gen)
		}
		if err == nil {
			l.m.committed(p)
		}
		for _, r := range p.reqs {
			if err != nil {
				r.err = err
			} else if r.res.Duplicate {
				l.m.duplicate()
			}
			close(r.done)
		}
	}
}

// gcPending drops from pending the keys of batches committed more than
// keepGens generations ago: they are found in storage.
func (l *Log) gcPending() {
	cg := l.committedGen.Load()
	for len(l.recent) > 0 && l.recent[0].gen+keepGens <= cg {
		for _, k := range l.recent[0].keys {
			if pk, ok := l.pending[k]; ok && pk.gen == l.recent[0].gen {
				delete(l.pending, k)
			}
		}
		l.gcGen = l.recent[0].gen
		l.recent[0] = recentBatch{}
		l.recent = l.recent[1:]
	}
}

func (l *Log) durableSize() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size
}

// barrier runs fn in the committer once every batch formed before it is
// committed, with the sequencer paused until fn returns.
func (l *Log) barrier(ctx context.Context, fn func() error) error {
	r := &request{barrier: fn, done: make(chan struct{})}
	select {
	case l.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return ErrClosed
	}
	select {
	case <-r.done:
		return r.err
	case <-l.done:
		select {
		case <-r.done:
			return r.err
		default:
			return ErrClosed
		}
	}
}

// Origin returns the log's checkpoint origin (C2SP tlog-checkpoint): the
// name the log's checkpoints and the requests addressed to it carry.
func (l *Log) Origin() string { return l.cfg.Origin }

// Size returns the durable, integrated tree size and its root hash.
func (l *Log) Size() (uint64, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.size, slices.Clone(l.root)
}
