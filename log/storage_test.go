package log

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

// memDB is the "disk" under faultStorage: what it holds survives a restart.
type memDB struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemDB() *memDB { return &memDB{data: map[string][]byte{}} }

var errInjected = errors.New("injected fault")

// fault kinds for faultStorage.
const (
	faultNone     = iota
	faultWrite    // the write fails, nothing is persisted
	faultTorn     // a prefix of the batch is persisted, then the process "crashes"
	faultSyncLost // the whole batch is persisted but the sync reports failure
)

// faultStorage is a Storage over a memDB that injects faults on demand:
// after a fault that crashes, every call fails until a new faultStorage is
// made over the same memDB ("restart").
type faultStorage struct {
	db *memDB

	mu        sync.Mutex
	kind      int
	countdown int // writes to let through before the fault
	tornOps   int // operations persisted by a torn write
	crashed   bool
	closed    bool
	writes    int
}

func newFaultStorage(db *memDB) *faultStorage { return &faultStorage{db: db} }

// inject arms a fault on the write after `after` more successful writes.
func (f *faultStorage) inject(kind, after, tornOps int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kind, f.countdown, f.tornOps = kind, after, tornOps
}

func (f *faultStorage) check() error {
	if f.crashed {
		return fmt.Errorf("fault storage crashed: %w", errInjected)
	}
	if f.closed {
		return errors.New("fault storage closed")
	}
	return nil
}

func (f *faultStorage) Get(key []byte) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return nil, err
	}
	f.db.mu.Lock()
	defer f.db.mu.Unlock()
	v, ok := f.db.data[string(key)]
	if !ok {
		return nil, ErrNotFound
	}
	return bytes.Clone(v), nil
}

func (f *faultStorage) Write(b *Batch, sync bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(); err != nil {
		return err
	}
	f.writes++
	ops := b.Ops
	var ferr error
	if f.kind != faultNone {
		if f.countdown > 0 {
			f.countdown--
		} else {
			switch f.kind {
			case faultWrite:
				ops = nil
			case faultTorn:
				ops = ops[:min(f.tornOps, len(ops))]
				f.crashed = true
			case faultSyncLost:
				f.crashed = true
			}
			f.kind = faultNone
			ferr = fmt.Errorf("write %d: %w", f.writes, errInjected)
		}
	}
	f.db.mu.Lock()
	defer f.db.mu.Unlock()
	for _, op := range ops {
		if op.Delete {
			delete(f.db.data, string(op.Key))
		} else {
			f.db.data[string(op.Key)] = bytes.Clone(op.Value)
		}
	}
	return ferr
}

func (f *faultStorage) Scan(start, end []byte, fn func(k, v []byte) error) error {
	f.mu.Lock()
	if err := f.check(); err != nil {
		f.mu.Unlock()
		return err
	}
	f.db.mu.Lock()
	var keys []string
	for k := range f.db.data {
		if k >= string(start) && (end == nil || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	vals := make([][]byte, len(keys))
	for i, k := range keys {
		vals[i] = f.db.data[k]
	}
	f.db.mu.Unlock()
	f.mu.Unlock()
	for i, k := range keys {
		if err := fn([]byte(k), vals[i]); err != nil {
			return err
		}
	}
	return nil
}

func (f *faultStorage) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

// storageImpl opens a Storage over persistent state named by the test;
// calling reopen returns a fresh Storage over the same state.
type storageImpl struct {
	name string
	make func(t *testing.T) (open func() Storage)
}

var storageImpls = []storageImpl{
	{"pebble", func(t *testing.T) func() Storage {
		dir := t.TempDir()
		return func() Storage {
			st, err := OpenPebble(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
	}},
	{"fault", func(t *testing.T) func() Storage {
		db := newMemDB()
		return func() Storage { return newFaultStorage(db) }
	}},
}

func mustGet(t *testing.T, st Storage, key string) string {
	t.Helper()
	v, err := st.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return string(v)
}

func scanAll(t *testing.T, st Storage, start, end []byte) []string {
	t.Helper()
	var out []string
	if err := st.Scan(start, end, func(k, v []byte) error {
		out = append(out, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStorageConformance runs the guarantees the Log relies on (see Storage)
// on every implementation.
func TestStorageConformance(t *testing.T) {
	for _, impl := range storageImpls {
		t.Run(impl.name, func(t *testing.T) {
			open := impl.make(t)
			st := open()
			if _, err := st.Get([]byte("absent")); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
			}
			b := &Batch{}
			b.Set([]byte("a"), []byte("1"))
			b.Set([]byte("b"), []byte("2"))
			b.Set([]byte("c"), []byte("3"))
			b.Set([]byte("d"), []byte("4"))
			b.Delete([]byte("c"))
			b.Set([]byte("b"), []byte("22")) // later operations win
			if err := st.Write(b, true); err != nil {
				t.Fatal(err)
			}
			if got := mustGet(t, st, "b"); got != "22" {
				t.Errorf("b = %q, want 22", got)
			}
			if _, err := st.Get([]byte("c")); !errors.Is(err, ErrNotFound) {
				t.Errorf("deleted c: %v, want ErrNotFound", err)
			}
			v, _ := st.Get([]byte("a"))
			v[0] = 'x'
			if got := mustGet(t, st, "a"); got != "1" {
				t.Errorf("value aliasing: a = %q after caller modified its copy", got)
			}
			if got, want := scanAll(t, st, []byte("b"), []byte("d")), []string{"b=22"}; !slices.Equal(got, want) {
				t.Errorf("Scan[b,d) = %v, want %v", got, want)
			}
			if got, want := scanAll(t, st, []byte("a"), nil), []string{"a=1", "b=22", "d=4"}; !slices.Equal(got, want) {
				t.Errorf("Scan[a,) = %v, want %v", got, want)
			}
			stop := errors.New("stop")
			n := 0
			if err := st.Scan(nil, nil, func(k, v []byte) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
				t.Errorf("Scan callback error: got %v after %d keys, want stop after 1", err, n)
			}
			// Concurrent writers and readers.
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := range 50 {
						b := &Batch{}
						b.Set(fmt.Appendf(nil, "w%d/%03d", w, i), []byte("v"))
						if err := st.Write(b, i%2 == 0); err != nil {
							t.Error(err)
						}
						st.Get([]byte("a"))
					}
				})
			}
			wg.Wait()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
			st = open()
			defer st.Close()
			if got := mustGet(t, st, "d"); got != "4" {
				t.Errorf("after reopen d = %q, want 4", got)
			}
			if got := len(scanAll(t, st, []byte("w"), []byte("x"))); got != 200 {
				t.Errorf("after reopen: %d concurrent writes visible, want 200", got)
			}
		})
	}
}

// TestFaultStorageFaults checks the fault injector itself: a failed write
// persists nothing, a torn write persists exactly a prefix and crashes.
func TestFaultStorageFaults(t *testing.T) {
	db := newMemDB()
	st := newFaultStorage(db)
	batch := func(keys ...string) *Batch {
		b := &Batch{}
		for _, k := range keys {
			b.Set([]byte(k), []byte(k))
		}
		return b
	}
	st.inject(faultWrite, 1, 0)
	if err := st.Write(batch("a"), true); err != nil {
		t.Fatal(err)
	}
	if err := st.Write(batch("b", "c"), true); !errors.Is(err, errInjected) {
		t.Fatalf("armed write: %v, want injected", err)
	}
	if got := scanAll(t, st, nil, nil); !slices.Equal(got, []string{"a=a"}) {
		t.Fatalf("after failed write: %v", got)
	}
	st.inject(faultTorn, 0, 2)
	if err := st.Write(batch("d", "e", "f"), true); !errors.Is(err, errInjected) {
		t.Fatalf("torn write: %v", err)
	}
	if _, err := st.Get([]byte("a")); !errors.Is(err, errInjected) {
		t.Fatalf("crashed storage answered Get: %v", err)
	}
	st = newFaultStorage(db)
	if got := scanAll(t, st, nil, nil); !slices.Equal(got, []string{"a=a", "d=d", "e=e"}) {
		t.Fatalf("after torn write and restart: %v, want a, d, e", got)
	}
}
