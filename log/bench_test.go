package log

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"testing"
	"time"
)

// BenchmarkAdd measures durable appends of 2 KiB entries from GOMAXPROCS×64
// concurrent writers on Pebble (ns/op is per entry).
func BenchmarkAdd(b *testing.B) {
	cfg := testConfig(b, newTestKey(b))
	cfg.CheckpointInterval = time.Hour
	l := openLog(b, cfg)
	b.SetParallelism(64)
	b.SetBytes(2048)
	b.RunParallel(func(pb *testing.PB) {
		e := make([]byte, 2048)
		for pb.Next() {
			rand.Read(e)
			if _, err := l.Add(context.Background(), e); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkInclusionProof measures a proof from the stored tiles in a tree
// of 65536 entries.
func BenchmarkInclusionProof(b *testing.B) {
	cfg := testConfig(b, newTestKey(b))
	cfg.CheckpointInterval = time.Hour
	l := openLog(b, cfg)
	fill(b, l, 0, 1<<16)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		if _, err := l.InclusionProof(ctx, mrand.Uint64N(1<<16), 1<<16); err != nil {
			b.Fatal(err)
		}
	}
}
