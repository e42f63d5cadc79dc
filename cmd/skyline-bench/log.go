package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/log"
)

const benchOrigin = "bench.skyline.example/log"

// logFlags are the flags of the log benchmark; the shared ones mean what
// they mean for shared/bench/peers/cmd/tessera-posix.
type logFlags struct {
	n, size, conc, proofs, maxBatch int
	dir, cpuProfile                 string
	cpInterval                      time.Duration
	dedup, replay, keep, verbose    bool
}

// runLog measures package log the way tessera-posix measures Tessera:
//  1. append: -n entries of -size bytes from -c closed-loop writers; an Add
//     returns once the entry is sequenced, integrated and fsynced.
//  2. publication: time until a signed checkpoint covering each entry is
//     readable (polled every 5ms through ReadPath, as tessera-posix polls).
//  3. proofs: -proofs inclusion proofs for random indices from the stored
//     tiles, each verified against the checkpoint root.
//  4. replay: every entry bundle read through ReadPath, every leaf hashed,
//     the root rebuilt and compared with the checkpoint.
func runLog(args []string, stdout, stderr io.Writer) int {
	var f logFlags
	fs := flag.NewFlagSet("log", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.n, "n", 100000, "number of entries to append")
	fs.IntVar(&f.size, "size", 2048, "entry size in bytes")
	fs.StringVar(&f.dir, "dir", "", "parent directory for the log (a fresh subdirectory is made and removed); default: system temp dir")
	fs.IntVar(&f.conc, "c", 1024, "concurrent writers (closed loop)")
	fs.IntVar(&f.proofs, "proofs", 1000, "number of random inclusion proofs to build and verify")
	fs.IntVar(&f.maxBatch, "max-batch", log.DefaultMaxBatchEntries, "log.Config.MaxBatchEntries")
	fs.DurationVar(&f.cpInterval, "checkpoint-interval", time.Second, "log.Config.CheckpointInterval")
	fs.BoolVar(&f.dedup, "dedup", true, "deduplicate entries (a lookup per entry), as skyline does")
	fs.BoolVar(&f.replay, "replay", true, "run the auditor-style full replay")
	fs.BoolVar(&f.keep, "keep", false, "keep the log directory")
	fs.BoolVar(&f.verbose, "v", false, "log to stderr")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the append phase to this file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 4
	}
	if f.n <= 0 || f.size <= 8 || f.size > 65535 || f.conc <= 0 {
		fmt.Fprintln(stderr, "skyline-bench log: need -n > 0, 8 < -size <= 65535, -c > 0")
		return 4
	}
	line, err := benchLog(f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "skyline-bench log:", err)
		return 1
	}
	fmt.Fprintln(stdout, line)
	return 0
}

// entryData derives entry k's content deterministically (the same function
// as tessera-posix), so proofs and replay can recompute leaf hashes.
func entryData(k uint64, size int) []byte {
	b := make([]byte, size)
	x := k*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	for i := 0; i < 8 && i < size; i++ {
		b[i] = byte(k >> (8 * i))
	}
	return b
}

type cpEvent struct {
	at   time.Time
	size uint64
}

func pct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))]) / float64(time.Millisecond)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func checkpointSize(raw []byte) (uint64, error) {
	lines := strings.SplitN(string(raw), "\n", 3)
	if len(lines) < 3 {
		return 0, errors.New("short checkpoint")
	}
	return strconv.ParseUint(lines[1], 10, 64)
}

func benchLog(f logFlags, stderr io.Writer) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logDir, err := os.MkdirTemp(f.dir, "skyline-log-")
	if err != nil {
		return "", err
	}
	if !f.keep {
		defer os.RemoveAll(logDir)
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, benchOrigin)
	if err != nil {
		return "", err
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		return "", err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return "", err
	}
	logger := slog.New(slog.DiscardHandler)
	if f.verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	cfg := log.Config{
		Dir:                logDir,
		Origin:             benchOrigin,
		Signer:             signer,
		CheckpointInterval: f.cpInterval,
		MaxBatchEntries:    f.maxBatch,
		Logger:             logger,
	}
	if !f.dedup {
		cfg.Indexer = func([]byte) ([]byte, []log.IndexKey, error) { return nil, nil, nil }
	}
	l, err := log.Open(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer l.Close()

	data := make([][]byte, f.n)
	for k := range data {
		data[k] = entryData(uint64(k), f.size)
	}

	var (
		cpMu     sync.Mutex
		cpEvents []cpEvent
	)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		var last uint64
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
			}
			raw, err := l.ReadPath(pollCtx, "checkpoint")
			if err != nil {
				continue
			}
			s, err := checkpointSize(raw)
			if err != nil || s == last {
				continue
			}
			last = s
			cpMu.Lock()
			cpEvents = append(cpEvents, cpEvent{time.Now(), s})
			cpMu.Unlock()
		}
	}()

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return "", err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return "", err
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuSeconds()
	addStart := make([]time.Time, f.n)
	addLat := make([]time.Duration, f.n)
	idxOf := make([]uint64, f.n)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	for range f.conc {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= f.n {
					return
				}
				t0 := time.Now()
				r, err := l.Add(ctx, data[k])
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				addStart[k], addLat[k], idxOf[k] = t0, time.Since(t0), r.Index
			}
		})
	}
	wg.Wait()
	integrated := time.Since(start)
	if e := firstErr.Load(); e != nil {
		return "", fmt.Errorf("add: %v", e)
	}
	var published time.Duration
	for {
		cpMu.Lock()
		var last cpEvent
		if len(cpEvents) > 0 {
			last = cpEvents[len(cpEvents)-1]
		}
		cpMu.Unlock()
		if last.size >= uint64(f.n) {
			published = last.at.Sub(start)
			break
		}
		if time.Since(start) > 10*time.Minute {
			return "", errors.New("timed out waiting for checkpoint")
		}
		time.Sleep(2 * time.Millisecond)
	}
	stopPoll()
	<-pollDone
	appendCPU := cpuSeconds() - cpu0
	if f.cpuProfile != "" {
		pprof.StopCPUProfile()
	}

	pubLat := make([]time.Duration, f.n)
	for k := range f.n {
		i, _ := slices.BinarySearchFunc(cpEvents, idxOf[k]+1, func(e cpEvent, t uint64) int {
			if e.size < t {
				return -1
			}
			return 1
		})
		pubLat[k] = cpEvents[i].at.Sub(addStart[k])
	}
	kOf := make([]uint64, f.n)
	for k, idx := range idxOf {
		kOf[idx] = uint64(k)
	}

	raw, err := l.ReadPath(ctx, "checkpoint")
	if err != nil {
		return "", err
	}
	cp, _, _, err := fmtlog.ParseCheckpoint(raw, benchOrigin, verifier)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %v", err)
	}
	cpSize, cpRoot := cp.Size, cp.Hash
	proofLat := make([]time.Duration, 0, f.proofs)
	verifyLat := make([]time.Duration, 0, f.proofs)
	for range f.proofs {
		idx := mrand.Uint64N(cpSize)
		t0 := time.Now()
		p, err := l.InclusionProof(ctx, idx, cpSize)
		if err != nil {
			return "", err
		}
		proofLat = append(proofLat, time.Since(t0))
		t1 := time.Now()
		lh := rfc6962.DefaultHasher.HashLeaf(entryData(kOf[idx], f.size))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, cpSize, lh, p, cpRoot); err != nil {
			return "", fmt.Errorf("verify inclusion %d: %v", idx, err)
		}
		verifyLat = append(verifyLat, time.Since(t1))
	}

	replayRate := 0.0
	if f.replay {
		t0 := time.Now()
		rf := &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
		r := rf.NewEmptyRange(0)
		for b := uint64(0); b*log.TileWidth < cpSize; b++ {
			p := log.TilePath{Entries: true, Index: b}
			if w := cpSize - b*log.TileWidth; w < log.TileWidth {
				p.Width = uint16(w)
			}
			bundle, err := l.ReadPath(ctx, p.String())
			if err != nil {
				return "", err
			}
			entries, err := log.ParseEntryBundle(bundle)
			if err != nil {
				return "", err
			}
			for _, e := range entries {
				if err := r.Append(rfc6962.DefaultHasher.HashLeaf(e), nil); err != nil {
					return "", err
				}
			}
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			return "", err
		}
		if string(root) != string(cpRoot) {
			return "", errors.New("replay: root mismatch")
		}
		replayRate = float64(cpSize) / time.Since(t0).Seconds()
	}
	if err := l.Close(); err != nil {
		return "", err
	}
	var du int64
	filepath.Walk(logDir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			du += info.Size()
		}
		return nil
	})
	dedup := "on"
	if !f.dedup {
		dedup = "off"
	}
	return fmt.Sprintf("entries_per_s=%.0f published_per_s=%.0f p50_add_ms=%.1f p99_add_ms=%.1f p50_pub_ms=%.1f p99_pub_ms=%.1f p50_proof_ms=%.3f p99_proof_ms=%.3f p50_verify_ms=%.4f replay_per_s=%.0f cpu_s_per_1k=%.3f bytes_on_disk=%d n=%d size=%d c=%d batch=%d cp_interval=%s dedup=%s",
		float64(f.n)/integrated.Seconds(), float64(f.n)/published.Seconds(),
		pct(addLat, 0.5), pct(addLat, 0.99), pct(pubLat, 0.5), pct(pubLat, 0.99),
		pct(proofLat, 0.5), pct(proofLat, 0.99), pct(verifyLat, 0.5), replayRate,
		appendCPU/float64(f.n)*1000, du, f.n, f.size, f.conc, f.maxBatch, f.cpInterval, dedup), nil
}
