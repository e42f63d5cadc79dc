package log

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "log.skyline.example/test"

type testKey struct {
	skey, vkey string
	signer     note.Signer
	verifier   note.Verifier
}

func newTestKey(t testing.TB) testKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	return keyFromStrings(t, skey, vkey)
}

func keyFromStrings(t testing.TB, skey, vkey string) testKey {
	t.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{skey, vkey, s, v}
}

// testIndexer reads entries of the form "nvr|type|payload": the dedup key is
// the payload, the index key (nvr, type). Entries without '|' are neither
// deduplicated nor indexed; entries starting with "bad" are rejected.
func testIndexer(entry []byte) ([]byte, []IndexKey, error) {
	if bytes.HasPrefix(entry, []byte("bad")) {
		return nil, nil, errors.New("bad entry")
	}
	parts := strings.SplitN(string(entry), "|", 3)
	if len(parts) != 3 {
		return nil, nil, nil
	}
	return []byte(parts[2]), []IndexKey{{NVR: parts[0], Type: parts[1]}}, nil
}

func testConfig(t testing.TB, k testKey) Config {
	return Config{
		Dir:                t.TempDir(),
		Origin:             testOrigin,
		Signer:             k.signer,
		CheckpointInterval: 5 * time.Millisecond,
	}
}

func openLog(t testing.TB, cfg Config) *Log {
	t.Helper()
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func add(t testing.TB, l *Log, entry string) AddResult {
	t.Helper()
	r, err := l.Add(context.Background(), []byte(entry))
	if err != nil {
		t.Fatalf("Add(%q): %v", entry, err)
	}
	return r
}

// openCheckpoint verifies a signed checkpoint with the note package and
// parses it with transparency-dev/formats.
func openCheckpoint(t testing.TB, k testKey, raw []byte) *fmtlog.Checkpoint {
	t.Helper()
	if _, err := note.Open(raw, note.VerifierList(k.verifier)); err != nil {
		t.Fatalf("note.Open: %v\n%s", err, raw)
	}
	cp, _, _, err := fmtlog.ParseCheckpoint(raw, testOrigin, k.verifier)
	if err != nil {
		t.Fatalf("ParseCheckpoint: %v", err)
	}
	return cp
}

func waitCheckpoint(t testing.TB, l *Log, size uint64) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cp, err := l.WaitCheckpoint(ctx, size)
	if err != nil {
		t.Fatalf("WaitCheckpoint(%d): %v", size, err)
	}
	return cp
}

func entryN(i int) string { return fmt.Sprintf("entry-%06d-%s", i, strings.Repeat("x", i%97)) }

// fill adds entryN(from)..entryN(to-1) with concurrent writers and returns
// entries in log index order, starting at index from.
func fill(t testing.TB, l *Log, from, to int) []string {
	t.Helper()
	return fillWith(t, l, from, to, entryN)
}

// fillWith is fill with entries gen(from)..gen(to-1).
func fillWith(t testing.TB, l *Log, from, to int, gen func(int) string) []string {
	t.Helper()
	out := make([]string, to-from)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				r, err := l.Add(context.Background(), []byte(gen(i)))
				if err != nil || r.Duplicate || r.Index < uint64(from) || r.Index >= uint64(to) {
					t.Errorf("Add(entry %d) = %+v, %v", i, r, err)
					continue
				}
				out[r.Index-uint64(from)] = gen(i)
			}
		})
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}
