package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
)

// Why a build's context ended (context.Cause).
var (
	ErrLeaseExpired = errors.New("lease expired")
	ErrStopping     = errors.New("daemon stopping")
	ErrDiskCap      = errors.New("build disk cap exceeded")
	ErrWrongKey     = errors.New("lease is for another key")
)

// AttestFunc signs the attestations of one build: attest.NewAttestations
// with the builder's signer (see SignerAttester).
type AttestFunc func(b attest.Build, rpms []rpm.Digest) ([][]byte, error)

// SignerAttester returns the AttestFunc that signs with s.
func SignerAttester(s *attest.Signer) AttestFunc {
	return func(b attest.Build, rpms []rpm.Digest) ([][]byte, error) {
		return attest.NewAttestations(b, rpms, s)
	}
}

// Deps are the daemon's collaborators. Coordinator, Attest, KeyID and
// LogKey are required; the rest default to the real thing.
type Deps struct {
	Coordinator Coordinator
	Attest      AttestFunc
	// KeyID is the builder key's id; leases for other keys are refused.
	KeyID string
	// LogKey verifies the log's checkpoints (see LogVerifier).
	LogKey    note.Verifier
	LogOrigin string
	// Backend defaults to NewBackend(cfg).
	Backend Backend
	// Machine defaults to ProcMachine{}.
	Machine Machine
	// HTTPClient downloads SRPMs; defaults to a client with a 30s
	// connection timeout and no overall timeout (SRPMs can be large).
	HTTPClient *http.Client
	// Digest defaults to rpm.DigestDir.
	Digest func(dir string) ([]rpm.Digest, error)
	Now    func() time.Time
	Sleep  Sleeper
	Logger *slog.Logger
	// Registerer, when set, receives the daemon's Prometheus metrics.
	Registerer prometheus.Registerer
}

// NewBackend returns the backend cfg names.
func NewBackend(cfg Config) Backend {
	child := Child{Path: cfg.Path, LogTail: cfg.LogTail}
	if cfg.Backend == BackendRpmbuild {
		return &Rpmbuild{BuildPath: cfg.BuildPath, UserNamespace: os.Geteuid() != 0, Hide: []string{cfg.Key}, Child: child}
	}
	return &Mock{Chroot: cfg.Chroot, Args: cfg.MockArgs, Child: child}
}

// Daemon is the volunteer build daemon.
type Daemon struct {
	cfg   Config
	deps  Deps
	state *State
	fetch *Fetcher
	log   *slog.Logger
	m     *metrics

	mu      sync.Mutex
	busy    map[string]bool // lease ids a worker is handling
	retryAt map[string]time.Time
	paused  string // why leasing is paused, "" when not
	cpuPrev [2]uint64
	cpuOK   bool
}

// New checks the configuration and opens the state directory.
func New(cfg Config, deps Deps) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Coordinator == nil || deps.Attest == nil || deps.KeyID == "" || deps.LogKey == nil {
		return nil, fmt.Errorf("builder: coordinator, attest, key id and log key are required: %w", ErrConfig)
	}
	if deps.LogOrigin == "" {
		deps.LogOrigin = deps.LogKey.Name()
	}
	if deps.Backend == nil {
		deps.Backend = NewBackend(cfg)
	}
	if deps.Machine == nil {
		deps.Machine = ProcMachine{}
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		}}
	}
	if deps.Digest == nil {
		deps.Digest = rpm.DigestDir
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Sleep == nil {
		deps.Sleep = SleepContext
	}
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	st, err := OpenState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("builder: metrics: %w", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("builder: work dir: %w", err)
	}
	return &Daemon{
		cfg:   cfg,
		deps:  deps,
		state: st,
		fetch: &Fetcher{
			Client:   deps.HTTPClient,
			MaxSize:  cfg.MaxSRPMSize,
			Attempts: cfg.FetchAttempts,
			Backoff:  Backoff{Base: cfg.RetryBase, Max: cfg.RetryMax},
			Sleep:    deps.Sleep,
		},
		log:     deps.Logger.With("component", "builder"),
		m:       m,
		busy:    map[string]bool{},
		retryAt: map[string]time.Time{},
	}, nil
}

// State returns the daemon's state directory.
func (d *Daemon) State() *State { return d.state }

// Run runs the daemon until ctx is cancelled (SIGTERM): Jobs workers each
// resume unfinished jobs from the state directory, then lease, build,
// attest and submit; a notice poller watches for outlier reports. When ctx
// ends, running builds get StopGrace to finish and submit; after that they
// are killed and their leases handed back. Run returns when every worker
// has stopped.
func (d *Daemon) Run(ctx context.Context) error {
	jobs, err := d.state.Jobs()
	if err != nil {
		return err
	}
	if len(jobs) > 0 {
		d.log.Info("resuming jobs from the state directory", "jobs", len(jobs))
	}
	var wg sync.WaitGroup
	for i := range d.cfg.Jobs {
		wg.Go(func() { d.worker(ctx, i) })
	}
	wg.Go(func() { d.pollNotices(ctx) })
	wg.Wait()
	return nil
}

// worker is one job slot.
func (d *Daemon) worker(ctx context.Context, slot int) {
	failures := 0
	for ctx.Err() == nil {
		// Unfinished work first: a restart resumes it, and signed results
		// whose submission failed are retried.
		if rec := d.claimPending(); rec != nil {
			d.process(ctx, rec)
			d.release(rec.Lease.LeaseID)
			continue
		}
		if why := d.pauseReason(ctx); why != "" {
			d.setPaused(why)
			if d.deps.Sleep(ctx, d.cfg.PollInterval) != nil {
				return
			}
			continue
		}
		d.setPaused("")
		lease, err := d.deps.Coordinator.Lease(ctx)
		if err == nil && (lease == nil || lease.LeaseID == "") {
			err = fmt.Errorf("builder: the coordinator answered a lease request without a lease id")
		}
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrNoWork):
			failures = 0
			if d.deps.Sleep(ctx, d.cfg.PollInterval) != nil {
				return
			}
			continue
		case err != nil:
			delay := Backoff{d.cfg.RetryBase, d.cfg.RetryMax}.Delay(failures)
			failures++
			d.log.Warn("lease request failed; backing off", "slot", slot, "err", err, "retry_in", delay.Round(time.Millisecond))
			if d.deps.Sleep(ctx, delay) != nil {
				return
			}
			continue
		}
		failures = 0
		rec := &JobRecord{Lease: *lease, Phase: PhaseLeased, Started: d.deps.Now(), Backend: d.cfg.Backend}
		d.claim(lease.LeaseID)
		if err := d.state.PutJob(rec); err != nil {
			d.log.Error("cannot record the lease; handing it back", "lease", lease.LeaseID, "err", err)
			d.endLease(ctx, rec, attest.LeaseAbandoned, "builder state directory not writable", time.Time{})
			d.release(lease.LeaseID)
			if d.deps.Sleep(ctx, d.cfg.PollInterval) != nil {
				return
			}
			continue
		}
		d.log.Info("leased", "slot", slot, "lease", lease.LeaseID, "nvr", lease.Build.NVR, "arch", lease.Build.Arch, "expires", lease.Expires)
		d.process(ctx, rec)
		d.release(lease.LeaseID)
	}
}

func (d *Daemon) claim(id string) {
	d.mu.Lock()
	d.busy[id] = true
	d.mu.Unlock()
}

func (d *Daemon) release(id string) {
	d.mu.Lock()
	delete(d.busy, id)
	d.mu.Unlock()
}

// claimPending returns a recorded job that no worker handles and whose
// retry time has come, marking it busy.
func (d *Daemon) claimPending() *JobRecord {
	jobs, err := d.state.Jobs()
	if err != nil {
		d.log.Error("cannot read the state directory", "err", err)
		return nil
	}
	now := d.deps.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range jobs {
		id := r.Lease.LeaseID
		if d.busy[id] || now.Before(d.retryAt[id]) {
			continue
		}
		d.busy[id] = true
		return r
	}
	return nil
}

func (d *Daemon) setPaused(why string) {
	d.mu.Lock()
	prev := d.paused
	d.paused = why
	d.mu.Unlock()
	if why != "" {
		d.m.paused.Set(1)
	} else {
		d.m.paused.Set(0)
	}
	switch {
	case why != "" && prev == "":
		d.log.Info("pausing: the machine is in use", "why", why)
	case why == "" && prev != "":
		d.log.Info("resuming: the machine is idle")
	}
}

// pauseReason says why no job should be leased now, or "".
func (d *Daemon) pauseReason(ctx context.Context) string {
	m := d.deps.Machine
	if d.cfg.PauseOnBattery {
		on, err := m.OnBattery()
		if err != nil {
			d.log.Warn("cannot read the power supply", "err", err)
		} else if on {
			return "on battery"
		}
	}
	free, err := m.FreeDisk(d.cfg.WorkDir)
	if err != nil {
		return fmt.Sprintf("cannot measure free disk: %v", err)
	}
	if free < d.cfg.MinFreeDisk {
		return fmt.Sprintf("%d MiB free in %s, below min_free_disk", free>>20, d.cfg.WorkDir)
	}
	if d.cfg.MaxCPUBusy < 1 {
		frac, err := d.cpuBusy(ctx)
		if err != nil {
			d.log.Warn("cannot read cpu times", "err", err)
		} else if frac > d.cfg.MaxCPUBusy {
			return fmt.Sprintf("cpu %.0f%% busy, above max_cpu_busy", frac*100)
		}
	}
	return ""
}

// cpuBusy is the share of CPU time spent on work at nice <= 0 since the
// previous call (or over the last second on the first call).
func (d *Daemon) cpuBusy(ctx context.Context) (float64, error) {
	d.mu.Lock()
	prev, ok := d.cpuPrev, d.cpuOK
	d.mu.Unlock()
	if !ok {
		b, t, err := d.deps.Machine.CPUTimes()
		if err != nil {
			return 0, err
		}
		prev = [2]uint64{b, t}
		if err := d.deps.Sleep(ctx, time.Second); err != nil {
			return 0, err
		}
	}
	b, t, err := d.deps.Machine.CPUTimes()
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	d.cpuPrev, d.cpuOK = [2]uint64{b, t}, true
	d.mu.Unlock()
	if t <= prev[1] || b < prev[0] {
		return 0, nil
	}
	return float64(b-prev[0]) / float64(t-prev[1]), nil
}

// jobDir is a job's scratch directory, named by a hash of the lease id.
func (d *Daemon) jobDir(leaseID string) string {
	h := sha256.Sum256([]byte(leaseID))
	return filepath.Join(d.cfg.WorkDir, "job-"+hex.EncodeToString(h[:8]))
}

// process takes one recorded job as far as it goes.
func (d *Daemon) process(ctx context.Context, rec *JobRecord) {
	l := d.log.With("lease", rec.Lease.LeaseID, "nvr", rec.Lease.Build.NVR, "arch", rec.Lease.Build.Arch)
	if rec.Phase == PhaseLeased {
		if !d.build(ctx, rec, l) {
			return
		}
	}
	d.submit(ctx, rec, l)
}

// jobContext is the context a job runs under: it outlives ctx by
// StopGrace, so a SIGTERM lets a running build finish.
func (d *Daemon) jobContext(ctx context.Context) (context.Context, context.CancelCauseFunc) {
	jctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(d.cfg.StopGrace, func() { cancel(ErrStopping) })
		context.AfterFunc(jctx, func() { t.Stop() })
	})
	return jctx, func(cause error) {
		stop()
		cancel(cause)
	}
}

// build downloads, builds, digests and signs; it reports whether the job
// reached PhaseSigned. Every other ending hands the lease back.
func (d *Daemon) build(ctx context.Context, rec *JobRecord, l *slog.Logger) bool {
	lease := &rec.Lease
	now := d.deps.Now()
	if lease.KeyID != d.deps.KeyID {
		l.Error("refusing a lease made out to another key", "lease_key", lease.KeyID, "our_key", d.deps.KeyID)
		d.endLease(ctx, rec, attest.LeaseAbandoned, ErrWrongKey.Error(), now)
		return false
	}
	if !now.Before(lease.Expires) {
		l.Warn("lease expired before its build started; handing it back", "expired", lease.Expires)
		d.endLease(ctx, rec, attest.LeaseAbandoned, "lease expired before the build started (builder restarted late)", now)
		return false
	}
	dir := d.jobDir(lease.LeaseID)
	// A crash may have left a half-built tree; start clean, and clean up
	// after every job whatever its outcome.
	if KillStaleBuild(dir) {
		l.Warn("killed what was left of this job's build from before the restart")
	}
	_ = os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	results := filepath.Join(dir, "results")
	if err := os.MkdirAll(results, 0o755); err != nil {
		l.Error("cannot make the job directory", "err", err)
		d.endLease(ctx, rec, attest.LeaseAbandoned, "builder work directory not writable", now)
		return false
	}

	jctx, cancel := d.jobContext(ctx)
	defer cancel(nil)
	jctx, cancelT := context.WithTimeoutCause(jctx, d.cfg.BuildTimeout, ErrBuildTimeout)
	defer cancelT()
	// The lease deadline is on the coordinator's clock, read with ours.
	jctx, cancelL := context.WithDeadlineCause(jctx, lease.Expires, ErrLeaseExpired)
	defer cancelL()
	go d.watchDisk(jctx, dir, cancel)

	srpm := filepath.Join(dir, "job.src.rpm")
	if err := d.fetch.Fetch(jctx, lease.SRPMURL, lease.Build.SRPMSHA256, srpm); err != nil {
		err = d.withCause(jctx, err)
		reason := attest.LeaseAbandoned
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrURL) {
			reason = attest.LeaseFailed // the job itself is bad: no builder can build it
		}
		l.Error("srpm download failed; handing the lease back", "reason", reason, "err", err)
		d.endLease(ctx, rec, reason, "srpm: "+err.Error(), d.deps.Now())
		return false
	}
	started := d.deps.Now()
	l.Info("building", "backend", d.cfg.Backend)
	err := d.deps.Backend.Build(jctx, srpm, results)
	finished := d.deps.Now()
	if err != nil {
		err = d.withCause(jctx, err)
		var be *BuildError
		switch {
		case errors.As(err, &be):
			l.Error("build failed; reporting the failure", "status", be.Status, "err", err, "seconds", finished.Sub(started).Seconds())
			d.endLease(ctx, rec, attest.LeaseFailed, fmt.Sprintf("%v\n%s", err, be.Tail), finished)
		case errors.Is(err, ErrBuildTimeout):
			l.Error("build timed out; killed it and handing the lease back", "timeout", d.cfg.BuildTimeout)
			d.endLease(ctx, rec, attest.LeaseAbandoned, fmt.Sprintf("build timed out after %s", d.cfg.BuildTimeout), finished)
		case errors.Is(err, ErrLeaseExpired):
			l.Error("lease expired during the build; stopped it and handing the lease back", "expired", lease.Expires)
			d.endLease(ctx, rec, attest.LeaseAbandoned, "lease expired during the build", finished)
		case errors.Is(err, ErrStopping):
			l.Warn("daemon stopping: build not finished within stop_grace; handing the lease back", "stop_grace", d.cfg.StopGrace)
			d.endLease(ctx, rec, attest.LeaseAbandoned, "builder shutting down", finished)
		case errors.Is(err, ErrDiskCap):
			l.Error("build exceeded max_build_disk; stopped it and handing the lease back", "max_build_disk", d.cfg.MaxBuildDisk)
			d.endLease(ctx, rec, attest.LeaseAbandoned, fmt.Sprintf("build used more than %d bytes of disk", d.cfg.MaxBuildDisk), finished)
		default:
			l.Error("build could not run; handing the lease back", "err", err)
			d.endLease(ctx, rec, attest.LeaseAbandoned, "builder error: "+err.Error(), finished)
		}
		return false
	}
	digests, err := d.deps.Digest(results)
	if err == nil && len(digests) == 0 {
		err = ErrNoRPMs
	}
	if err != nil {
		l.Error("cannot digest the built RPMs; reporting a failed build", "err", err)
		d.endLease(ctx, rec, attest.LeaseFailed, "digest: "+err.Error(), finished)
		return false
	}
	if !d.deps.Now().Before(lease.Expires) {
		l.Error("lease expired before the result was signed; handing the lease back", "expired", lease.Expires)
		d.endLease(ctx, rec, attest.LeaseAbandoned, "lease expired during the build", finished)
		return false
	}
	b := attest.Build{
		ID:       lease.Build,
		SRPMURL:  lease.SRPMURL,
		Backend:  d.cfg.Backend,
		Chroot:   d.chroot(),
		LeaseID:  lease.LeaseID,
		Started:  started.UTC(),
		Finished: finished.UTC(),
	}
	envs, err := d.deps.Attest(b, digests)
	if err != nil {
		l.Error("cannot sign the attestation; handing the lease back", "err", err)
		d.endLease(ctx, rec, attest.LeaseAbandoned, "builder could not sign: "+err.Error(), finished)
		return false
	}
	rec.Phase = PhaseSigned
	rec.Built = finished
	rec.RPMs = len(digests)
	rec.Envelopes = envs
	// Durable before the first submission: from here on only these bytes
	// are ever sent for this lease.
	if err := d.state.PutJob(rec); err != nil {
		l.Error("cannot record the signed result; handing the lease back", "err", err)
		d.endLease(ctx, rec, attest.LeaseAbandoned, "builder state directory not writable", finished)
		return false
	}
	_ = d.state.UpdateStats(d.deps.Now(), func(s *Stats) { s.Counters.Built++ })
	l.Info("built and signed", "rpms", len(digests), "envelopes", len(envs), "seconds", finished.Sub(started).Seconds())
	return true
}

func (d *Daemon) chroot() string {
	if d.cfg.Backend == BackendMock {
		return d.cfg.Chroot
	}
	return ""
}

// withCause adds the context's cause to an error that ended because the
// context did, so errors.Is sees ErrBuildTimeout and the rest.
func (d *Daemon) withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// watchDisk stops the build when its directory grows past MaxBuildDisk.
func (d *Daemon) watchDisk(ctx context.Context, dir string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(d.cfg.DiskCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := diskUsage(dir)
		if err == nil && n > d.cfg.MaxBuildDisk {
			cancel(ErrDiskCap)
			return
		}
	}
}

// submit sends the recorded envelopes until a receipt verifies, up to
// SubmitAttempts times; the record stays for a later retry otherwise.
func (d *Daemon) submit(ctx context.Context, rec *JobRecord, l *slog.Logger) {
	jctx, cancel := d.jobContext(ctx)
	defer cancel(nil)
	backoff := Backoff{d.cfg.RetryBase, d.cfg.RetryMax}
	for attempt := 0; attempt < d.cfg.SubmitAttempts; attempt++ {
		if attempt > 0 {
			if d.deps.Sleep(jctx, backoff.Delay(attempt-1)) != nil {
				break
			}
		}
		rec.Attempts++
		receipt, err := d.deps.Coordinator.Submit(jctx, rec.Envelopes)
		var acks []Ack
		if err == nil {
			acks, err = VerifyReceipt(rec.Envelopes, receipt, d.deps.LogKey, d.deps.LogOrigin)
			if err != nil {
				// Loud: the log answered but its answer does not prove
				// inclusion. Either it is broken or it is lying.
				l.Error("LOG RECEIPT DOES NOT VERIFY: submission not acknowledged, will resubmit", "err", err)
				d.m.badProofs.Inc()
			}
		} else if errors.Is(err, ErrRejected) {
			l.Error("the log rejected the result for good", "err", err)
			d.finish(rec, Done{Outcome: OutcomeAbandoned, Detail: "rejected by the log: " + err.Error()})
			return
		} else {
			l.Warn("submission failed, will retry", "attempt", attempt+1, "err", err)
		}
		if err == nil {
			now := d.deps.Now()
			d.m.build.Observe(rec.Built.Sub(rec.Started).Seconds())
			d.m.ack.Observe(now.Sub(rec.Built).Seconds())
			d.finish(rec, Done{
				Outcome:      OutcomeAcknowledged,
				Acks:         acks,
				BuildSeconds: rec.Built.Sub(rec.Started).Seconds(),
				AckSeconds:   now.Sub(rec.Built).Seconds(),
			})
			l.Info("result acknowledged: inclusion proven against a signed checkpoint",
				"index", acks[0].Index, "tree_size", acks[0].TreeSize, "ack_seconds", now.Sub(rec.Built).Seconds())
			return
		}
		rec.LastError = err.Error()
	}
	// Keep the signed envelopes; resubmit the same bytes later.
	if err := d.state.PutJob(rec); err != nil {
		l.Error("cannot update the job record", "err", err)
	}
	d.mu.Lock()
	d.retryAt[rec.Lease.LeaseID] = d.deps.Now().Add(d.cfg.RetryMax)
	d.mu.Unlock()
	l.Warn("result not acknowledged yet; kept for resubmission", "attempts", rec.Attempts, "retry_after", d.cfg.RetryMax)
}

// endLease reports a lease handed back and closes the job's record.
func (d *Daemon) endLease(ctx context.Context, rec *JobRecord, reason, detail string, finished time.Time) {
	detail = LeaseDetail(detail)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := d.deps.Coordinator.EndLease(cctx, rec.Lease.LeaseID, reason, detail); err != nil {
		// The coordinator expires the lease by itself; nothing is lost.
		d.log.Warn("could not report the lease's end; it will expire on its own", "lease", rec.Lease.LeaseID, "reason", reason, "err", err)
	}
	outcome := OutcomeAbandoned
	if reason == attest.LeaseFailed {
		outcome = OutcomeFailed
	}
	summary, _, _ := strings.Cut(detail, " | ")
	done := Done{Outcome: outcome, Detail: summary}
	if !finished.IsZero() {
		done.BuildSeconds = finished.Sub(rec.Started).Seconds()
	}
	d.finish(rec, done)
}

// finish moves a job from the jobs directory to the history.
func (d *Daemon) finish(rec *JobRecord, done Done) {
	d.m.jobs.WithLabelValues(done.Outcome).Inc()
	done.LeaseID = rec.Lease.LeaseID
	done.Build = rec.Lease.Build
	done.Started = rec.Started
	done.Finished = d.deps.Now()
	err := d.state.UpdateStats(done.Finished, func(s *Stats) {
		switch done.Outcome {
		case OutcomeAcknowledged:
			s.Counters.Acknowledged++
		case OutcomeFailed:
			s.Counters.Failed++
		default:
			s.Counters.Abandoned++
		}
		s.Recent = append(s.Recent, done)
	})
	if err != nil {
		d.log.Error("cannot update stats", "err", err)
	}
	if err := d.state.DeleteJob(rec.Lease.LeaseID); err != nil {
		d.log.Error("cannot remove the job record", "lease", rec.Lease.LeaseID, "err", err)
	}
	d.mu.Lock()
	delete(d.retryAt, rec.Lease.LeaseID)
	d.mu.Unlock()
}

// MaxLeaseDetail is the most a lease end's detail may hold: the
// coordinator logs it in a LeaseEnd entry and refuses more than 1024 bytes
// or any control character.
const MaxLeaseDetail = 1024

// LeaseDetail makes a lease end's detail from a message whose first line
// says what happened and whose other lines are the end of a build log:
// line breaks become " | ", other control characters spaces, and when it is
// too long the first line is kept (up to 256 bytes) with as much of the end
// of the log as fits.
func LeaseDetail(msg string) string {
	clean := func(s string) string {
		s = strings.ToValidUTF8(s, "?")
		var b strings.Builder
		for _, r := range strings.TrimRight(s, "\n") {
			switch {
			case r == '\n':
				b.WriteString(" | ")
			case unicode.IsControl(r):
				b.WriteByte(' ')
			default:
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	head, tail, _ := strings.Cut(msg, "\n")
	head = clean(head)
	if len(head) > 256 {
		head = truncUTF8(head, 256)
	}
	out := head
	if tail = clean(tail); tail != "" {
		out += " | " + tail
	}
	if len(out) <= MaxLeaseDetail {
		return out
	}
	room := MaxLeaseDetail - len(head) - len(" | ...")
	cut := len(tail) - room
	for cut < len(tail) && !utf8.RuneStart(tail[cut]) {
		cut++
	}
	return head + " | ..." + tail[cut:]
}

// truncUTF8 cuts s to at most n bytes at a rune boundary.
func truncUTF8(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// pollNotices fetches notices every NoticeInterval, records new ones and
// warns loudly when this builder has been an outlier more than once.
func (d *Daemon) pollNotices(ctx context.Context) {
	for {
		if err := d.CheckNotices(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("cannot fetch notices", "err", err)
		}
		if d.deps.Sleep(ctx, d.cfg.NoticeInterval) != nil {
			return
		}
	}
}

// OutlierWarning is what the daemon and `skyline builder status` say when
// this builder's results were outliers more than once.
const OutlierWarning = "this builder's results disagreed with the other builders more than once: " +
	"check the machine for broken hardware (memory, disk), a modified or broken toolchain or mock chroot, " +
	"and signs of compromise; stop the daemon until you know why"

// noticeKey identifies what a notice says: one result set of one build
// judged agreed or outlier. Several witnesses, and later verdicts at larger
// tree sizes, repeat the same judgement under other log indexes; it counts
// once.
func noticeKey(n Notice) string {
	return strings.Join([]string{n.Kind, n.Build.NVR, n.Build.Arch, n.Build.SRPMSHA256, n.ResultSet}, "\x00")
}

// CheckNotices fetches the notices once and records the new ones.
func (d *Daemon) CheckNotices(ctx context.Context) error {
	ns, err := d.deps.Coordinator.Notices(ctx)
	if err != nil {
		return err
	}
	var fresh []Notice
	var outliers int
	err = d.state.UpdateStats(d.deps.Now(), func(s *Stats) {
		seen := map[string]bool{}
		for _, n := range s.Notices {
			seen[noticeKey(n)] = true
		}
		for _, n := range ns {
			if seen[noticeKey(n)] || (n.Kind != NoticeOutlier && n.Kind != NoticeAgreed) {
				continue
			}
			seen[noticeKey(n)] = true
			s.Notices = append(s.Notices, n)
			fresh = append(fresh, n)
			if n.Kind == NoticeOutlier {
				s.Counters.Outliers++
			} else {
				s.Counters.Agreed++
			}
		}
		outliers = s.Counters.Outliers
	})
	if err != nil {
		return err
	}
	for _, n := range fresh {
		if n.Kind == NoticeOutlier {
			d.m.outliers.Inc()
			d.log.Warn("a result of this builder was an outlier", "nvr", n.Build.NVR, "arch", n.Build.Arch,
				"ours", n.ResultSet, "agreed", n.Expected, "verdict_index", n.Index, "outliers_total", outliers)
			if outliers > 1 {
				d.log.Warn("OUTLIER MORE THAN ONCE: "+OutlierWarning, "outliers_total", outliers)
			}
		}
	}
	return nil
}
