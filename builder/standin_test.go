package builder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/prometheus/client_golang/prometheus"
)

// standIn is the coordinator and log, in process, over real HTTP. It
// checks what it receives as the real log does: every envelope must parse
// strictly, carry a valid signature by the builder key the lease was made
// out to, and name a lease it issued that has not ended. Identical
// envelopes are deduplicated. Receipts carry real RFC 6962 inclusion
// proofs and checkpoints signed with a note key.
//
//	POST /lease    -> 200 attest.Lease | 204 no work
//	POST /submit   {"envelopes": [...]} -> 200 Receipt | 400 rejected
//	POST /end      {"lease_id", "reason", "detail"}
//	GET  /notices  -> []Notice
type standIn struct {
	t    testing.TB
	log  *testLog
	keys map[string]*attest.Verifier
	srv  *httptest.Server

	mu          sync.Mutex
	queue       []*attest.Lease
	issued      map[string]*attest.Lease
	ended       map[string]endReq
	endOrder    []string
	submissions [][][]byte // every submission as received
	rejected    []string
	leaseCalls  int
	failLeases  int // answer this many lease requests with 503
	failSubmits int // answer this many submissions with 503
	tamper      int // corrupt this many receipts' proofs
	notices     []Notice
	onIdle      func() // a lease request found no work
	onLease     func(*attest.Lease)
}

type endReq struct {
	LeaseID string `json:"lease_id"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail"`
}

type submitReq struct {
	Envelopes [][]byte `json:"envelopes"`
}

func newStandIn(t testing.TB, builderKey *attest.Verifier) *standIn {
	s := &standIn{
		t:      t,
		log:    newTestLog(t, "log.skyline.test"),
		keys:   map[string]*attest.Verifier{builderKey.KeyID(): builderKey},
		issued: map[string]*attest.Lease{},
		ended:  map[string]endReq{},
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *standIn) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method + " " + r.URL.Path {
	case "POST /lease":
		s.leaseCalls++
		if s.failLeases > 0 {
			s.failLeases--
			http.Error(w, "coordinator down", http.StatusServiceUnavailable)
			return
		}
		if len(s.queue) == 0 {
			w.WriteHeader(http.StatusNoContent)
			if s.onIdle != nil {
				s.onIdle()
			}
			return
		}
		l := s.queue[0]
		s.queue = s.queue[1:]
		s.issued[l.LeaseID] = l
		if s.onLease != nil {
			s.onLease(l)
		}
		json.NewEncoder(w).Encode(l)
	case "POST /submit":
		var req submitReq
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.submissions = append(s.submissions, req.Envelopes)
		if s.failSubmits > 0 {
			s.failSubmits--
			http.Error(w, "log busy", http.StatusServiceUnavailable)
			return
		}
		for _, env := range req.Envelopes {
			if err := s.check(env); err != nil {
				s.rejected = append(s.rejected, err.Error())
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		rec, err := s.log.add(req.Envelopes)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if s.tamper > 0 {
			s.tamper--
			for i := range rec.Entries {
				e := &rec.Entries[i]
				if len(e.Proof) > 0 {
					// Copy first: the proof may share the tree's storage.
					e.Proof[0] = bytes.Clone(e.Proof[0])
					e.Proof[0][0] ^= 0xff
				} else {
					e.Index++
				}
			}
		}
		json.NewEncoder(w).Encode(rec)
	case "POST /end":
		var req endReq
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// The coordinator's rule for a lease end's detail.
		if len(req.Detail) > 1024 || !utf8.ValidString(req.Detail) || strings.IndexFunc(req.Detail, unicode.IsControl) >= 0 {
			http.Error(w, "bad detail", http.StatusBadRequest)
			return
		}
		if _, ok := s.issued[req.LeaseID]; !ok {
			http.Error(w, "unknown lease", http.StatusNotFound)
			return
		}
		if _, ok := s.ended[req.LeaseID]; ok {
			http.Error(w, "lease already ended", http.StatusConflict)
			return
		}
		s.ended[req.LeaseID] = req
		s.endOrder = append(s.endOrder, req.LeaseID)
	case "GET /notices":
		json.NewEncoder(w).Encode(s.notices)
	default:
		http.NotFound(w, r)
	}
}

// check verifies an envelope as the log would.
func (s *standIn) check(env []byte) error {
	e, err := attest.Parse(env, attest.ParseOptions{Keys: func(id string) (*attest.Verifier, error) {
		if v, ok := s.keys[id]; ok {
			return v, nil
		}
		return nil, fmt.Errorf("unknown key %s", id)
	}})
	if err != nil {
		return err
	}
	a, ok := e.Value.(*attest.Attestation)
	if !ok {
		return fmt.Errorf("not an attestation: %s", e.PayloadType)
	}
	l, ok := s.issued[a.LeaseID]
	switch {
	case !ok:
		return fmt.Errorf("no such lease %q", a.LeaseID)
	case l.KeyID != e.KeyID:
		return fmt.Errorf("lease %s is for key %s, signed by %s", a.LeaseID, l.KeyID, e.KeyID)
	case a.Build != l.Build:
		return fmt.Errorf("attestation for %+v under a lease for %+v", a.Build, l.Build)
	}
	if _, gone := s.ended[a.LeaseID]; gone {
		return fmt.Errorf("lease %s already ended", a.LeaseID)
	}
	return nil
}

func (s *standIn) add(l *attest.Lease) {
	s.mu.Lock()
	s.queue = append(s.queue, l)
	s.mu.Unlock()
}

// snapshot returns copies of what the stand-in received.
func (s *standIn) snapshot() (submissions [][][]byte, ended map[string]endReq, leaseCalls int, entries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ended = map[string]endReq{}
	for k, v := range s.ended {
		ended[k] = v
	}
	return append([][][]byte(nil), s.submissions...), ended, s.leaseCalls, len(s.log.leaves)
}

// httpCoordinator is the test's client of the stand-in, as the api package
// client will be for the real server.
type httpCoordinator struct {
	base string
	c    *http.Client
}

func (h *httpCoordinator) do(ctx context.Context, method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, rd)
	if err != nil {
		return 0, err
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return resp.StatusCode, nil
	case resp.StatusCode == http.StatusBadRequest:
		return resp.StatusCode, fmt.Errorf("%s %s: %s: %w", method, path, strings.TrimSpace(string(data)), ErrRejected)
	case resp.StatusCode != http.StatusOK:
		return resp.StatusCode, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

func (h *httpCoordinator) Lease(ctx context.Context) (*attest.Lease, error) {
	var l attest.Lease
	code, err := h.do(ctx, http.MethodPost, "/lease", nil, &l)
	if err != nil {
		return nil, err
	}
	if code == http.StatusNoContent {
		return nil, ErrNoWork
	}
	return &l, nil
}

func (h *httpCoordinator) Submit(ctx context.Context, envs [][]byte) (*Receipt, error) {
	var r Receipt
	if _, err := h.do(ctx, http.MethodPost, "/submit", submitReq{envs}, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (h *httpCoordinator) EndLease(ctx context.Context, leaseID, reason, detail string) error {
	_, err := h.do(ctx, http.MethodPost, "/end", endReq{leaseID, reason, detail}, nil)
	return err
}

func (h *httpCoordinator) Notices(ctx context.Context) ([]Notice, error) {
	var ns []Notice
	_, err := h.do(ctx, http.MethodGet, "/notices", nil, &ns)
	return ns, err
}

// testSleeper returns at once for short waits (recording them), and waits
// for cancellation on the long ones (the notice poller), so no loop spins.
// After limit short waits it calls stop.
type testSleeper struct {
	mu    sync.Mutex
	waits []time.Duration
	limit int
	stop  func()
}

func (s *testSleeper) Sleep(ctx context.Context, d time.Duration) error {
	if d >= time.Hour {
		<-ctx.Done()
		return ctx.Err()
	}
	s.mu.Lock()
	s.waits = append(s.waits, d)
	n := len(s.waits)
	s.mu.Unlock()
	if s.limit > 0 && n >= s.limit && s.stop != nil {
		s.stop()
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// Let other goroutines run: a real sleep, but short.
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (s *testSleeper) Waits() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.waits...)
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is one builder against one stand-in.
type fixture struct {
	t       *testing.T
	signer  *attest.Signer
	si      *standIn
	cfg     Config
	sleeper *testSleeper
	logs    *syncBuffer
	srpmSrv *httptest.Server
	srpm    []byte
	machine *fakeMachine
	reg     *prometheus.Registry // of the last daemon made
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := attest.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, signer: signer, logs: &syncBuffer{}, machine: &fakeMachine{free: 1 << 40}, sleeper: &testSleeper{}}
	f.si = newStandIn(t, signer.Verifier())
	cfg := DefaultConfig()
	cfg.Coordinator = f.si.srv.URL
	cfg.Key = "/nonexistent/the-daemon-gets-the-key-in-memory"
	cfg.LogKey = f.si.log.vkey
	cfg.StateDir = filepath.Join(t.TempDir(), "state")
	cfg.WorkDir = filepath.Join(t.TempDir(), "work")
	cfg.Path = standInPath(t)
	cfg.Chroot = "fedora-41-x86_64"
	cfg.MaxCPUBusy = 1
	cfg.DiskCheckInterval = 20 * time.Millisecond
	f.cfg = cfg
	f.srpmSrv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(f.srpm)
	}))
	t.Cleanup(f.srpmSrv.Close)
	return f
}

// lease queues a lease for the SRPM currently served.
func (f *fixture) lease(id string, ttl time.Duration) *attest.Lease {
	l := &attest.Lease{
		LeaseID: id, JobID: "job-" + id,
		Build:   attest.BuildID{NVR: "hello-1.0-1", Arch: "x86_64", SRPMSHA256: sha(f.srpm)},
		SRPMURL: f.srpmSrv.URL + "/hello-1.0-1.src.rpm",
		KeyID:   f.signer.KeyID(), Operator: "alice", Slot: 1, Attempt: 1,
		Issued: time.Now().UTC(), Expires: time.Now().Add(ttl).UTC(),
	}
	f.si.add(l)
	return l
}

// fakeDigest digests whatever files the stand-in mock produced without
// parsing them as RPMs (fault tests do not need real packages).
func fakeDigest(dir string) ([]rpm.Digest, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []rpm.Digest
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, rpm.Digest{File: e.Name(), SHA256: sha(b), Skyline: sha(append([]byte("skyline"), b...)), Name: "hello", Version: "1.0", Release: "1", Arch: "x86_64"})
	}
	return out, nil
}

// daemon makes a daemon with the fixture's settings; backend nil means
// the configured one.
func (f *fixture) daemon(backend Backend, digest func(string) ([]rpm.Digest, error)) *Daemon {
	f.t.Helper()
	v, origin, err := LogVerifier(f.cfg.LogKey, f.cfg.LogOrigin)
	if err != nil {
		f.t.Fatal(err)
	}
	f.reg = prometheus.NewRegistry()
	d, err := New(f.cfg, Deps{
		Registerer:  f.reg,
		Coordinator: &httpCoordinator{base: f.si.srv.URL, c: f.si.srv.Client()},
		Attest:      SignerAttester(f.signer),
		KeyID:       f.signer.KeyID(),
		LogKey:      v,
		LogOrigin:   origin,
		Backend:     backend,
		Machine:     f.machine,
		HTTPClient:  f.srpmSrv.Client(),
		Digest:      digest,
		Sleep:       f.sleeper.Sleep,
		Logger:      slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// runUntilIdle runs a daemon until the stand-in has no work left (or stop
// is called by the sleeper), failing the test after a minute.
func (f *fixture) runUntilIdle(d *Daemon) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f.si.mu.Lock()
	f.si.onIdle = cancel
	f.si.mu.Unlock()
	f.sleeper.stop = cancel
	if err := d.Run(ctx); err != nil {
		f.t.Fatalf("Run: %v", err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		f.t.Fatalf("daemon did not finish its work within a minute; log:\n%s", f.logs.String())
	}
}

// fakeMachine is a Machine whose answers the test sets; onCall runs on
// every call with the method's name and how often it was called.
type fakeMachine struct {
	mu          sync.Mutex
	battery     bool
	busy, total uint64
	free        int64
	calls       map[string]int
	onCall      func(m *fakeMachine, method string, n int)
}

func (m *fakeMachine) called(method string) {
	if m.calls == nil {
		m.calls = map[string]int{}
	}
	m.calls[method]++
	if m.onCall != nil {
		m.onCall(m, method, m.calls[method])
	}
}

func (m *fakeMachine) CPUTimes() (uint64, uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.called("CPUTimes")
	return m.busy, m.total, nil
}

func (m *fakeMachine) OnBattery() (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.called("OnBattery")
	return m.battery, nil
}

func (m *fakeMachine) FreeDisk(string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.called("FreeDisk")
	return m.free, nil
}

// metric returns the value of a counter or gauge of the last daemon, 0 when
// it has no sample (labels: name=value pairs that must match).
func (f *fixture) metric(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}
