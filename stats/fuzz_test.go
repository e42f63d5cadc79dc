package stats

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
)

var (
	fuzzOnce    sync.Once
	fuzzEntries [][]byte
	fuzzCfg     Config
)

// fuzzLog is the log the fuzzers start from: webWorld's entries.
func fuzzLog(tb testing.TB) ([][]byte, Config) {
	fuzzOnce.Do(func() {
		w := webWorld(tb)
		fuzzEntries, fuzzCfg = w.entries, w.config()
	})
	return fuzzEntries, fuzzCfg
}

// FuzzApply feeds an arbitrary entry after a real log. A refused entry
// must name its reason and change no number; an accepted one must survive
// a save and restore unchanged.
func FuzzApply(f *testing.F) {
	entries, _ := fuzzLog(f)
	for _, e := range entries {
		f.Add(e)
	}
	f.Add([]byte(`{"payloadType":"application/vnd.skyline.verdict.v1+json","payload":"e30=","signatures":[{"keyid":"00","sig":""}]}`))
	f.Fuzz(func(t *testing.T, entry []byte) {
		entries, cfg := fuzzLog(t)
		tr := replay(t, cfg, entries)
		before := tr.Snapshot()
		n := uint64(len(entries))
		err := tr.Apply(n, entry)
		after := tr.Snapshot()
		if after.Next != n+1 {
			t.Fatalf("next %d after applying entry %d", after.Next, n)
		}
		if err != nil {
			known := false
			for _, s := range []error{ErrEntry, ErrSigner, ErrContradicts, ErrWitness, ErrStale} {
				known = known || errors.Is(err, s)
			}
			if !known {
				t.Fatalf("refusal without a known reason: %v", err)
			}
			after.Next, after.Health.Next, after.Health.Refused = before.Next, before.Next, before.Health.Refused
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("refused entry (%v) changed the stats", err)
			}
			return
		}
		data, err := tr.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Restore(cfg, data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Snapshot(), after) {
			t.Fatalf("accepted entry does not survive a restore")
		}
	})
}

// FuzzRestore feeds arbitrary stored state: Restore refuses it with
// ErrState or returns a tracker whose pages render.
func FuzzRestore(f *testing.F) {
	entries, cfg := fuzzLog(f)
	data, err := replay(f, cfg, entries).MarshalState()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:len(data)/3])
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, cfg := fuzzLog(t)
		tr, err := Restore(cfg, data)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("refusal without ErrState: %v", err)
			}
			return
		}
		tr.Snapshot()
		h := Handler(tr)
		for _, path := range []string{"/stats/", "/stats/teams", "/stats/health", "/stats/?sort=rac"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("%s: status %d", path, rec.Code)
			}
		}
	})
}
