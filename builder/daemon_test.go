package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
)

// funcBackend adapts a function to Backend.
type funcBackend func(ctx context.Context, srpm, resultDir string) error

func (f funcBackend) Build(ctx context.Context, srpm, resultDir string) error {
	return f(ctx, srpm, resultDir)
}

// writeRPMBackend "builds" by writing one file named like an RPM.
func writeRPMBackend(content string) funcBackend {
	return func(ctx context.Context, srpm, resultDir string) error {
		return os.WriteFile(filepath.Join(resultDir, "hello-1.0-1.x86_64.rpm"), []byte(content), 0o644)
	}
}

// blockBackend builds until its context ends, then reports why.
func blockBackend(started chan<- struct{}) funcBackend {
	return func(ctx context.Context, srpm, resultDir string) error {
		if started != nil {
			close(started)
		}
		<-ctx.Done()
		return context.Cause(ctx)
	}
}

func (f *fixture) status() *Status {
	f.t.Helper()
	st, err := ReadStatus(f.cfg.StateDir, 10)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// assertCleanWorkDir checks that no job directory outlived its job.
func (f *fixture) assertCleanWorkDir() {
	f.t.Helper()
	ents, err := os.ReadDir(f.cfg.WorkDir)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range ents {
		f.t.Errorf("work dir still holds %s after the job", e.Name())
	}
}

// assertLog checks that the daemon logged a line with all of the parts.
func (f *fixture) assertLog(parts ...string) {
	f.t.Helper()
	for _, line := range strings.Split(f.logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return
		}
	}
	f.t.Errorf("no log line with %q; log:\n%s", parts, f.logs.String())
}

// envelopeLeaseIDs returns the lease id each submitted envelope names.
func envelopeLeaseIDs(t *testing.T, envs [][]byte) []string {
	t.Helper()
	var ids []string
	for _, env := range envs {
		e, err := attest.Parse(env, attest.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.Value.(*attest.Attestation).LeaseID)
	}
	return ids
}

// TestEndToEndRpmbuild is the acceptance test: a builder leases a job for
// a real SRPM served over TLS, rebuilds it with the real rpmbuild backend,
// submits the signed attestation over HTTP to a log that checks the
// signature and the lease, verifies the returned inclusion proof and
// checkpoint signature, and keeps a record that survives a restart.
func TestEndToEndRpmbuild(t *testing.T) {
	f := newFixture(t)
	srpmPath := rpmtest.BuildSRPM(t, "hello.spec", nil)
	var err error
	if f.srpm, err = os.ReadFile(srpmPath); err != nil {
		t.Fatal(err)
	}
	f.cfg.Backend = BackendRpmbuild
	f.cfg.BuildPath = filepath.Join(os.TempDir(), "skyline-build-test")
	f.lease("lease-e2e", 10*time.Minute)
	f.runUntilIdle(f.daemon(nil, nil))

	subs, ended, _, entries := f.si.snapshot()
	if len(ended) != 0 {
		t.Fatalf("leases ended %v; want none. log:\n%s", ended, f.logs.String())
	}
	if len(subs) != 1 || entries != 1 {
		t.Fatalf("%d submissions, %d log entries; want 1 and 1. log:\n%s", len(subs), entries, f.logs.String())
	}
	e, err := attest.Parse(subs[0][0], attest.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	a := e.Value.(*attest.Attestation)
	var names []string
	for _, s := range a.Subjects {
		names = append(names, s.Name)
	}
	if strings.Join(names, " ") != "hello-1.0-1.x86_64.rpm hello-doc-1.0-1.noarch.rpm" || a.Backend != BackendRpmbuild || a.LeaseID != "lease-e2e" {
		t.Errorf("attested %q with backend %q lease %q", names, a.Backend, a.LeaseID)
	}
	st := f.status()
	if st.Counters.Built != 1 || st.Counters.Acknowledged != 1 || len(st.Current) != 0 || len(st.Recent) != 1 || len(st.Recent[0].Acks) != 1 {
		t.Fatalf("status %+v; want one built and acknowledged job", st)
	}
	done := st.Recent[0]
	f.assertLog("result acknowledged", "lease=lease-e2e")
	f.assertCleanWorkDir()
	t.Logf("lease to build end (download + rpmbuild) %.3fs, build end to verified acknowledgement (digest, sign, record, submit, verify) %.4fs: ratio %.5f",
		done.BuildSeconds, done.AckSeconds, done.AckSeconds/done.BuildSeconds)

	// Restart: the record is still there, and nothing is sent again.
	f.runUntilIdle(f.daemon(nil, nil))
	subs, _, _, _ = f.si.snapshot()
	if len(subs) != 1 {
		t.Errorf("the restarted daemon submitted again (%d submissions)", len(subs))
	}
	if st2 := f.status(); st2.Counters != st.Counters || len(st2.Recent) != 1 || st2.Recent[0].Acks[0].Index != done.Acks[0].Index {
		t.Errorf("after restart status %+v; want %+v", st2, st)
	}
}

// TestDaemonFaults: each fault ends in a clear log line and the right
// report to the coordinator, leaves no job record or build tree behind, and
// submits nothing.
func TestDaemonFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		srpm    string
		setup   func(f *fixture, l *attest.Lease)
		backend Backend
		reason  string
		detail  string
		logged  string
		counter func(Counters) int
	}{
		{name: "srpm digest mismatch", srpm: "ok",
			setup:  func(f *fixture, l *attest.Lease) { l.Build.SRPMSHA256 = sha([]byte("something else")) },
			reason: attest.LeaseFailed, detail: "sha256 mismatch", logged: "srpm download failed",
			counter: func(c Counters) int { return c.Failed }},
		{name: "oversized srpm", srpm: "ok" + strings.Repeat("\n", 100),
			setup:  func(f *fixture, l *attest.Lease) { f.cfg.MaxSRPMSize = 50 },
			reason: attest.LeaseFailed, detail: "larger than the size limit", logged: "srpm download failed",
			counter: func(c Counters) int { return c.Failed }},
		{name: "srpm url not https", srpm: "ok",
			setup:  func(f *fixture, l *attest.Lease) { l.SRPMURL = "http://mirror.example.org/a.src.rpm" },
			reason: attest.LeaseFailed, detail: "only allowed to a loopback host", logged: "srpm download failed",
			counter: func(c Counters) int { return c.Failed }},
		{name: "build failure", srpm: "fail",
			reason: attest.LeaseFailed, detail: "Bad exit status from /var/tmp/rpm-tmp.1234 (%build)", logged: "build failed; reporting the failure",
			counter: func(c Counters) int { return c.Failed }},
		{name: "build made no rpms", srpm: "norpms",
			reason: attest.LeaseFailed, detail: "no binary RPMs", logged: "build failed; reporting the failure",
			counter: func(c Counters) int { return c.Failed }},
		{name: "build timeout", srpm: "hang",
			setup:  func(f *fixture, l *attest.Lease) { f.cfg.BuildTimeout = 300 * time.Millisecond },
			reason: attest.LeaseAbandoned, detail: "build timed out after 300ms", logged: "build timed out",
			counter: func(c Counters) int { return c.Abandoned }},
		{name: "lease expired during build", srpm: "ok",
			setup:   func(f *fixture, l *attest.Lease) { l.Expires = time.Now().Add(300 * time.Millisecond) },
			backend: blockBackend(nil),
			reason:  attest.LeaseAbandoned, detail: "lease expired during the build", logged: "lease expired during the build",
			counter: func(c Counters) int { return c.Abandoned }},
		{name: "build over the disk cap", srpm: "ok",
			setup: func(f *fixture, l *attest.Lease) { f.cfg.MaxBuildDisk = 1 << 20 },
			backend: funcBackend(func(ctx context.Context, srpm, resultDir string) error {
				if err := os.WriteFile(filepath.Join(resultDir, "big"), bytes.Repeat([]byte{1}, 3<<20), 0o644); err != nil {
					return err
				}
				<-ctx.Done()
				return context.Cause(ctx)
			}),
			reason: attest.LeaseAbandoned, detail: "build used more than 1048576 bytes", logged: "max_build_disk",
			counter: func(c Counters) int { return c.Abandoned }},
		{name: "lease for another key", srpm: "ok",
			setup:  func(f *fixture, l *attest.Lease) { l.KeyID = "someone-else" },
			reason: attest.LeaseAbandoned, detail: ErrWrongKey.Error(), logged: "another key",
			counter: func(c Counters) int { return c.Abandoned }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.srpm = []byte(tc.srpm + "\n")
			l := f.lease("lease-1", time.Hour)
			if tc.setup != nil {
				f.si.mu.Lock()
				tc.setup(f, l)
				f.si.mu.Unlock()
			}
			f.runUntilIdle(f.daemon(tc.backend, fakeDigest))
			subs, ended, _, _ := f.si.snapshot()
			if len(subs) != 0 {
				t.Errorf("%d submissions; a fault must submit nothing", len(subs))
			}
			end, ok := ended["lease-1"]
			if !ok {
				t.Fatalf("lease not handed back; log:\n%s", f.logs.String())
			}
			if end.Reason != tc.reason || !strings.Contains(end.Detail, tc.detail) {
				t.Errorf("EndLease(%q, %q); want reason %q with %q", end.Reason, end.Detail, tc.reason, tc.detail)
			}
			f.assertLog("level=", tc.logged, "lease=lease-1")
			outcome := OutcomeAbandoned
			if tc.reason == attest.LeaseFailed {
				outcome = OutcomeFailed
			}
			if got := f.metric("skyline_builder_jobs_total", "outcome", outcome); got != 1 {
				t.Errorf("skyline_builder_jobs_total{outcome=%s} = %v; want 1", outcome, got)
			}
			st := f.status()
			if len(st.Current) != 0 || tc.counter(st.Counters) != 1 || st.Counters.Built != 0 {
				t.Errorf("status %+v", st)
			}
			f.assertCleanWorkDir()
		})
	}
}

// TestDaemonTruncatedSRPMRetried: a truncated download is retried
// FetchAttempts times with backoff, then the lease is handed back.
func TestDaemonTruncatedSRPMRetried(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("ok\n" + strings.Repeat("x", 1000))
	var requests atomic.Int64
	f.srpmSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Content-Length", "1003")
		w.Write(f.srpm[:500])
	})
	f.cfg.FetchAttempts = 3
	f.lease("lease-1", time.Hour)
	f.runUntilIdle(f.daemon(nil, fakeDigest))
	_, ended, _, _ := f.si.snapshot()
	if requests.Load() != 3 {
		t.Errorf("%d download requests; want 3", requests.Load())
	}
	if e := ended["lease-1"]; e.Reason != attest.LeaseAbandoned || !strings.Contains(e.Detail, "unexpected EOF") {
		t.Errorf("EndLease %+v; want abandoned with the truncation", e)
	}
	f.assertLog("srpm download failed", "unexpected EOF")
	f.assertCleanWorkDir()
}

// TestDaemonCoordinatorDownBacksOff counts lease requests to a failing
// coordinator over a fixed number of waits: one request per wait (no busy
// loop) and exponentially growing, capped waits.
func TestDaemonCoordinatorDownBacksOff(t *testing.T) {
	f := newFixture(t)
	f.si.failLeases = 1 << 30
	f.cfg.RetryBase, f.cfg.RetryMax = time.Second, 16*time.Second
	f.sleeper.limit = 10
	f.runUntilIdle(f.daemon(nil, fakeDigest))
	_, _, leaseCalls, _ := f.si.snapshot()
	waits := f.sleeper.Waits()
	if len(waits) != 10 || leaseCalls != 10 {
		t.Fatalf("%d lease requests over %d waits; want 10 and 10", leaseCalls, len(waits))
	}
	for i, w := range waits {
		hi := min(time.Second<<i, 16*time.Second)
		if w < hi/2 || w > hi {
			t.Errorf("wait %d = %v; want in [%v, %v]", i, w, hi/2, hi)
		}
	}
	f.assertLog("lease request failed; backing off")
}

// TestUnacknowledgedResultResubmittedAfterRestart: a receipt whose proof
// does not verify is not an acknowledgement; the signed envelopes stay in
// the state directory and a restarted daemon sends the same bytes again
// (never re-signing), which the log deduplicates into one entry.
func TestUnacknowledgedResultResubmittedAfterRestart(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("ok\n")
	f.si.tamper = 1 << 30
	f.si.failSubmits = 1
	f.cfg.SubmitAttempts = 3
	f.lease("lease-1", time.Hour)
	f.runUntilIdle(f.daemon(writeRPMBackend("first build"), fakeDigest))

	subs, ended, _, entries := f.si.snapshot()
	if len(subs) != 3 || len(ended) != 0 {
		t.Fatalf("%d submissions, ended %v; want 3 tries and no lease end", len(subs), ended)
	}
	f.assertLog("level=WARN", "submission failed, will retry")
	f.assertLog("level=ERROR", "LOG RECEIPT DOES NOT VERIFY")
	f.assertLog("kept for resubmission")
	if got := f.metric("skyline_builder_bad_receipts_total"); got != 2 {
		t.Errorf("skyline_builder_bad_receipts_total = %v; want 2", got)
	}
	st := f.status()
	if len(st.Current) != 1 || st.Current[0].Phase != PhaseSigned || st.Counters.Acknowledged != 0 || st.Counters.Built != 1 {
		t.Fatalf("status %+v; want one signed, unacknowledged job", st)
	}

	// Restart with an honest log. A different build output would give a
	// different envelope; the daemon must not rebuild or re-sign.
	f.si.mu.Lock()
	f.si.tamper = 0
	f.si.mu.Unlock()
	f.runUntilIdle(f.daemon(writeRPMBackend("a different build"), fakeDigest))
	subs2, ended, _, entries2 := f.si.snapshot()
	if len(subs2) != 4 || len(ended) != 0 {
		t.Fatalf("%d submissions, ended %v; want one more and no lease end", len(subs2), ended)
	}
	for i := 1; i < len(subs2); i++ {
		if len(subs2[i]) != 1 || !bytes.Equal(subs2[i][0], subs2[0][0]) {
			t.Fatalf("submission %d differs from the first: a resubmission must be the same bytes", i)
		}
	}
	if entries2 != entries || entries != 1 {
		t.Errorf("log has %d entries (was %d); want one: a resubmission is not a second vote", entries2, entries)
	}
	st = f.status()
	if len(st.Current) != 0 || st.Counters.Acknowledged != 1 || st.Counters.Built != 1 {
		t.Errorf("status after restart %+v; want acknowledged once, built once", st)
	}
	if got := f.metric("skyline_builder_jobs_total", "outcome", OutcomeAcknowledged); got != 1 {
		t.Errorf("skyline_builder_jobs_total{outcome=acknowledged} = %v; want 1", got)
	}
	if got := f.metric("skyline_builder_ack_seconds"); got != 1 {
		t.Errorf("skyline_builder_ack_seconds has %v samples; want 1", got)
	}
}

// TestRejectedResultIsNotRetried: a permanent rejection ends the job.
func TestRejectedResultIsNotRetried(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("ok\n")
	l := f.lease("lease-1", time.Hour)
	// The log thinks the lease already ended (say, it expired there).
	f.si.mu.Lock()
	f.si.ended[l.LeaseID] = endReq{LeaseID: l.LeaseID, Reason: attest.LeaseExpired}
	f.si.mu.Unlock()
	f.runUntilIdle(f.daemon(writeRPMBackend("x"), fakeDigest))
	subs, _, _, entries := f.si.snapshot()
	if len(subs) != 1 || entries != 0 {
		t.Errorf("%d submissions, %d entries; want 1 try and nothing logged", len(subs), entries)
	}
	f.assertLog("level=ERROR", "rejected the result for good")
	if st := f.status(); len(st.Current) != 0 || st.Counters.Abandoned != 1 {
		t.Errorf("status %+v", st)
	}
}

// TestGracefulStop: SIGTERM (cancelling Run's context) lets a build that
// finishes within stop_grace be submitted, and hands back the lease of one
// that does not.
func TestGracefulStop(t *testing.T) {
	t.Run("finishes within grace", func(t *testing.T) {
		f := newFixture(t)
		f.srpm = []byte("ok\n")
		f.cfg.StopGrace = time.Minute
		f.lease("lease-1", time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		b := funcBackend(func(bctx context.Context, srpm, resultDir string) error {
			cancel() // SIGTERM arrives mid-build
			time.Sleep(100 * time.Millisecond)
			if bctx.Err() != nil {
				return context.Cause(bctx)
			}
			return os.WriteFile(filepath.Join(resultDir, "hello-1.0-1.x86_64.rpm"), []byte("x"), 0o644)
		})
		if err := f.daemon(b, fakeDigest).Run(ctx); err != nil {
			t.Fatal(err)
		}
		subs, ended, leaseCalls, entries := f.si.snapshot()
		if len(subs) != 1 || entries != 1 || len(ended) != 0 || leaseCalls != 1 {
			t.Errorf("%d submissions, %d entries, ended %v, %d lease calls; want the build submitted and no new lease", len(subs), entries, ended, leaseCalls)
		}
		if st := f.status(); st.Counters.Acknowledged != 1 || len(st.Current) != 0 {
			t.Errorf("status %+v", st)
		}
	})
	t.Run("grace runs out", func(t *testing.T) {
		f := newFixture(t)
		f.srpm = []byte("ok\n")
		f.cfg.StopGrace = 100 * time.Millisecond
		f.lease("lease-1", time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		started := make(chan struct{})
		go func() { <-started; cancel() }()
		if err := f.daemon(blockBackend(started), fakeDigest).Run(ctx); err != nil {
			t.Fatal(err)
		}
		subs, ended, _, _ := f.si.snapshot()
		if e := ended["lease-1"]; len(subs) != 0 || e.Reason != attest.LeaseAbandoned || e.Detail != "builder shutting down" {
			t.Errorf("%d submissions, end %+v; want the lease handed back", len(subs), e)
		}
		f.assertLog("daemon stopping", "stop_grace")
		if st := f.status(); len(st.Current) != 0 || st.Counters.Abandoned != 1 {
			t.Errorf("status %+v", st)
		}
		f.assertCleanWorkDir()
	})
}

// TestPausesWhileMachineIsInUse: no lease is requested while on battery,
// while the owner's work keeps the CPU busy, or while disk is short.
func TestPausesWhileMachineIsInUse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(f *fixture)
		method string               // the Machine method whose calls drive the test
		busy   func(m *fakeMachine) // the first 3 calls: the machine is in use
		idle   func(m *fakeMachine) // then it is not
		why    string
	}{
		{"battery", nil, "OnBattery", func(m *fakeMachine) { m.battery = true }, func(m *fakeMachine) { m.battery = false }, "on battery"},
		{"cpu", func(f *fixture) { f.cfg.MaxCPUBusy = 0.5 }, "CPUTimes",
			func(m *fakeMachine) { m.busy += 90; m.total += 100 }, func(m *fakeMachine) { m.busy += 10; m.total += 100 }, "cpu 90% busy"},
		{"disk", func(f *fixture) { f.cfg.MinFreeDisk = 1 << 30 }, "FreeDisk",
			func(m *fakeMachine) { m.free = 1 << 20 }, func(m *fakeMachine) { m.free = 1 << 40 }, "below min_free_disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.setup != nil {
				tc.setup(f)
			}
			var leasesWhileBusy int
			var pausedGauge float64
			f.machine.onCall = func(m *fakeMachine, method string, n int) {
				if method != tc.method {
					return
				}
				if n <= 3 {
					tc.busy(m)
					_, _, leases, _ := f.si.snapshot()
					leasesWhileBusy += leases
					if n == 3 {
						pausedGauge = f.metric("skyline_builder_paused")
					}
				} else {
					tc.idle(m)
				}
			}
			f.runUntilIdle(f.daemon(writeRPMBackend("x"), fakeDigest))
			_, _, leaseCalls, _ := f.si.snapshot()
			if leasesWhileBusy != 0 || leaseCalls != 1 {
				t.Errorf("%d lease requests while busy, %d in all; want 0 and 1", leasesWhileBusy, leaseCalls)
			}
			f.assertLog("pausing: the machine is in use", tc.why)
			f.assertLog("resuming: the machine is idle")
			if got := f.metric("skyline_builder_paused"); got != 0 || pausedGauge != 1 {
				t.Errorf("skyline_builder_paused = %v while paused, %v after; want 1 and 0", pausedGauge, got)
			}
			// The pause polls at poll_interval, not faster.
			for _, w := range f.sleeper.Waits() {
				if w != f.cfg.PollInterval && w != time.Second {
					t.Errorf("waited %v while paused; want poll_interval %v", w, f.cfg.PollInterval)
				}
			}
		})
	}
}

// TestNoticesWarnLoudly: outlier notices are recorded once each; more
// than one makes the daemon warn and status show what to check.
func TestNoticesWarnLoudly(t *testing.T) {
	f := newFixture(t)
	b := attest.BuildID{NVR: "hello-1.0-1", Arch: "x86_64", SRPMSHA256: strings.Repeat("a", 64)}
	f.si.notices = []Notice{
		{Index: 10, Kind: NoticeAgreed, Build: b, At: time.Now()},
		{Index: 11, Kind: NoticeOutlier, Build: b, ResultSet: "ours1", Expected: "theirs1", At: time.Now()},
	}
	d := f.daemon(writeRPMBackend("x"), fakeDigest)
	ctx := context.Background()
	if err := d.CheckNotices(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(f.logs.String(), "OUTLIER MORE THAN ONCE") {
		t.Errorf("warned after one outlier")
	}
	if st := f.status(); st.Warning != "" || st.Counters.Outliers != 1 {
		t.Errorf("status after one outlier %+v", st)
	}
	f.si.mu.Lock()
	f.si.notices = append(f.si.notices,
		// Another witness's verdict on the same result: the same judgement.
		Notice{Index: 13, Kind: NoticeOutlier, Build: b, ResultSet: "ours1", Expected: "theirs1", At: time.Now()})
	f.si.mu.Unlock()
	if err := d.CheckNotices(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(f.logs.String(), "OUTLIER MORE THAN ONCE") {
		t.Errorf("warned after one outlier judgement repeated by a second verdict")
	}
	f.si.mu.Lock()
	f.si.notices = append(f.si.notices, Notice{Index: 12, Kind: NoticeOutlier, Build: b, ResultSet: "ours2", Expected: "theirs2", At: time.Now()})
	f.si.mu.Unlock()
	for range 2 { // the second fetch repeats every notice: counted once
		if err := d.CheckNotices(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f.assertLog("level=WARN", "OUTLIER MORE THAN ONCE", "broken hardware", "compromise", "outliers_total=2")
	st := f.status()
	if st.Counters.Outliers != 2 || st.Counters.Agreed != 1 || len(st.Notices) != 3 || st.Warning != OutlierWarning {
		t.Errorf("status %+v; want 2 outliers, 1 agreed, 3 notices and the warning", st)
	}
	var text bytes.Buffer
	if err := st.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text.String(), "WARNING: "+OutlierWarning) || !strings.Contains(text.String(), "agreed: 1  outliers: 2") {
		t.Errorf("status text:\n%s", text.String())
	}
	js, err := json.Marshal(st)
	if err != nil || !bytes.Contains(js, []byte(`"outliers":2`)) {
		t.Errorf("status json %s, %v", js, err)
	}
}

func TestStatusNeedsAStateDir(t *testing.T) {
	if _, err := ReadStatus(filepath.Join(t.TempDir(), "missing"), 10); !errors.Is(err, ErrState) {
		t.Errorf("ReadStatus(missing dir) = %v; want ErrState", err)
	}
}

func TestEnrollRequest(t *testing.T) {
	f := newFixture(t)
	r, err := NewEnrollRequest(f.signer, "Alice Example", "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	v, err := attest.ParsePublicPEM([]byte(r.PublicKey))
	if err != nil || v.KeyID() != r.KeyID || r.KeyID != f.signer.KeyID() || r.Role != attest.RoleBuilder {
		t.Errorf("enroll request %+v does not describe the key (%v)", r, err)
	}
	for _, bad := range [][2]string{{"", "a@b"}, {"Alice", ""}, {"Alice\nEvil", "a@b"}, {strings.Repeat("x", 300), "a@b"}} {
		if _, err := NewEnrollRequest(f.signer, bad[0], bad[1]); !errors.Is(err, ErrConfig) {
			t.Errorf("NewEnrollRequest(%q, %q) = %v; want ErrConfig", bad[0], bad[1], err)
		}
	}
}

// TestSRPMServedOverLoopbackHTTP: plain http works to loopback only (the
// demo), and the lease's digest still gates the build.
func TestSRPMServedOverLoopbackHTTP(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("ok\n")
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(f.srpm) }))
	defer plain.Close()
	l := f.lease("lease-1", time.Hour)
	f.si.mu.Lock()
	l.SRPMURL = plain.URL + "/hello.src.rpm"
	f.si.mu.Unlock()
	f.runUntilIdle(f.daemon(writeRPMBackend("x"), fakeDigest))
	if st := f.status(); st.Counters.Acknowledged != 1 {
		t.Errorf("status %+v; log:\n%s", st, f.logs.String())
	}
}

// TestJobsRunConcurrentlyOnlyWhenConfigured: with jobs = 2 two builds run
// at the same time; with the default of 1 they never overlap.
func TestJobsRunConcurrentlyOnlyWhenConfigured(t *testing.T) {
	for _, jobs := range []int{1, 2} {
		t.Run(strconv.Itoa(jobs), func(t *testing.T) {
			f := newFixture(t)
			f.srpm = []byte("ok\n")
			f.cfg.Jobs = jobs
			f.lease("lease-a", time.Hour)
			f.lease("lease-b", time.Hour)
			var running, most atomic.Int32
			both := make(chan struct{})
			var once sync.Once
			b := funcBackend(func(ctx context.Context, srpm, resultDir string) error {
				n := running.Add(1)
				defer running.Add(-1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				if n == 2 {
					once.Do(func() { close(both) })
				}
				// Hold the build long enough for a second one to start, if
				// the daemon would start it. With jobs = 2 the second one
				// must come: wait long, so a loaded machine is no failure.
				hold := 300 * time.Millisecond
				if jobs == 2 {
					hold = 20 * time.Second
				}
				select {
				case <-both:
				case <-time.After(hold):
				}
				return os.WriteFile(filepath.Join(resultDir, "hello-1.0-1.x86_64.rpm"), []byte(resultDir), 0o644)
			})
			f.runUntilIdle(f.daemon(b, fakeDigest))
			if int(most.Load()) != jobs {
				t.Errorf("at most %d builds ran at once; want %d", most.Load(), jobs)
			}
			if st := f.status(); st.Counters.Acknowledged != 2 {
				t.Errorf("status %+v; want both jobs acknowledged", st)
			}
		})
	}
}

// TestEmptyLeaseIsAnError: a lease without an id is a coordinator fault,
// backed off from like any other, and nothing is recorded or built.
func TestEmptyLeaseIsAnError(t *testing.T) {
	f := newFixture(t)
	f.srpm = []byte("ok\n")
	f.lease("", time.Hour)
	f.sleeper.limit = 1
	f.runUntilIdle(f.daemon(writeRPMBackend("x"), fakeDigest))
	f.assertLog("lease request failed; backing off", "without a lease id")
	if st := f.status(); len(st.Current) != 0 || st.Counters != (Counters{}) {
		t.Errorf("status %+v; want nothing recorded", st)
	}
}

// TestCorruptStateIsReported: a job record that does not parse stops the
// daemon at start with an error naming the file, rather than guessing.
func TestCorruptStateIsReported(t *testing.T) {
	f := newFixture(t)
	d := f.daemon(writeRPMBackend("x"), fakeDigest)
	bad := filepath.Join(f.cfg.StateDir, "jobs", "0123.json")
	if err := os.WriteFile(bad, []byte(`{"lease": {"lease_id": 7`), 0o600); err != nil {
		t.Fatal(err)
	}
	err := d.Run(context.Background())
	if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Run = %v; want ErrState naming %s", err, bad)
	}
	if _, err := ReadStatus(f.cfg.StateDir, 10); !errors.Is(err, ErrState) {
		t.Errorf("ReadStatus = %v; want ErrState", err)
	}
	if _, _, leaseCalls, _ := f.si.snapshot(); leaseCalls != 0 {
		t.Errorf("%d lease requests from a daemon with a corrupt state", leaseCalls)
	}
}
