package stats

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
)

const testOrigin = "stats.test/log"

// testLog is a real log (package log on Pebble) holding entries, and its
// note verifier.
func testLog(t *testing.T, entries [][]byte) (*log.Log, note.Verifier) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, testOrigin)
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
	l, err := log.Open(context.Background(), log.Config{Dir: t.TempDir(), Origin: testOrigin, Signer: s, CheckpointInterval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	addToLog(t, l, entries)
	return l, v
}

func addToLog(t *testing.T, l *log.Log, entries [][]byte) {
	t.Helper()
	ctx := context.Background()
	for _, e := range entries {
		if _, err := l.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	size, _ := l.Size()
	if _, err := l.WaitCheckpoint(ctx, size); err != nil {
		t.Fatal(err)
	}
}

// tilesServer serves the log's C2SP tlog-tiles paths, with overrides.
type tilesServer struct {
	l   *log.Log
	mu  sync.Mutex
	lie map[string][]byte
}

func (s *tilesServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, "/")
	s.mu.Lock()
	data, ok := s.lie[path]
	s.mu.Unlock()
	if !ok {
		var err error
		if data, err = s.l.ReadPath(r.Context(), path); err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
	}
	w.Write(data)
}

func follower(t *testing.T, url string, v note.Verifier) Source {
	t.Helper()
	f, err := witness.NewFollower(witness.FollowerConfig{URL: url, Origin: testOrigin, Verifier: v}, witness.EmptyTree(testOrigin))
	if err != nil {
		t.Fatal(err)
	}
	return FollowerSource(f)
}

// TestFollowVerifiedLog: stats read from a real log's public tiles
// through the verified follower equal a replay of the entries, before and
// after the log grows.
func TestFollowVerifiedLog(t *testing.T) {
	w := webWorld(t)
	half := len(w.entries) / 2
	l, v := testLog(t, w.entries[:half])
	srv := httptest.NewServer(&tilesServer{l: l})
	defer srv.Close()
	src := follower(t, srv.URL, v)
	tr, err := New(w.config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, upto := range []int{half, len(w.entries)} {
		if upto > half {
			addToLog(t, l, w.entries[half:])
		}
		n, err := tr.CatchUp(ctx, src, 7)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Next() != uint64(upto) || n == 0 {
			t.Fatalf("caught up to %d (read %d), want %d", tr.Next(), n, upto)
		}
		if want := replay(t, w.config(), w.entries[:upto]).Snapshot(); !reflect.DeepEqual(tr.Snapshot(), want) {
			t.Errorf("stats from the tiles at %d entries differ from a replay", upto)
		}
	}
	// The same from the log in the process (skyline serve).
	local, _ := New(w.config())
	if _, err := local.CatchUp(ctx, LogSource(l), 5); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(local.Snapshot(), tr.Snapshot()) {
		t.Errorf("stats from the local log differ from the tiles'")
	}
}

// TestFollowRefusesHiddenEntry: a log serving an entry bundle that is not
// the signed tree's is refused; the stats hold exactly the entries before
// the lie.
func TestFollowRefusesHiddenEntry(t *testing.T) {
	w := webWorld(t)
	l, v := testLog(t, w.entries)
	ts := &tilesServer{l: l}
	bundle, err := l.ReadPath(context.Background(), "tile/entries/000.p/"+strconv.Itoa(len(w.entries)))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := log.ParseEntryBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	// Swap the verdict for one that credits nobody.
	forged := append([]byte(nil), entries[18]...)
	forged[len(forged)/2] ^= 1
	var lie []byte
	for i, e := range entries {
		if i == 18 {
			e = forged
		}
		lie = log.AppendEntryBundle(lie, e)
	}
	ts.lie = map[string][]byte{"tile/entries/000.p/" + strconv.Itoa(len(w.entries)): lie}
	srv := httptest.NewServer(ts)
	defer srv.Close()
	tr, _ := New(w.config())
	_, err = tr.CatchUp(context.Background(), follower(t, srv.URL, v), 100)
	if !errors.Is(err, witness.ErrHiddenEntry) {
		t.Fatalf("got %v, want ErrHiddenEntry", err)
	}
	if tr.Next() != 18 {
		t.Fatalf("applied %d entries, want the 18 before the lie", tr.Next())
	}
	if !reflect.DeepEqual(tr.Snapshot(), replay(t, w.config(), w.entries[:18]).Snapshot()) {
		t.Errorf("stats after the refusal differ from the honest prefix's")
	}
}

// signalSource tells the test each time the follow loop asks for the size
// after the first: by then the first catch-up is done.
type signalSource struct {
	Source
	mu    sync.Mutex
	calls int
	ready chan struct{}
}

func (s *signalSource) Size(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	s.calls++
	if s.calls == 2 {
		close(s.ready)
	}
	s.mu.Unlock()
	return s.Source.Size(ctx)
}

// TestFollowSavesState: Follow catches up, and on cancel saves a state
// that restores to the same stats.
func TestFollowSavesState(t *testing.T) {
	w := webWorld(t)
	l, _ := testLog(t, w.entries)
	src := &signalSource{Source: LogSource(l), ready: make(chan struct{})}
	tr, _ := New(w.config())
	path := filepath.Join(t.TempDir(), "stats.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- tr.Follow(ctx, src, FollowConfig{Interval: time.Millisecond, StatePath: path, SaveEvery: time.Hour})
	}()
	<-src.ready
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	back, err := LoadFile(w.config(), path)
	if err != nil {
		t.Fatal(err)
	}
	if back.Next() != uint64(len(w.entries)) || !reflect.DeepEqual(back.Snapshot(), tr.Snapshot()) {
		t.Errorf("saved state at %d does not restore the stats", back.Next())
	}
	if o := mustOperator(t, back, "alice"); o.Credit != 3*DefaultCreditPerHour {
		t.Errorf("alice's credit %v", o.Credit)
	}
}
