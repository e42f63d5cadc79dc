package log

import (
	"bytes"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/transparency-dev/merkle/proof"
)

// TestPropertyFaultsAndRestarts runs random sequences of concurrent adds
// (with resubmissions), checkpoint publications, injected storage faults
// (failed write, torn write, lost sync) and restarts, and checks after every
// restart: no gap, no duplicate, the tree never shrinks, acknowledged entries
// survive, the NVR index matches the entries, and every published
// checkpoint is consistent with the tree.
func TestPropertyFaultsAndRestarts(t *testing.T) {
	for seed := range uint64(16) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			propertyRun(t, seed, 120)
		})
	}
}

func propertyRun(t *testing.T, seed uint64, steps int) {
	rng := mrand.New(mrand.NewPCG(seed, 42))
	k := newTestKey(t)
	db := newMemDB()
	var fs *faultStorage
	open := func() *Log {
		fs = newFaultStorage(db)
		l, err := Open(context.Background(), Config{
			Storage: fs, Origin: testOrigin, Signer: k.signer, Indexer: testIndexer,
			CheckpointInterval: time.Hour, MaxBatchEntries: 1 + rng.IntN(4),
		})
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		return l
	}
	l := open()
	defer func() { l.Close() }()
	acked := map[uint64]string{}
	ackedPayload := map[string]uint64{}
	var maxSize uint64
	var cps []checkpoint
	faults, restarts, failedAdds := 0, 0, 0

	check := func(step int) {
		t.Helper()
		ctx := context.Background()
		size, root := l.Size()
		if size < maxSize {
			t.Fatalf("step %d: tree shrank from %d to %d", step, maxSize, size)
		}
		maxSize = size
		var entries []string
		payloads := map[string]uint64{}
		wantIndex := map[string][]IndexRef{}
		for i := range size {
			e, err := l.Entry(ctx, i)
			if err != nil {
				t.Fatalf("step %d: gap at %d of %d: %v", step, i, size, err)
			}
			entries = append(entries, string(e))
			if dedup, keys, _ := testIndexer(e); len(dedup) > 0 {
				if prev, ok := payloads[string(dedup)]; ok {
					t.Fatalf("step %d: dedup key %q at %d and %d", step, dedup, prev, i)
				}
				payloads[string(dedup)] = i
				for _, key := range keys {
					wantIndex[key.NVR] = append(wantIndex[key.NVR], IndexRef{i, key.Type})
				}
			}
		}
		if n := len(scanAll(t, l.st, entryKey(size), []byte{pfxEntry + 1})); n != 0 {
			t.Fatalf("step %d: %d stored entries beyond size %d", step, n, size)
		}
		for idx, e := range acked {
			if idx >= size || entries[idx] != e {
				t.Fatalf("step %d: acknowledged entry %d (%q) lost; size %d", step, idx, e, size)
			}
		}
		if got := refRoots(entries)[size]; !bytes.Equal(got, root) {
			t.Fatalf("step %d: root %x, entries give %x", step, root, got)
		}
		for nvr, want := range wantIndex {
			if got, err := l.Lookup(ctx, nvr); err != nil || !slices.Equal(got, want) {
				t.Fatalf("step %d: Lookup(%s) = %v, %v; want %v", step, nvr, got, err, want)
			}
		}
		for _, cp := range cps {
			p, err := l.ConsistencyProof(ctx, cp.size, size)
			if err == nil {
				err = proof.VerifyConsistency(hasher, cp.size, size, p, cp.root, root)
			}
			if err != nil {
				t.Fatalf("step %d: checkpoint %d inconsistent with tree %d: %v", step, cp.size, size, err)
			}
		}
	}

	for step := range steps {
		switch op := rng.IntN(100); {
		case op < 60:
			n := 1 + rng.IntN(6)
			batch := make([]string, n)
			for i := range batch {
				if rng.IntN(4) == 0 {
					batch[i] = fmt.Sprintf("plain-%d", rng.IntN(1000))
				} else {
					batch[i] = fmt.Sprintf("pkg-%d|%s|p%d", rng.IntN(5), []string{"build", "official"}[rng.IntN(2)], rng.IntN(60))
				}
			}
			res := make([]AddResult, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range batch {
				wg.Go(func() { res[i], errs[i] = l.Add(context.Background(), []byte(batch[i])) })
			}
			wg.Wait()
			for i, e := range batch {
				if errs[i] != nil {
					failedAdds++
					continue
				}
				idx := res[i].Index
				dedup, _, _ := testIndexer([]byte(e))
				if prev, ok := ackedPayload[string(dedup)]; ok && len(dedup) > 0 && (prev != idx || !res[i].Duplicate) {
					t.Fatalf("step %d: %q acknowledged at %d (dup %t), its dedup key was acknowledged at %d", step, e, idx, res[i].Duplicate, prev)
				}
				if res[i].Duplicate {
					continue
				}
				if prev, ok := acked[idx]; ok && prev != e {
					t.Fatalf("step %d: index %d acknowledged for %q and %q", step, idx, prev, e)
				}
				acked[idx] = e
				if len(dedup) > 0 {
					ackedPayload[string(dedup)] = idx
				}
			}
			if size, _ := l.Size(); size > maxSize {
				maxSize = size
			}
		case op < 70:
			if err := l.publish(); err == nil {
				l.mu.Lock()
				cps = append(cps, l.cp)
				l.mu.Unlock()
			}
		case op < 85:
			faults++
			fs.inject([]int{faultWrite, faultTorn, faultSyncLost}[rng.IntN(3)], rng.IntN(3), rng.IntN(12))
		default:
			restarts++
			l.Close()
			l = open()
			check(step)
		}
	}
	l.Close()
	l = open()
	check(steps)
	if len(acked) == 0 || restarts == 0 {
		t.Fatalf("seed %d: %d acks, %d restarts: the run checked nothing", seed, len(acked), restarts)
	}
	t.Logf("seed %d: acked=%d faults=%d failed_adds=%d restarts=%d checkpoints=%d final_size=%d",
		seed, len(acked), faults, failedAdds, restarts, len(cps), maxSize)
}
