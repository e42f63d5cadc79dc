package api

import (
	"errors"
	"fmt"
	"testing"
	"time"
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
