package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// BenchmarkSubmitHandler measures the server's whole write path for one
// build attestation, without the network: strict parse, signature check
// against the enrolled key, lease hold, durable append (group-committed
// across the parallel goroutines), apply. Setup (enrolment, jobs, leases,
// signing) is not timed. Compare with shared/bench/limits
// BenchmarkDSSEVerifyEd25519Parallel at the same -cpu.
func BenchmarkSubmitHandler(b *testing.B) {
	e := newEnv(b, envOptions{api: Config{KeyRate: -1, SubmitRate: -1}})
	ctx := context.Background()
	const operators = 10
	keys := make([]*attest.Signer, operators)
	for i := range keys {
		keys[i] = newKey(b)
		if _, err := e.svc.Enrol(ctx, attest.Enrolment{KeyID: keys[i].KeyID(), PublicKey: string(keys[i].PublicPEM()), Role: attest.RoleBuilder, Operator: fmt.Sprint("op", i), Contact: "c"}); err != nil {
			b.Fatal(err)
		}
	}
	for j := 0; j < (b.N+9)/10; j++ {
		nvr := fmt.Sprintf("bench%d-1.0-1", j)
		if _, _, err := e.svc.Enqueue(ctx, attest.Job{Build: attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: sha(nvr)}, SRPMURL: "https://koji.example/" + nvr + ".src.rpm", Wanted: 10}); err != nil {
			b.Fatal(err)
		}
	}
	envs := make([][]byte, 0, b.N)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				l, _, err := e.svc.Lease(ctx, k.KeyID(), []string{"x86_64"})
				if err != nil {
					return
				}
				env := attestation(b, k, l.Build, l.LeaseID, k.KeyID())
				mu.Lock()
				envs = append(envs, env)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(envs) < b.N {
		b.Fatalf("%d leases for %d submissions", len(envs), b.N)
	}
	var next sync.Mutex
	i := 0
	h := e.srv.Handler()
	b.ReportAllocs()
	// Many submissions in flight, as from many builders: the log commits
	// them in groups, one fsync each.
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			env := envs[i]
			i++
			next.Unlock()
			req := httptest.NewRequest(http.MethodPost, "/submit", bytes.NewReader(env))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Errorf("submit: %d %s", w.Code, w.Body)
			}
		}
	})
	b.StopTimer()
	var results int
	for _, j := range e.svc.Jobs() {
		results += len(j.Results)
	}
	if results != b.N {
		b.Fatalf("%d results counted for %d submissions", results, b.N)
	}
}
