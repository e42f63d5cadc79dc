package coord

import (
	"context"
	"crypto/ed25519"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// fuzzKeys are the enrolments of the fuzzed coordinator: 3 operators with 2
// builder keys each, a witness and an admin, from fixed seeds.
func fuzzKeys(t testing.TB) []attest.Enrolment {
	var ens []attest.Enrolment
	for i := range 8 {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		s, err := attest.NewSigner(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			t.Fatal(err)
		}
		op, role := []string{"a", "b", "c"}[i%3], attest.RoleBuilder
		switch i {
		case 6:
			op, role = "w", attest.RoleWitness
		case 7:
			op, role = "adm", attest.RoleAdmin
		}
		ens = append(ens, attest.Enrolment{KeyID: s.KeyID(), PublicKey: string(s.PublicPEM()), Role: role, Operator: op, Since: t0})
	}
	return ens
}

// fuzzJobTTL is the fuzzed coordinator's JobTTL: short enough that a few
// "time passes" steps reach the deadlines.
const fuzzJobTTL = 3 * time.Hour

// FuzzApply drives the coordinator with a program of decisions, results,
// expiries, closings, alarms, revocations and mutated copies of logged
// entries, two bytes per step. After every step the invariants hold; a
// refused entry or a released reservation leaves the state as it was; and
// at the end, replaying the log gives the same state.
func FuzzApply(f *testing.F) {
	ens := fuzzKeys(f)
	f.Add([]byte{0, 0, 1, 0, 1, 1, 2, 0, 5, 0})
	f.Add([]byte{0, 7, 0, 9, 1, 2, 1, 3, 4, 200, 5, 0, 1, 4})
	f.Fuzz(func(t *testing.T, prog []byte) { runProgram(t, ens, prog) })
}

// runProgram runs one FuzzApply program and returns its fixture.
func runProgram(t *testing.T, ens []attest.Enrolment, prog []byte) *fixture {
	{
		if len(prog) > 400 {
			prog = prog[:400]
		}
		fx := newFixture(t, Config{LeaseTTL: time.Hour, MaxAttempts: 2, JobTTL: fuzzJobTTL}, 5)
		keys := make([]string, len(ens))
		for i, en := range ens {
			fx.apply(authority, en)
			keys[i] = en.KeyID
		}
		builders, wit, admin := keys[:6], keys[6], keys[7]
		now := t0
		var leases []attest.Lease
		pick := func(arg byte) (attest.Lease, bool) {
			if len(leases) == 0 {
				return attest.Lease{}, false
			}
			return leases[int(arg)%len(leases)], true
		}
		tolerate := func(step int, err error, allowed ...error) {
			t.Helper()
			if err == nil {
				return
			}
			for _, a := range allowed {
				if errors.Is(err, a) {
					return
				}
			}
			t.Fatalf("step %d: unexpected error: %v", step, err)
		}
		for step := 0; step+1 < len(prog); step += 2 {
			op, arg := prog[step], prog[step+1]
			before := snap(fx.c)
			switch op % 12 {
			case 0: // enqueue
				b := build(int(arg%4), []string{"x86_64", "aarch64"}[arg>>7])
				r, err := fx.c.Enqueue(attest.Job{Build: b, SRPMURL: "https://e.org/" + b.NVR, Wanted: 1 + int(arg/4%3)}, now)
				tolerate(step, err, ErrDuplicateJob)
				if err == nil {
					fx.commit(r)
				}
			case 1: // lease
				arches := [][]string{{"x86_64"}, {"aarch64"}, {"x86_64", "aarch64"}}[int(arg/8)%3]
				r, err := fx.c.NextLease(builders[int(arg)%6], arches, now)
				tolerate(step, err, ErrNoJob, ErrPaused, ErrRevoked)
				if err == nil {
					fx.commit(r)
					leases = append(leases, r.Payload.(attest.Lease))
				}
			case 2: // one part of a result, from the holder
				if l, ok := pick(arg); ok {
					parts := 1 + int(arg>>7)
					r, err := fx.c.HoldResult(l.KeyID, Result{Build: l.Build, LeaseID: l.LeaseID, ResultSet: "s", Part: int(arg>>6&1) % parts, Parts: parts}, now)
					tolerate(step, err, ErrLeaseExpired, ErrLeaseEnded, ErrDelivered, ErrJobClosed, ErrRevoked, ErrDuplicate, ErrConflict)
					if err == nil {
						fx.commit(r)
					}
				}
			case 3: // fail or abandon, sometimes by the wrong key
				if l, ok := pick(arg); ok {
					k := l.KeyID
					if arg&1 == 1 {
						k = builders[int(arg>>1)%6]
					}
					r, err := fx.c.EndLease(k, l.LeaseID, []string{attest.LeaseFailed, attest.LeaseAbandoned}[arg>>7], "", now)
					tolerate(step, err, ErrNotLeaseHolder, ErrLeaseExpired, ErrLeaseEnded, ErrDelivered, ErrBusy)
					if err == nil {
						fx.commit(r)
					}
				}
			case 4: // time passes, leases expire
				now = now.Add(time.Duration(arg) * time.Minute)
				fx.commitAll(fx.c.Expire(now))
			case 5:
				fx.commitAll(fx.c.Closable(now))
			case 6: // alarm or clear
				if as := fx.c.Alarms(); len(as) > 0 && arg&1 == 0 {
					fx.apply(admin, attest.AlarmClear{AlarmIndex: as[0], Reason: "ok", At: now})
				} else {
					h, err := fx.c.HoldAlarm(context.Background(), wit, attest.Alarm{Reason: "r", At: now})
					tolerate(step, err)
					fx.commit(h)
				}
			case 7: // revoke
				r, err := fx.c.Revoke(context.Background(), builders[int(arg)%6], "r", now)
				tolerate(step, err, ErrRevoked)
				if err == nil {
					fx.commit(r)
				}
			case 8, 9: // a mutated copy of a logged entry, applied directly
				e := fx.log[int(arg)%len(fx.log)]
				e.Payload = mutate(e.Payload, op, arg, keys)
				i := uint64(len(fx.log))
				if err := fx.c.Apply(i, e); err != nil {
					if !reflect.DeepEqual(before, snap(fx.c)) {
						t.Fatalf("step %d: refused %T (%v) changed the state", step, e.Payload, err)
					}
				} else {
					fx.append(e)
				}
			case 10: // a decision given up
				r, err := fx.c.NextLease(builders[int(arg)%6], []string{"x86_64", "aarch64"}, now)
				if err == nil {
					r.Release()
				}
				if !reflect.DeepEqual(before, snap(fx.c)) {
					t.Fatalf("step %d: a released reservation changed the state", step)
				}
			case 11: // a decision whose logging fails
				for _, r := range fx.c.Expire(now.Add(time.Duration(arg) * time.Hour)) {
					if err := fx.c.Commit(r, func(*Reservation) (uint64, error) { return 0, errors.New("io") }); err == nil {
						t.Fatal("commit with a failed log succeeded")
					}
				}
				if !reflect.DeepEqual(before, snap(fx.c)) {
					t.Fatalf("step %d: a failed commit changed the state", step)
				}
			}
			checkInvariants(t, fx.c)
		}
		if len(fx.c.pending) != 0 {
			t.Fatalf("%d reservations outstanding", len(fx.c.pending))
		}
		fx.checkReplay()
		t.Logf("%d steps, %d entries, %d leases", len(prog)/2, len(fx.log), len(leases))
		return fx
	}
}

// mutate returns a changed copy of a payload, the change chosen by arg.
func mutate(p any, op, arg byte, keys []string) any {
	k := keys[int(arg)%len(keys)]
	switch v := p.(type) {
	case attest.Lease:
		switch arg % 7 {
		case 0:
			v.LeaseID = "m" + v.LeaseID[1:]
		case 1:
			v.Slot++
		case 2:
			v.Attempt++
		case 3:
			v.KeyID = k
		case 4:
			v.LeaseID, v.KeyID, v.Operator = "n"+v.LeaseID[1:], k, "b"
		case 5:
			v.Expires = v.Issued
		case 6: // at or past its job's deadline
			v.LeaseID, v.Slot = "d"+v.LeaseID[1:], 0
			v.Issued, v.Expires = v.Issued.Add(fuzzJobTTL), v.Expires.Add(fuzzJobTTL)
		}
		return v
	case attest.LeaseEnd:
		switch arg % 3 {
		case 0:
			v.Reason = attest.LeaseExpired
		case 1:
			v.KeyID = k
		case 2:
			v.At = time.Time{}
		}
		return v
	case attest.JobClose:
		if arg%4 == 3 {
			v.At = v.At.Add(-fuzzJobTTL) // before the job's deadline
		} else {
			v.Results += 1 + int(arg%2)
		}
		return v
	case attest.Job:
		v.JobID = "m" + v.JobID[1:]
		switch {
		case op == 9:
			v.Wanted = 0
		case arg%3 == 1:
			v.Deadline = v.Enqueued
		case arg%3 == 2:
			v.Deadline = v.Enqueued.Add(MaxJobTTL + time.Second)
		}
		return v
	case Result:
		switch arg % 3 {
		case 0:
			v.Part++
		case 1:
			v.ResultSet = "other"
		case 2:
			v.Parts++
		}
		return v
	case attest.Revocation:
		v.Operator = "zz"
		return v
	}
	return p
}
