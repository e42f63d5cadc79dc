package api

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// TestNonceCache checks replay detection inside the window, forgetting
// after it, and the per-key and key-count bounds.
func TestNonceCache(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newNonceCache(time.Minute, 3, 2)
	if err := c.use("k1", "n1", now); err != nil {
		t.Fatal(err)
	}
	if err := c.use("k1", "n1", now.Add(time.Minute)); !errors.Is(err, ErrReplayed) {
		t.Fatalf("replay within the window: %v", err)
	}
	if err := c.use("k2", "n1", now.Add(time.Minute)); err != nil {
		t.Fatalf("same nonce, other key: %v", err)
	}
	if err := c.use("k1", "n1", now.Add(2*time.Minute)); err != nil {
		t.Fatalf("nonce after two windows: %v", err)
	}
	for i := range 2 {
		if err := c.use("k1", fmt.Sprint("m", i), now.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.use("k1", "m9", now.Add(2*time.Minute)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the per-key bound: %v", err)
	}
	if err := c.use("k3", "n", now.Add(2*time.Minute)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the key bound: %v", err)
	}
	// Once the nonces of k2 expire, its slot is reused.
	if err := c.use("k3", "n", now.Add(10*time.Minute)); err != nil {
		t.Fatalf("after pruning: %v", err)
	}
}

// TestLimiter checks the token bucket: the burst, the refill rate, the
// client bound, a clock step back, and that a negative rate is off.
func TestLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(2, 3, 2)
	for i := range 3 {
		if err := l.allow("a", now); err != nil {
			t.Fatalf("burst request %d: %v", i, err)
		}
	}
	if err := l.allow("a", now); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the burst: %v", err)
	}
	if err := l.allow("a", now.Add(500*time.Millisecond)); err != nil {
		t.Fatalf("after one token refilled: %v", err)
	}
	if err := l.allow("a", now.Add(500*time.Millisecond)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("refill gave more than one token: %v", err)
	}
	if err := l.allow("a", now.Add(-time.Hour)); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("a clock step back refilled: %v", err)
	}
	if err := l.allow("b", now); err != nil {
		t.Fatal(err)
	}
	if err := l.allow("c", now); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("over the client bound: %v", err)
	}
	if err := l.allow("c", now.Add(time.Hour)); err != nil {
		t.Fatalf("refilled buckets are dropped for new clients: %v", err)
	}
	off := newLimiter(-1, 1, 1)
	for range 10 {
		if err := off.allow("x", now); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRateLimitsOverHTTP checks that the per-key limit of signed requests
// and the per-address limit of submissions answer 429 rate_limited over
// real HTTP, change nothing, hold one key's excess against that key only,
// and refill with time.
func TestRateLimitsOverHTTP(t *testing.T) {
	e := newEnv(t, envOptions{api: Config{KeyRate: 1, KeyBurst: 2, SubmitRate: 1, SubmitBurst: 1}})
	const nvr = "hello-1.0-1"
	alice := e.enrol(attest.RoleBuilder, "alice")
	bob := e.enrol(attest.RoleBuilder, "bob")
	e.clock.Advance(time.Second) // the admin's two enrolments spent its burst
	e.enqueue(nvr, 5)
	notices := func(k *attest.Signer) (int, string) {
		return e.post("/notices", "application/json", signReq(t, k, ActionNotices, EmptyBody{}, e.clock.Now()))
	}
	for i := range 2 {
		if st, code := notices(alice); st != 200 {
			t.Fatalf("alice's request %d within the burst: %d %s", i+1, st, code)
		}
	}
	before := e.state(nvr)
	if st, code := notices(alice); st != 429 || code != "rate_limited" {
		t.Errorf("alice's third request at once: %d %q, want 429 rate_limited", st, code)
	}
	// A lease request over the limit logs no lease.
	if st, code := e.post("/lease", "application/json", signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, e.clock.Now())); st != 429 || code != "rate_limited" {
		t.Errorf("alice's lease over the limit: %d %q, want 429 rate_limited", st, code)
	}
	if after := e.state(nvr); after.size != before.size || after.jobs != before.jobs || !bytes.Equal(after.checkpoint, before.checkpoint) {
		t.Errorf("refused requests changed the state: size %d -> %d, jobs %s -> %s", before.size, after.size, before.jobs, after.jobs)
	}
	if st, code := notices(bob); st != 200 {
		t.Errorf("bob is limited by alice's requests: %d %s", st, code)
	}
	e.clock.Advance(time.Second)
	l := e.lease(alice) // one token back after a second
	if st, code := notices(alice); st != 429 || code != "rate_limited" {
		t.Errorf("alice's second request after one second: %d %q, want 429 rate_limited", st, code)
	}

	// Submissions: one per second from this address, burst 1.
	first := attestation(t, alice, l.Build, l.LeaseID, "A")
	if st, code := e.post("/submit", "application/json", first); st != 200 {
		t.Fatalf("first submission: %d %s", st, code)
	}
	before = e.state(nvr)
	second := attestation(t, alice, l.Build, l.LeaseID, "B")
	if st, code := e.post("/submit", "application/json", second); st != 429 || code != "rate_limited" {
		t.Errorf("second submission at once: %d %q, want 429 rate_limited", st, code)
	}
	if after := e.state(nvr); after.size != before.size || after.lookup != before.lookup || !bytes.Equal(after.root, before.root) {
		t.Errorf("a rate-limited submission changed the log: size %d -> %d, lookup %s -> %s", before.size, after.size, before.lookup, after.lookup)
	}
	e.clock.Advance(time.Second)
	if st, code := e.post("/submit", "application/json", first); st != 200 {
		t.Errorf("resubmission after a second: %d %s", st, code)
	}
}

// TestNoReplayAcrossRestart replays a captured signed request to a server
// started after it was accepted (the nonce cache is empty again, the
// request still inside the time window): it is refused as stale, and a
// request signed afresh goes through.
func TestNoReplayAcrossRestart(t *testing.T) {
	e := newEnv(t, envOptions{})
	alice := e.enrol(attest.RoleBuilder, "alice")
	captured := signReq(t, alice, ActionNotices, EmptyBody{}, e.clock.Now())
	if st, code := e.post("/notices", "application/json", captured); st != 200 {
		t.Fatalf("first use: %d %s", st, code)
	}
	if st, code := e.post("/notices", "application/json", captured); st != 409 || code != "replayed" {
		t.Fatalf("replay to the same server: %d %q, want 409 replayed", st, code)
	}

	// The HTTP server restarts one second later over the same log and
	// coordinator.
	e.clock.Advance(time.Second)
	srv, err := NewServer(Config{Now: e.clock.Now}, e.svc, e.log)
	if err != nil {
		t.Fatal(err)
	}
	restarted := *e
	restarted.url = serveLoopback(t, srv)
	if st, code := restarted.post("/notices", "application/json", captured); st != 401 || code != "stale_request" {
		t.Errorf("replay after a restart: %d %q, want 401 stale_request", st, code)
	}
	if st, code := restarted.post("/notices", "application/json", signReq(t, alice, ActionNotices, EmptyBody{}, e.clock.Now())); st != 200 {
		t.Errorf("a fresh request after the restart: %d %s", st, code)
	}
}
