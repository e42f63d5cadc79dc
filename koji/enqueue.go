package koji

// The importer: the one idempotent path from "Koji build N is complete"
// (a fedora-messaging message or the poller) to skyline's coordinator and
// log. docs/fedora.md, "The build listener", describes it.

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
)

// Errors of the importer, checked with errors.Is.
var (
	// ErrPayloadHashMismatch: a downloaded RPM's SIGMD5 (signature tag
	// 1004, the MD5 of its header and payload) is not Koji's payloadhash,
	// or its header and payload do not hash to it: the file is not the one
	// Koji built. Nothing is enqueued; an alarm line is logged.
	ErrPayloadHashMismatch = errors.New("koji: RPM does not match Koji's payloadhash")
	// ErrNVRMismatch: the message names another build than the hub has
	// under its build id (a message of another hub).
	ErrNVRMismatch = errors.New("koji: build id names another NVR on this hub")
	// ErrDownload: a download failed for good (HTTP 4xx, too large, not
	// an RPM).
	ErrDownload = errors.New("koji: download failed")
	// ErrTransient: a failure that retrying later may overcome (hub,
	// kojipkgs or skyline unreachable or failing with 5xx).
	ErrTransient = errors.New("koji: transient failure")
)

// Sink is where imports go: skyline's coordinator (rebuild jobs) and log
// (official builds).
type Sink interface {
	// Enqueue asks for rebuild jobs of b; a job that exists already is
	// success, so retries are harmless.
	Enqueue(ctx context.Context, b api.EnqueueBody) error
	// ImportOfficial logs the official build of the RPMs in o.Dir;
	// re-logging the same build returns the existing entries.
	ImportOfficial(ctx context.Context, o Official) error
}

// APISink is the Sink of a running `skyline serve`: jobs through the admin
// API, official builds through ImportOfficial (the function `skyline
// admin import-official` calls) signed with the importer key.
type APISink struct {
	Admin       *api.Client    // client signing with an admin key
	Server      *api.Client    // client to submit entries with (no key needed)
	ImporterKey *attest.Signer // enrolled with role importer
}

// Enqueue implements Sink; coord's "duplicate job" answer is success.
func (s *APISink) Enqueue(ctx context.Context, b api.EnqueueBody) error {
	_, err := s.Admin.Enqueue(ctx, b)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == "duplicate_job" {
		return nil
	}
	return err
}

// ImportOfficial implements Sink.
func (s *APISink) ImportOfficial(ctx context.Context, o Official) error {
	_, err := ImportOfficial(ctx, s.Server, s.ImporterKey, o)
	return err
}

// ImporterConfig configures an Importer. Zero fields take the defaults.
type ImporterConfig struct {
	// Hub is the Koji hub client. Required.
	Hub *Client
	// Paths lays out download URLs; Paths.Topdir is kojipkgs (Koji's
	// topurl), https://kojipkgs.fedoraproject.org for Fedora. Required.
	Paths PathInfo
	// Sink receives jobs and official builds. Required.
	Sink Sink
	// StatePath is the importer's durable state (JSON, replaced
	// atomically): the poller's checkpoint and every build id handled.
	// Required.
	StatePath string
	// WorkDir holds downloads while a build is imported. Default: the
	// directory of StatePath.
	WorkDir string
	// HTTPClient downloads from kojipkgs. Default: a client with a
	// 30-minute timeout.
	HTTPClient *http.Client
	// MaxSRPMSize and MaxRPMSize bound downloads. Defaults 4 GiB each
	// (texlive and the kernel stay well below).
	MaxSRPMSize int64
	MaxRPMSize  int64
	// Arches limits the arches jobs are enqueued for; empty: every arch
	// the build has binary RPMs for.
	Arches []string
	// NoarchArch is the arch a build whose binary RPMs are all noarch is
	// rebuilt on (the job's and the official entry's arch). Default
	// x86_64. For builds with arch-specific RPMs, the noarch RPMs belong
	// to every arch's result set, as rpmbuild produces them on every arch.
	NoarchArch string
	// SigKeys are the signing keys (Koji's lower-case short key ids) whose
	// signed copies are downloaded, in order of preference; the unsigned
	// copy is used when none is present. The skyline-rpm-v1 digest does
	// not depend on the signature, so either gives the same entry.
	SigKeys []string
	// Wanted is the results wanted per job. 0: the coordinator's default.
	Wanted int
	// Logger receives one line per build handled. Default slog.Default().
	Logger *slog.Logger
	// Metrics, when set, counts imports and keeps the checkpoint gauge.
	Metrics *ListenMetrics
}

// Importer imports Koji builds into skyline, each build id once. Safe for
// concurrent use: imports are serialized.
type Importer struct {
	cfg   ImporterConfig
	mu    sync.Mutex // serializes imports and guards state
	state *importState
}

// ImportStatus says what Import did.
type ImportStatus int

// Import statuses.
const (
	Imported       ImportStatus = iota + 1 // jobs enqueued and official builds logged
	AlreadyHandled                         // the build id was handled before: nothing done
	Skipped                                // nothing to rebuild (draft, not complete, no SRPM); recorded
	Refused                                // the files do not match Koji (alarm); recorded
)

func (s ImportStatus) String() string {
	switch s {
	case Imported:
		return "imported"
	case AlreadyHandled:
		return "already-handled"
	case Skipped:
		return "skipped"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("ImportStatus(%d)", int(s))
}

// NewImporter checks cfg and loads the state file.
func NewImporter(cfg ImporterConfig) (*Importer, error) {
	if cfg.Hub == nil || cfg.Sink == nil || cfg.Paths.Topdir == "" || cfg.StatePath == "" {
		return nil, fmt.Errorf("koji: importer needs a hub, a sink, a topdir and a state path")
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = filepath.Dir(cfg.StatePath)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Minute}
	}
	if cfg.MaxSRPMSize <= 0 {
		cfg.MaxSRPMSize = 4 << 30
	}
	if cfg.MaxRPMSize <= 0 {
		cfg.MaxRPMSize = 4 << 30
	}
	if cfg.NoarchArch == "" {
		cfg.NoarchArch = "x86_64"
	}
	for _, k := range cfg.SigKeys {
		if err := checkSigKey(k); err != nil {
			return nil, fmt.Errorf("koji: importer: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := loadImportState(cfg.StatePath)
	if err != nil {
		return nil, err
	}
	return &Importer{cfg: cfg, state: st}, nil
}

// Checkpoint returns the poller's checkpoint: builds completed after it
// are still to be listed. Zero when the poller never ran.
func (im *Importer) Checkpoint() time.Time {
	im.mu.Lock()
	defer im.mu.Unlock()
	return tsTime(im.state.Checkpoint)
}

// SetCheckpoint durably moves the poller's checkpoint forward (never back).
func (im *Importer) SetCheckpoint(t time.Time) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	ts := float64(t.UnixMicro()) / 1e6
	if ts <= im.state.Checkpoint {
		return nil
	}
	next := im.state.clone()
	next.Checkpoint = ts
	if err := next.save(im.cfg.StatePath); err != nil {
		return err
	}
	im.state = next
	im.cfg.Metrics.setCheckpoint(ts)
	return nil
}

// Handled reports whether build id was handled, and how.
func (im *Importer) Handled(id int64) (string, bool) {
	im.mu.Lock()
	defer im.mu.Unlock()
	e, ok := im.state.Done[strconv.FormatInt(id, 10)]
	return e.Outcome, ok
}

// Import imports Koji build id, once: a build id handled before (imported,
// skipped or refused) is AlreadyHandled. nvr, when not empty, is the NVR
// the announcement named; the hub's build must have it (else
// ErrNVRMismatch). source names the caller in log lines ("amqp", "poll").
// An error wrapping ErrTransient may succeed when retried; any other error
// will not, and nothing was recorded.
func (im *Importer) Import(ctx context.Context, id int64, nvr, source string) (ImportStatus, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	key := strconv.FormatInt(id, 10)
	if d, ok := im.state.Done[key]; ok {
		if nvr != "" && d.NVR != nvr {
			im.cfg.Metrics.failed(source, false)
			return 0, fmt.Errorf("koji: import build %d: the message names %s, the hub %s: %w", id, nvr, d.NVR, ErrNVRMismatch)
		}
		im.cfg.Metrics.imported(source, AlreadyHandled)
		return AlreadyHandled, nil
	}
	lg := im.cfg.Logger.With("build_id", id, "source", source)
	status, outcome, jobs, err := im.importBuild(ctx, lg, id, nvr)
	if err != nil {
		if !errors.Is(err, ErrTransient) && transient(err) {
			err = fmt.Errorf("%w: %w", ErrTransient, err)
		}
		im.cfg.Metrics.failed(source, errors.Is(err, ErrTransient))
		return 0, err
	}
	next := im.state.clone()
	next.Done[key] = doneEntry{NVR: outcome.nvr, Outcome: outcome.text, Jobs: jobs, At: time.Now().UTC()}
	if err := next.save(im.cfg.StatePath); err != nil {
		im.cfg.Metrics.failed(source, true)
		return 0, fmt.Errorf("%w: %w", ErrTransient, err)
	}
	im.state = next
	im.cfg.Metrics.imported(source, status)
	return status, nil
}

type outcome struct{ nvr, text string }

// transient classifies an error of the hub, kojipkgs or the sink.
func transient(err error) bool {
	var f *Fault
	var ae *api.Error
	var ne net.Error
	switch {
	// A cancelled import (shutdown) is retried later, never dropped.
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrTransient), errors.Is(err, context.Canceled):
		return true
	case errors.As(err, &f), errors.Is(err, ErrNoSuchBuild), errors.Is(err, ErrBadResult),
		errors.Is(err, ErrPayloadHashMismatch), errors.Is(err, ErrNVRMismatch), errors.Is(err, ErrDownload),
		errors.Is(err, ErrBadPathComponent), errors.Is(err, ErrHTTPStatus):
		return false
	case errors.As(err, &ae):
		// 401/403 (a key not enrolled, a wrong role) is our configuration,
		// not the build's fault: retried until fixed, never dropped.
		switch ae.Status {
		case http.StatusTooManyRequests, http.StatusRequestTimeout, http.StatusUnauthorized, http.StatusForbidden:
			return true
		}
		return ae.Status >= 500
	case errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	// Anything else (a transport error without an HTTP status, a local
	// file error) is retried rather than lost.
	return true
}

// job is one arch to enqueue, with the RPMs of its official result set.
type job struct {
	arch string
	rpms []RPM
}

func (im *Importer) importBuild(ctx context.Context, lg *slog.Logger, id int64, wantNVR string) (ImportStatus, outcome, []string, error) {
	b, err := im.cfg.Hub.GetBuildByID(ctx, id)
	if err != nil {
		return 0, outcome{}, nil, fmt.Errorf("koji: import build %d: %w", id, err)
	}
	lg = lg.With("nvr", b.NVR)
	if wantNVR != "" && wantNVR != b.NVR {
		return 0, outcome{}, nil, fmt.Errorf("koji: import build %d: the message names %s, the hub %s: %w", id, wantNVR, b.NVR, ErrNVRMismatch)
	}
	skip := func(why string) (ImportStatus, outcome, []string, error) {
		lg.Info("koji: build skipped", "reason", why)
		return Skipped, outcome{b.NVR, "skipped: " + why}, nil, nil
	}
	if b.State != BuildComplete {
		return skip("state " + b.State.String())
	}
	// Draft builds (Koji 1.34) are not the build that ships.
	if b.Draft {
		return skip("draft build")
	}
	rpms, err := im.cfg.Hub.ListBuildRPMs(ctx, id)
	if err != nil {
		return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %w", b.NVR, err)
	}
	srpm, err := SRPM(rpms)
	if err != nil {
		return skip("no source RPM (not an RPM build)")
	}
	jobs := im.plan(rpms)
	if len(jobs) == 0 {
		return skip("no binary RPMs for the configured arches")
	}
	dir, err := os.MkdirTemp(im.cfg.WorkDir, "import-")
	if err != nil {
		return 0, outcome{}, nil, fmt.Errorf("%w: koji: import %s: %w", ErrTransient, b.NVR, err)
	}
	defer os.RemoveAll(dir)

	srpmURL, err := im.cfg.Paths.RPMURL(b, srpm)
	if err != nil {
		return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %w", b.NVR, err)
	}
	srpmPath := filepath.Join(dir, srpm.NVRA()+".rpm")
	sum, err := im.download(ctx, srpmURL, srpmPath, im.cfg.MaxSRPMSize)
	if err != nil {
		return 0, outcome{}, nil, fmt.Errorf("koji: import %s: SRPM: %w", b.NVR, err)
	}
	if err := checkPayloadHash(srpmPath, srpm.PayloadHash); errors.Is(err, ErrTransient) {
		return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %w", b.NVR, err)
	} else if err != nil {
		lg.Error("koji: ALARM: SRPM does not match Koji's payloadhash; nothing enqueued", "url", srpmURL, "payloadhash", srpm.PayloadHash, "err", err)
		return Refused, outcome{b.NVR, "refused: SRPM payloadhash mismatch"}, nil, nil
	}
	started := tsTime(b.CreationTS)
	finished := started
	if b.CompletionTS != nil {
		finished = tsTime(*b.CompletionTS)
	}
	var done []string
	for _, j := range jobs {
		adir := filepath.Join(dir, j.arch)
		if err := os.Mkdir(adir, 0o755); err != nil {
			return 0, outcome{}, nil, fmt.Errorf("%w: koji: import %s: %w", ErrTransient, b.NVR, err)
		}
		for i := range j.rpms {
			r := &j.rpms[i]
			u, err := im.rpmURL(ctx, b, r)
			if err != nil {
				return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %s: %w", b.NVR, r.NVRA(), err)
			}
			p := filepath.Join(adir, r.NVRA()+".rpm")
			if _, err := im.download(ctx, u, p, im.cfg.MaxRPMSize); err != nil {
				return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %s: %w", b.NVR, r.NVRA(), err)
			}
			if err := checkPayloadHash(p, r.PayloadHash); errors.Is(err, ErrTransient) {
				return 0, outcome{}, nil, fmt.Errorf("koji: import %s: %w", b.NVR, err)
			} else if err != nil {
				lg.Error("koji: ALARM: RPM does not match Koji's payloadhash; nothing enqueued", "rpm", r.NVRA(), "url", u, "payloadhash", r.PayloadHash, "err", err)
				return Refused, outcome{b.NVR, "refused: " + r.NVRA() + " payloadhash mismatch"}, nil, nil
			}
		}
		bid := attest.BuildID{NVR: b.NVR, Arch: j.arch, SRPMSHA256: sum}
		// The official build first, as Koji built before skyline rebuilds.
		if err := im.cfg.Sink.ImportOfficial(ctx, Official{Build: bid, SRPMURL: srpmURL, Dir: adir, Started: started, Finished: finished}); err != nil {
			return 0, outcome{}, nil, fmt.Errorf("koji: import %s.%s: official build: %w", b.NVR, j.arch, err)
		}
		if err := im.cfg.Sink.Enqueue(ctx, api.EnqueueBody{NVR: b.NVR, Arch: j.arch, SRPMURL: srpmURL, SRPMSHA256: sum, Wanted: im.cfg.Wanted}); err != nil {
			return 0, outcome{}, nil, fmt.Errorf("koji: import %s.%s: enqueue: %w", b.NVR, j.arch, err)
		}
		done = append(done, j.arch)
		lg.Info("koji: build enqueued", "arch", j.arch, "srpm_sha256", sum, "rpms", len(j.rpms))
	}
	return Imported, outcome{b.NVR, "imported"}, done, nil
}

// plan groups the binary RPMs into jobs, one per arch (see
// ImporterConfig.NoarchArch for noarch).
func (im *Importer) plan(rpms []RPM) []job {
	byArch := map[string][]RPM{}
	var noarch []RPM
	for _, r := range rpms {
		switch r.Arch {
		case "src", "nosrc":
		case "noarch":
			noarch = append(noarch, r)
		default:
			byArch[r.Arch] = append(byArch[r.Arch], r)
		}
	}
	if len(byArch) == 0 && len(noarch) > 0 {
		byArch[im.cfg.NoarchArch] = nil
	}
	arches := make([]string, 0, len(byArch))
	for a := range byArch {
		if len(im.cfg.Arches) == 0 || slices.Contains(im.cfg.Arches, a) {
			arches = append(arches, a)
		}
	}
	sort.Strings(arches)
	jobs := make([]job, 0, len(arches))
	for _, a := range arches {
		jobs = append(jobs, job{arch: a, rpms: append(slices.Clone(byArch[a]), noarch...)})
	}
	return jobs
}

// rpmURL returns the URL of the preferred signed copy of r, or of the
// unsigned file.
func (im *Importer) rpmURL(ctx context.Context, b *Build, r *RPM) (string, error) {
	if len(im.cfg.SigKeys) > 0 {
		sigs, err := im.cfg.Hub.QueryRPMSigs(ctx, r.ID)
		if err != nil {
			return "", err
		}
		for _, want := range im.cfg.SigKeys {
			for _, s := range sigs {
				if s.SigKey == want {
					return im.cfg.Paths.SignedRPMURL(b, r, want)
				}
			}
		}
	}
	return im.cfg.Paths.RPMURL(b, r)
}

// download fetches u to path, at most max bytes, and returns the file's
// SHA-256 (lowercase hex).
func (im *Importer) download(ctx context.Context, u, path string, max int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrDownload, err)
	}
	resp, err := im.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: GET %s: %w", ErrTransient, u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
		return "", fmt.Errorf("%w: GET %s: HTTP %d", ErrTransient, u, resp.StatusCode)
	default:
		return "", fmt.Errorf("%w: GET %s: HTTP %d", ErrDownload, u, resp.StatusCode)
	}
	if resp.ContentLength > max {
		return "", fmt.Errorf("%w: GET %s: %d bytes, limit %d", ErrDownload, u, resp.ContentLength, max)
	}
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrTransient, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("%w: GET %s: %w", ErrTransient, u, err)
	}
	if n > max {
		return "", fmt.Errorf("%w: GET %s: over the %d-byte limit", ErrDownload, u, max)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// sigTagMD5 is RPMSIGTAG_MD5 (rpm tags.md): the MD5 of the main header
// and the payload, which Koji records as the RPM's payloadhash.
const sigTagMD5 = 1004

// checkPayloadHash checks that the RPM at path carries SIGMD5 == want
// (Koji's payloadhash, lowercase hex) and that its main header and payload
// really hash to it.
func checkPayloadHash(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTransient, err)
	}
	defer f.Close()
	p, err := rpm.Read(f)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPayloadHashMismatch, err)
	}
	e, ok := p.Signature.Get(sigTagMD5)
	if !ok || e.Type != rpm.TypeBin || len(e.Data) != md5.Size {
		return fmt.Errorf("%w: no SIGMD5 in the signature header", ErrPayloadHashMismatch)
	}
	got := hex.EncodeToString(e.Data)
	if got != want {
		return fmt.Errorf("%w: SIGMD5 %s, Koji's payloadhash %s", ErrPayloadHashMismatch, got, want)
	}
	// rpm format.md: the main header starts after the lead and the
	// signature header padded to 8 bytes.
	off := int64(rpm.LeadSize) + p.Signature.Size
	off += (8 - p.Signature.Size%8) % 8
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Errorf("%w: %w", ErrTransient, err)
	}
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || binary.BigEndian.Uint32(magic[:]) != 0x8eade801 {
		return fmt.Errorf("%w: no main header at offset %d", ErrPayloadHashMismatch, off)
	}
	h := md5.New()
	h.Write(magic[:])
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("%w: %w", ErrTransient, err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want {
		return fmt.Errorf("%w: header and payload hash to %s, SIGMD5 says %s", ErrPayloadHashMismatch, sum, want)
	}
	return nil
}

func tsTime(ts float64) time.Time {
	if ts == 0 {
		return time.Time{}
	}
	sec := int64(ts)
	return time.Unix(sec, int64((ts-float64(sec))*1e6)*1e3).UTC()
}
