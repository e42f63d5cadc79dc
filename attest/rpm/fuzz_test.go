package rpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var writeCorpus = flag.Bool("write-corpus", false, "rewrite testdata/fuzz/FuzzReader from a fresh build")

// sentinels are every error the reader documents for bad input.
var sentinels = []error{ErrTruncated, ErrBadMagic, ErrHeaderTooLarge, ErrMalformed, ErrUnsupported, ErrSizeMismatch, ErrPayloadDigestMismatch}

// FuzzReader checks that any input either digests (deterministically, with
// the right file hash) or fails with one of the documented errors, and
// never panics. The seed corpus (testdata/fuzz/FuzzReader) is a real
// hello-doc RPM and mutations of its headers; -write-corpus rebuilds it.
func FuzzReader(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := digestBytes(data)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("undocumented error: %v", err)
		}
		if sum := sha256.Sum256(data); d.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("SHA256 %s, want %x", d.SHA256, sum)
		}
		if d.Name == "" || d.Version == "" || d.Release == "" || len(d.Skyline) != 64 {
			t.Fatalf("accepted with empty fields: %+v", d)
		}
		again, err := digestBytes(data)
		if err != nil || again.Skyline != d.Skyline {
			t.Fatalf("second digest: %+v, %v; first %+v", again, err, d)
		}
	})
}

func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		// The committed corpus must exist and hold the valid seed.
		m, _ := filepath.Glob("testdata/fuzz/FuzzReader/*")
		if len(m) < 6 {
			t.Fatalf("seed corpus has %d files, want ≥ 6 (go test -run TestWriteFuzzCorpus -write-corpus)", len(m))
		}
		return
	}
	raw := smallRPM(t)
	l := layoutOf(t, raw)
	mut := func(at int, v uint32) []byte {
		b := bytes.Clone(raw)
		binary.BigEndian.PutUint32(b[at:], v)
		return b
	}
	// Few full-size seeds: the signature header alone is ~4 KiB
	// (RESERVEDSPACE), and %q-encoding quadruples zero bytes.
	seeds := map[string][]byte{
		"valid":           raw,
		"lead-only":       raw[:96],
		"signature-intro": raw[:96+16+32],
		"main-count-huge": mut(l.main+8, 0x10000)[:l.main+16],
		"entry-type-bad":  mut(l.main+16+16+4, 12),
		"payload-flipped": mut(len(raw)-4, 0xdeadbeef),
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReader")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
