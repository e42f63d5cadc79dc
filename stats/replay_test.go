package stats

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// richWorld logs every kind of event the tracker counts: teams and a team
// change, outliers, failures, a revocation, a superseding verdict, a stale
// verdict, the breaker tripping and clearing, and a malformed entry.
func richWorld(t testing.TB) *world {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "witness-1", "")
	imp := w.enrol(attest.RoleImporter, "koji", "")
	admin := w.enrol(attest.RoleAdmin, "fedora-infra", "")
	names := []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	teams := []string{"red", "red", "blue", "", "blue", "green"}
	var k []*attest.Signer
	for i, n := range names {
		k = append(k, w.enrol(attest.RoleBuilder, n, teams[i]))
	}
	for day := range 10 {
		nvr := "pkg" + string(rune('a'+day)) + "-1.0-1.fc41"
		var votes []vote
		for j, s := range k {
			v := vote{s: s, variant: "good", dur: time.Duration(30+day*7+j*5) * time.Minute}
			switch {
			case (day+j)%7 == 0:
				v.variant = "bad"
			case (day+j)%5 == 0:
				v.fail = true
			}
			votes = append(votes, v)
		}
		w.round(nvr, ws, votes...)
		w.tick(20 * time.Hour)
		switch day {
		case 2:
			k = append(k, w.enrol(attest.RoleBuilder, "alice", "green")) // alice moves to green
		case 4:
			w.revoke(k[1]) // bob's key
		case 5:
			// The official build of day 0 differs: its credit is withdrawn.
			w.official(buildID("pkga-1.0-1.fc41"), imp, "koji")
			w.verdict(buildID("pkga-1.0-1.fc41"), ws)
		case 6:
			a := w.sign(ws, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate", Rate: 0.2, Window: 100, TreeSize: uint64(len(w.entries)), At: w.now})
			w.addRaw([]byte(`{"not":"an entry"}`))
			w.sign(admin, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: a, Reason: "flaky mirror", At: w.now})
		case 7:
			// A replayed (stale) verdict for day 1.
			w.addRaw(w.entries[len(w.entries)-1])
		}
	}
	return w
}

func applyAll(t testing.TB, tr *Tracker, entries [][]byte, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		err := tr.Apply(uint64(i), entries[i])
		if errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
}

// TestRecomputeEquality: stats built incrementally, with the state saved
// and the tracker restarted from it at many points, deeply equal a full
// replay of the same entries; so do the stored states, byte for byte.
func TestRecomputeEquality(t *testing.T) {
	w := newWorldOrRich(t)
	full, err := New(w.config())
	if err != nil {
		t.Fatal(err)
	}
	applyAll(t, full, w.entries, 0, len(w.entries))
	want := full.Snapshot()
	if want.Health.Refused < 2 || want.Health.Breaker.Clears != 1 || want.Health.Breaker.Tripped {
		t.Fatalf("the world does not exercise refusals and the breaker: %+v", want.Health)
	}
	wantState, err := full.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "stats.json")
	for _, step := range []int{1, 7, 31, 100} {
		tr, err := LoadFile(w.config(), path+"-missing")
		if err != nil {
			t.Fatal(err)
		}
		for from := 0; from < len(w.entries); from += step {
			applyAll(t, tr, w.entries, from, min(from+step, len(w.entries)))
			if err := tr.SaveFile(path); err != nil {
				t.Fatal(err)
			}
			if tr, err = LoadFile(w.config(), path); err != nil {
				t.Fatal(err)
			}
		}
		got := tr.Snapshot()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("restart every %d entries: snapshot differs from a full replay", step)
			diffSnapshots(t, got, want)
		}
		gotState, err := tr.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gotState, wantState) {
			t.Errorf("restart every %d entries: stored state differs from a full replay's", step)
		}
	}
}

func newWorldOrRich(t testing.TB) *world { return richWorld(t) }

func diffSnapshots(t *testing.T, got, want Snapshot) {
	t.Helper()
	for i := range min(len(got.Operators), len(want.Operators)) {
		if !reflect.DeepEqual(got.Operators[i], want.Operators[i]) {
			t.Errorf("operator %d: got %+v\nwant %+v", i, got.Operators[i], want.Operators[i])
			return
		}
	}
	if !reflect.DeepEqual(got.Health, want.Health) {
		t.Errorf("health: got %+v\nwant %+v", got.Health, want.Health)
	}
}

// TestRestoreRefuses: a state made with other settings, truncated or with
// unknown fields is refused with ErrState.
func TestRestoreRefuses(t *testing.T) {
	w := richWorld(t)
	tr := replay(t, w.config(), w.entries[:40])
	data, err := tr.MarshalState()
	if err != nil {
		t.Fatal(err)
	}
	other := w.config()
	other.HalfLife = 24 * time.Hour
	for name, tc := range map[string]struct {
		cfg  Config
		data []byte
	}{
		"other half-life":   {other, data},
		"truncated":         {w.config(), data[:len(data)/2]},
		"unknown field":     {w.config(), append([]byte(`{"surprise":1,`), data[1:]...)},
		"trailing data":     {w.config(), append(append([]byte(nil), data...), "{}"...)},
		"dangling key":      {w.config(), bytes.Replace(data, []byte(`"operator":"alice"`), []byte(`"operator":"nobody"`), 1)},
		"tripped, no alarm": {w.config(), bytes.Replace(data, []byte(`"tripped":false`), []byte(`"tripped":true`), 1)},
	} {
		if _, err := Restore(tc.cfg, tc.data); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	if _, err := Restore(w.config(), data); err != nil {
		t.Errorf("the good state: %v", err)
	}
}

// TestConcurrentUse: entries applied while the state is saved and pages
// are read (run with -race); the result equals a plain replay.
func TestConcurrentUse(t *testing.T) {
	w := richWorld(t)
	tr, err := New(w.config())
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(tr)
	done := make(chan struct{})
	readers := make(chan error, 2)
	go func() {
		for {
			select {
			case <-done:
				readers <- nil
				return
			default:
			}
			if _, err := tr.MarshalState(); err != nil {
				readers <- err
				return
			}
		}
	}()
	go func() {
		for {
			select {
			case <-done:
				readers <- nil
				return
			default:
			}
			for _, p := range []string{"/stats/?sort=rac", "/stats/health", "/stats/operator/alice", "/api/stats/leaderboard?kind=teams"} {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p, nil))
				if rec.Code != http.StatusOK && rec.Code != http.StatusNotFound {
					readers <- fmt.Errorf("%s: %d", p, rec.Code)
					return
				}
			}
		}
	}()
	applyAll(t, tr, w.entries, 0, len(w.entries))
	close(done)
	for range 2 {
		if err := <-readers; err != nil {
			t.Error(err)
		}
	}
	full, _ := New(w.config())
	applyAll(t, full, w.entries, 0, len(w.entries))
	if !reflect.DeepEqual(tr.Snapshot(), full.Snapshot()) {
		t.Errorf("stats applied under concurrent readers differ from a replay")
	}
}
