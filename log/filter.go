package log

import (
	"hash/maphash"
	"math/bits"
	"sync/atomic"
)

// dedupFilter is a scalable Bloom filter over every dedup key in storage.
// A negative answer means the key is certainly not stored, so Add skips the
// storage lookup for new entries, which are almost all of them: a Pebble
// miss still probes every level, and was half of the CPU per entry.
//
// Keys are added by one goroutine at a time (Open, then the sequencer, or
// RebuildIndex while the sequencer is paused); mayContain is safe
// concurrently with add. A key is added before its batch is durable, so the
// filter never answers "absent" for a key being committed.
type dedupFilter struct {
	seed  maphash.Seed
	parts atomic.Pointer[[]*bloomPart]
}

type bloomPart struct {
	bits []atomic.Uint64
	mask uint64 // number of bits - 1 (a power of two)
	cap  int    // keys before the next, twice larger part starts
	n    int
}

// bloomProbes is k for about 10-20 bits per key (false positives 0.1-1%).
const bloomProbes = 7

func newDedupFilter(capacity int) *dedupFilter {
	f := &dedupFilter{seed: maphash.MakeSeed()}
	parts := []*bloomPart{newBloomPart(max(capacity, 1<<16))}
	f.parts.Store(&parts)
	return f
}

func newBloomPart(capacity int) *bloomPart {
	nbits := uint64(1) << bits.Len64(uint64(capacity)*10-1)
	return &bloomPart{bits: make([]atomic.Uint64, nbits/64), mask: nbits - 1, cap: capacity}
}

func (p *bloomPart) probe(h uint64, set bool) bool {
	h2 := bits.RotateLeft64(h, 32) | 1
	for i := uint64(0); i < bloomProbes; i++ {
		bit := (h + i*h2) & p.mask
		w, m := &p.bits[bit/64], uint64(1)<<(bit%64)
		if set {
			w.Or(m)
		} else if w.Load()&m == 0 {
			return false
		}
	}
	return true
}

func (f *dedupFilter) mayContain(key []byte) bool {
	h := maphash.Bytes(f.seed, key)
	for _, p := range *f.parts.Load() {
		if p.probe(h, false) {
			return true
		}
	}
	return false
}

func (f *dedupFilter) add(key []byte) {
	parts := *f.parts.Load()
	last := parts[len(parts)-1]
	if last.n >= last.cap {
		last = newBloomPart(2 * last.cap)
		grown := append(parts[:len(parts):len(parts)], last)
		f.parts.Store(&grown)
	}
	last.n++
	last.probe(maphash.Bytes(f.seed, key), true)
}
