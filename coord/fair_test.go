package coord

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// chiBins is the number of bins of the uniformity statistic, and chiCrit
// the chi-square critical value for chiBins-1 = 9 degrees of freedom at
// p = 0.001: a fair coordinator fails the test once in a thousand seeds;
// the seeds are fixed, so the test is deterministic.
const (
	chiBins = 10
	chiCrit = 27.877
)

// uniformity accumulates a goodness-of-fit statistic for "each request got
// a job uniformly distributed over the jobs it was eligible for". Each
// request contributes the position of its job in its eligible list (sorted
// by enqueue order), binned into chiBins equal fractions of the list. Under
// the hypothesis, the request falls into bin k with a known probability
// (the share of positions in that bin); observed counts are compared with
// the sums of those probabilities. With probabilities that vary a little
// from request to request the Pearson statistic is stochastically smaller
// than chi-square(9), so the test is conservative.
type uniformity struct {
	obs [chiBins]float64
	exp [chiBins]float64
	n   int
}

func binOf(pos, size int) int { return pos * chiBins / size }

func (u *uniformity) add(pos, size int) {
	u.obs[binOf(pos, size)]++
	for k := range chiBins {
		// positions p with p*chiBins/size == k: [ceil(k*size/chiBins), ceil((k+1)*size/chiBins))
		lo := (k*size + chiBins - 1) / chiBins
		hi := ((k+1)*size + chiBins - 1) / chiBins
		u.exp[k] += float64(hi-lo) / float64(size)
	}
	u.n++
}

func (u *uniformity) chi2() float64 {
	var x float64
	for k := range chiBins {
		d := u.obs[k] - u.exp[k]
		x += d * d / u.exp[k]
	}
	return x
}

// homogeneity is the Pearson chi-square of the 2 x chiBins table of two
// histograms: do both groups fall into the bins alike? 9 degrees of freedom.
func homogeneity(a, b *uniformity) float64 {
	na, nb := float64(a.n), float64(b.n)
	var x float64
	for k := range chiBins {
		col := a.obs[k] + b.obs[k]
		ea, eb := col*na/(na+nb), col*nb/(na+nb)
		x += (a.obs[k]-ea)*(a.obs[k]-ea)/ea + (b.obs[k]-eb)*(b.obs[k]-eb)/eb
	}
	return x
}

// TestLeasingIsFairAndRandom: 100 builders of 20 operators ask for work in
// the same fixed order every round over 500 jobs of 10 wanted results, until
// every slot is filled. An independent model of eligibility in the test
// checks every answer (a job iff one is eligible, and then an eligible one),
// no operator ever gets two leases on a job, and the job each request gets
// is uniform over its eligible jobs for the first ten askers of each round,
// for the last ten, and for all; the first and last askers' histograms are
// also compared with each other.
func TestLeasingIsFairAndRandom(t *testing.T) {
	const (
		operators = 20
		keysPerOp = 5
		jobs      = 500
		wanted    = 10
		trials    = 3
		group     = 10 // askers at each end of the round compared
	)
	var first, last, all uniformity
	for trial := range trials {
		f := newFixture(t, Config{}, uint64(1000+trial))
		keys := make([]string, 0, operators*keysPerOp)
		opOf := make(map[string]string)
		for i := range operators * keysPerOp {
			// Keys of one operator are spread over the asking order.
			op := fmt.Sprintf("op%02d", i%operators)
			k := f.enrol(op, attest.RoleBuilder)
			keys = append(keys, k)
			opOf[k] = op
		}
		type modelJob struct {
			id    string
			taken int
			used  map[string]bool
		}
		model := make([]*modelJob, jobs)
		byID := make(map[string]int)
		for n := range jobs {
			j := f.enqueue(n, "x86_64", wanted)
			model[n] = &modelJob{id: j.JobID, used: make(map[string]bool)}
			byID[j.JobID] = n
		}
		leased := 0
		for round := 0; ; round++ {
			var got []attest.Lease
			for i, k := range keys {
				op := opOf[k]
				var eligible []int
				for n, m := range model {
					if m.taken < wanted && !m.used[op] {
						eligible = append(eligible, n)
					}
				}
				r, err := f.c.NextLease(k, []string{"x86_64", "noarch"}, t0)
				if len(eligible) == 0 {
					if !errors.Is(err, ErrNoJob) {
						t.Fatalf("round %d builder %d: no eligible job, NextLease = %v", round, i, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("round %d builder %d: %d eligible jobs, NextLease: %v", round, i, len(eligible), err)
				}
				f.commit(r)
				l := r.Payload.(attest.Lease)
				n := byID[l.JobID]
				pos := slices.Index(eligible, n)
				if pos < 0 {
					t.Fatalf("round %d builder %d (%s) got job %d, not eligible", round, i, op, n)
				}
				model[n].taken++
				model[n].used[op] = true
				all.add(pos, len(eligible))
				switch {
				case i < group:
					first.add(pos, len(eligible))
				case i >= len(keys)-group:
					last.add(pos, len(eligible))
				}
				got = append(got, l)
			}
			if len(got) == 0 {
				break
			}
			leased += len(got)
			for _, l := range got {
				f.deliver(l, t0)
			}
			f.commitAll(f.c.Closable(t0))
		}
		if leased != jobs*wanted {
			t.Fatalf("trial %d: %d leases, want %d", trial, leased, jobs*wanted)
		}
		for _, st := range f.c.Jobs() {
			ops := make(map[string]bool)
			for _, d := range st.Results {
				if ops[d.Operator] {
					t.Fatalf("operator %s delivered twice on job %s", d.Operator, st.Job.JobID)
				}
				ops[d.Operator] = true
			}
			if !st.Closed || len(ops) != wanted {
				t.Fatalf("job %s: closed %v with %d operators", st.Job.JobID, st.Closed, len(ops))
			}
		}
		checkInvariants(t, f.c)
	}
	for _, g := range []struct {
		name string
		u    *uniformity
	}{{"first askers", &first}, {"last askers", &last}, {"all", &all}} {
		x := g.u.chi2()
		t.Logf("%s: %d requests, chi-square %.2f (critical %.3f at p=0.001, 9 df), observed %v", g.name, g.u.n, x, chiCrit, g.u.obs)
		if x > chiCrit {
			t.Errorf("%s: jobs are not uniform over the eligible jobs: chi-square %.2f > %.3f", g.name, x, chiCrit)
		}
	}
	h := homogeneity(&first, &last)
	t.Logf("first vs last askers: homogeneity chi-square %.2f", h)
	if h > chiCrit {
		t.Errorf("first and last askers get differently distributed jobs: chi-square %.2f > %.3f", h, chiCrit)
	}
}

// TestUniformityStatisticDetectsBias: the statistic above rejects a chooser
// that favours old jobs a little (a fifth of its picks from the older half)
// and accepts a uniform one, on the same number of requests as the
// fairness test's first-askers group.
func TestUniformityStatisticDetectsBias(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var fair, biased uniformity
	for range 1500 {
		size := 50 + rng.IntN(450)
		fair.add(rng.IntN(size), size)
		if rng.IntN(5) == 0 {
			biased.add(rng.IntN(size/2), size)
		} else {
			biased.add(rng.IntN(size), size)
		}
	}
	if x := fair.chi2(); x > chiCrit {
		t.Errorf("uniform chooser rejected: chi-square %.2f", x)
	}
	if x := biased.chi2(); x <= chiCrit {
		t.Errorf("biased chooser accepted: chi-square %.2f", x)
	}
	if x := homogeneity(&fair, &biased); x <= chiCrit {
		t.Errorf("homogeneity misses the bias: chi-square %.2f", x)
	}
}
