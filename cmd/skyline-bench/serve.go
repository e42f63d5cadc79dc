package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

const serveOrigin = "bench.skyline.example/serve"

type serveFlags struct {
	n, conc, operators int
	maxParallel        int
	rate               float64
	dir, cpuProfile    string
	client, loadgen    string
	mutexProfile       string
	memProfile         string
	cpInterval         time.Duration
	wait, keep         bool
}

// runServe measures `skyline serve` over real HTTP: an in-process server
// (log on Pebble, coordinator, API with every check on) on a loopback
// listener, -n pre-leased jobs slots, and clients that POST /submit one
// real signed attestation per lease. Each submission is parsed strictly,
// its signature verified against the enrolled key, its lease checked and
// held, and it is appended durably before the answer.
//
// Closed loop (-rate 0): -c clients submit back to back; subs_per_s is the
// throughput. Fixed rate (-rate R): submissions are started every 1/R
// seconds whatever the answers do, and latency counts from the scheduled
// start, so a stalled server shows in p99 (no coordinated omission).
func runServe(args []string, stdout, stderr io.Writer) int {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&f.n, "n", 5000, "submissions (one per pre-leased job slot)")
	fs.IntVar(&f.conc, "c", 64, "concurrent clients (closed loop), or the most in flight (fixed rate)")
	fs.IntVar(&f.operators, "operators", 20, "builder operators (one key each); jobs want 10 results, so at least 10")
	fs.IntVar(&f.maxParallel, "max-parallel", 0, "coord.ServiceConfig.MaxParallel (0: its default, 4 * GOMAXPROCS)")
	fs.Float64Var(&f.rate, "rate", 0, "fixed submission rate per second (0: closed loop)")
	fs.StringVar(&f.dir, "dir", "", "parent directory of the log (a fresh subdirectory, removed after); default: system temp dir")
	fs.DurationVar(&f.cpInterval, "checkpoint-interval", time.Second, "log checkpoint interval")
	fs.BoolVar(&f.wait, "wait", false, "submit with ?wait=1 (latency includes the checkpoint and proof)")
	fs.BoolVar(&f.keep, "keep", false, "keep the log directory")
	fs.StringVar(&f.client, "client", "raw", "load generator: raw (a lean HTTP/1.1 client, like wrk) or go (api.Client on net/http)")
	fs.StringVar(&f.loadgen, "loadgen", "child", "where the load generator runs: child (another process, so the server's own CPU is measured apart; -client raw only) or self")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the submission phase to this file")
	fs.StringVar(&f.memProfile, "memprofile", "", "write an allocation profile of the submission phase to this file")
	fs.StringVar(&f.mutexProfile, "mutexprofile", "", "write mutex and block profiles of the submission phase to this file name + .mutex and .block")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 4
	}
	if f.n <= 0 || f.conc <= 0 || f.operators < 10 || f.rate < 0 || (f.client != "raw" && f.client != "go") ||
		(f.loadgen != "child" && f.loadgen != "self") || (f.loadgen == "child" && f.client != "raw") {
		fmt.Fprintln(stderr, "skyline-bench serve: need -n > 0, -c > 0, -operators >= 10, -rate >= 0, -client raw or go, -loadgen child or self (child with -client raw only)")
		return 4
	}
	line, err := benchServe(f, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "skyline-bench serve:", err)
		return 1
	}
	fmt.Fprintln(stdout, line)
	return 0
}

func benchServe(f serveFlags, stderr io.Writer) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp(f.dir, "skyline-serve-")
	if err != nil {
		return "", err
	}
	if !f.keep {
		defer os.RemoveAll(dir)
	}
	key, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		return "", err
	}
	ns, err := key.NoteSigner(serveOrigin)
	if err != nil {
		return "", err
	}
	idx := &coord.IndexCache{}
	lg, err := log.Open(ctx, log.Config{Dir: dir, Origin: serveOrigin, Signer: ns, Indexer: idx.Index, CheckpointInterval: f.cpInterval})
	if err != nil {
		return "", err
	}
	defer lg.Close()
	admin, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		return "", err
	}
	svc, err := coord.NewService(ctx, coord.ServiceConfig{Log: lg, Signer: key, IndexCache: idx, MaxParallel: f.maxParallel, AdminKeys: []*attest.Verifier{admin.Verifier()}, TickInterval: time.Hour})
	if err != nil {
		return "", err
	}
	srv, err := api.NewServer(api.Config{KeyRate: -1, SubmitRate: -1, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}, svc, lg)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-served }()
	url := "http://" + ln.Addr().String()
	transport := &http.Transport{MaxIdleConnsPerHost: f.conc, MaxConnsPerHost: f.conc}
	httpc := &http.Client{Transport: transport, Timeout: time.Minute}
	adminc, err := api.NewClient(api.ClientConfig{URL: url, Signer: admin, Origin: serveOrigin, HTTP: httpc})
	if err != nil {
		return "", err
	}

	// Setup, not measured: builders, jobs, leases, signed attestations.
	builders := make([]*attest.Signer, f.operators)
	for i := range builders {
		if builders[i], err = attest.GenerateKey(attest.KeyEd25519); err != nil {
			return "", err
		}
		if _, err := adminc.Enrol(ctx, api.EnrolBody{PublicKey: string(builders[i].PublicPEM()), Role: attest.RoleBuilder, Operator: fmt.Sprintf("op%d", i), Contact: "bench@example.org"}); err != nil {
			return "", err
		}
	}
	jobs := (f.n + 9) / 10
	for j := range jobs {
		nvr := fmt.Sprintf("bench%d-1.0-1", j)
		// Straight to the service: the admin API's per-key request window
		// (10,000 requests) would cap -n, and setup is not measured.
		if _, _, err := svc.Enqueue(ctx, attest.Job{Build: attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: fmt.Sprintf("%064x", j+1)},
			SRPMURL: "https://koji.example/" + nvr + ".src.rpm", Wanted: 10}); err != nil {
			return "", err
		}
	}
	var (
		mu     sync.Mutex
		envs   [][]byte
		wg     sync.WaitGroup
		setErr error
	)
	for _, b := range builders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				enough := len(envs) >= f.n || setErr != nil
				mu.Unlock()
				if enough {
					return
				}
				l, _, err := svc.Lease(ctx, b.KeyID(), []string{"x86_64"})
				if errors.Is(err, coord.ErrNoJob) {
					return
				}
				var env [][]byte
				if err == nil {
					env, err = attest.NewSubjectAttestations(attest.Build{
						ID: l.Build, SRPMURL: l.SRPMURL, Backend: "rpmbuild", Chroot: "bench", LeaseID: l.LeaseID,
						Started: l.Issued, Finished: l.Issued.Add(time.Minute),
					}, benchSubjects(l.Build.NVR, 3), b)
				}
				mu.Lock()
				if err != nil {
					setErr = err
				} else {
					envs = append(envs, env[0])
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if setErr != nil {
		return "", setErr
	}
	if len(envs) > f.n {
		envs = envs[:f.n]
	}
	startSize, _ := lg.Size()
	envBytes := 0
	for _, e := range envs {
		envBytes += len(e)
	}

	if f.cpuProfile != "" {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return "", err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return "", err
		}
	}
	if f.memProfile != "" {
		// Only the submission phase's allocations: the profile is a diff
		// against this base.
		runtime.MemProfileRate = 4096
		defer func() {
			if pf, err := os.Create(f.memProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(pf, 0)
				pf.Close()
			}
		}()
	}
	if f.mutexProfile != "" {
		runtime.SetMutexProfileFraction(1)
		runtime.SetBlockProfileRate(int(time.Microsecond))
		defer func() {
			for _, kind := range []string{"mutex", "block"} {
				if pf, err := os.Create(f.mutexProfile + "." + kind); err == nil {
					_ = pprof.Lookup(kind).WriteTo(pf, 0)
					pf.Close()
				}
			}
		}()
	}
	var (
		load  loadResult
		total float64 // CPU seconds of server and load generator together
	)
	if f.loadgen == "child" {
		load, err = runChildLoad(ctx, f, ln.Addr().String(), envs, stderr)
		if err != nil {
			return "", err
		}
		total = load.serverCPU + load.cpu
	} else {
		submitters, err := newSubmitters(f, ln.Addr().String(), httpc, envs)
		if err != nil {
			return "", err
		}
		cpu0 := cpuSeconds()
		load = drive(ctx, submitters, len(envs), f.rate)
		total = cpuSeconds() - cpu0
		for _, c := range submitters {
			c.close()
		}
	}
	if f.cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	endSize, _ := lg.Size()
	if added := endSize - startSize; added != uint64(len(envs)-load.failures) {
		return "", fmt.Errorf("log grew by %d for %d accepted submissions", added, len(envs)-load.failures)
	}
	if load.firstErr != "" {
		fmt.Fprintln(stderr, "skyline-bench serve: first failure:", load.firstErr)
	}
	mode := "closed"
	if f.rate > 0 {
		mode = fmt.Sprintf("rate%.0f", f.rate)
	}
	per1k := func(sec float64) float64 { return sec / float64(len(envs)) * 1000 }
	// The server's own CPU is known apart only when the load generator is
	// another process.
	serverCPU, loadCPU := -1.0, -1.0
	if f.loadgen == "child" {
		serverCPU, loadCPU = per1k(load.serverCPU), per1k(load.cpu)
	}
	return fmt.Sprintf("subs_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f failures=%d cpu_s_per_1k=%.3f server_cpu_s_per_1k=%.3f loadgen_cpu_s_per_1k=%.3f n=%d c=%d mode=%s wait=%t operators=%d cp_interval=%s client=%s loadgen=%s env_bytes=%d dedup=true sigcheck=true",
		float64(len(envs))/load.elapsed.Seconds(), pct(load.lat, 0.50), pct(load.lat, 0.99), pct(load.lat, 1), load.failures, per1k(total), serverCPU, loadCPU,
		len(envs), f.conc, mode, f.wait, f.operators, f.cpInterval, f.client, f.loadgen, envBytes/len(envs)), nil
}

// benchSubjects makes n made-up binary RPM subjects of a build.
func benchSubjects(nvr string, n int) []attest.Subject {
	out := make([]attest.Subject, n)
	for i := range out {
		out[i] = attest.Subject{
			Name:    fmt.Sprintf("%s-sub%d.x86_64.rpm", nvr, i),
			SHA256:  fmt.Sprintf("%064x", i+1),
			Skyline: fmt.Sprintf("%064x", i+101),
		}
	}
	return out
}

// submitter submits the i-th prepared envelope and checks the answer: a
// new entry (every envelope is submitted once).
type submitter interface {
	submit(ctx context.Context, i int) error
	close()
}

// newSubmitters makes f.conc load-generator clients of the server at addr.
func newSubmitters(f serveFlags, addr string, httpc *http.Client, envs [][]byte) ([]submitter, error) {
	if f.client != "go" {
		return rawSubmitters(addr, rawRequests(addr, f.wait, envs), f.conc), nil
	}
	out := make([]submitter, f.conc)
	for i := range out {
		c, err := api.NewClient(api.ClientConfig{URL: "http://" + addr, HTTP: httpc})
		if err != nil {
			return nil, err
		}
		out[i] = goSubmitter{c, envs, f.wait}
	}
	return out, nil
}

type goSubmitter struct {
	c    *api.Client
	envs [][]byte
	wait bool
}

func (s goSubmitter) submit(ctx context.Context, i int) error {
	res, err := s.c.SubmitOne(ctx, s.envs[i], s.wait)
	if err == nil && res.Duplicate {
		err = fmt.Errorf("submission %d answered as a duplicate", i)
	}
	return err
}

func (s goSubmitter) close() {}

type rawSubmitter struct {
	c    *rawConn
	reqs [][]byte
}

func (s *rawSubmitter) submit(_ context.Context, i int) error {
	status, body, err := s.c.do(s.reqs[i])
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("submission %d: HTTP %d: %s", i, status, body)
	}
	var res api.SubmitResponse
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("submission %d: %w", i, err)
	}
	if res.Duplicate {
		return fmt.Errorf("submission %d answered as a duplicate", i)
	}
	return nil
}

func (s *rawSubmitter) close() { s.c.close() }

// loadResult is what a load generator measured: each submission's latency
// (from its start, or its scheduled start at a fixed rate), the failures,
// the wall time, and its own CPU seconds when it ran in another process.
type loadResult struct {
	lat      []time.Duration
	failures int
	firstErr string
	elapsed  time.Duration
	cpu      float64
	// serverCPU is the server process's CPU seconds over the child's
	// submitting (loadgen child only).
	serverCPU float64
}

// drive submits n envelopes through subs: closed loop (rate 0), each
// client submitting back to back, or at a fixed rate, started every 1/rate
// seconds whatever the answers do, with latency counted from the
// scheduled start so that a stalled server shows in p99 (no coordinated
// omission).
func drive(ctx context.Context, subs []submitter, n int, rate float64) loadResult {
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		failures atomic.Int64
		firstErr atomic.Value
	)
	submit := func(c submitter, i int, from time.Time) {
		if err := c.submit(ctx, i); err != nil {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
		}
		lat[i] = time.Since(from)
	}
	start := time.Now()
	if rate == 0 {
		var next atomic.Int64
		for _, c := range subs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= n {
						return
					}
					submit(c, i, time.Now())
				}
			}()
		}
	} else {
		sem := make(chan submitter, len(subs))
		for _, c := range subs {
			sem <- c
		}
		interval := time.Duration(float64(time.Second) / rate)
		for i := range n {
			at := start.Add(time.Duration(i) * interval)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			c := <-sem
			wg.Add(1)
			go func() {
				defer wg.Done()
				submit(c, i, at)
				sem <- c
			}()
		}
	}
	wg.Wait()
	r := loadResult{lat: lat, failures: int(failures.Load()), elapsed: time.Since(start)}
	if v := firstErr.Load(); v != nil {
		r.firstErr = v.(string)
	}
	return r
}
