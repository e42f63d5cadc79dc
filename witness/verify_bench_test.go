package witness

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

var (
	verifyBenchSize = flag.Int("verify.size", 20000, "BenchmarkVerifyLatency: entries in the log (the figure of docs/verify.md uses 1000000)")
	verifyBenchScan = flag.Bool("verify.scan", false, "BenchmarkVerifyLatency: the log indexes builds only, so verify reads every entry to find keys and alarms")
	auditBenchJobs  = flag.Int("audit.jobs", 200, "BenchmarkAuditReplay: jobs of 10 leases, 10 results, a close and 3 verdicts each")
)

// addAll appends envelopes concurrently (the log commits them in groups)
// and waits for them; their order in the log is not theirs.
func addAll(tb testing.TB, l *log.Log, envs [][]byte) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	work := make(chan []byte)
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for env := range work {
				if _, err := l.Add(context.Background(), env); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for _, e := range envs {
		work <- e
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		tb.Fatal(err)
	default:
	}
}

// benchJobs logs jobs builds on n in phases (jobs, leases, results,
// closes, verdicts), each phase appended concurrently: every job of 10
// leases and results, one result in ten an outlier.
func benchJobs(tb testing.TB, n *vnet, prefix string, jobs int) []attest.BuildID {
	tb.Helper()
	t0 := n.tick()
	sign := func(s *attest.Signer, typ string, v any) []byte {
		env, err := attest.Sign(s, typ, v)
		if err != nil {
			tb.Fatal(err)
		}
		return env
	}
	var builds []attest.BuildID
	var phase [5][][]byte
	leases := map[attest.BuildID][]attest.Lease{}
	for j := range jobs {
		b := vnetBuild(fmt.Sprintf("%s%d-1.0-1.fc41", prefix, j), "x86_64")
		builds = append(builds, b)
		job := "job-" + b.NVR
		phase[0] = append(phase[0], sign(n.coord, attest.PayloadJob, &attest.Job{JobID: job, Build: b, SRPMURL: vnetSRPMURL(b), Wanted: 10, Enqueued: t0, Deadline: t0.Add(vnetJobTTL)}))
		for k := range 10 {
			bl := n.builders[(j+k)%len(n.builders)]
			l := attest.Lease{LeaseID: fmt.Sprintf("%s-%d", job, k), JobID: job, Build: b, SRPMURL: vnetSRPMURL(b), KeyID: bl.key.KeyID(), Operator: bl.op, Slot: k, Attempt: 1, Issued: t0, Expires: t0.Add(time.Hour)}
			leases[b] = append(leases[b], l)
			phase[1] = append(phase[1], sign(n.coord, attest.PayloadLease, &l))
			variant := ""
			if k == 9 && j%10 == 0 {
				variant = "evil"
			}
			envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "rpmbuild", LeaseID: l.LeaseID, Started: t0, Finished: t0.Add(time.Minute)}, vnetSubjects(b, variant), bl.key)
			if err != nil {
				tb.Fatal(err)
			}
			phase[2] = append(phase[2], envs...)
		}
		phase[3] = append(phase[3], sign(n.coord, attest.PayloadJobClose, &attest.JobClose{JobID: job, Build: b, Results: 10, At: t0.Add(time.Hour)}))
	}
	for i := range 4 {
		addAll(tb, n.l, phase[i])
	}
	// The witnesses' verdicts, computed on the log as it now stands.
	size := n.size()
	rec := newRecorder()
	ctx := context.Background()
	for i := range size {
		data, err := n.l.Entry(ctx, i)
		if err != nil {
			tb.Fatal(err)
		}
		if e, err := attest.Parse(data, attest.ParseOptions{}); err == nil {
			rec.add(i, e)
		}
	}
	for _, b := range builds {
		r, _ := rec.record(b)
		o, err := Agree(r, DefaultPolicy())
		if err != nil {
			tb.Fatal(err)
		}
		v := verdictOf(o, size, r)
		for _, w := range n.witnesses {
			phase[4] = append(phase[4], sign(w.verdict, attest.PayloadVerdict, &v))
		}
	}
	addAll(tb, n.l, phase[4])
	n.size()
	return builds
}

// lenientIndexer is coord.Indexer (buildsOnlyIndexer with -verify.scan)
// that also takes entries that are not skyline entries (filler), unindexed.
func lenientIndexer(entry []byte) ([]byte, []log.IndexKey, error) {
	idx := coord.Indexer
	if *verifyBenchScan {
		idx = buildsOnlyIndexer
	}
	d, k, err := idx(entry)
	if err != nil {
		return nil, nil, nil
	}
	return d, k, nil
}

// BenchmarkVerifyLatency measures `skyline verify` against a local log of
// -verify.size entries served over loopback HTTP: one build of 10 results
// (one outlier), 3 witness verdicts and cosignatures, at the end of a log
// of filler entries. Each iteration is a whole run (new follower, empty
// tile cache); p50 and p99 are reported.
func BenchmarkVerifyLatency(b *testing.B) {
	n := newVNetIndexed(b, 10, lenientIndexer)
	filler := *verifyBenchSize - 600
	const chunk = 100000
	for done := 0; done < filler; done += chunk {
		envs := make([][]byte, min(chunk, filler-done))
		for i := range envs {
			e := make([]byte, 300)
			binary.BigEndian.PutUint64(e, uint64(done+i))
			envs[i] = e
		}
		addAll(b, n.l, envs)
	}
	builds := benchJobs(b, n, "target", 20)
	p := n.policy(2)
	size := n.size()
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		rep, err := Verify(context.Background(), VerifyConfig{Policy: p}, VerifyRequest{NVR: builds[0].NVR})
		lat = append(lat, time.Since(start))
		if err != nil || rep.Status != VerdictReproduced {
			b.Fatalf("%v %q", err, rep.Status)
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(size), "entries")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkAuditReplay measures `skyline audit` from index 0 over a local
// log on loopback HTTP (-audit.jobs jobs, 25 entries each: job, 10 leases,
// 10 attestations of ~2.3 KB, close, 3 verdicts), in entries/s. The
// yardstick sub-benchmark is /work/shared/bench/limits
// BenchmarkDSSEVerifyEd25519Parallel (JSON decode, base64, PAE and Ed25519
// over a ~2 KB statement on every core), reproduced in bench_test.go so that one run
// gives both; the replay sub-benchmark runs the yardstick's work after
// each replay too, under the same load, and reports the ratio. Run with
// -cpu=2.
func BenchmarkAuditReplay(b *testing.B) {
	b.Run("yardstick=DSSEVerifyEd25519Parallel", benchYardstick)
	b.Run("replay", func(b *testing.B) {
		n := newVNet(b, 20)
		benchJobs(b, n, "pkg", *auditBenchJobs)
		size := n.size()
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		raw := yardstickEnvelope(priv, 2048)
		var entries, yops uint64
		var elapsed, yelapsed time.Duration
		for b.Loop() {
			start := time.Now()
			rep, _, err := Audit(context.Background(), AuditConfig{URL: n.srv.URL, LogKey: n.vkey}, nil)
			elapsed += time.Since(start)
			if err != nil || rep.Entries != size || len(rep.Discrepancies) != 0 {
				b.Fatalf("%v: %d entries, discrepancies %v", err, rep.Entries, rep.Discrepancies)
			}
			entries += size
			b.StopTimer()
			start = time.Now()
			fanOut(int(size), func(int) {
				if err := yardstickVerify(pub, raw); err != nil {
					b.Error(err)
				}
			})
			yelapsed += time.Since(start)
			yops += size
			b.StartTimer()
		}
		eps := float64(entries) / elapsed.Seconds()
		yps := float64(yops) / yelapsed.Seconds()
		b.ReportMetric(eps, "entries/s")
		b.ReportMetric(yps, "yardstick-ops/s")
		b.ReportMetric(eps/yps, "ratio")
	})
}
