package api

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
)

// TestConcurrentLeasesOneOperatorPerJob has 20 builders of 5 operators
// lease concurrently over HTTP until no work is left, and checks, from the
// answers and independently from the lease entries in the log, that no
// operator ever got two leases on one job, and that every job got a lease
// from each operator (5 operators, 10 slots: each job is spread over all).
func TestConcurrentLeasesOneOperatorPerJob(t *testing.T) {
	e := newEnv(t, envOptions{api: Config{KeyRate: -1}})
	ctx := context.Background()
	const operators, perOperator, jobs = 5, 4, 6
	var keys []*attest.Signer
	for o := range operators {
		for range perOperator {
			keys = append(keys, e.enrol(attest.RoleBuilder, fmt.Sprintf("op%d", o)))
		}
	}
	for j := range jobs {
		e.enqueue(fmt.Sprintf("pkg%d-1.0-1", j), 10)
	}
	var (
		mu     sync.Mutex
		leases []*attest.Lease
		wg     sync.WaitGroup
	)
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client(k, "x86_64")
			for {
				l, err := c.Lease(ctx)
				if errors.Is(err, builder.ErrNoWork) {
					return
				}
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				mu.Lock()
				leases = append(leases, l)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	check := func(what string, ls []*attest.Lease) {
		t.Helper()
		seen := map[[2]string]string{}
		per := map[string]int{}
		for _, l := range ls {
			k := [2]string{l.JobID, l.Operator}
			if prev, ok := seen[k]; ok {
				t.Errorf("%s: operator %s got leases %s and %s on job %s", what, l.Operator, prev, l.LeaseID, l.JobID)
			}
			seen[k] = l.LeaseID
			per[l.JobID]++
		}
		if len(per) != jobs {
			t.Errorf("%s: leases on %d jobs, want %d", what, len(per), jobs)
		}
		for j, n := range per {
			if n != operators {
				t.Errorf("%s: job %s has %d leases, want one per operator (%d)", what, j, n, operators)
			}
		}
	}
	check("answers", leases)
	// The log, read back entry by entry, says the same.
	size, _ := e.log.Size()
	var logged []*attest.Lease
	c := e.client(nil)
	for i := range size {
		b, err := c.Entry(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		en, err := attest.Parse(b, attest.ParseOptions{Keys: func(string) (*attest.Verifier, error) { return e.coordKey.Verifier(), nil }})
		if err != nil {
			if errors.Is(err, attest.ErrKeyID) {
				continue // not a coordinator entry
			}
			t.Fatal(err)
		}
		if l, ok := en.Value.(*attest.Lease); ok {
			logged = append(logged, l)
		}
	}
	if len(logged) != len(leases) {
		t.Errorf("%d leases logged, %d answered", len(logged), len(leases))
	}
	check("log", logged)
}
