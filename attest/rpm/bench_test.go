package rpm

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// bigRPM is a hello-doc RPM with 4 MiB of incompressible payload, built
// once per test binary and shared by the benchmarks so that their figures
// come from the same bytes.
var bigRPM struct {
	once sync.Once
	raw  []byte
}

func bigRPMBytes(b *testing.B) []byte {
	bigRPM.once.Do(func() {
		dir := rebuild(b, "hello.spec", map[string]string{"bulk_kib": "4096"})
		raw, err := os.ReadFile(filepath.Join(dir, "hello-doc-1.0-1.noarch.rpm"))
		if err != nil {
			b.Fatal(err)
		}
		bigRPM.raw = raw
	})
	if len(bigRPM.raw) < 4<<20 {
		b.Fatalf("benchmark RPM has %d bytes, want ≥ 4 MiB", len(bigRPM.raw))
	}
	return bigRPM.raw
}

// BenchmarkDigest is DigestReader (whole-file SHA-256, payload SHA-256,
// header parse and encoding) on an in-memory 4 MiB RPM. Compare its MB/s
// with BenchmarkSHA256Raw from the same run: the goal is a ratio ≥ 0.8.
func BenchmarkDigest(b *testing.B) {
	raw := bigRPMBytes(b)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := DigestReader(bytes.NewReader(raw), "big.rpm"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSHA256Raw is the yardstick: one SHA-256 over the same bytes.
func BenchmarkSHA256Raw(b *testing.B) {
	raw := bigRPMBytes(b)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		sha256.Sum256(raw)
	}
}

// BenchmarkSHA256TwoStreams is the second yardstick: two SHA-256 passes
// over the same bytes on two goroutines. DigestReader must make two passes
// (the file's sha256 for the attestation subject, and the payload's for
// skyline-rpm-v1) and runs them in parallel, so BenchmarkDigest can reach
// BenchmarkSHA256Raw only while a second core is free; its ratio to this
// benchmark shows the cost of everything else (parsing, copying, hand-off).
func BenchmarkSHA256TwoStreams(b *testing.B) {
	raw := bigRPMBytes(b)
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for b.Loop() {
		var wg sync.WaitGroup
		wg.Go(func() { sha256.Sum256(raw) })
		sha256.Sum256(raw)
		wg.Wait()
	}
}
