package coord

import (
	"fmt"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// benchQueue returns a fixture with jobs open x86_64 jobs of 10 slots and
// builders keys of builders/5 operators.
func benchQueue(b *testing.B, jobs, builders int) (*fixture, []string) {
	b.Helper()
	f := newFixture(b, Config{}, 99)
	keys := make([]string, builders)
	for i := range keys {
		keys[i] = f.enrol(fmt.Sprintf("op%d", i%(builders/5)), attest.RoleBuilder)
	}
	for n := range jobs {
		f.enqueue(n, "x86_64", 10)
	}
	return f, keys
}

// BenchmarkNextLease measures one lease decision (NextLease then Release, so
// the queue stays the same) with 20,000 open jobs and 1,000 builders of 200
// operators. Choice is O(1) expected: a uniform pick from the arch pool,
// rejected while the operator already holds the job; only when rejection
// keeps failing (an operator on nearly every open job) does it list the
// eligible jobs, O(jobs): the "saturated" case measures that. Compare with
// "yardstick-scan", one pass over the open jobs in the same run.
func BenchmarkNextLease(b *testing.B) {
	arches := []string{"x86_64", "noarch"}
	b.Run("fresh", func(b *testing.B) {
		f, keys := benchQueue(b, 20000, 1000)
		i := 0
		for b.Loop() {
			r, err := f.c.NextLease(keys[i%len(keys)], arches, t0)
			if err != nil {
				b.Fatal(err)
			}
			r.Release()
			i++
		}
	})
	b.Run("half-leased", func(b *testing.B) {
		// 100,000 of the 200,000 slots leased: each operator is on about
		// 500 of the 20,000 jobs.
		f, keys := benchQueue(b, 20000, 1000)
		for i := range 100000 {
			f.lease(keys[i%len(keys)], arches, t0)
		}
		i := 0
		for b.Loop() {
			r, err := f.c.NextLease(keys[i%len(keys)], arches, t0)
			if err != nil {
				b.Fatal(err)
			}
			r.Release()
			i++
		}
	})
	b.Run("yardstick-scan", func(b *testing.B) {
		// The yardstick: one pass over the 20,000 open jobs checking the
		// operator, the least an O(jobs) choice would cost.
		f, keys := benchQueue(b, 20000, 1000)
		op := f.c.keys[keys[0]].enrol.Operator
		n := 0
		for b.Loop() {
			f.c.mu.Lock()
			for _, j := range f.c.pool["x86_64"].jobs {
				if j.ops[op] == 0 {
					n++
				}
			}
			f.c.mu.Unlock()
		}
		if n == 0 {
			b.Fatal("no eligible job seen")
		}
	})
	b.Run("saturated", func(b *testing.B) {
		// One operator holds leases on 19,990 of the 20,000 jobs.
		f, keys := benchQueue(b, 20000, 1000)
		for range 19990 {
			f.lease(keys[0], arches, t0)
		}
		for b.Loop() {
			r, err := f.c.NextLease(keys[0], arches, t0)
			if err != nil {
				b.Fatal(err)
			}
			r.Release()
		}
	})
}

// BenchmarkCommitLease measures a whole decide, log (in memory), apply
// sequence with 20,000 open jobs and 1,000 builders.
func BenchmarkCommitLease(b *testing.B) {
	f, keys := benchQueue(b, 20000, 1000)
	arches := []string{"x86_64"}
	i := 0
	for b.Loop() {
		r, err := f.c.NextLease(keys[i%len(keys)], arches, t0)
		if err != nil {
			b.Fatal(err)
		}
		f.commit(r)
		i++
	}
}

// BenchmarkExpire measures an Expire pass that finds nothing to expire over
// 50,000 live leases: it scans every live lease.
func BenchmarkExpire(b *testing.B) {
	f, keys := benchQueue(b, 20000, 1000)
	for i := range 50000 {
		f.lease(keys[i%len(keys)], []string{"x86_64"}, t0)
	}
	for b.Loop() {
		if rs := f.c.Expire(t0); len(rs) != 0 {
			b.Fatal("unexpected expiry")
		}
	}
}
