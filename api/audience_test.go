package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// countingTransport counts the requests a client sends.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestRequestForAnotherLog runs two logs that trust the same admin and
// builder keys (production and staging) and checks that a request signed
// for staging, accepted there, is refused by production with 401 wrong_log
// and changes nothing there, both replayed as captured bytes and sent by a
// Client configured for staging; that a Client without an origin signs
// nothing and sends nothing; and that production's own requests still go
// through.
func TestRequestForAnotherLog(t *testing.T) {
	ctx := context.Background()
	admin := newKey(t)
	prod := newEnv(t, envOptions{admin: admin})
	staging := newEnv(t, envOptions{admin: admin, origin: otherLog})
	body := EnqueueBody{NVR: "hello-1.0-1", Arch: "x86_64", SRPMURL: "https://koji.example/hello-1.0-1.src.rpm", SRPMSHA256: sha("hello"), Wanted: 3}

	req := signReqFor(t, admin, otherLog, ActionEnqueue, body, staging.clock.Now())
	if st, code := staging.post("/admin/enqueue", "application/json", req); st != 200 {
		t.Fatalf("staging refused its own request: %d %s", st, code)
	}
	before := prod.state(body.NVR)
	if st, code := prod.post("/admin/enqueue", "application/json", req); st != http.StatusUnauthorized || code != "wrong_log" {
		t.Fatalf("staging's request replayed to production: %d %q, want 401 wrong_log", st, code)
	}
	// A Client configured for staging, pointed at production.
	misdirected, err := NewClient(ClientConfig{URL: prod.url, Signer: admin, Origin: otherLog, Now: prod.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, err = misdirected.Enqueue(ctx, body)
	var apiErr *Error
	if !errors.Is(err, attest.ErrAudience) || !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Code != "wrong_log" {
		t.Fatalf("client for staging enqueued at production: %v, want 401 wrong_log matching attest.ErrAudience", err)
	}
	// A Client without an origin refuses to sign, before sending anything.
	tr := &countingTransport{}
	noOrigin, err := NewClient(ClientConfig{URL: prod.url, Signer: admin, HTTP: &http.Client{Transport: tr}, Now: prod.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noOrigin.Enqueue(ctx, body); !errors.Is(err, ErrBadParam) {
		t.Fatalf("client without an origin: %v, want ErrBadParam", err)
	}
	if n := tr.n.Load(); n != 0 {
		t.Fatalf("client without an origin sent %d requests", n)
	}
	// Unsigned calls need no origin.
	if _, err := noOrigin.Checkpoint(ctx); err != nil || tr.n.Load() != 1 {
		t.Fatalf("unsigned call without an origin: %v (%d requests)", err, tr.n.Load())
	}
	after := prod.state(body.NVR)
	if after.size != before.size || !bytes.Equal(after.root, before.root) || !bytes.Equal(after.checkpoint, before.checkpoint) || after.jobs != before.jobs || after.lookup != before.lookup {
		t.Fatalf("refused requests changed production: size %d -> %d, jobs %s -> %s", before.size, after.size, before.jobs, after.jobs)
	}
	if n := len(prod.svc.Jobs()); n != 0 {
		t.Fatalf("production has %d jobs", n)
	}
	// Production's own client, same key, same body: accepted.
	if _, err := prod.client(admin).Enqueue(ctx, body); err != nil {
		t.Fatalf("production's own request: %v", err)
	}
	if n := len(prod.svc.Jobs()); n != 1 {
		t.Fatalf("production has %d jobs after its own enqueue", n)
	}
}

// TestClientOrigin checks that NewClient refuses an origin that no log can
// have (not a note key name), with the attest error.
func TestClientOrigin(t *testing.T) {
	for _, o := range []string{"log example", "log+example", "log\nexample"} {
		if _, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", Origin: o}); !errors.Is(err, attest.ErrBadField) {
			t.Errorf("NewClient with origin %q: %v, want attest.ErrBadField", o, err)
		}
	}
	if _, err := NewClient(ClientConfig{URL: "http://127.0.0.1:1", Origin: testOrigin}); err != nil {
		t.Errorf("NewClient with origin %q: %v", testOrigin, err)
	}
}
