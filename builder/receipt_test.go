package builder

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

// testLog is an in-memory RFC 6962 tree with a note key, enough to issue
// real receipts.
type testLog struct {
	origin string
	signer note.Signer
	vkey   string
	tree   *testonly.Tree
	leaves [][]byte
}

func newTestLog(t testing.TB, origin string) *testLog {
	t.Helper()
	return newTestLogKey(t, origin, rand.Reader)
}

// newTestLogKey makes the key from r: a fixed r gives a fixed key, so the
// fuzz seed corpus in testdata stays valid.
func newTestLogKey(t testing.TB, origin string, r io.Reader) *testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(r, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{origin: origin, signer: s, vkey: vkey, tree: testonly.New(rfc6962.DefaultHasher)}
}

func (l *testLog) verifier(t testing.TB) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(l.vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// add appends (or finds, dedup by bytes) entries and returns the receipt.
func (l *testLog) add(entries [][]byte) (*Receipt, error) {
	var idx []uint64
	for _, e := range entries {
		found := -1
		for i, have := range l.leaves {
			if bytes.Equal(have, e) {
				found = i
			}
		}
		if found < 0 {
			l.leaves = append(l.leaves, bytes.Clone(e))
			l.tree.AppendData(e)
			found = len(l.leaves) - 1
		}
		idx = append(idx, uint64(found))
	}
	cp, err := l.checkpoint(l.tree.Size(), l.tree.Hash(), "")
	if err != nil {
		return nil, err
	}
	r := &Receipt{}
	for _, i := range idx {
		p, err := l.tree.InclusionProof(i, l.tree.Size())
		if err != nil {
			return nil, err
		}
		r.Entries = append(r.Entries, ReceiptEntry{Index: i, Proof: p, Checkpoint: cp})
	}
	return r, nil
}

func (l *testLog) checkpoint(size uint64, root []byte, extra string) ([]byte, error) {
	body := log.Checkpoint{Origin: l.origin, Size: size, Hash: root}.Marshal()
	return note.Sign(&note.Note{Text: string(body) + extra}, l.signer)
}

func TestVerifyReceipt(t *testing.T) {
	tl := newTestLog(t, "log.example.org/skyline")
	// Some other entries first so that proofs are not trivial.
	for i := range 5 {
		if _, err := tl.add([][]byte{fmt.Appendf(nil, "other %d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	envs := [][]byte{[]byte(`{"payloadType":"a"}`), []byte(`{"payloadType":"b"}`)}
	good, err := tl.add(envs)
	if err != nil {
		t.Fatal(err)
	}
	acks, err := VerifyReceipt(envs, good, tl.verifier(t), tl.origin)
	if err != nil {
		t.Fatalf("VerifyReceipt(good) = %v", err)
	}
	if acks[0].Index != 5 || acks[1].Index != 6 || acks[0].TreeSize != 7 {
		t.Errorf("acks %+v; want indexes 5, 6 in a tree of 7", acks)
	}

	other := newTestLog(t, tl.origin)
	clone := func() *Receipt {
		r := &Receipt{}
		for _, e := range good.Entries {
			p := make([][]byte, len(e.Proof))
			for i := range p {
				p[i] = bytes.Clone(e.Proof[i])
			}
			r.Entries = append(r.Entries, ReceiptEntry{Index: e.Index, Proof: p, Checkpoint: bytes.Clone(e.Checkpoint)})
		}
		return r
	}
	for _, tc := range []struct {
		name   string
		mutate func(r *Receipt) []byte
		envs   [][]byte
		origin string
		want   error
	}{
		{"flipped proof hash", func(r *Receipt) []byte { r.Entries[1].Proof[0][3] ^= 1; return nil }, envs, tl.origin, ErrBadProof},
		{"dropped proof hash", func(r *Receipt) []byte { r.Entries[0].Proof = r.Entries[0].Proof[1:]; return nil }, envs, tl.origin, ErrBadProof},
		{"wrong index", func(r *Receipt) []byte { r.Entries[0].Index = 4; return nil }, envs, tl.origin, ErrBadProof},
		{"index beyond tree", func(r *Receipt) []byte { r.Entries[0].Index = 7; return nil }, envs, tl.origin, ErrBadProof},
		{"different envelope", nil, [][]byte{[]byte(`{"payloadType":"A"}`), envs[1]}, tl.origin, ErrBadProof},
		{"checkpoint by another key", func(r *Receipt) []byte {
			cp, _ := other.checkpoint(7, tl.tree.Hash(), "")
			r.Entries[0].Checkpoint = cp
			return nil
		}, envs, tl.origin, ErrBadCheckpoint},
		{"checkpoint with extension line", func(r *Receipt) []byte {
			cp, _ := tl.checkpoint(7, tl.tree.Hash(), "ext\n")
			r.Entries[0].Checkpoint = cp
			return nil
		}, envs, tl.origin, ErrBadCheckpoint},
		{"tampered checkpoint text", func(r *Receipt) []byte {
			r.Entries[0].Checkpoint = bytes.Replace(r.Entries[0].Checkpoint, []byte("\n7\n"), []byte("\n8\n"), 1)
			return nil
		}, envs, tl.origin, ErrBadCheckpoint},
		{"wrong origin", nil, envs, "another.example.org/log", ErrBadCheckpoint},
		{"missing entry", func(r *Receipt) []byte { r.Entries = r.Entries[:1]; return nil }, envs, tl.origin, ErrBadReceipt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := clone()
			if tc.mutate != nil {
				tc.mutate(r)
			}
			if _, err := VerifyReceipt(tc.envs, r, tl.verifier(t), tc.origin); !errors.Is(err, tc.want) {
				t.Errorf("VerifyReceipt = %v; want %v", err, tc.want)
			}
		})
	}
	if _, err := VerifyReceipt(envs, nil, tl.verifier(t), tl.origin); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("VerifyReceipt(nil) = %v; want ErrBadReceipt", err)
	}
}

// FuzzVerifyReceipt feeds arbitrary checkpoints and proofs (what a hostile
// log can send) to VerifyReceipt: it must never accept anything but the
// one true proof, and never panic.
func FuzzVerifyReceipt(f *testing.F) {
	tl := newTestLogKey(f, "fuzz.example.org/log", bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	for i := range 3 {
		if _, err := tl.add([][]byte{fmt.Appendf(nil, "e%d", i)}); err != nil {
			f.Fatal(err)
		}
	}
	env := []byte("envelope")
	good, err := tl.add([][]byte{env})
	if err != nil {
		f.Fatal(err)
	}
	e := good.Entries[0]
	f.Add(e.Checkpoint, e.Index, bytes.Join(e.Proof, nil))
	v := tl.verifier(f)
	f.Fuzz(func(t *testing.T, checkpoint []byte, index uint64, proofBytes []byte) {
		var proof [][]byte
		for len(proofBytes) >= 32 {
			proof = append(proof, proofBytes[:32])
			proofBytes = proofBytes[32:]
		}
		r := &Receipt{Entries: []ReceiptEntry{{Index: index, Proof: proof, Checkpoint: checkpoint}}}
		acks, err := VerifyReceipt([][]byte{env}, r, v, tl.origin)
		if err != nil {
			if !errors.Is(err, ErrBadProof) && !errors.Is(err, ErrBadCheckpoint) {
				t.Fatalf("error %v is neither ErrBadProof nor ErrBadCheckpoint", err)
			}
			return
		}
		// Accepted: it must be the real position in a real tree state.
		if acks[0].Index != e.Index {
			t.Fatalf("accepted index %d; the envelope is at %d", acks[0].Index, e.Index)
		}
		if !bytes.Equal(acks[0].RootHash, tl.tree.HashAt(acks[0].TreeSize)) {
			t.Fatalf("accepted a root the log never had")
		}
	})
}

// BenchmarkVerifyReceipt checks one receipt in a tree of 2^16 entries
// (a 16-hash proof). Yardstick, timed in the same run: one Ed25519
// signature check, which the checkpoint check contains; x-ed25519 is the
// ratio of the two.
func BenchmarkVerifyReceipt(b *testing.B) {
	tl := newTestLog(b, "bench.example.org/log")
	const size = 1 << 16
	hashes := make([][]byte, size)
	for i := range hashes {
		hashes[i] = rfc6962.DefaultHasher.HashLeaf(fmt.Appendf(nil, "e%d", i))
	}
	env := []byte("envelope")
	hashes[size-1] = rfc6962.DefaultHasher.HashLeaf(env)
	tl.tree.Append(hashes...)
	p, err := tl.tree.InclusionProof(size-1, size)
	if err != nil {
		b.Fatal(err)
	}
	cp, err := tl.checkpoint(size, tl.tree.Hash(), "")
	if err != nil {
		b.Fatal(err)
	}
	r := &Receipt{Entries: []ReceiptEntry{{Index: size - 1, Proof: p, Checkpoint: cp}}}
	v := tl.verifier(b)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	msg := []byte("bench.example.org/log\n65536\nroot\n")
	sig := ed25519.Sign(priv, msg)
	const yardN = 2000
	start := time.Now()
	for range yardN {
		ed25519.Verify(pub, msg, sig)
	}
	yard := time.Since(start) / yardN

	b.ResetTimer()
	for b.Loop() {
		if _, err := VerifyReceipt([][]byte{env}, r, v, tl.origin); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(b.N)/float64(yard), "x-ed25519")
}
