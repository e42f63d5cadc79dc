package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recordingSleeper records the waits and returns at once.
type recordingSleeper struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recordingSleeper) Sleep(ctx context.Context, d time.Duration) error {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
	return ctx.Err()
}

func (r *recordingSleeper) Waits() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]time.Duration(nil), r.waits...)
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func newFetcher(c *http.Client, s *recordingSleeper) *Fetcher {
	return &Fetcher{Client: c, MaxSize: 1 << 20, Attempts: 5, Backoff: Backoff{Base: time.Second, Max: 8 * time.Second}, Sleep: s.Sleep}
}

func TestFetchHTTPS(t *testing.T) {
	body := bytes.Repeat([]byte("srpm"), 1000)
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	defer ts.Close()
	dest := filepath.Join(t.TempDir(), "job.src.rpm")
	var s recordingSleeper
	if err := newFetcher(ts.Client(), &s).Fetch(context.Background(), ts.URL+"/hello.src.rpm", sha(body), dest); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("downloaded %d bytes, err %v; want the %d served", len(got), err, len(body))
	}
	if len(s.Waits()) != 0 {
		t.Errorf("a successful download slept %v", s.Waits())
	}
}

// TestFetchFaults: each permanent fault fails at once, with its own error,
// and leaves no file behind; each transient one is retried with bounded
// backoff, one request per attempt.
func TestFetchFaults(t *testing.T) {
	body := bytes.Repeat([]byte("x"), 4096)
	for _, tc := range []struct {
		name     string
		handler  http.HandlerFunc
		sha      string
		want     error
		requests int64
	}{
		{"digest mismatch", func(w http.ResponseWriter, r *http.Request) { w.Write(body) }, sha([]byte("other")), ErrDigestMismatch, 1},
		{"oversized by content length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(2<<20))
			w.Write(bytes.Repeat([]byte("x"), 2<<20))
		}, sha(body), ErrTooLarge, 1},
		{"oversized chunked", func(w http.ResponseWriter, r *http.Request) {
			for range 40 {
				w.Write(bytes.Repeat([]byte("x"), 64<<10))
				w.(http.Flusher).Flush()
			}
		}, sha(body), ErrTooLarge, 1},
		{"truncated", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:100])
		}, sha(body), io.ErrUnexpectedEOF, 5},
		{"server error", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) }, sha(body), ErrFetch, 5},
		{"not found", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, sha(body), ErrFetch, 1},
		{"redirect to plain http", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://mirror.example.org/a.src.rpm", http.StatusFound)
		}, sha(body), ErrURL, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				tc.handler(w, r)
			}))
			defer ts.Close()
			dir := t.TempDir()
			var s recordingSleeper
			err := newFetcher(ts.Client(), &s).Fetch(context.Background(), ts.URL+"/a.src.rpm", tc.sha, filepath.Join(dir, "job.src.rpm"))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Fetch = %v; want %v", err, tc.want)
			}
			if got := n.Load(); got != tc.requests {
				t.Errorf("%d requests; want %d", got, tc.requests)
			}
			if got := len(s.Waits()); got != int(tc.requests-1) {
				t.Errorf("%d waits; want one between each of the %d requests", got, tc.requests)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("a failed download left %d files in the job dir", len(ents))
			}
		})
	}
}

// TestFetchServerDownBoundedBackoff counts connection attempts to a closed
// port over a fixed number of attempts: one attempt per wait, and the waits
// grow exponentially within [d/2, d] up to the cap.
func TestFetchServerDownBoundedBackoff(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	url := ts.URL + "/a.src.rpm"
	ts.Close() // nothing listens there now
	var dials atomic.Int64
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: countingTransport{tr, &dials}}
	var s recordingSleeper
	f := newFetcher(c, &s)
	f.Attempts = 7
	err := f.Fetch(context.Background(), url, sha(nil), filepath.Join(t.TempDir(), "x"))
	if !errors.Is(err, ErrFetch) {
		t.Fatalf("Fetch = %v; want ErrFetch", err)
	}
	if dials.Load() != 7 {
		t.Errorf("%d requests for 7 attempts", dials.Load())
	}
	waits := s.Waits()
	if len(waits) != 6 {
		t.Fatalf("%d waits; want 6", len(waits))
	}
	for i, w := range waits {
		hi := min(time.Second<<i, 8*time.Second)
		if w < hi/2 || w > hi {
			t.Errorf("wait %d = %v; want in [%v, %v]", i, w, hi/2, hi)
		}
	}
}

type countingTransport struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func TestCheckSRPMURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://kojipkgs.fedoraproject.org/a.src.rpm": true,
		"http://127.0.0.1:8080/a.src.rpm":              true,
		"http://[::1]:8080/a.src.rpm":                  true,
		"http://localhost/a.src.rpm":                   true,
		"http://kojipkgs.fedoraproject.org/a.src.rpm":  false,
		"http://10.0.0.1/a.src.rpm":                    false,
		"file:///etc/shadow":                           false,
		"ftp://example.org/a.src.rpm":                  false,
		"https://user:pw@example.org/a.src.rpm":        false,
		"https:///a.src.rpm":                           false,
		"://bad":                                       false,
	} {
		_, err := CheckSRPMURL(raw)
		if (err == nil) != ok {
			t.Errorf("CheckSRPMURL(%q) = %v; want ok=%v", raw, err, ok)
		}
		if err != nil && !errors.Is(err, ErrURL) {
			t.Errorf("CheckSRPMURL(%q) = %v; want ErrURL", raw, err)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	b := Backoff{Base: 2 * time.Second, Max: 5 * time.Minute}
	for attempt := range 40 {
		hi := min(2*time.Second<<min(attempt, 30), 5*time.Minute)
		for range 50 {
			if d := b.Delay(attempt); d < hi/2 || d > hi {
				t.Fatalf("Delay(%d) = %v; want in [%v, %v]", attempt, d, hi/2, hi)
			}
		}
	}
}

// FuzzCheckSRPMURL: the SRPM URL comes from the coordinator. Whatever is
// accepted is https, or plain http to a loopback host, with a host and no
// credentials.
func FuzzCheckSRPMURL(f *testing.F) {
	for _, s := range []string{"https://kojipkgs.fedoraproject.org/a.src.rpm", "http://127.0.0.1:1/a", "http://[::1]/x",
		"http://localhost./a", "http://127.0.0.1@evil.example/a", "https://u:p@h/a", "file:///etc/shadow", "HTTP://LOCALHOST/a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := CheckSRPMURL(raw)
		if err != nil {
			if !errors.Is(err, ErrURL) {
				t.Fatalf("error %v is not ErrURL", err)
			}
			return
		}
		if u.User != nil || u.Host == "" {
			t.Fatalf("accepted %q with credentials or no host", raw)
		}
		switch u.Scheme {
		case "https":
		case "http":
			if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() {
				t.Fatalf("accepted plain http to %q", h)
			}
		default:
			t.Fatalf("accepted scheme %q", u.Scheme)
		}
	})
}
