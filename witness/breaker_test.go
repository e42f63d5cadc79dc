package witness

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

func mustBreaker(t testing.TB, cfg BreakerConfig) *Breaker {
	t.Helper()
	b, err := NewBreaker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// results returns an outcome of n counted results, the first outliers of
// them outliers.
func (fd *feed) results(n, outliers int) Outcome {
	vs := make([]vote, n)
	for i := range vs {
		vs[i] = vote{key: fmt.Sprint("k", i), op: fmt.Sprint("op", i), outlier: i < outliers}
	}
	return fd.outcome(vs...)
}

func breakerObserve(t testing.TB, b *Breaker, o Outcome) *attest.Alarm {
	t.Helper()
	a, err := b.Observe(o)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// smallConfig trips at 5% over a window of 100 results, all of which must
// be present.
func smallConfig() BreakerConfig {
	c := DefaultBreakerConfig()
	c.Window, c.MinSample = 100, 100
	return c
}

// TestBreakerRateThreshold: the breaker trips when the outlier rate reaches
// the threshold over a full enough window, not below it.
func TestBreakerRateThreshold(t *testing.T) {
	for _, tt := range []struct {
		name     string
		outliers int // among 100 results
		trips    bool
	}{
		{"below threshold", 4, false},
		{"at threshold", 5, true},
		{"above threshold", 9, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBreaker(t, smallConfig())
			var fd feed
			left := tt.outliers
			var alarm *attest.Alarm
			for i := range 10 {
				n := min(left, 1)
				left -= n
				if i == 9 {
					n += left
				}
				if a := breakerObserve(t, b, fd.results(10, n)); a != nil {
					if alarm != nil {
						t.Fatal("two alarms")
					}
					if i != 9 {
						t.Fatalf("tripped at outcome %d before the window held MinSample results", i)
					}
					alarm = a
				}
			}
			_, tripped := b.Tripped()
			if tripped != tt.trips || (alarm != nil) != tt.trips {
				t.Fatalf("tripped %v alarm %v, want %v", tripped, alarm, tt.trips)
			}
			if rate, n := b.Rate(); n != 100 || rate != float64(tt.outliers)/100 {
				t.Errorf("rate %v over %d", rate, n)
			}
			if alarm != nil {
				want := float64(tt.outliers) / 100
				if !strings.HasPrefix(alarm.Reason, ReasonOutlierRate) || alarm.Rate != want || alarm.Window != 100 || alarm.TreeSize != fd.next+1 {
					t.Errorf("alarm %+v, want rate %v window 100 tree size %d", alarm, want, fd.next+1)
				}
			}
		})
	}
}

// TestBreakerMinSample: a high rate over too few results does not trip.
func TestBreakerMinSample(t *testing.T) {
	b := mustBreaker(t, DefaultBreakerConfig())
	var fd feed
	for range 49 {
		if a := breakerObserve(t, b, fd.results(10, 1)); a != nil {
			t.Fatalf("tripped with %d results", len(b.window))
		}
	}
	// 490 results at 10%: under MinSample 500. The next 10 reach it.
	if a := breakerObserve(t, b, fd.results(10, 1)); a == nil {
		t.Fatal("did not trip at MinSample results with a 10% rate")
	}
}

// TestBreakerWindowSlides: outliers older than the window stop counting.
func TestBreakerWindowSlides(t *testing.T) {
	b := mustBreaker(t, smallConfig())
	var fd feed
	breakerObserve(t, b, fd.results(10, 4)) // 4 outliers, then 90 good: 4%
	for range 9 {
		breakerObserve(t, b, fd.results(10, 0))
	}
	// One more outlier with the 4 old ones still in the window would make
	// 5%; push them out first.
	breakerObserve(t, b, fd.results(10, 0))
	if rate, n := b.Rate(); rate != 0 || n != 100 {
		t.Fatalf("rate %v over %d after sliding, want 0 over 100", rate, n)
	}
	if a := breakerObserve(t, b, fd.results(10, 4)); a != nil {
		t.Fatalf("tripped on outliers that slid out of the window: %+v", a)
	}
	if a := breakerObserve(t, b, fd.results(10, 1)); a == nil {
		t.Fatal("did not trip at 5 outliers in the window")
	}
}

// mismatchOutcome is a final official-mismatch outcome for build nvr at
// signed time at.
func (fd *feed) mismatch(nvr string, at time.Time) Outcome {
	o := fd.results(10, 0)
	o.Verdict, o.Official, o.Time = VerdictOfficialMismatch, OfficialMismatch, at
	o.Build = attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: testBuild.SRPMSHA256}
	return o
}

// TestBreakerOfficialMismatches: two official mismatches within 24 hours
// trip the breaker; 25 hours apart they do not; one build twice is one.
func TestBreakerOfficialMismatches(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name   string
		second string
		after  time.Duration
		trips  bool
	}{
		{"one hour apart", "b-1-1", time.Hour, true},
		{"exactly 24 hours apart", "b-1-1", 24 * time.Hour, true},
		{"25 hours apart", "b-1-1", 25 * time.Hour, false},
		{"the same build twice", "a-1-1", time.Hour, false},
		{"second one signed earlier", "b-1-1", -23 * time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := mustBreaker(t, DefaultBreakerConfig())
			var fd feed
			if a := breakerObserve(t, b, fd.mismatch("a-1-1", t0)); a != nil {
				t.Fatal("tripped on one mismatch")
			}
			a := breakerObserve(t, b, fd.mismatch(tt.second, t0.Add(tt.after)))
			if (a != nil) != tt.trips {
				t.Fatalf("alarm %+v, want trip %v", a, tt.trips)
			}
			if a != nil && (!strings.HasPrefix(a.Reason, ReasonOfficialMismatch) || !strings.Contains(a.Reason, "a-1-1") || !a.At.Equal(t0.Add(tt.after))) {
				t.Errorf("alarm %+v", a)
			}
		})
	}
}

// TestBreakerFreezesAndClears: while tripped positive verdicts are
// withheld and no second alarm is raised; a logged AlarmClear naming an
// alarm logged after the trip clears it; bad clears change nothing.
func TestBreakerFreezesAndClears(t *testing.T) {
	b := mustBreaker(t, smallConfig())
	var fd feed
	good := fd.results(10, 0)
	if g := b.Gate(good); g.Verdict != VerdictReproduced || g.Withheld != "" {
		t.Fatalf("untripped breaker changed %+v", g)
	}
	if err := b.Clear(attest.AlarmClear{AlarmIndex: 1}, fd.next+1); !errors.Is(err, ErrNotTripped) {
		t.Errorf("clear of an untripped breaker: %v, want ErrNotTripped", err)
	}
	breakerObserve(t, b, good)
	var alarm *attest.Alarm
	for range 9 {
		if a := breakerObserve(t, b, fd.results(10, 1)); a != nil {
			alarm = a
		}
	}
	if alarm == nil {
		t.Fatal("not tripped at 9% outliers")
	}
	if a := breakerObserve(t, b, fd.results(10, 10)); a != nil {
		t.Error("a second alarm while tripped")
	}

	g := b.Gate(good)
	if g.Verdict != VerdictWithheld || g.Withheld != alarm.Reason {
		t.Errorf("tripped breaker let %q through (withheld %q)", g.Verdict, g.Withheld)
	}
	for _, v := range []string{VerdictDisputed, VerdictOfficialMismatch, VerdictUnreproducible, VerdictInsufficient} {
		o := good
		o.Verdict = v
		if g := b.Gate(o); g.Verdict != v {
			t.Errorf("Gate changed negative verdict %q to %q", v, g.Verdict)
		}
	}

	alarmIndex := fd.next + 1 // the witness logs its alarm right after the trip
	state, _ := json.Marshal(b)
	for _, bad := range []struct {
		c     attest.AlarmClear
		index uint64
		want  error
	}{
		{attest.AlarmClear{AlarmIndex: alarm.TreeSize - 1}, alarmIndex + 1, ErrWrongAlarm}, // an older alarm
		{attest.AlarmClear{AlarmIndex: alarmIndex}, alarmIndex, ErrWrongAlarm},             // clear not after its alarm
		{attest.AlarmClear{AlarmIndex: 1}, 0, ErrOutOfOrder},
	} {
		if err := b.Clear(bad.c, bad.index); !errors.Is(err, bad.want) {
			t.Errorf("Clear(%+v, %d) = %v, want %v", bad.c, bad.index, err, bad.want)
		}
	}
	if after, _ := json.Marshal(b); string(after) != string(state) {
		t.Fatal("rejected clear changed the breaker")
	}

	if err := b.Clear(attest.AlarmClear{AlarmIndex: alarmIndex, Reason: "replaced bad buildroot", At: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)}, alarmIndex+1); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	if _, tripped := b.Tripped(); tripped {
		t.Fatal("still tripped after clear")
	}
	if g := b.Gate(good); g.Verdict != VerdictReproduced {
		t.Errorf("cleared breaker withheld %q", g.Verdict)
	}
	if rate, n := b.Rate(); n != 0 || rate != 0 {
		t.Errorf("window not emptied by clear: %v over %d", rate, n)
	}
	// Feeding on after the clear works, from the clear's index.
	fd.next = alarmIndex + 1
	breakerObserve(t, b, fd.results(10, 0))
}

// TestBreakerIgnores: outcomes without an agreeing group or not final do
// not enter the window, the same results fed twice count once, and
// out-of-order outcomes are rejected.
func TestBreakerIgnores(t *testing.T) {
	b := mustBreaker(t, smallConfig())
	var fd feed
	o := fd.results(10, 10)
	o.Final = false
	breakerObserve(t, b, o)
	o = fd.results(10, 10)
	o.ResultSet = ""
	breakerObserve(t, b, o)
	if _, n := b.Rate(); n != 0 {
		t.Fatalf("window holds %d results from ignored outcomes", n)
	}
	o = fd.results(10, 2)
	breakerObserve(t, b, o)
	breakerObserve(t, b, o)
	if rate, n := b.Rate(); n != 10 || rate != 0.2 {
		t.Errorf("rate %v over %d after feeding an outcome twice, want 0.2 over 10", rate, n)
	}
	old := o
	old.At--
	if _, err := b.Observe(old); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("out-of-order outcome: %v", err)
	}
}

// TestBreakerReplay: an auditor replaying the same outcomes, with a
// save and restore in the middle, derives the same trips and state.
func TestBreakerReplay(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var outcomes []Outcome
	var fd feed
	for i := range 60 {
		switch {
		case i%17 == 5:
			outcomes = append(outcomes, fd.mismatch(fmt.Sprint("m", i), t0.Add(time.Duration(i)*time.Hour)))
		default:
			outcomes = append(outcomes, fd.results(10, i%3))
		}
	}
	run := func(b *Breaker, os []Outcome) []string {
		var log []string
		for _, o := range os {
			if a := breakerObserve(t, b, o); a != nil {
				log = append(log, fmt.Sprintf("%d %s", o.At, a.Reason))
				// The alarm is logged at o.At+1, its clear at o.At+2.
				if err := b.Clear(attest.AlarmClear{AlarmIndex: o.At + 1}, o.At+2); err != nil {
					t.Fatal(err)
				}
			}
		}
		return log
	}
	cfg := smallConfig()
	cfg.Threshold = 0.1
	a := mustBreaker(t, cfg)
	want := run(a, outcomes)
	if len(want) == 0 {
		t.Fatal("the replay never trips: too weak a test")
	}
	b := mustBreaker(t, cfg)
	got := run(b, outcomes[:30])
	state, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var c Breaker
	if err := json.Unmarshal(state, &c); err != nil {
		t.Fatal(err)
	}
	got = append(got, run(&c, outcomes[30:])...)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay with restore:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	sa, _ := json.Marshal(a)
	sc, _ := json.Marshal(&c)
	if string(sa) != string(sc) {
		t.Errorf("states differ:\n%s\n%s", sa, sc)
	}
}

func TestBreakerConfig(t *testing.T) {
	for _, mut := range []func(*BreakerConfig){
		func(c *BreakerConfig) { c.Window = 0 },
		func(c *BreakerConfig) { c.MinSample = 0 },
		func(c *BreakerConfig) { c.MinSample = c.Window + 1 },
		func(c *BreakerConfig) { c.Threshold = 0 },
		func(c *BreakerConfig) { c.Threshold = 1.5 },
		func(c *BreakerConfig) { c.Mismatches = 0 },
		func(c *BreakerConfig) { c.MismatchWindow = 0 },
	} {
		c := DefaultBreakerConfig()
		mut(&c)
		if _, err := NewBreaker(c); !errors.Is(err, ErrConfig) {
			t.Errorf("NewBreaker(%+v) = %v, want ErrConfig", c, err)
		}
	}
}

func TestBreakerBadState(t *testing.T) {
	b := mustBreaker(t, smallConfig())
	var fd feed
	breakerObserve(t, b, fd.results(10, 1))
	before, _ := json.Marshal(b)
	cfg := `{"window":100,"threshold":0.05,"min_sample":100,"mismatches":2,"mismatch_window":86400000000000}`
	for _, bad := range []string{
		``,
		`null x`,
		`{"config":` + cfg + `,"last":5,"window":null,"mismatches":null,"alarm":null,"x":1}`,
		`{"config":{"window":0},"last":5,"window":null,"mismatches":null,"alarm":null}`,
		`{"config":` + cfg + `,"last":5,"window":[{"index":6}],"mismatches":null,"alarm":null}`,
		`{"config":` + cfg + `,"last":5,"window":[{"index":1},{"index":1}],"mismatches":null,"alarm":null}`,
		`{"config":` + cfg + `,"last":5,"window":null,"mismatches":[{"build":{"nvr":"a","arch":"x","srpm_sha256":"y"},"at":9,"time":"2026-01-01T00:00:00Z"}],"alarm":null}`,
		`{"config":` + cfg + `,"last":5,"window":null,"mismatches":null,"alarm":{"reason":"x","rate":1,"window":1,"tree_size":9,"at":"2026-01-01T00:00:00Z"}}`,
		`{"config":{"window":2,"threshold":0.05,"min_sample":1,"mismatches":2,"mismatch_window":1},"last":5,"window":[{"index":1},{"index":2},{"index":3}],"mismatches":null,"alarm":null}`,
	} {
		if err := b.UnmarshalJSON([]byte(bad)); !errors.Is(err, ErrState) {
			t.Errorf("UnmarshalJSON(%q) = %v, want ErrState", bad, err)
		}
	}
	if after, _ := json.Marshal(b); string(after) != string(before) {
		t.Errorf("rejected state changed the breaker:\n%s\n%s", before, after)
	}
}

// FuzzBreakerState (seeds in testdata/fuzz): persisted state either loads into a breaker whose
// state re-marshals stably and keeps working, or is rejected with ErrState
// and changes nothing.
func FuzzBreakerState(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := NewBreaker(smallConfig())
		if err != nil {
			t.Fatal(err)
		}
		before, _ := json.Marshal(b)
		if err := b.UnmarshalJSON(data); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error %v is not ErrState", err)
			}
			if after, _ := json.Marshal(b); string(after) != string(before) {
				t.Fatal("rejected state changed the breaker")
			}
			return
		}
		s1, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		var c Breaker
		if err := c.UnmarshalJSON(s1); err != nil {
			t.Fatalf("re-marshalled state rejected: %v\n%s", err, s1)
		}
		if s2, _ := json.Marshal(&c); string(s1) != string(s2) {
			t.Fatalf("state not stable:\n%s\n%s", s1, s2)
		}
		if _, err := b.Observe(Outcome{Final: true, ResultSet: "good", At: b.last, Counted: []Vote{{Index: b.last, ResultSet: "evil"}}}); err != nil {
			t.Fatal(err)
		}
		if rate, n := b.Rate(); n > b.cfg.Window || rate < 0 || rate > 1 {
			t.Fatalf("rate %v over %d", rate, n)
		}
	})
}

// TestPipeline runs the calling sequence of docs/agreement.md on real
// outcomes of Agree: a key that is an outlier in two builds is flagged, two
// official mismatches within a day trip the breaker, the next reproduced
// build is withheld until a logged clear.
func TestPipeline(t *testing.T) {
	rep := mustReputation(t)
	br := mustBreaker(t, DefaultBreakerConfig())
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var next uint64 = 1
	decide := func(n int, official string, at time.Time) (Outcome, []Notice, *attest.Alarm) {
		t.Helper()
		f := newFixture()
		f.next = next
		f.rec.Build.NVR = fmt.Sprintf("pkg-%d-1.fc40", n)
		for i := range 9 {
			f.vote(fmt.Sprint("key", i), fmt.Sprint("op", i), "good")
		}
		f.vote("flaky", "flaky-op", "evil")
		f.close()
		f.rec.ClosedTime = at
		if official != "" {
			f.official(official)
			f.rec.Official.Time = at
		}
		for i := range f.rec.Results {
			f.rec.Results[i].Build = f.rec.Build
		}
		for i := range f.rec.Leases {
			f.rec.Leases[i].Lease.Build = f.rec.Build
		}
		next = f.next
		o, err := Agree(f.rec, DefaultPolicy())
		if err != nil {
			t.Fatal(err)
		}
		ns, err := rep.Observe(o)
		if err != nil {
			t.Fatal(err)
		}
		a, err := br.Observe(o)
		if err != nil {
			t.Fatal(err)
		}
		return br.Gate(o), ns, a
	}
	o, ns, a := decide(1, "good", t0)
	if o.Verdict != VerdictReproduced || len(ns) != 0 || a != nil {
		t.Fatalf("build 1: %q notices %v alarm %v", o.Verdict, ns, a)
	}
	o, ns, a = decide(2, "koji", t0.Add(time.Hour))
	if o.Verdict != VerdictOfficialMismatch || a != nil {
		t.Fatalf("build 2: %q alarm %v", o.Verdict, a)
	}
	if len(ns) != 2 || ns[0].ID != "flaky" || ns[1].ID != "flaky-op" {
		t.Errorf("second outlier of key flaky: notices %+v", ns)
	}
	o, _, a = decide(3, "koji", t0.Add(3*time.Hour))
	if o.Verdict != VerdictOfficialMismatch || a == nil {
		t.Fatalf("build 3: %q alarm %v, want a trip on the second mismatch", o.Verdict, a)
	}
	o, _, _ = decide(4, "good", t0.Add(4*time.Hour))
	if o.Verdict != VerdictWithheld {
		t.Fatalf("build 4 while tripped: %q, want withheld", o.Verdict)
	}
	if p := o.Payload(next); p.Verdict != VerdictWithheld {
		t.Errorf("signed payload says %q", p.Verdict)
	}
	alarmIndex := next
	next += 2
	if err := br.Clear(attest.AlarmClear{AlarmIndex: alarmIndex, Reason: "koji builder reinstalled"}, alarmIndex+1); err != nil {
		t.Fatal(err)
	}
	if o, _, _ = decide(5, "good", t0.Add(5*time.Hour)); o.Verdict != VerdictReproduced {
		t.Errorf("build 5 after clear: %q", o.Verdict)
	}
}

// BenchmarkBreakerObserve measures one 10-result outcome entering a full
// default window of 5,000 results (the audit replays one per build).
func BenchmarkBreakerObserve(b *testing.B) {
	br := mustBreaker(b, DefaultBreakerConfig())
	var fd feed
	for range 500 {
		breakerObserve(b, br, fd.results(10, 0))
	}
	os := make([]Outcome, 1000)
	for i := range os {
		os[i] = fd.results(10, 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(os) {
			// Keep the log order: continue after the prepared outcomes.
			b.StopTimer()
			for j := range os {
				os[j] = fd.results(10, 0)
			}
			i = 0
			b.StartTimer()
		}
		breakerObserve(b, br, os[i])
		i++
	}
}
