package log

import (
	"encoding/binary"
	"testing"
)

// TestDedupFilter: no false negatives across growth, and few false positives.
func TestDedupFilter(t *testing.T) {
	f := newDedupFilter(1000)
	key := func(i int) []byte { return binary.BigEndian.AppendUint64([]byte("k"), uint64(i)) }
	const n = 100000 // grows past the first part (65536 keys)
	for i := range n {
		f.add(key(i))
	}
	if parts := len(*f.parts.Load()); parts < 2 {
		t.Fatalf("%d parts after %d keys, want growth", parts, n)
	}
	for i := range n {
		if !f.mayContain(key(i)) {
			t.Fatalf("false negative for key %d", i)
		}
	}
	fp := 0
	for i := n; i < 2*n; i++ {
		if f.mayContain(key(i)) {
			fp++
		}
	}
	t.Logf("false positive rate %.4f", float64(fp)/n)
	if rate := float64(fp) / n; rate > 0.03 {
		t.Fatalf("false positive rate %.3f, want < 0.03", rate)
	}
}
