package coord

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// memJobs is how many jobs BenchmarkLeaseMemory runs through a
// coordinator: 11 leases each, 22,000 in all.
const memJobs = 2000

// runJobs drives c through jobs whole jobs, one after another, as serve
// does: enqueue a job of 10 slots, lease every slot to a distinct operator
// (keys[0..9]), the first lease fails and keys[10] gets its slot, the
// other leases deliver a one-part result each, and the job closes. Every
// decision and result goes through Commit with appendEntry. It returns
// the number of leases.
func runJobs(tb testing.TB, c *Coordinator, keys []string, jobs int, appendEntry func(*Reservation) (uint64, error)) int {
	tb.Helper()
	commit := func(r *Reservation, err error) any {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
		if err := c.Commit(r, appendEntry); err != nil {
			tb.Fatal(err)
		}
		return r.Payload
	}
	leases := 0
	for n := range jobs {
		b := build(n, "x86_64")
		commit(c.Enqueue(attest.Job{Build: b, SRPMURL: "https://src.example.org/" + b.NVR + ".src.rpm", Wanted: 10}, t0))
		var ls []attest.Lease
		for _, k := range keys {
			ls = append(ls, commit(c.NextLease(k, []string{"x86_64"}, t0)).(attest.Lease))
			leases++
			if len(ls) == 1 {
				commit(c.EndLease(k, ls[0].LeaseID, attest.LeaseFailed, "mock exited 1", t0))
			}
		}
		for _, l := range ls[1:] {
			commit(c.HoldResult(l.KeyID, Result{Build: l.Build, LeaseID: l.LeaseID, ResultSet: "set-" + l.Build.NVR, Parts: 1}, t0))
		}
		rs := c.Closable(t0)
		if len(rs) != 1 {
			tb.Fatalf("job %d: %d jobs closable, want 1", n, len(rs))
		}
		commit(rs[0], nil)
	}
	return leases
}

// memKeys enrols 11 builder keys of 11 operators in f and returns their ids.
func memKeys(f *fixture) []string {
	keys := make([]string, 11)
	for i := range keys {
		keys[i] = f.enrol(fmt.Sprintf("op%d", i), attest.RoleBuilder)
	}
	return keys
}

// heapAlloc returns the live heap after a full collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkLeaseMemory measures the coordinator's heap per lease, jobs and
// keys included, over memJobs closed jobs (see runJobs). "live" is serve
// deciding and applying every entry itself (the log is not kept); "replay"
// is a restarted serve or an auditor applying that log, every entry
// decoded from its JSON just before Apply, as attest.Parse gives it.
func BenchmarkLeaseMemory(b *testing.B) {
	b.Run("live", func(b *testing.B) {
		var perLease float64
		for b.Loop() {
			f := newFixture(b, Config{}, 3)
			keys := memKeys(f)
			next := uint64(len(f.log))
			before := heapAlloc()
			n := runJobs(b, f.c, keys, memJobs, func(*Reservation) (uint64, error) {
				next++
				return next - 1, nil
			})
			perLease = float64(heapAlloc()-before) / float64(n)
			runtime.KeepAlive(f)
		}
		b.ReportMetric(perLease, "bytes/lease")
	})
	b.Run("replay", func(b *testing.B) {
		log, n := encodedLog(b)
		var perLease float64
		for b.Loop() {
			before := heapAlloc()
			c := New(Config{Authority: authority})
			for i, e := range log {
				p := reflect.New(e.typ)
				if err := json.Unmarshal(e.data, p.Interface()); err != nil {
					b.Fatal(err)
				}
				if err := c.Apply(uint64(i), Event{Signer: e.signer, Payload: p.Elem().Interface()}); err != nil {
					b.Fatalf("entry %d: %v", i, err)
				}
			}
			perLease = float64(heapAlloc()-before) / float64(n)
			runtime.KeepAlive(c)
		}
		b.ReportMetric(perLease, "bytes/lease")
	})
}

// encoded is a log entry's payload in JSON, and the type it decodes into.
type encoded struct {
	signer string
	typ    reflect.Type
	data   []byte
}

// encodedLog returns the log of memJobs jobs run by runJobs, encoded, and
// its number of leases.
func encodedLog(b *testing.B) ([]encoded, int) {
	f := newFixture(b, Config{}, 3)
	n := runJobs(b, f.c, memKeys(f), memJobs, func(r *Reservation) (uint64, error) {
		return f.append(Event{Signer: r.Signer, Payload: r.Payload}), nil
	})
	log := make([]encoded, 0, len(f.log))
	for _, e := range f.log {
		data, err := json.Marshal(e.Payload)
		if err != nil {
			b.Fatal(err)
		}
		log = append(log, encoded{e.Signer, reflect.TypeOf(e.Payload), data})
	}
	return log, n
}
