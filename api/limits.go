package api

import (
	"fmt"
	"sync"
	"time"
)

// nonceCache remembers the nonces of accepted signed requests for the
// freshness window, per key, so that a captured request cannot be replayed
// (docs/api.md, "Authentication"). Memory is bounded: at most perKey nonces
// per key and maxKeys keys; a key over its bound is refused (the rate
// limiter keeps honest clients far below it).
type nonceCache struct {
	window  time.Duration
	perKey  int
	maxKeys int

	mu   sync.Mutex
	keys map[string]map[string]time.Time // key id -> nonce -> expiry
}

func newNonceCache(window time.Duration, perKey, maxKeys int) *nonceCache {
	return &nonceCache{window: window, perKey: perKey, maxKeys: maxKeys, keys: make(map[string]map[string]time.Time)}
}

// use records nonce for keyID at now; it fails with ErrReplayed if the
// nonce was already used within the window.
func (c *nonceCache) use(keyID, nonce string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.keys[keyID]
	if m == nil {
		if len(c.keys) >= c.maxKeys {
			c.prune(now)
		}
		if len(c.keys) >= c.maxKeys {
			return fmt.Errorf("api: nonce cache full: %w", ErrRateLimited)
		}
		m = make(map[string]time.Time)
		c.keys[keyID] = m
	}
	if exp, ok := m[nonce]; ok && now.Before(exp) {
		return fmt.Errorf("api: nonce of key %s: %w", keyID, ErrReplayed)
	}
	if len(m) >= c.perKey {
		for n, exp := range m {
			if !now.Before(exp) {
				delete(m, n)
			}
		}
		if len(m) >= c.perKey {
			return fmt.Errorf("api: %d requests of key %s in the window: %w", len(m), keyID, ErrRateLimited)
		}
	}
	// A request is accepted while |now - time| <= window, so its nonce must
	// be remembered for two windows from now to cover the whole range.
	m[nonce] = now.Add(2 * c.window)
	return nil
}

// prune drops expired nonces and empty keys. Callers hold c.mu.
func (c *nonceCache) prune(now time.Time) {
	for k, m := range c.keys {
		for n, exp := range m {
			if !now.Before(exp) {
				delete(m, n)
			}
		}
		if len(m) == 0 {
			delete(c.keys, k)
		}
	}
}

// limiter is a token bucket per client (a key id, or an address): rate
// tokens a second, burst at most. Memory is bounded by maxClients; buckets
// that have refilled are dropped first.
type limiter struct {
	rate       float64
	burst      float64
	maxClients int

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst, maxClients int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), maxClients: maxClients, buckets: make(map[string]*bucket)}
}

// allow takes a token for client at now, or fails with ErrRateLimited.
// A limiter with rate <= 0 allows everything.
func (l *limiter) allow(client string, now time.Time) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= l.maxClients {
			for c, ob := range l.buckets {
				if ob.tokens+now.Sub(ob.last).Seconds()*l.rate >= l.burst {
					delete(l.buckets, c)
				}
			}
		}
		if len(l.buckets) >= l.maxClients {
			return fmt.Errorf("api: too many clients: %w", ErrRateLimited)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	// A clock that stepped back refills nothing.
	if now.After(b.last) {
		b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return fmt.Errorf("api: client %s: %w", client, ErrRateLimited)
	}
	b.tokens--
	return nil
}
