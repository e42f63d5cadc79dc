package rpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// layout is where the parts of an RPM file start.
type layout struct {
	sigIL, sigDL   int
	main           int // start of the main header intro
	mainIL, mainDL int
	payload        int
}

func layoutOf(t testing.TB, raw []byte) layout {
	t.Helper()
	var l layout
	l.sigIL, l.sigDL = int(be(raw[96+8:])), int(be(raw[96+12:]))
	sigEnd := 96 + 16 + 16*l.sigIL + l.sigDL
	l.main = sigEnd + (8-sigEnd%8)%8
	l.mainIL, l.mainDL = int(be(raw[l.main+8:])), int(be(raw[l.main+12:]))
	l.payload = l.main + 16 + 16*l.mainIL + l.mainDL
	if l.payload >= len(raw) {
		t.Fatalf("layout %+v does not fit %d bytes", l, len(raw))
	}
	return l
}

// small is a hello-doc RPM, built once per test binary.
var small struct {
	sync.Mutex
	raw []byte
}

// smallRPM returns a copy of the bytes of a hello-doc RPM.
func smallRPM(t testing.TB) []byte {
	t.Helper()
	small.Lock()
	defer small.Unlock()
	if small.raw == nil {
		raw, err := os.ReadFile(filepath.Join(rebuild(t, "hello.spec", nil), "hello-doc-1.0-1.noarch.rpm"))
		if err != nil {
			t.Fatal(err)
		}
		small.raw = raw
	}
	return bytes.Clone(small.raw)
}

func digestBytes(b []byte) (Digest, error) {
	return DigestReader(bytes.NewReader(b), "test.rpm")
}

func TestTruncatedInput(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	// Every prefix that ends in the lead, the signature header, its
	// padding or the main header.
	for n := 0; n < l.payload; n++ {
		if _, err := Read(bytes.NewReader(raw[:n])); !errors.Is(err, ErrTruncated) {
			t.Fatalf("Read of the first %d bytes (main header at %d, payload at %d): %v, want ErrTruncated", n, l.main, l.payload, err)
		}
	}
	// One prefix per class through DigestReader, and every payload class.
	for _, n := range []int{0, 50, 96 + 8, l.main - 3, l.main + 20, l.payload - 1, l.payload, l.payload + 1, (l.payload + len(raw)) / 2, len(raw) - 1} {
		if _, err := digestBytes(raw[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("DigestReader of the first %d of %d bytes: %v, want ErrTruncated", n, len(raw), err)
		}
	}
	if _, err := digestBytes(raw); err != nil {
		t.Fatalf("the whole file: %v", err)
	}
}

func TestTrailingData(t *testing.T) {
	raw := smallRPM(t)
	if _, err := digestBytes(append(raw, 0)); !errors.Is(err, ErrSizeMismatch) {
		t.Errorf("RPM with one extra byte: %v, want ErrSizeMismatch", err)
	}
}

func TestChangedPayloadByteFailsPayloadDigest(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	for _, at := range []int{l.payload, len(raw) - 1} {
		b := bytes.Clone(raw)
		b[at] ^= 1
		if _, err := digestBytes(b); !errors.Is(err, ErrPayloadDigestMismatch) {
			t.Errorf("payload byte %d flipped: %v, want ErrPayloadDigestMismatch", at, err)
		}
	}
}

func TestBadMagicAndUnsupportedLead(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	tests := []struct {
		name string
		at   int
		val  byte
		want error
	}{
		{"lead magic", 0, 0, ErrBadMagic},
		{"signature header magic", 96, 0, ErrBadMagic},
		{"main header magic", l.main + 3, 2, ErrBadMagic},
		{"lead major version", 4, 2, ErrUnsupported},
		{"lead signature type", 79, 1, ErrUnsupported},
		{"lead package type", 7, 7, ErrMalformed},
		{"signature padding", l.main - 1, 1, ErrMalformed},
	}
	if l.main == 96+16+16*l.sigIL+l.sigDL {
		t.Fatal("test RPM has no signature header padding")
	}
	for _, tt := range tests {
		b := bytes.Clone(raw)
		b[tt.at] = tt.val
		if _, err := digestBytes(b); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestOversizedHeaders(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	tests := []struct {
		name string
		at   int
		val  uint32
	}{
		{"signature index count", 96 + 8, MaxIndexEntries + 1},
		{"signature data size", 96 + 12, 0xffffffff},
		{"signature size limit", 96 + 12, MaxSignatureSize},
		{"main index count", l.main + 8, 0xffffffff},
		{"main data size", l.main + 12, MaxHeaderSize},
	}
	for _, tt := range tests {
		b := bytes.Clone(raw)
		binary.BigEndian.PutUint32(b[tt.at:], tt.val)
		if _, err := digestBytes(b); !errors.Is(err, ErrHeaderTooLarge) {
			t.Errorf("%s = %#x: %v, want ErrHeaderTooLarge", tt.name, tt.val, err)
		}
	}
	// Within the limits, but more than the file holds: truncated, after
	// reading only what is there.
	b := bytes.Clone(raw)
	binary.BigEndian.PutUint32(b[l.main+12:], MaxHeaderSize-16*uint32(l.mainIL))
	if _, err := digestBytes(b); !errors.Is(err, ErrTruncated) {
		t.Errorf("main data size at the limit in a small file: %v, want ErrTruncated", err)
	}
}

// entryOf returns the offset in raw of the main header index entry for tag.
func entryOf(t *testing.T, raw []byte, l layout, tag uint32) int {
	t.Helper()
	for i := 0; i < l.mainIL; i++ {
		at := l.main + 16 + 16*i
		if be(raw[at:]) == tag {
			return at
		}
	}
	t.Fatalf("no tag %d in the main header", tag)
	return 0
}

func TestMalformedMainHeader(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	name := entryOf(t, raw, l, TagName)
	size := entryOf(t, raw, l, 1009) // SIZE, an INT32
	nameOff := l.main + 16 + 16*l.mainIL + int(be(raw[name+8:]))
	put := func(at int, v uint32) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint32(b[at:], v) }
	}
	tests := []struct {
		name   string
		mutate func([]byte)
	}{
		{"no index entries", put(l.main+8, 0)},
		{"type 0", put(name+4, TypeNull)},
		{"type 10", put(name+4, 10)},
		{"offset past data", put(name+8, uint32(l.mainDL))},
		{"negative offset", put(name+8, 0xfffffff0)},
		{"count past data", put(size+12, 0x7fffffff)},
		{"zero count", put(size+12, 0)},
		{"misaligned int32", put(size+8, be(raw[size+8:])+1)},
		{"string count 2", put(name+12, 2)},
		{"duplicate tag", put(name, TagVersion)},
		{"overlapping data", put(size+8, be(raw[name+8:])&^3)},
		{"region type", put(l.main+16+4, TypeInt32)},
		{"region tag not first", put(name, 63)},
		{"name not terminated", func(b []byte) { b[nameOff+len("hello-doc")] = 'x' }},
		{"name empty", func(b []byte) { b[nameOff] = 0 }},
	}
	for _, tt := range tests {
		b := bytes.Clone(raw)
		tt.mutate(b)
		if _, err := digestBytes(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", tt.name, err)
		}
	}
}

func TestGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lead := smallRPM(t)[:96]
	for _, n := range []int{1, 95, 96, 97, 4096, 1 << 16} {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if _, err := digestBytes(b); !errors.Is(err, ErrBadMagic) && !errors.Is(err, ErrTruncated) {
			t.Errorf("%d random bytes: %v, want ErrBadMagic or ErrTruncated", n, err)
		}
		if n >= 96+16 {
			copy(b, lead) // a valid lead, then garbage
			if _, err := digestBytes(b); !errors.Is(err, ErrBadMagic) {
				t.Errorf("lead + %d random bytes: %v, want ErrBadMagic", n-96, err)
			}
		}
	}
	if _, err := digestBytes(nil); !errors.Is(err, ErrTruncated) {
		t.Errorf("empty input: %v, want ErrTruncated", err)
	}
}

func TestPayloadDigestAlgorithm(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	algo := entryOf(t, raw, l, TagPayloadDigestAlgo)
	at := l.main + 16 + 16*l.mainIL + int(be(raw[algo+8:]))
	if got := be(raw[at:]); got != 8 {
		t.Fatalf("PAYLOADDIGESTALGO = %d, want 8 (SHA-256)", got)
	}
	tests := []struct {
		algo uint32
		want error
	}{
		{10, ErrPayloadDigestMismatch}, // SHA-512 of the payload is not the SHA-256 stored
		{99, ErrUnsupported},
	}
	for _, tt := range tests {
		b := bytes.Clone(raw)
		binary.BigEndian.PutUint32(b[at:], tt.algo)
		if _, err := digestBytes(b); !errors.Is(err, tt.want) {
			t.Errorf("PAYLOADDIGESTALGO %d: %v, want %v", tt.algo, err, tt.want)
		}
	}
}

func TestReadStopsAtPayload(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	p, err := Read(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if p.PayloadSize != int64(len(raw)-l.payload) || p.Header.Size != int64(l.payload-l.main) || p.Lead.Type != 0 {
		t.Errorf("PayloadSize %d, header size %d, lead type %d; want %d, %d, 0", p.PayloadSize, p.Header.Size, p.Lead.Type, len(raw)-l.payload, l.payload-l.main)
	}
	payload, err := io.ReadAll(p.Payload)
	if err != nil || !bytes.Equal(payload, raw[l.payload:]) {
		t.Errorf("Payload read %d bytes, %v; want the %d bytes after the main header", len(payload), err, len(raw)-l.payload)
	}
	if s, ok, err := p.Header.String(TagName); s != "hello-doc" || !ok || err != nil {
		t.Errorf("NAME = %q, %v, %v", s, ok, err)
	}
	if _, _, err := p.Header.Uint32(TagName); !errors.Is(err, ErrMalformed) {
		t.Errorf("Uint32 of a string tag: %v, want ErrMalformed", err)
	}
}

// TestOnePayloadByteChangesDigest flips one payload byte and writes the
// matching PAYLOADDIGEST into the header, as a rebuilt RPM would carry: the
// file reads cleanly and its skyline digest differs, because the payload is
// hashed from its bytes (docs/rpm-digest.md), and Compare names the payload.
func TestOnePayloadByteChangesDigest(t *testing.T) {
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	b := bytes.Clone(raw)
	b[len(b)-1] ^= 1
	pd := entryOf(t, b, l, TagPayloadDigest)
	at := l.main + 16 + 16*l.mainIL + int(be(b[pd+8:]))
	sum := sha256.Sum256(b[l.payload:])
	if old := sha256.Sum256(raw[l.payload:]); string(b[at:at+64]) != hex.EncodeToString(old[:]) {
		t.Fatalf("PAYLOADDIGEST at %d is not the payload's SHA-256", at)
	}
	copy(b[at:], hex.EncodeToString(sum[:]))
	a, err := digestBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := digestBytes(b)
	if err != nil {
		t.Fatalf("RPM with one payload byte changed and a matching PAYLOADDIGEST: %v", err)
	}
	if a.Skyline == d.Skyline {
		t.Fatal("one changed payload byte left the skyline digest unchanged")
	}
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a.rpm"), filepath.Join(dir, "b.rpm")
	if err := os.WriteFile(pa, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pb, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Compare(pa, pb)
	if err != nil {
		t.Fatal(err)
	}
	if c.Same || c.OnlyIgnored || !slices.Contains(c.Differences, "payload") {
		t.Errorf("Compare = %+v, want a payload difference", c)
	}
}
