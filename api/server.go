package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Service is the write path the server calls: coord.Service implements it.
type Service interface {
	Submit(ctx context.Context, envelope []byte) (coord.SubmitResult, error)
	Lease(ctx context.Context, keyID string, arches []string) (attest.Lease, uint64, error)
	EndLease(ctx context.Context, keyID, leaseID, reason, detail string) (uint64, error)
	Enqueue(ctx context.Context, j attest.Job) (attest.Job, uint64, error)
	Enrol(ctx context.Context, en attest.Enrolment) (uint64, error)
	Revoke(ctx context.Context, keyID, reason string) (uint64, error)
	Jobs() []coord.JobStatus
	Notices(keyID string) []coord.Notice
	// RequestVerifier returns the verifier of a key allowed to sign
	// requests that need role (attest.RoleBuilder or attest.RoleAdmin).
	RequestVerifier(keyID, role string) (*attest.Verifier, error)
}

// Log is the read path the server calls: *log.Log implements it.
type Log interface {
	ReadPath(ctx context.Context, path string) ([]byte, error)
	Entry(ctx context.Context, index uint64) ([]byte, error)
	Lookup(ctx context.Context, nvr string) ([]log.IndexRef, error)
	InclusionProof(ctx context.Context, index, size uint64) ([][]byte, error)
	ConsistencyProof(ctx context.Context, from, to uint64) ([][]byte, error)
	WaitCheckpoint(ctx context.Context, size uint64) ([]byte, error)
	Alarm() error
	// Origin is the log's checkpoint origin: signed requests must name it
	// as their audience (docs/api.md, "Signed requests").
	Origin() string
}

// Config configures the HTTP server. The zero value is usable on a loopback
// address: every field has a default.
type Config struct {
	// MaxSubmitBytes bounds a POST /submit body. Default
	// attest.MaxEntrySize + 1 KiB: a full entry and room to say it is too
	// large.
	MaxSubmitBytes int64
	// MaxRequestBytes bounds a signed request body. Default
	// attest.MaxRequestSize.
	MaxRequestBytes int64
	// WaitTimeout bounds how long POST /submit?wait=1 waits for a
	// checkpoint. Default 10s.
	WaitTimeout time.Duration
	// RequestWindow is how far a signed request's time may be from the
	// server's clock. Default 5m.
	RequestWindow time.Duration
	// KeyRate and KeyBurst limit the signed requests of one key (token
	// bucket: per second, burst). Default 2/s, burst 30. KeyRate < 0: off.
	KeyRate  float64
	KeyBurst int
	// SubmitRate and SubmitBurst limit the submissions of one client
	// address. Default 100/s, burst 500. SubmitRate < 0: off.
	SubmitRate  float64
	SubmitBurst int
	// ReadHeaderTimeout bounds reading a request's headers (slow-loris).
	// Default 5s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request. Default 30s.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response; it must exceed WaitTimeout.
	// Default WaitTimeout + 20s.
	WriteTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection. Default 120s.
	IdleTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown. Default 15s.
	ShutdownTimeout time.Duration
	// TLSCertFile and TLSKeyFile, when both set, make Serve speak HTTPS.
	TLSCertFile, TLSKeyFile string
	// AllowPlainHTTP lets Serve speak plain HTTP on a non-loopback
	// address. Default false: plain HTTP only on loopback.
	AllowPlainHTTP bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives operational events. Default: discard.
	Logger *slog.Logger
	// Registerer and Gatherer, when set, receive the HTTP metrics and
	// serve /metrics. Default nil: no metrics, /metrics is 404.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Mounts are read-only handlers served under a path prefix for GET
	// and HEAD, as they are (skyline serve mounts the stats pages at
	// /stats/ and /api/stats/). Default none.
	Mounts map[string]http.Handler
}

func (c Config) withDefaults() Config {
	if c.MaxSubmitBytes <= 0 {
		c.MaxSubmitBytes = attest.MaxEntrySize + 1024
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = attest.MaxRequestSize
	}
	if c.WaitTimeout <= 0 {
		c.WaitTimeout = 10 * time.Second
	}
	if c.RequestWindow <= 0 {
		c.RequestWindow = 5 * time.Minute
	}
	if c.KeyRate == 0 {
		c.KeyRate = 2
	}
	if c.KeyBurst <= 0 {
		c.KeyBurst = 30
	}
	if c.SubmitRate == 0 {
		c.SubmitRate = 100
	}
	if c.SubmitBurst <= 0 {
		c.SubmitBurst = 500
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = 5 * time.Second
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = c.WaitTimeout + 20*time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 15 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Content types of the responses (C2SP tlog-tiles serves tiles and bundles
// as opaque bytes; the checkpoint is a text note).
const (
	contentJSON       = "application/json"
	contentCheckpoint = "text/plain; charset=utf-8"
	contentTile       = "application/octet-stream"
)

// Cache-Control values (C2SP tlog-tiles: full tiles and bundles never
// change; the checkpoint and partial tiles are superseded as the log grows).
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cachePartial    = "public, max-age=10"
	cacheCheckpoint = "no-cache"
	cacheNone       = "no-store"
)

// Server is the HTTP server of `skyline serve`.
type Server struct {
	cfg     Config
	svc     Service
	log     Log
	origin  string // the log's checkpoint origin, the audience of signed requests
	nonces  *nonceCache
	started time.Time // requests signed earlier are refused: the nonce cache starts empty
	keyRate *limiter
	subRate *limiter
	router  *mux.Router
	metrics *metrics
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewServer returns the server of svc and lg.
func NewServer(cfg Config, svc Service, lg Log) (*Server, error) {
	cfg = cfg.withDefaults()
	origin := lg.Origin()
	if err := attest.CheckOrigin(origin); err != nil {
		return nil, fmt.Errorf("api: the log's origin cannot be a request audience: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		svc:     svc,
		log:     lg,
		origin:  origin,
		nonces:  newNonceCache(cfg.RequestWindow, 10000, 100000),
		started: cfg.Now(),
		keyRate: newLimiter(cfg.KeyRate, cfg.KeyBurst, 100000),
		subRate: newLimiter(cfg.SubmitRate, cfg.SubmitBurst, 100000),
	}
	if cfg.Registerer != nil {
		m := &metrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "skyline_http_requests_total", Help: "HTTP requests by route and status code."}, []string{"route", "code"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "skyline_http_request_duration_seconds", Help: "HTTP request latency by route.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route"}),
		}
		for _, c := range []prometheus.Collector{m.requests, m.duration} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("api: register metrics: %w", err)
			}
		}
		s.metrics = m
	}
	s.router = s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.router }

// handlerFunc is a handler that returns its error for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	// Paths are matched as sent: no cleaning (which would redirect "../"
	// to another resource) and no decoding before matching.
	r.SkipClean(true)
	r.UseEncodedPath()
	get := []string{http.MethodGet, http.MethodHead}
	post := []string{http.MethodPost}
	add := func(name, path string, prefix bool, methods []string, h handlerFunc) {
		var rt *mux.Route
		if prefix {
			rt = r.PathPrefix(path)
		} else {
			rt = r.Path(path)
		}
		rt.Methods(methods...).Name(name).Handler(s.wrap(name, h))
	}
	// The hot write route first: mux tries routes in order.
	add("submit", "/submit", false, post, s.submit)
	// C2SP tlog-tiles read API.
	add("checkpoint", "/checkpoint", false, get, s.checkpoint)
	add("tile", "/tile/", true, get, s.tile)
	// Conveniences.
	add("lookup", "/lookup/", true, get, s.lookup)
	add("entry", "/entry/{index}", false, get, s.entry)
	add("inclusion", "/proof/inclusion", false, get, s.inclusion)
	add("consistency", "/proof/consistency", false, get, s.consistency)
	// Write path.
	add("lease", "/lease", false, post, s.lease)
	add("lease-end", "/lease/{id}/end", false, post, s.leaseEnd)
	add("notices", "/notices", false, post, s.notices)
	add("enqueue", "/admin/enqueue", false, post, s.enqueue)
	add("enrol", "/admin/enrol", false, post, s.enrol)
	add("revoke", "/admin/revoke", false, post, s.revoke)
	add("jobs", "/admin/jobs", false, post, s.jobs)
	// Operations.
	add("healthz", "/healthz", false, get, s.healthz)
	if s.cfg.Gatherer != nil {
		r.Path("/metrics").Methods(get...).Name("metrics").Handler(promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	for _, p := range slices.Sorted(maps.Keys(s.cfg.Mounts)) {
		r.PathPrefix(p).Methods(get...).Name("mount " + p).Handler(s.cfg.Mounts[p])
	}
	r.NotFoundHandler = s.wrap("none", func(http.ResponseWriter, *http.Request) error {
		return ErrNoRoute
	})
	r.MethodNotAllowedHandler = s.wrap("none", func(w http.ResponseWriter, req *http.Request) error {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
			probe := req.Clone(req.Context())
			probe.Method = m
			var match mux.RouteMatch
			if r.Match(probe, &match) && match.MatchErr == nil {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		return fmt.Errorf("api: %s %s: %w", req.Method, req.URL.EscapedPath(), ErrMethod)
	})
	return r
}

// statusWriter records the status of a response for the metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (s *Server) wrap(name string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		if err := h(sw, r); err != nil {
			s.writeError(sw, r, err)
		}
		if s.metrics != nil {
			s.metrics.requests.WithLabelValues(name, strconv.Itoa(sw.status)).Inc()
			s.metrics.duration.WithLabelValues(name).Observe(time.Since(start).Seconds())
		}
	})
}

// writeError answers with the status and code of err (errors.go).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	k := kindOf(err)
	msg := err.Error()
	if k.status >= 500 {
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.EscapedPath(), "err", err)
		if k.err == ErrInternal {
			msg = "internal error"
		}
	}
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("Cache-Control", cacheNone)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(k.status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: msg, Code: k.code})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("api: marshal response: %w", err)
	}
	w.Header().Set("Content-Type", contentJSON)
	w.Header().Set("Cache-Control", cacheNone)
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func writeBytes(w http.ResponseWriter, contentType, cache string, b []byte) error {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", cache)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// readBody reads a POST body of Content-Type application/json, at most
// limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	// The exact type, what every client sends, needs no parsing.
	if ct := r.Header.Get("Content-Type"); ct != contentJSON {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != contentJSON {
			return nil, fmt.Errorf("api: content type %q, want %s: %w", ct, contentJSON, ErrContentType)
		}
	}
	if r.ContentLength > limit {
		return nil, fmt.Errorf("api: body of %d bytes, limit %d: %w", r.ContentLength, limit, ErrBodyTooLarge)
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	var b []byte
	var err error
	if r.ContentLength > 0 {
		// The common case: the length is known, read it in one buffer.
		b = make([]byte, r.ContentLength)
		_, err = io.ReadFull(body, b)
	} else {
		b, err = io.ReadAll(body)
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, fmt.Errorf("api: body over %d bytes: %w", limit, ErrBodyTooLarge)
		}
		return nil, fmt.Errorf("api: read body: %w: %v", ErrBadParam, err)
	}
	return b, nil
}

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) error {
	b, err := s.log.ReadPath(r.Context(), "checkpoint")
	if err != nil {
		return err
	}
	return writeBytes(w, contentCheckpoint, cacheCheckpoint, b)
}

// tile serves C2SP tlog-tiles hash tiles and entry bundles byte for byte.
func (s *Server) tile(w http.ResponseWriter, r *http.Request) error {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	p, err := log.ParseTilePath(path)
	if err != nil {
		return err
	}
	if p.Checkpoint {
		return fmt.Errorf("api: %q: %w", path, log.ErrBadPath)
	}
	b, err := s.log.ReadPath(r.Context(), path)
	if err != nil {
		return err
	}
	cache := cacheImmutable
	if p.Width > 0 {
		cache = cachePartial
	}
	return writeBytes(w, contentTile, cache, b)
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) error {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/lookup/")
	nvr, err := url.PathUnescape(raw)
	if err != nil {
		return fmt.Errorf("api: lookup: %w: %v", ErrBadParam, err)
	}
	if err := attest.CheckNVR(nvr); err != nil {
		return fmt.Errorf("api: lookup: %w", err)
	}
	refs, err := s.log.Lookup(r.Context(), nvr)
	if err != nil {
		return err
	}
	out := LookupResponse{NVR: nvr, Entries: make([]LookupEntry, len(refs))}
	for i, ref := range refs {
		out.Entries[i] = LookupEntry{Index: ref.Index, Type: ref.Type}
	}
	return writeJSON(w, http.StatusOK, out)
}

// parseUint parses a canonical decimal uint64 (no sign, no leading zeros).
func parseUint(what, s string) (uint64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' || len(s) > 20 {
		return 0, fmt.Errorf("api: %s %q: %w", what, trunc(s), ErrBadParam)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("api: %s %q: %w", what, trunc(s), ErrBadParam)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("api: %s %q: %w", what, trunc(s), ErrBadParam)
	}
	return n, nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// query returns the named parameters of a query that must have exactly
// those, once each.
func query(r *http.Request, names ...string) ([]uint64, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("api: query: %w: %v", ErrBadParam, err)
	}
	if len(q) != len(names) {
		return nil, fmt.Errorf("api: query wants exactly %s: %w", strings.Join(names, ", "), ErrBadParam)
	}
	out := make([]uint64, len(names))
	for i, n := range names {
		if len(q[n]) != 1 {
			return nil, fmt.Errorf("api: query parameter %s missing or repeated: %w", n, ErrBadParam)
		}
		if out[i], err = parseUint(n, q[n][0]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Server) entry(w http.ResponseWriter, r *http.Request) error {
	idx, err := parseUint("index", mux.Vars(r)["index"])
	if err != nil {
		return err
	}
	b, err := s.log.Entry(r.Context(), idx)
	if err != nil {
		return err
	}
	return writeBytes(w, contentJSON, cacheImmutable, b)
}

func (s *Server) inclusion(w http.ResponseWriter, r *http.Request) error {
	v, err := query(r, "index", "size")
	if err != nil {
		return err
	}
	p, err := s.log.InclusionProof(r.Context(), v[0], v[1])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, InclusionResponse{Index: v[0], Size: v[1], Proof: p})
}

func (s *Server) consistency(w http.ResponseWriter, r *http.Request) error {
	v, err := query(r, "from", "to")
	if err != nil {
		return err
	}
	p, err := s.log.ConsistencyProof(r.Context(), v[0], v[1])
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ConsistencyResponse{From: v[0], To: v[1], Proof: p})
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// submit appends a self-authenticating envelope (docs/api.md, "POST
// /submit").
func (s *Server) submit(w http.ResponseWriter, r *http.Request) error {
	wait := false
	switch q := r.URL.RawQuery; q {
	case "", "wait=0":
	case "wait=1":
		wait = true
	default:
		return fmt.Errorf("api: submit query %q: %w", trunc(q), ErrBadParam)
	}
	if err := s.subRate.allow(clientAddr(r), s.cfg.Now()); err != nil {
		return err
	}
	body, err := readBody(w, r, s.cfg.MaxSubmitBytes)
	if err != nil {
		return err
	}
	res, err := s.svc.Submit(r.Context(), body)
	if err != nil {
		return err
	}
	out := SubmitResponse{Index: res.Index, Duplicate: res.Duplicate}
	if wait {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.WaitTimeout)
		defer cancel()
		cp, err := s.log.WaitCheckpoint(ctx, res.Index+1)
		switch {
		case err == nil:
			size, err := CheckpointSize(cp)
			if err != nil {
				return err
			}
			p, err := s.log.InclusionProof(r.Context(), res.Index, size)
			if err != nil {
				return err
			}
			out.Proof, out.Checkpoint = p, string(cp)
		case errors.Is(err, context.DeadlineExceeded):
			// The entry is durable: answer with its index, the client polls.
		default:
			return err
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// CheckpointSize returns the tree size line of a C2SP tlog-checkpoint note
// without checking its signature (callers verify it, or, like the server,
// made it).
func CheckpointSize(note []byte) (uint64, error) {
	lines := bytes.SplitN(note, []byte("\n"), 3)
	if len(lines) < 3 {
		return 0, fmt.Errorf("api: checkpoint has no size line: %w", ErrBadParam)
	}
	return parseUint("checkpoint size", string(lines[1]))
}

// signed reads and verifies a signed request for action by a key with one
// of roles, addressed to this log, decoding its body into body, and checks
// freshness, rate and replay. It returns the signer's key id.
func (s *Server) signed(w http.ResponseWriter, r *http.Request, action string, roles []string, body any) (string, error) {
	data, err := readBody(w, r, s.cfg.MaxRequestBytes)
	if err != nil {
		return "", err
	}
	req, keyID, err := attest.ParseRequest(data, s.origin, action, func(keyID string) (*attest.Verifier, error) {
		var err error
		for _, role := range roles {
			var v *attest.Verifier
			if v, err = s.svc.RequestVerifier(keyID, role); !errors.Is(err, coord.ErrRole) {
				return v, err
			}
		}
		return nil, err
	}, body)
	if err != nil {
		return "", err
	}
	now := s.cfg.Now()
	if d := now.Sub(req.Time).Abs(); d > s.cfg.RequestWindow {
		return "", fmt.Errorf("api: request time %s is %s from the server's: %w", req.Time.Format(time.RFC3339), d.Round(time.Second), ErrStale)
	}
	// The nonces of requests accepted before a restart are gone, so a
	// request signed before this server started could be a replay.
	if req.Time.Before(s.started) {
		return "", fmt.Errorf("api: request time %s is before the server started (%s); sign it again: %w", req.Time.Format(time.RFC3339Nano), s.started.Format(time.RFC3339Nano), ErrStale)
	}
	if err := s.keyRate.allow(keyID, now); err != nil {
		return "", err
	}
	if err := s.nonces.use(keyID, req.Nonce, now); err != nil {
		return "", err
	}
	return keyID, nil
}

// Roles that may sign each kind of request: jobs are enqueued by an admin
// or by Koji's importer (docs/api.md, "Signed requests").
var (
	builderRole  = []string{attest.RoleBuilder}
	adminRole    = []string{attest.RoleAdmin}
	enqueueRoles = []string{attest.RoleAdmin, attest.RoleImporter}
)

func (s *Server) lease(w http.ResponseWriter, r *http.Request) error {
	var b LeaseBody
	keyID, err := s.signed(w, r, ActionLease, builderRole, &b)
	if err != nil {
		return err
	}
	l, idx, err := s.svc.Lease(r.Context(), keyID, b.Arches)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, LeaseResponse{Lease: l, Index: idx})
}

func (s *Server) leaseEnd(w http.ResponseWriter, r *http.Request) error {
	var b LeaseEndBody
	keyID, err := s.signed(w, r, ActionLeaseEnd, builderRole, &b)
	if err != nil {
		return err
	}
	if id := mux.Vars(r)["id"]; id != b.LeaseID {
		return fmt.Errorf("api: lease %q in the path, %q in the request: %w", trunc(id), trunc(b.LeaseID), ErrBadParam)
	}
	idx, err := s.svc.EndLease(r.Context(), keyID, b.LeaseID, b.Reason, b.Detail)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, IndexResponse{Index: idx})
}

func (s *Server) notices(w http.ResponseWriter, r *http.Request) error {
	var b EmptyBody
	keyID, err := s.signed(w, r, ActionNotices, builderRole, &b)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, NoticesResponse{Notices: s.svc.Notices(keyID)})
}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request) error {
	var b EnqueueBody
	if _, err := s.signed(w, r, ActionEnqueue, enqueueRoles, &b); err != nil {
		return err
	}
	j, idx, err := s.svc.Enqueue(r.Context(), attest.Job{
		Build:   attest.BuildID{NVR: b.NVR, Arch: b.Arch, SRPMSHA256: b.SRPMSHA256},
		SRPMURL: b.SRPMURL,
		Wanted:  b.Wanted,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, EnqueueResponse{Job: j, Index: idx})
}

func (s *Server) enrol(w http.ResponseWriter, r *http.Request) error {
	var b EnrolBody
	if _, err := s.signed(w, r, ActionEnrol, adminRole, &b); err != nil {
		return err
	}
	v, err := attest.ParsePublicPEM([]byte(b.PublicKey))
	if err != nil {
		return err
	}
	idx, err := s.svc.Enrol(r.Context(), attest.Enrolment{
		KeyID: v.KeyID(), PublicKey: b.PublicKey, Role: b.Role,
		Operator: b.Operator, Contact: b.Contact, Team: b.Team,
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, IndexResponse{KeyID: v.KeyID(), Index: idx})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) error {
	var b RevokeBody
	if _, err := s.signed(w, r, ActionRevoke, adminRole, &b); err != nil {
		return err
	}
	idx, err := s.svc.Revoke(r.Context(), b.KeyID, b.Reason)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, IndexResponse{KeyID: b.KeyID, Index: idx})
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) error {
	var b EmptyBody
	if _, err := s.signed(w, r, ActionJobs, adminRole, &b); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, JobsResponse{Jobs: s.svc.Jobs()})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if err := s.log.Alarm(); err != nil {
		return fmt.Errorf("api: log alarm: %w: %v", ErrUnavailable, err)
	}
	return writeBytes(w, "text/plain; charset=utf-8", cacheNone, []byte("ok\n"))
}

// isLoopback reports whether a listener address is on a loopback interface.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Serve serves HTTP (or HTTPS when Config.TLSCertFile and TLSKeyFile are
// set) on ln until ctx is done, then shuts down gracefully: it stops
// accepting, lets running requests finish within ShutdownTimeout, and
// returns. It refuses plain HTTP on a non-loopback address unless
// Config.AllowPlainHTTP.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	useTLS := s.cfg.TLSCertFile != "" && s.cfg.TLSKeyFile != ""
	if !useTLS && !s.cfg.AllowPlainHTTP && !isLoopback(ln.Addr()) {
		return fmt.Errorf("api: serve on %s without TLS: %w", ln.Addr(), ErrPlainHTTP)
	}
	hs := &http.Server{
		Handler:           s.router,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		ReadTimeout:       s.cfg.ReadTimeout,
		WriteTimeout:      s.cfg.WriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelWarn),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12},
	}
	errc := make(chan error, 1)
	go func() {
		if useTLS {
			errc <- hs.ServeTLS(ln, s.cfg.TLSCertFile, s.cfg.TLSKeyFile)
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	s.cfg.Logger.Info("serving", "addr", ln.Addr().String(), "tls", useTLS)
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := hs.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	s.cfg.Logger.Info("stopped serving", "addr", ln.Addr().String())
	return nil
}
