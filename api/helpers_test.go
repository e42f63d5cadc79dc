package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"golang.org/x/mod/sumdb/note"
)

const testOrigin = "log.skyline.example/test"

// clock is a settable clock shared by the service, the server and the
// clients of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running `skyline serve`: log, service and HTTP server on a real
// loopback listener, all stopped when the test ends.
type env struct {
	t        testing.TB
	url      string
	log      *log.Log
	svc      *coord.Service
	clock    *clock
	coordKey *attest.Signer
	admin    *attest.Signer
	logNote  note.Verifier
	srv      *Server
	origin   string // the log's checkpoint origin
}

type envOptions struct {
	api    Config
	coord  coord.Config
	dir    string
	store  log.Storage    // the log's storage instead of Pebble in dir
	signer *attest.Signer // log and coordinator key; new when nil
	admin  *attest.Signer
	origin string // the log's checkpoint origin; testOrigin when empty
}

func newKey(t testing.TB) *attest.Signer {
	t.Helper()
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if o.signer == nil {
		o.signer = newKey(t)
	}
	if o.admin == nil {
		o.admin = newKey(t)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	if o.origin == "" {
		o.origin = testOrigin
	}
	ns, err := o.signer.NoteSigner(o.origin)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := attest.NoteVerifierKey(o.origin, o.signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	nv, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	idx := &coord.IndexCache{}
	lg, err := log.Open(ctx, log.Config{Dir: o.dir, Storage: o.store, Origin: o.origin, Signer: ns, Indexer: idx.Index, CheckpointInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	svc, err := coord.NewService(ctx, coord.ServiceConfig{Log: lg, Signer: o.signer, IndexCache: idx, Coord: o.coord, AdminKeys: []*attest.Verifier{o.admin.Verifier()}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	o.api.Now = clk.Now
	srv, err := NewServer(o.api, svc, lg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		lg.Close()
	})
	url := serveLoopback(t, srv) // stopped before the cleanup above
	return &env{t: t, url: url, log: lg, svc: svc, clock: clk, coordKey: o.signer, admin: o.admin, logNote: nv, srv: srv, origin: o.origin}
}

// serveLoopback serves srv on a loopback port until the test ends and
// returns its URL.
func serveLoopback(t testing.TB, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func (e *env) client(s *attest.Signer, arches ...string) *Client {
	e.t.Helper()
	c, err := NewClient(ClientConfig{URL: e.url, Signer: s, Origin: e.origin, Arches: arches, Now: e.clock.Now, PollInterval: 10 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// enrol makes and enrols a key with role for operator.
func (e *env) enrol(role, operator string) *attest.Signer {
	e.t.Helper()
	k := newKey(e.t)
	if _, err := e.client(e.admin).Enrol(context.Background(), EnrolBody{PublicKey: string(k.PublicPEM()), Role: role, Operator: operator, Contact: operator + "@example.org"}); err != nil {
		e.t.Fatalf("enrol %s %s: %v", role, operator, err)
	}
	return k
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// enqueue enqueues a job for nvr on x86_64.
func (e *env) enqueue(nvr string, wanted int) attest.Job {
	e.t.Helper()
	res, err := e.client(e.admin).Enqueue(context.Background(), EnqueueBody{NVR: nvr, Arch: "x86_64", SRPMURL: "https://koji.example/" + nvr + ".src.rpm", SRPMSHA256: sha(nvr), Wanted: wanted})
	if err != nil {
		e.t.Fatalf("enqueue %s: %v", nvr, err)
	}
	return res.Job
}

// lease leases a job to k.
func (e *env) lease(k *attest.Signer) *attest.Lease {
	e.t.Helper()
	l, err := e.client(k, "x86_64").Lease(context.Background())
	if err != nil {
		e.t.Fatalf("lease: %v", err)
	}
	return l
}

// attestation returns a signed one-part attestation by k of a made-up
// result of build b under leaseID.
func attestation(t testing.TB, k *attest.Signer, b attest.BuildID, leaseID, result string) []byte {
	t.Helper()
	envs, err := attest.NewSubjectAttestations(attest.Build{
		ID: b, SRPMURL: "https://koji.example/" + b.NVR + ".src.rpm", Backend: "rpmbuild", Chroot: "test",
		LeaseID: leaseID, Started: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC), Finished: time.Date(2026, 11, 29, 12, 1, 0, 0, time.UTC),
	}, []attest.Subject{{Name: fmt.Sprintf("%s.%s.rpm", b.NVR, b.Arch), SHA256: sha("file" + result), Skyline: sha("sky" + result)}}, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) != 1 {
		t.Fatalf("%d parts", len(envs))
	}
	return envs[0]
}

// post sends body to path with content type ct and returns the status and
// error code of the answer.
func (e *env) post(path, ct string, body []byte) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(string(body)))
	if err != nil {
		e.t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) (int, string) {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb ErrorBody
	if resp.StatusCode != http.StatusOK {
		body := mustRead(e.t, resp)
		if err := decode(body, &eb); err != nil || resp.Header.Get("Content-Type") != contentJSON {
			// Not our error body: net/http refused the request itself.
			return resp.StatusCode, "net/http: " + strings.TrimSpace(string(body))
		}
	}
	return resp.StatusCode, eb.Code
}

func mustRead(t testing.TB, resp *http.Response) []byte {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
