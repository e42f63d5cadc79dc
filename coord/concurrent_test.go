package coord

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// TestConcurrentLeasing runs builders asking for leases, delivering,
// failing and abandoning, while other goroutines expire leases, close jobs
// and raise and clear alarms, all through Commit with a log whose indices
// are assigned concurrently (so entries are applied out of log order). It
// checks the invariants (one live lease per slot, one lease per operator
// per job, attempts bounded) while running and at the end, and that
// replaying the log in index order refuses exactly the entries refused live
// and gives the same state.
func TestConcurrentLeasing(t *testing.T) {
	f := newFixture(t, Config{LeaseTTL: time.Minute, JobTTL: MaxJobTTL}, 77)
	wit := f.enrol("w", attest.RoleWitness)
	admin := f.enrol("admin", attest.RoleAdmin)
	type builder struct {
		key    string
		arches []string
	}
	var builders []builder
	for i := range 24 {
		arches := [][]string{{"x86_64"}, {"aarch64"}, {"x86_64", "aarch64"}}[i%3]
		builders = append(builders, builder{f.enrol(fmt.Sprintf("op%d", i%8), attest.RoleBuilder), arches})
	}
	// The first 40 jobs reach their deadline 20 minutes (120 expirer
	// passes) into the run, so deadline closes race the leasing; the
	// others' deadline lies a year after t0, beyond the run.
	for n := range 200 {
		at := t0
		if n < 40 {
			at = t0.Add(20*time.Minute - MaxJobTTL)
		}
		b := build(n, []string{"x86_64", "aarch64"}[n%2])
		r, err := f.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://src.example.org/" + b.NVR + ".src.rpm", Wanted: 5}, at)
		if err != nil {
			t.Fatal(err)
		}
		f.commit(r)
	}

	var clock atomic.Int64 // seconds after t0
	now := func() time.Time { return t0.Add(time.Duration(clock.Load()) * time.Second) }
	var (
		refusedMu sync.Mutex
		refused   = make(map[uint64]error)
	)
	commit := func(r *Reservation) error {
		var idx uint64
		err := f.c.Commit(r, func(r *Reservation) (uint64, error) {
			idx = f.append(Event{Signer: r.Signer, Payload: r.Payload})
			return idx, nil
		})
		if err != nil {
			refusedMu.Lock()
			refused[idx] = err
			refusedMu.Unlock()
			// Only a lease decided before an alarm and logged after it
			// may be refused; every other decision is safe by reservation.
			if _, lease := r.Payload.(attest.Lease); !lease || !errors.Is(err, ErrPaused) {
				t.Errorf("commit %T: %v", r.Payload, err)
			}
		}
		return err
	}

	var leased, delivered, paused atomic.Int64
	var wg sync.WaitGroup
	for i, b := range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(77, uint64(i)))
			for n := 0; n < 150; n++ {
				r, err := f.c.NextLease(b.key, b.arches, now())
				if errors.Is(err, ErrPaused) {
					paused.Add(1)
					n-- // paused requests do not count: the alarms end
					runtime.Gosched()
					continue
				}
				if errors.Is(err, ErrNoJob) {
					continue
				}
				if errors.Is(err, ErrRevoked) && i < 2 {
					return
				}
				if err != nil {
					t.Errorf("next lease: %v", err)
					return
				}
				if commit(r) != nil {
					continue
				}
				leased.Add(1)
				l := r.Payload.(attest.Lease)
				switch x := rng.IntN(10); {
				case x < 6:
					h, err := f.c.HoldResult(b.key, Result{Build: l.Build, LeaseID: l.LeaseID, ResultSet: "s", Parts: 1}, now())
					if err != nil {
						// The lease may have expired meanwhile, and its job
						// then closed.
						if !errors.Is(err, ErrLeaseExpired) && !errors.Is(err, ErrJobClosed) && (i >= 2 || !errors.Is(err, ErrRevoked)) {
							t.Errorf("hold result: %v", err)
						}
						continue
					}
					if commit(h) == nil {
						delivered.Add(1)
					}
				case x < 8:
					reason := []string{attest.LeaseFailed, attest.LeaseAbandoned}[x-6]
					e, err := f.c.EndLease(b.key, l.LeaseID, reason, "", now())
					if err != nil {
						if !errors.Is(err, ErrLeaseExpired) && !errors.Is(err, ErrBusy) {
							t.Errorf("end lease: %v", err)
						}
						continue
					}
					commit(e)
				}
			}
		}()
	}

	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	bg.Add(4)
	go func() { // expirer: the clock advances 10 s per pass, up to half a year
		defer bg.Done()
		for ctx.Err() == nil {
			if clock.Load() < int64(MaxJobTTL/time.Second/2) {
				clock.Add(10)
			}
			for _, r := range f.c.Expire(now()) {
				commit(r)
			}
		}
	}()
	go func() { // closer and invariant checker
		defer bg.Done()
		for ctx.Err() == nil {
			for _, r := range f.c.Closable(now()) {
				commit(r)
			}
			checkInvariants(t, f.c)
		}
	}()
	go func() { // circuit breaker
		defer bg.Done()
		for ctx.Err() == nil {
			runtime.Gosched()
			h, err := f.c.HoldAlarm(ctx, wit, attest.Alarm{Reason: "test", At: now()})
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("hold alarm: %v", err)
				}
				return
			}
			ai := f.commit(h)
			e := Event{Signer: admin, Payload: attest.AlarmClear{AlarmIndex: ai, Reason: "test", At: now()}}
			if err := f.c.Apply(f.append(e), e); err != nil {
				t.Errorf("alarm clear: %v", err)
			}
		}
	}()
	go func() { // revoke builders 0 and 1 once leasing is under way
		defer bg.Done()
		for leased.Load() < 300 && ctx.Err() == nil {
			runtime.Gosched()
		}
		for _, b := range builders[:2] {
			r, err := f.c.Revoke(ctx, b.key, "test", now())
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("revoke: %v", err)
				}
				return
			}
			commit(r)
		}
	}()
	wg.Wait()
	cancel()
	bg.Wait()

	if leased.Load() < 500 || delivered.Load() < 200 {
		t.Fatalf("too little happened: %d leases, %d results", leased.Load(), delivered.Load())
	}
	// coordinator.md §Closing: jobs closed at their deadline before their
	// slots were spent.
	early := 0
	for _, j := range f.c.Jobs() {
		if j.Closed && !j.Close.At.Before(j.Job.Deadline) && j.Close.Results < j.Job.Wanted {
			early++
		}
		if j.Closed && j.Job.Deadline.After(now()) && j.Close.Results < j.Job.Wanted {
			leasable := false
			for _, s := range j.Slots {
				leasable = leasable || (!s.Done && s.Attempts < f.c.cfg.MaxAttempts)
			}
			if leasable {
				t.Fatalf("job %s closed before its deadline with a leasable slot: %+v", j.Job.JobID, j)
			}
		}
	}
	if early == 0 {
		t.Fatalf("no job closed at its deadline (clock at %s)", now())
	}
	checkInvariants(t, f.c)
	for _, b := range builders[:2] {
		if k, _ := f.c.Key(b.key); !k.Revoked {
			t.Fatalf("key %.8s not revoked", b.key)
		}
	}
	if len(f.c.pending) != 0 {
		t.Fatalf("%d reservations left outstanding", len(f.c.pending))
	}
	c := New(f.cfg)
	for i, e := range f.log {
		err := c.Apply(uint64(i), e)
		if want := refused[uint64(i)]; (err == nil) != (want == nil) {
			t.Fatalf("replay entry %d (%T): %v, live: %v", i, e.Payload, err, want)
		}
	}
	if !reflect.DeepEqual(snap(c), snap(f.c)) {
		t.Fatal("replay in log order differs from the state applied concurrently")
	}
	t.Logf("%d entries, %d leases, %d results, %d refused, %d paused requests, %d jobs closed at their deadline, clock %s", len(f.log), leased.Load(), delivered.Load(), len(refused), paused.Load(), early, now().Sub(t0))
}
