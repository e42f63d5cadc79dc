package witness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/log"
)

const testOrigin = "log.skyline.example/witness-test"

// logKey is a log's signed-note key pair.
type logKey struct {
	signer   note.Signer
	verifier note.Verifier
	vkey     string
}

func newLogKey(t testing.TB, origin string) logKey {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return logKey{s, v, vkey}
}

// openTestLog opens a real log (package log on Pebble) signed by k.
func openTestLog(t testing.TB, k logKey) *log.Log {
	t.Helper()
	l, err := log.Open(context.Background(), log.Config{
		Dir:                t.TempDir(),
		Origin:             testOrigin,
		Signer:             k.signer,
		CheckpointInterval: 2 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// addEntries appends entries prefix-0 .. prefix-(n-1) and waits for a
// checkpoint covering them.
func addEntries(t testing.TB, l *log.Log, prefix string, n int) []byte {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		if _, err := l.Add(ctx, fmt.Appendf(nil, "%s-%d", prefix, i)); err != nil {
			t.Fatal(err)
		}
	}
	size, _ := l.Size()
	cp, err := l.WaitCheckpoint(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// lyingLog serves a log's tlog-tiles paths from a handler the test
// controls: by default the backing log, with any path overridden.
type lyingLog struct {
	mu        sync.Mutex
	backing   *log.Log
	overrides map[string][]byte
}

func (h *lyingLog) set(path string, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.overrides == nil {
		h.overrides = map[string][]byte{}
	}
	h.overrides[path] = data
}

func (h *lyingLog) use(l *log.Log) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.backing, h.overrides = l, nil
}

func (h *lyingLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	h.mu.Lock()
	data, ok := h.overrides[path]
	backing := h.backing
	h.mu.Unlock()
	if !ok {
		var err error
		data, err = backing.ReadPath(r.Context(), path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
	}
	w.Write(data)
}

func serveLying(t testing.TB, l *log.Log) (*lyingLog, string) {
	h := &lyingLog{backing: l}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL
}

func newTestFollower(t testing.TB, url string, k logKey, trusted Checkpoint) *Follower {
	t.Helper()
	f, err := NewFollower(FollowerConfig{URL: url, Origin: testOrigin, Verifier: k.verifier}, trusted)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// readAll reads every entry of the trusted tree.
func readAll(t testing.TB, f *Follower) ([]string, error) {
	var got []string
	err := f.Entries(context.Background(), 0, f.Trusted().Size, func(i uint64, e []byte) error {
		if i != uint64(len(got)) {
			t.Fatalf("entry %d delivered at position %d", i, len(got))
		}
		got = append(got, string(e))
		return nil
	})
	return got, err
}

func TestFollowerHonestLog(t *testing.T) {
	k := newLogKey(t, testOrigin)
	l := openTestLog(t, k)
	_, url := serveLying(t, l)
	f := newTestFollower(t, url, k, EmptyTree(testOrigin))
	ctx := context.Background()
	total := 0
	// Sizes crossing full tiles and bundles, and a level-1 tile.
	for _, n := range []int{1, 4, 300, 70000 / 100} {
		addEntries(t, l, fmt.Sprintf("r%d", total), n)
		old := f.Trusted()
		cp, err := f.Update(ctx)
		if err != nil {
			t.Fatalf("update after %d entries: %v", total+n, err)
		}
		total += n
		if cp.Size != uint64(total) {
			t.Fatalf("trusted size %d, want %d", cp.Size, total)
		}
		var got []string
		if err := f.Entries(ctx, old.Size, cp.Size, func(i uint64, e []byte) error {
			got = append(got, string(e))
			return nil
		}); err != nil {
			t.Fatalf("entries %d..%d: %v", old.Size, cp.Size, err)
		}
		if len(got) != n || !strings.HasPrefix(got[0], fmt.Sprintf("r%d-0", old.Size)) {
			t.Fatalf("read %d new entries starting %q", len(got), got[0])
		}
	}
	all, err := readAll(t, f)
	if err != nil || len(all) != total {
		t.Fatalf("read %d of %d entries: %v", len(all), total, err)
	}
	// Same checkpoint again: no change, no error.
	if cp, err := f.Update(ctx); err != nil || cp.Size != uint64(total) {
		t.Fatalf("repeat update: %d %v", cp.Size, err)
	}
	if err := f.Entries(ctx, 0, uint64(total)+1, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrRange) {
		t.Fatalf("entries past the tree: %v, want ErrRange", err)
	}
}

// TestFollowerRefusesLies makes a log lie in each way the follower must
// catch and checks that it says which, and trusts nothing new.
func TestFollowerRefusesLies(t *testing.T) {
	ctx := context.Background()
	k := newLogKey(t, testOrigin)
	honest := openTestLog(t, k)
	cp5 := addEntries(t, honest, "a", 5)
	cp300 := addEntries(t, honest, "b", 295)

	// Another history under the same key: same size, and larger.
	forked := openTestLog(t, k)
	forkCp300 := addEntries(t, forked, "x", 300)
	forkCp400 := addEntries(t, forked, "y", 100)

	otherKey := newLogKey(t, testOrigin)
	impostor := openTestLog(t, otherKey)
	impostorCp := addEntries(t, impostor, "b", 400)

	base, err := ParseCheckpoint(cp300, testOrigin, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	tileOf := func(l *log.Log, path string) []byte {
		b, err := l.ReadPath(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		lie  func(h *lyingLog)
		want error
		// entries: the lie is in what Entries reads, not in Update.
		entries bool
	}{
		{"fork: same size, other root", func(h *lyingLog) { h.use(forked); h.set("checkpoint", forkCp300) }, ErrFork, false},
		{"rollback: an older checkpoint", func(h *lyingLog) { h.set("checkpoint", cp5) }, ErrRollback, false},
		{"bad proof: a larger tree without ours", func(h *lyingLog) { h.use(forked); h.set("checkpoint", forkCp400) }, ErrBadProof, false},
		{"checkpoint signed by another key", func(h *lyingLog) { h.use(impostor); h.set("checkpoint", impostorCp) }, ErrBadSignature, false},
		{"checkpoint of another origin", func(h *lyingLog) {
			h.set("checkpoint", signNote(t, k, "other.origin\n400\n"+base.Hash.String()+"\n"))
		}, ErrBadCheckpoint, false},
		{"bad tile", func(h *lyingLog) {
			// The log grows; the tile on the right edge of the new tree is
			// corrupted.
			addEntries(t, honest, "c", 10)
			tl := bytes.Clone(tileOf(honest, "tile/1/000.p/1"))
			tl[3] ^= 1
			h.set("tile/1/000.p/1", tl)
			h.set("tile/0/001.p/54", bytes.Repeat([]byte{7}, 54*32))
		}, ErrBadTile, false},
		{"short tile", func(h *lyingLog) {
			addEntries(t, honest, "d", 1)
			h.set("tile/0/001.p/55", []byte("short"))
		}, ErrBadTile, false},
		{"entry bundle with a replaced entry", func(h *lyingLog) {
			var b []byte
			for i := range 256 {
				e := fmt.Appendf(nil, "b-%d", i-5)
				if i < 5 {
					e = fmt.Appendf(nil, "a-%d", i)
				}
				if i == 17 {
					e = []byte("not what the tree holds")
				}
				b = log.AppendEntryBundle(b, e)
			}
			h.set("tile/entries/000", b)
		}, ErrHiddenEntry, true},
		{"entry bundle missing an entry", func(h *lyingLog) {
			full := tileOf(honest, "tile/entries/001.p/44")
			entries, err := log.ParseEntryBundle(full)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			for _, e := range entries[:len(entries)-1] {
				b = log.AppendEntryBundle(b, e)
			}
			h.set("tile/entries/001.p/44", b)
		}, ErrHiddenEntry, true},
		{"truncated entry bundle", func(h *lyingLog) { h.set("tile/entries/000", []byte{0, 9, 'x'}) }, ErrHiddenEntry, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, url := serveLying(t, honest)
			f := newTestFollower(t, url, k, base)
			tc.lie(h)
			var err error
			if tc.entries {
				_, err = readAll(t, f)
			} else {
				_, err = f.Update(ctx)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			for _, other := range []error{ErrFork, ErrRollback, ErrBadProof, ErrBadSignature, ErrBadCheckpoint, ErrBadTile, ErrHiddenEntry, ErrFetch} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			if got := f.Trusted(); got.Size != base.Size || got.Hash != base.Hash {
				t.Fatalf("trusted moved to %d %s after a lie", got.Size, got.Hash)
			}
		})
	}
}

func signNote(t testing.TB, k logKey, text string) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: text}, k.signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCheckpointRejects(t *testing.T) {
	k := newLogKey(t, testOrigin)
	root := EmptyTree(testOrigin).Hash.String()
	good := "" + testOrigin + "\n3\n" + root + "\n"
	if _, err := ParseCheckpoint(signNote(t, k, good), testOrigin, k.verifier); err != nil {
		t.Fatalf("good checkpoint: %v", err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"extension line", signNote(t, k, good+"ext\n"), ErrBadCheckpoint},
		{"bad size", signNote(t, k, testOrigin+"\n-1\n"+root+"\n"), ErrBadCheckpoint},
		{"short root", signNote(t, k, testOrigin+"\n3\nAAAA\n"), ErrBadCheckpoint},
		{"unsigned", []byte(good + "\n"), ErrBadCheckpoint},
		{"other key", signNote(t, newLogKey(t, testOrigin), good), ErrBadSignature},
		{"flipped signature", func() []byte {
			// Flip a bit of the signature itself (after the 4-byte key
			// hash) and re-encode, so the note stays well-formed and names
			// the right key: a flipped base64 character could instead be
			// no base64 at all, or change the key hash.
			b := signNote(t, k, good)
			i := bytes.LastIndexByte(b, ' ') + 1
			sig, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(b[i:]), "\n"))
			if err != nil || len(sig) != 4+64 {
				t.Fatalf("signature line of %q: %v", b, err)
			}
			sig[len(sig)-1] ^= 1
			return append(b[:i:i], base64.StdEncoding.EncodeToString(sig)+"\n"...)
		}(), ErrBadSignature},
		{"too large", append(signNote(t, k, good), bytes.Repeat([]byte{'a'}, maxCheckpointSize)...), ErrBadCheckpoint},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseCheckpoint(tc.data, testOrigin, k.verifier); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func FuzzParseCheckpoint(f *testing.F) {
	k := newLogKey(f, testOrigin)
	root := EmptyTree(testOrigin).Hash.String()
	f.Add(signNote(f, k, testOrigin+"\n3\n"+root+"\n"))
	f.Add(signNote(f, k, testOrigin+"\n3\n"+root+"\next\n"))
	f.Add([]byte(testOrigin + "\n3\n" + root + "\n\n— x AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cp, err := ParseCheckpoint(data, testOrigin, k.verifier)
		if err != nil {
			for _, e := range []error{ErrBadCheckpoint, ErrBadSignature} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error %v is neither ErrBadCheckpoint nor ErrBadSignature", err)
		}
		if cp.Origin != testOrigin || !bytes.Equal(cp.Note, data) {
			t.Fatalf("parsed %+v from %q", cp, data)
		}
	})
}
