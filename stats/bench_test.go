package stats

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// synthetic returns a tracker whose state is generated directly (not from
// signed entries): ops operators with one key each, a team per 20
// operators, and results results in builds of 10, each with its verdict's
// effects, as Apply would leave them.
func synthetic(tb testing.TB, ops, results int) *Tracker {
	tb.Helper()
	w := newWorld(tb)
	tr, err := New(w.config())
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	clock := epoch.Add(90 * 24 * time.Hour)
	st := &tr.st
	st.Clock = clock
	keys := make([]string, ops)
	names := make([]string, ops)
	for i := range ops {
		id := hexOf(fmt.Sprint("key", i))
		name := fmt.Sprintf("operator-%05d", i)
		team := fmt.Sprintf("team-%03d", i/20)
		keys[i], names[i] = id, name
		st.Keys[id] = &keyState{Operator: name, Team: team, Enrolled: uint64(i), Recent: []Event{}}
		st.Operators[name] = &opState{Teams: []TeamSpan{{From: uint64(i), Team: team}}, Keys: []string{id}, Recent: []Event{}}
		if st.Teams[team] == nil {
			st.Teams[team] = &Account{}
		}
	}
	idx := uint64(ops)
	for b := 0; b < results/10; b++ {
		id := attest.BuildID{NVR: fmt.Sprintf("pkg%d-1.0-1.fc41", b), Arch: "x86_64", SRPMSHA256: hexOf(fmt.Sprint("srpm", b))}
		bk := buildKey(id)
		bs := &buildState{Verdict: attest.Verdict{Build: id, Verdict: attest.VerdictReproduced, At: clock.Add(-time.Duration(rng.IntN(90*24)) * time.Hour)}, BuildTime: time.Hour, Credit: DefaultCreditPerHour}
		g := attest.VerdictGroup{ResultSet: hexOf(bk)}
		for range 10 {
			k := rng.IntN(ops)
			st.Results[idx] = resultRec{Key: keys[k], Build: bk, Dur: time.Hour}
			kind := KindAgreed
			if rng.IntN(50) == 0 {
				kind = KindOutlier
			}
			e := effect{Result: idx, Key: keys[k], Operator: names[k], Team: st.Keys[keys[k]].Team, Kind: kind, Time: bs.Verdict.At}
			if kind == KindAgreed {
				e.Credit = bs.Credit
				g.Operators = append(g.Operators, names[k])
				g.Entries = append(g.Entries, idx)
			}
			bs.Effects = append(bs.Effects, e)
			tr.do(idx, id, e)
			idx++
		}
		bs.Verdict.Groups = []attest.VerdictGroup{g}
		st.Builds[bk] = bs
		tr.byNVR[id.NVR] = []string{bk}
		tr.countDay(bs.Verdict, 1)
	}
	st.Next = idx
	for i := range idx {
		if err := tr.fold.Skip(i); err != nil {
			tb.Fatal(err)
		}
	}
	return tr
}

// BenchmarkLeaderboard renders page one of the operators' leaderboard,
// sorted by RAC, with 10,000 operators and 1,000,000 results; it reports
// the p50 and p99 of the render time, and p50 as a multiple of a yardstick
// measured in the same run (SHA-256 of 16 MiB), so figures from machines of
// different speed or load compare.
func BenchmarkLeaderboard(b *testing.B) {
	tr := synthetic(b, 10_000, 1_000_000)
	h := Handler(tr)
	var times []time.Duration
	buf := make([]byte, 16<<20)
	start := time.Now()
	sha256.Sum256(buf)
	yard := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats/?sort=rac", nil))
		times = append(times, time.Since(start))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(times[len(times)/2])/float64(yard), "p50/sha256-16MiB")
}

// BenchmarkState saves and restores the state of 10,000 operators and
// 1,000,000 results, reporting the size of the state.
func BenchmarkState(b *testing.B) {
	tr := synthetic(b, 10_000, 1_000_000)
	var size int
	b.ResetTimer()
	for b.Loop() {
		data, err := tr.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		size = len(data)
		if _, err := Restore(tr.cfg, data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/(1<<20), "MB")
}

// BenchmarkApply measures Apply over a realistic log (signature checks
// included), per entry.
func BenchmarkApply(b *testing.B) {
	w := richWorld(b)
	b.ResetTimer()
	for b.Loop() {
		tr, _ := New(w.config())
		for i, e := range w.entries {
			_ = tr.Apply(uint64(i), e)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.entries)), "ns/entry")
}

// TestSynthetic checks the generator: accounts add up to what the builds
// say, so the benchmark renders a state Apply could have made.
func TestSynthetic(t *testing.T) {
	tr := synthetic(t, 100, 2000)
	var agreed, outliers int
	for _, b := range tr.st.Builds {
		for _, e := range b.Effects {
			if e.Kind == KindAgreed {
				agreed++
			} else {
				outliers++
			}
		}
	}
	h := tr.Health()
	if h.Network.Agreed != agreed || h.Network.Outliers != outliers || agreed+outliers != 2000 {
		t.Errorf("network %+v, builds say %d agreed %d outliers", h.Network, agreed, outliers)
	}
	s := tr.Snapshot()
	if !slices.IsSortedFunc(s.Operators, func(a, b OperatorStats) int { return byCredit(a.Credit, b.Credit, a.Name, b.Name) }) {
		t.Errorf("snapshot operators not in rank order")
	}
}
