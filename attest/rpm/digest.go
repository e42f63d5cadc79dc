package rpm

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// DigestVersion names the digest definition in docs/rpm-digest.md. Any
// change to what is hashed or how is a new version string.
const DigestVersion = "skyline-rpm-v1"

// Digest describes one RPM file.
type Digest struct {
	File      string  `json:"file"`    // base name of the file
	SHA256    string  `json:"sha256"`  // hex sha256 of the whole file as it is (changes when signed)
	Skyline   string  `json:"skyline"` // hex skyline-rpm-v1 digest
	Name      string  `json:"name"`
	Version   string  `json:"version"`
	Release   string  `json:"release"`
	Arch      string  `json:"arch"`
	Epoch     *uint32 `json:"epoch,omitempty"`
	SourceRPM string  `json:"sourcerpm,omitempty"` // empty for a source RPM
	IsSource  bool    `json:"is_source"`
}

// DigestFile digests the RPM at path.
func DigestFile(path string) (Digest, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, fmt.Errorf("rpm: %w", err)
	}
	defer f.Close()
	return DigestReader(f, filepath.Base(path))
}

// DigestReader digests the RPM read from r to its end; name becomes
// Digest.File. Memory use is bounded by the headers (at most
// MaxSignatureSize + MaxHeaderSize) plus a few 64 KiB buffers; the payload
// is streamed. The whole-file SHA-256 runs in a goroutine that ends before
// DigestReader returns.
func DigestReader(r io.Reader, name string) (Digest, error) {
	d, _, err := digest(r, name)
	return d, err
}

// DigestDir digests the binary RPMs (*.rpm, not *.src.rpm and not source
// packages by header) directly in dir, sorted by file name.
func DigestDir(dir string) ([]Digest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("rpm: %w", err)
	}
	var out []Digest
	for _, e := range ents { // os.ReadDir sorts by name
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(n, ".rpm") || strings.HasSuffix(n, ".src.rpm") {
			continue
		}
		d, err := DigestFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		if !d.IsSource {
			out = append(out, d)
		}
	}
	return out, nil
}

// Comparison is the result of Compare.
type Comparison struct {
	Same        bool     // equal skyline digests
	OnlyIgnored bool     // Same, but ignored tags differ
	IgnoredTags []string // names of ignored tags whose values differ
	Differences []string // what the digest covers and differs: "payload", "tag REQUIRENAME"
}

// Compare digests the RPMs at paths a and b and reports how they differ.
func Compare(a, b string) (Comparison, error) {
	da, pa, err := digestPath(a)
	if err != nil {
		return Comparison{}, err
	}
	db, pb, err := digestPath(b)
	if err != nil {
		return Comparison{}, err
	}
	c := Comparison{Same: da.Skyline == db.Skyline}
	ea, eb := pa.hdr.Entries, pb.hdr.Entries
	diff := func(tag uint32) {
		if ignored(tag) {
			c.IgnoredTags = append(c.IgnoredTags, tagName(tag))
		} else {
			c.Differences = append(c.Differences, "tag "+tagName(tag))
		}
	}
	// Merge the two tag-sorted entry lists.
	for len(ea) > 0 || len(eb) > 0 {
		switch {
		case len(eb) == 0 || len(ea) > 0 && ea[0].Tag < eb[0].Tag:
			diff(ea[0].Tag)
			ea = ea[1:]
		case len(ea) == 0 || eb[0].Tag < ea[0].Tag:
			diff(eb[0].Tag)
			eb = eb[1:]
		default:
			x, y := ea[0], eb[0]
			if x.Type != y.Type || x.Count != y.Count || string(x.Data) != string(y.Data) {
				diff(x.Tag)
			}
			ea, eb = ea[1:], eb[1:]
		}
	}
	if pa.payloadSize != pb.payloadSize || pa.payloadSum != pb.payloadSum {
		c.Differences = append(c.Differences, "payload")
	}
	c.OnlyIgnored = c.Same && len(c.IgnoredTags) > 0
	return c, nil
}

func digestPath(path string) (Digest, *parts, error) {
	f, err := os.Open(path)
	if err != nil {
		return Digest{}, nil, fmt.Errorf("rpm: %w", err)
	}
	defer f.Close()
	return digest(f, filepath.Base(path))
}

// parts are the hashed pieces of one package, kept for Compare.
type parts struct {
	hdr         *Header
	payloadSize uint64
	payloadSum  [sha256.Size]byte
}

func digest(r io.Reader, name string) (Digest, *parts, error) {
	d, p, err := digestParts(r, name)
	if err != nil {
		return Digest{}, nil, fmt.Errorf("rpm: %s: %w", name, err)
	}
	return d, p, nil
}

func digestParts(r io.Reader, name string) (Digest, *parts, error) {
	fh := newFileHasher(r)
	defer fh.sum()
	pkg, err := read(fh)
	if err != nil {
		return Digest{}, nil, err
	}
	d := Digest{File: name}
	h := pkg.Header
	d.Name, _, _ = h.String(TagName)
	d.Version, _, _ = h.String(TagVersion)
	d.Release, _, _ = h.String(TagRelease)
	var ok bool
	if d.Arch, _, err = h.String(TagArch); err != nil {
		return Digest{}, nil, fmt.Errorf("main header: %w", err)
	}
	// rpm's headerIsSource: a source package has no SOURCERPM tag.
	if d.SourceRPM, ok, err = h.String(TagSourceRPM); err != nil {
		return Digest{}, nil, fmt.Errorf("main header: %w", err)
	}
	d.IsSource = !ok
	if e, ok, err := h.Uint32(TagEpoch); err != nil {
		return Digest{}, nil, fmt.Errorf("main header: %w", err)
	} else if ok {
		d.Epoch = &e
	}

	// The payload is hashed from its bytes. When the main header carries
	// PAYLOADDIGEST, the same bytes are checked against it.
	want, check, err := payloadDigest(h)
	if err != nil {
		return Digest{}, nil, err
	}
	ps := sha256.New()
	w := io.Writer(ps)
	if check != nil {
		w = io.MultiWriter(ps, check)
	}
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(w, onlyReader{pkg.Payload}, buf)
	if err != nil {
		return Digest{}, nil, fmt.Errorf("payload: %w", err)
	}
	if n == 0 {
		return Digest{}, nil, fmt.Errorf("%w: no payload", ErrTruncated)
	}
	p := &parts{hdr: h, payloadSize: uint64(n)}
	ps.Sum(p.payloadSum[:0])
	if want != "" {
		got := p.payloadSum[:]
		if check != nil {
			got = check.Sum(nil)
		}
		if hex.EncodeToString(got) != want {
			return Digest{}, nil, fmt.Errorf("%w: payload hashes to %x, PAYLOADDIGEST says %s", ErrPayloadDigestMismatch, got, want)
		}
	}
	d.Skyline = hex.EncodeToString(skylineSum(h, p))
	d.SHA256 = hex.EncodeToString(fh.sum())
	return d, p, nil
}

// skylineSum is the skyline-rpm-v1 digest (docs/rpm-digest.md "Encoding").
func skylineSum(h *Header, p *parts) []byte {
	s := sha256.New()
	var b [16]byte
	s.Write([]byte(DigestVersion + "\n"))
	n := 0
	for _, e := range h.Entries {
		if !ignored(e.Tag) {
			n++
		}
	}
	s.Write(binary.BigEndian.AppendUint32(b[:0], uint32(n)))
	for _, e := range h.Entries { // sorted by tag
		if ignored(e.Tag) {
			continue
		}
		binary.BigEndian.PutUint32(b[0:], e.Tag)
		binary.BigEndian.PutUint32(b[4:], e.Type)
		binary.BigEndian.PutUint32(b[8:], e.Count)
		binary.BigEndian.PutUint32(b[12:], uint32(len(e.Data)))
		s.Write(b[:])
		s.Write(e.Data)
	}
	s.Write(binary.BigEndian.AppendUint64(b[:0], p.payloadSize))
	s.Write(p.payloadSum[:])
	return s.Sum(nil)
}

// payloadDigest returns the lower-case hex PAYLOADDIGEST of h ("" when
// absent) and, when its algorithm is not SHA-256, a hash to check it with.
func payloadDigest(h *Header) (string, hash.Hash, error) {
	e, ok := h.Get(TagPayloadDigest)
	if !ok {
		return "", nil, nil
	}
	if e.Type != TypeStringArray {
		return "", nil, fmt.Errorf("%w: PAYLOADDIGEST has type %d", ErrMalformed, e.Type)
	}
	want := strings.ToLower(strings.SplitN(string(e.Data), "\x00", 2)[0])
	algo, ok, err := h.Uint32(TagPayloadDigestAlgo)
	if err != nil {
		return "", nil, fmt.Errorf("main header: %w", err)
	}
	if !ok {
		return "", nil, fmt.Errorf("%w: PAYLOADDIGEST without PAYLOADDIGESTALGO", ErrMalformed)
	}
	// OpenPGP hash algorithm numbers (RFC 4880 section 9.4).
	var check hash.Hash
	switch algo {
	case 8: // SHA-256: the payload hash itself
	case 9:
		check = sha512.New384()
	case 10:
		check = sha512.New()
	case 11:
		check = sha256.New224()
	default:
		return "", nil, fmt.Errorf("%w: PAYLOADDIGESTALGO %d", ErrUnsupported, algo)
	}
	return want, check, nil
}

// onlyReader hides WriterTo/ReaderFrom so io.CopyBuffer uses its buffer.
type onlyReader struct{ io.Reader }

// fileHasher passes reads through and hashes every byte read in its own
// goroutine, so that the whole-file SHA-256 runs in parallel with the
// payload hash. sum stops the goroutine; it must be called exactly once
// (it is idempotent).
type fileHasher struct {
	r     io.Reader
	buf   []byte
	full  chan []byte
	free  chan []byte
	done  chan []byte
	total []byte
	made  int // buffers allocated
}

// The file hash's pipeline: 8 chunks of 128 KiB (at most 1 MiB in flight)
// keep both hashes busy on two cores. With 4 × 64 KiB the two goroutines
// kept waiting on each other and the digest ran at 0.54 of one SHA-256
// stream; at 8 × 128 KiB it runs at 0.82 (BenchmarkDigest vs
// BenchmarkSHA256Raw, scripts/bench-ratios).
const (
	hashChunk   = 128 << 10
	hashBuffers = 8
)

func newFileHasher(r io.Reader) *fileHasher {
	f := &fileHasher{
		r:    r,
		full: make(chan []byte, hashBuffers),
		free: make(chan []byte, hashBuffers),
		done: make(chan []byte, 1),
	}
	f.buf = make([]byte, 0, hashChunk)
	f.made = 1
	go func() {
		h := sha256.New()
		for b := range f.full {
			h.Write(b)
			f.free <- b[:0]
		}
		f.done <- h.Sum(nil)
	}()
	return f
}

func (f *fileHasher) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	for q := p[:n]; len(q) > 0; {
		k := copy(f.buf[len(f.buf):cap(f.buf)], q)
		f.buf, q = f.buf[:len(f.buf)+k], q[k:]
		if len(f.buf) == cap(f.buf) {
			f.full <- f.buf
			f.buf = f.next()
		}
	}
	return n, err
}

// next returns a free buffer, making one while fewer than hashBuffers
// exist, so that small files cost one buffer.
func (f *fileHasher) next() []byte {
	select {
	case b := <-f.free:
		return b
	default:
	}
	if f.made < hashBuffers {
		f.made++
		return make([]byte, 0, hashChunk)
	}
	return <-f.free
}

func (f *fileHasher) sum() []byte {
	if f.total == nil {
		if len(f.buf) > 0 {
			f.full <- f.buf
		}
		close(f.full)
		f.total = <-f.done
	}
	return f.total
}
