package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Errors of an SRPM download. ErrDigestMismatch, ErrTooLarge and ErrURL are
// permanent (retrying cannot help); ErrFetch wraps the last transient error
// once every attempt is used up.
var (
	ErrDigestMismatch = errors.New("srpm sha256 mismatch")
	ErrTooLarge       = errors.New("srpm larger than the size limit")
	ErrURL            = errors.New("srpm url not allowed")
	ErrFetch          = errors.New("srpm download failed")
)

// Sleeper waits for d or until ctx is done, returning ctx.Err() in that
// case. Tests inject one that records the waits instead of sleeping.
type Sleeper func(ctx context.Context, d time.Duration) error

// SleepContext is the real Sleeper.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Backoff is capped exponential backoff with jitter: attempt n (from 0)
// waits a random duration in [d/2, d] where d = min(Base*2^n, Max). The
// random half keeps thousands of builders from retrying in lock step.
type Backoff struct {
	Base, Max time.Duration
}

// Delay returns the wait before retry number attempt (0 is the first retry).
func (b Backoff) Delay(attempt int) time.Duration {
	d := b.Base
	for i := 0; i < attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Fetcher downloads SRPMs.
type Fetcher struct {
	// Client makes the requests; its transport decides which TLS roots are
	// trusted.
	Client *http.Client
	// MaxSize is the largest body accepted, in bytes.
	MaxSize int64
	// Attempts is the number of tries before giving up (at least 1).
	Attempts int
	// Backoff spaces the tries.
	Backoff Backoff
	// Sleep waits between tries.
	Sleep Sleeper
}

// CheckSRPMURL allows https URLs, and http URLs only when the host is a
// loopback address (tests and the local demo), since the sha256 from the
// logged lease is what authenticates the SRPM but a plaintext download
// still leaks what a builder builds.
func CheckSRPMURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("builder: srpm url %q: %w: %w", raw, ErrURL, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("builder: srpm url %q: plain http is only allowed to a loopback host: %w", raw, ErrURL)
		}
	default:
		return nil, fmt.Errorf("builder: srpm url %q: scheme %q is not https: %w", raw, u.Scheme, ErrURL)
	}
	if u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("builder: srpm url %q: no host, or credentials in the url: %w", raw, ErrURL)
	}
	return u, nil
}

// Fetch downloads rawURL into dest, checking size and sha256 (lowercase
// hex) before dest appears: the file exists only if its digest matched.
// Transient failures (connection errors, 5xx, 429, truncated bodies) are
// retried with backoff; the rest fail at once.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, wantSHA256, dest string) error {
	if _, err := CheckSRPMURL(rawURL); err != nil {
		return err
	}
	want, err := hex.DecodeString(wantSHA256)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("builder: srpm sha256 %q is not 64 hex digits: %w", wantSHA256, ErrDigestMismatch)
	}
	var last error
	for attempt := 0; attempt < max(f.Attempts, 1); attempt++ {
		if attempt > 0 {
			if err := f.Sleep(ctx, f.Backoff.Delay(attempt-1)); err != nil {
				return fmt.Errorf("builder: fetch %s: %w", rawURL, err)
			}
		}
		retry, err := f.fetchOnce(ctx, rawURL, want, dest)
		if err == nil {
			return nil
		}
		if !retry || ctx.Err() != nil {
			return err
		}
		last = err
	}
	return fmt.Errorf("builder: fetch %s: %d attempts: %w: %w", rawURL, max(f.Attempts, 1), ErrFetch, last)
}

// fetchOnce makes one try and says whether a failure is worth retrying.
func (f *Fetcher) fetchOnce(ctx context.Context, rawURL string, want []byte, dest string) (retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return false, fmt.Errorf("builder: fetch %s: %w: %w", rawURL, ErrURL, err)
	}
	// Redirects must obey the same rule as the URL itself: an https URL
	// must not lead to a plaintext download.
	c := *f.Client
	c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return fmt.Errorf("builder: more than 10 redirects: %w", ErrURL)
		}
		_, err := CheckSRPMURL(r.URL.String())
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return !errors.Is(err, ErrURL), fmt.Errorf("builder: fetch %s: %w", rawURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		transient := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout
		return transient, fmt.Errorf("builder: fetch %s: http status %s: %w", rawURL, resp.Status, ErrFetch)
	}
	if resp.ContentLength > f.MaxSize {
		return false, fmt.Errorf("builder: fetch %s: content length %d > %d: %w", rawURL, resp.ContentLength, f.MaxSize, ErrTooLarge)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dest), ".srpm-*")
	if err != nil {
		return false, fmt.Errorf("builder: fetch %s: %w", rawURL, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, f.MaxSize+1))
	if err != nil {
		// Includes io.ErrUnexpectedEOF for a body shorter than its
		// Content-Length: a truncated download.
		return true, fmt.Errorf("builder: fetch %s: after %d bytes: %w", rawURL, n, err)
	}
	if n > f.MaxSize {
		return false, fmt.Errorf("builder: fetch %s: body larger than %d bytes: %w", rawURL, f.MaxSize, ErrTooLarge)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return false, fmt.Errorf("builder: fetch %s: got sha256 %x, the lease says %x: %w", rawURL, got, want, ErrDigestMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return false, fmt.Errorf("builder: fetch %s: %w", rawURL, err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("builder: fetch %s: %w", rawURL, err)
	}
	if err := os.Rename(tmp.Name(), dest); err != nil {
		return false, fmt.Errorf("builder: fetch %s: %w", rawURL, err)
	}
	return false, nil
}
