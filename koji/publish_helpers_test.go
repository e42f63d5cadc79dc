package koji_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"golang.org/x/mod/sumdb/note"
)

// skyline is a real `skyline serve` in process: the log on Pebble, the
// coordinator service and the API on a loopback listener.
type skyline struct {
	t      testing.TB
	url    string
	origin string
	vkey   string
	noteV  note.Verifier
	logKey *attest.Signer // log and coordinator key
	admin  *attest.Signer
	log    *log.Log
	svc    *coord.Service
}

func newSkyline(t testing.TB) *skyline {
	t.Helper()
	return newSkylineWithKeys(t, genKey(t), genKey(t))
}

// newSkylineWithKeys starts a skyline whose log and admin keys are given
// (two logs with one key and origin are a fork).
func newSkylineWithKeys(t testing.TB, logKey, admin *attest.Signer) *skyline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &skyline{t: t, origin: "log.koji-test.example", logKey: logKey, admin: admin}
	ns, err := s.logKey.NoteSigner(s.origin)
	if err != nil {
		t.Fatal(err)
	}
	if s.vkey, err = attest.NoteVerifierKey(s.origin, s.logKey.Public()); err != nil {
		t.Fatal(err)
	}
	if s.noteV, err = note.NewVerifier(s.vkey); err != nil {
		t.Fatal(err)
	}
	if s.log, err = log.Open(ctx, log.Config{Dir: t.TempDir(), Origin: s.origin, Signer: ns, Indexer: coord.Indexer, CheckpointInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if s.svc, err = coord.NewService(ctx, coord.ServiceConfig{Log: s.log, Signer: s.logKey, AdminKeys: []*attest.Verifier{s.admin.Verifier()}}); err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{}, s.svc, s.log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		s.log.Close()
	})
	s.url = "http://" + ln.Addr().String()
	return s
}

func (s *skyline) client(k *attest.Signer) *api.Client {
	s.t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: s.url, Signer: k, Origin: s.origin, Arches: []string{"x86_64"}, PollInterval: 10 * time.Millisecond})
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// enrol makes (when k is nil) and enrols a key with role for operator.
func (s *skyline) enrol(k *attest.Signer, role, operator string) *attest.Signer {
	s.t.Helper()
	if k == nil {
		k = genKey(s.t)
	}
	if _, err := s.client(s.admin).Enrol(context.Background(), api.EnrolBody{PublicKey: string(k.PublicPEM()), Role: role, Operator: operator, Contact: operator + "@example.org"}); err != nil {
		s.t.Fatalf("enrol %s: %v", operator, err)
	}
	return k
}

// waitCheckpoint waits until a checkpoint covers every entry so far.
func (s *skyline) waitCheckpoint() {
	s.t.Helper()
	waitCheckpoint(s.t, s.log)
}

// submitVerdict logs a verdict signed by witness key w and returns its index.
func (s *skyline) submitVerdict(w *attest.Signer, b attest.BuildID, verdict string) uint64 {
	s.t.Helper()
	size, _ := s.log.Size()
	v := attest.Verdict{Build: b, Verdict: verdict, TreeSize: size, At: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	env, err := attest.Sign(w, attest.PayloadVerdict, &v)
	if err != nil {
		s.t.Fatal(err)
	}
	r, err := s.client(nil).SubmitOne(context.Background(), env, true)
	if err != nil {
		s.t.Fatalf("submit verdict: %v", err)
	}
	return r.Index
}
