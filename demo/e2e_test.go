package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/witness"
	"golang.org/x/mod/sumdb/tlog"
)

// The end-to-end test: the `make demo` scenario with real processes over
// real HTTP, binaries built by `go build`, then a second network in which
// four builders turn malicious and trip the circuit breaker. Every
// expectation is checked twice: through `skyline verify`, `skyline audit`
// and `skyline builder status`, and independently through the public read
// API (CheckLog: checkpoint note and cosignatures, entry bundles, hash
// tiles and inclusion proofs with sumdb/tlog, attest.Parse and the
// signers' keys), so that a role replaced by a stub fails the test.

var (
	buildOnce sync.Once
	skyline   string
	buildErr  error
	buildOut  []byte
)

// skylineBinary builds cmd/skyline once per test binary; TestMain removes
// it.
func skylineBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skyline-e2e-bin.")
		if err != nil {
			buildErr = err
			return
		}
		skyline = filepath.Join(dir, "skyline")
		cmd := exec.Command("go", "build", "-o", skyline, "./cmd/skyline")
		cmd.Dir = repoRoot(t)
		buildOut, buildErr = cmd.CombinedOutput()
	})
	if buildErr != nil {
		t.Fatalf("go build ./cmd/skyline: %v\n%s", buildErr, buildOut)
	}
	return skyline
}

func TestMain(m *testing.M) {
	code := m.Run()
	if skyline != "" {
		os.RemoveAll(filepath.Dir(skyline))
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// startNetwork starts the scenario's network in a temporary directory and
// runs it; the narration is logged when the test fails.
func startNetwork(t *testing.T, s Scenario) (*Network, *Result, error) {
	t.Helper()
	var out bytes.Buffer
	var mu sync.Mutex
	// Builds run at idle priority (nice 19, SCHED_IDLE), so they wait
	// whenever anything else wants the CPUs, other test packages included:
	// a stage that takes seconds alone took minutes beside two busy loops.
	// The limits leave room for that; both scenarios together stay within
	// make test's 14-minute timeout.
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	t.Cleanup(cancel)
	n, err := Start(ctx, Config{
		Skyline:  skylineBinary(t),
		Root:     repoRoot(t),
		Dir:      t.TempDir(),
		Scenario: s,
		Out:      syncWriter{&mu, &out},
		Timeout:  4 * time.Minute,
	})
	t.Cleanup(func() {
		n.Close()
		if t.Failed() {
			mu.Lock()
			t.Logf("narration:\n%s", out.String())
			mu.Unlock()
			for _, l := range n.Logs() {
				t.Logf("%s (tail):\n%s", filepath.Base(l), tail(l, 25))
			}
		}
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	res, err := n.Run(ctx)
	return n, res, err
}

type syncWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestDemoScenario runs `make demo`'s scenario and checks every verdict,
// mallory's notice, the audit and the log itself.
func TestDemoScenario(t *testing.T) {
	n, res, err := startNetwork(t, DemoScenario())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	mallory := builderByName(t, n, "mallory")

	// The release gate, as `skyline verify` reports it.
	want := map[string]struct {
		status string
		exit   int
	}{
		"hello-1.0-1":     {witness.VerdictReproduced, 0},
		"hello-1.1-1":     {witness.VerdictDisputed, 1},
		"hello-1.2-1":     {witness.VerdictOfficialMismatch, 1},
		"hello-1.3-1":     {witness.VerdictDisputed, 1},
		"timestamp-1.0-1": {witness.VerdictUnreproducible, 2},
	}
	for nvr, w := range want {
		runs := res.Verify[nvr]
		if len(runs) != 1 {
			t.Fatalf("%s: %d verify runs, want 1", nvr, len(runs))
		}
		r := runs[0]
		if r.Exit != w.exit || r.Report.Status != w.status {
			t.Errorf("verify %s: %s exit %d, want %s exit %d\n%s", nvr, r.Report.Status, r.Exit, w.status, w.exit, r.Output)
		}
		if !strings.HasPrefix(r.Output, nvr+": "+w.status+" (exit ") {
			t.Errorf("verify %s printed %q first", nvr, firstLine(r.Output))
		}
		if len(r.Report.Builds) != 1 || !r.Report.Builds[0].Final {
			t.Fatalf("verify %s: builds %+v, want one final build", nvr, r.Report.Builds)
		}
		if len(r.Report.Cosigners) < 2 {
			t.Errorf("verify %s: checkpoint cosigned by %v, want at least 2 witnesses", nvr, r.Report.Cosigners)
		}
	}
	// The disputed builds name mallory, and only mallory, as the outlier.
	for _, nvr := range []string{"hello-1.1-1", "hello-1.3-1"} {
		b := res.Verify[nvr][0].Report.Builds[0]
		if len(b.Outliers) != 1 || b.Outliers[0].Operator != "mallory" || b.Outliers[0].KeyID != mallory.KeyID {
			t.Errorf("verify %s: outliers %+v, want mallory's key %s alone", nvr, b.Outliers, mallory.KeyID)
		}
		if !strings.Contains(res.Verify[nvr][0].Output, "operator mallory") {
			t.Errorf("verify %s does not name mallory:\n%s", nvr, res.Verify[nvr][0].Output)
		}
	}
	if b := res.Verify["hello-1.2-1"][0].Report.Builds[0]; b.Official != witness.OfficialMismatch || len(b.OfficialDiff) != 1 || b.OfficialDiff[0].File != "hello-1.2-1."+builder.HostArch()+".rpm" {
		t.Errorf("hello-1.2-1: official %q, diff %+v; want a mismatch of the main RPM only (the %%post changed)", b.Official, b.OfficialDiff)
	}
	if b := res.Verify["hello-1.0-1"][0].Report.Builds[0]; b.Official != witness.OfficialMatch || len(b.Groups) != 1 || len(b.Groups[0].Operators) != 10 {
		t.Errorf("hello-1.0-1: official %q, groups %+v; want the official build matching one group of 10 operators", b.Official, b.Groups)
	}
	if b := res.Verify["timestamp-1.0-1"][0].Report.Builds[0]; len(b.Groups) != 10 {
		t.Errorf("timestamp-1.0-1: %d groups, want 10 (every build differs)", len(b.Groups))
	}

	// Mallory's daemon was warned, and told which builds it was an
	// outlier on; no honest builder was.
	st := res.Status["mallory"]
	if st == nil || st.Warning != builder.OutlierWarning || st.Counters.Outliers != 2 {
		t.Fatalf("mallory's status: %+v, want the outlier warning and 2 outliers (each counted once, however many witnesses judged it)", st)
	}
	var outlierOn []string
	for _, nt := range st.Notices {
		if nt.Kind == builder.NoticeOutlier && !slices.Contains(outlierOn, nt.Build.NVR) {
			outlierOn = append(outlierOn, nt.Build.NVR)
		}
	}
	slices.Sort(outlierOn)
	if !slices.Equal(outlierOn, []string{"hello-1.1-1", "hello-1.3-1"}) {
		t.Errorf("mallory was told it was an outlier on %v, want hello-1.1-1 and hello-1.3-1", outlierOn)
	}
	if !strings.HasPrefix(res.StatusText["mallory"], "WARNING: ") {
		t.Errorf("skyline builder status does not start with the warning:\n%s", res.StatusText["mallory"])
	}
	for _, b := range n.Builders {
		if s := res.Status[b.Operator]; !b.Malicious && (s == nil || s.Warning != "" || s.Counters.Outliers != 0) {
			t.Errorf("honest builder %s: status %+v, want no outlier and no warning", b.Operator, s)
		}
	}

	// The leaderboard credits the reproduced package to every builder and
	// counts mallory's two outliers, once each.
	if lb := res.Leaderboard; lb == nil || len(lb.Rows) != len(n.Builders) {
		t.Errorf("leaderboard %+v, want %d operators", lb, len(n.Builders))
	} else {
		for _, r := range lb.Rows {
			wantOut := 0
			if r.Name == "mallory" {
				wantOut = 2
			}
			if r.Results != len(want) || r.Agreed != 1 || r.Outliers != wantOut || r.Credit <= 0 {
				t.Errorf("leaderboard row %+v, want %d results, 1 agreed, %d outliers, some credit", r, len(want), wantOut)
			}
		}
	}

	// The audit replayed everything and found nothing wrong; told that
	// the witnesses tolerate one dissent, which they do not, it finds
	// their disputed verdicts differing from its recomputation.
	if res.AuditExit != 0 {
		t.Errorf("skyline audit: exit %d, want 0\n%s", res.AuditExit, res.AuditOutput)
	}
	wrong, err := n.skyline(t.Context(), "audit", "--log", n.LogURL, "--pub", "keys/log.vkey", "--coordinator", "keys/coordinator.pub", "--max-dissent", "1")
	if err != nil {
		t.Fatal(err)
	}
	if wrong.Exit != 1 || strings.Count(wrong.Stdout, witness.DiscVerdictDiffers) < 2*len(n.Witnesses) {
		t.Errorf("skyline audit --max-dissent 1: exit %d, want 1 with at least %d %s discrepancies (the disputed verdicts of each witness)\n%s", wrong.Exit, 2*len(n.Witnesses), witness.DiscVerdictDiffers, wrong.Stdout)
	}

	// The log, checked from the outside.
	cl := checkLog(t, n)
	for nvr, w := range want {
		vs := cl.VerdictsBy(nvr)
		if len(vs) != len(n.Witnesses) {
			t.Errorf("%s: verdict entries from %d witnesses, want %d", nvr, len(vs), len(n.Witnesses))
		}
		for name, v := range vs {
			if v.Verdict != w.status || v.TreeSize > cl.Size {
				t.Errorf("%s: %s's verdict entry says %s at tree size %d (checkpoint %d), want %s", nvr, name, v.Verdict, v.TreeSize, cl.Size, w.status)
			}
		}
	}
	checkBuilds(t, n, cl)
	checkOneWitnessDown(t, n)
}

// checkBuilds checks the attestations themselves: ten builders built each
// package; for hello-1.0-1 they all reached the result set that the
// test's own rebuild (the official build) digests to, so the builders
// really rebuilt; mallory's results differ exactly where it cheated.
func checkBuilds(t *testing.T, n *Network, cl *CheckedLog) {
	t.Helper()
	for _, s := range n.SRPMs {
		atts := cl.Attestations(s.NVR)
		builders := 0
		for who, a := range atts {
			if a.Build.SRPMSHA256 != s.SHA256 || a.Backend != builder.BackendRpmbuild && who != "importer" {
				t.Errorf("%s: %s's attestation is for SRPM %s backend %q", s.NVR, who, a.Build.SRPMSHA256, a.Backend)
			}
			if who != "importer" {
				builders++
			}
		}
		if builders != len(n.Builders) {
			t.Errorf("%s: attestations from %d builders, want %d", s.NVR, builders, len(n.Builders))
		}
	}
	own := ownResultSet(t, n.path("official", "hello-1.0-1"))
	for who, a := range cl.Attestations("hello-1.0-1") {
		if a.ResultSet.Digest != own {
			t.Errorf("hello-1.0-1: %s attested result set %s; the RPMs rebuilt here digest to %s", who, a.ResultSet.Digest, own)
		}
	}
	for _, nvr := range []string{"hello-1.1-1", "hello-1.3-1"} {
		atts := cl.Attestations(nvr)
		honest := atts["alice"].ResultSet.Digest
		for who, a := range atts {
			if (a.ResultSet.Digest == honest) == (who == "mallory") {
				t.Errorf("%s: %s's result set %s, alice's %s: only mallory's may differ", nvr, who, a.ResultSet.Digest, honest)
			}
		}
	}
	sets := map[string]bool{}
	for _, a := range cl.Attestations("timestamp-1.0-1") {
		sets[a.ResultSet.Digest] = true
	}
	if len(sets) != len(n.Builders) {
		t.Errorf("timestamp-1.0-1: %d distinct result sets, want %d", len(sets), len(n.Builders))
	}
}

// ownResultSet digests the RPMs of dir (skyline-rpm-v1) into a result set.
func ownResultSet(t *testing.T, dir string) string {
	t.Helper()
	ds, err := rpm.DigestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var subs []attest.Subject
	for _, d := range ds {
		subs = append(subs, attest.Subject{Name: filepath.Base(d.File), SHA256: d.SHA256, Skyline: d.Skyline})
	}
	return attest.ResultSetDigest(subs)
}

func checkLog(t *testing.T, n *Network) *CheckedLog {
	t.Helper()
	var nvrs []string
	for _, s := range n.SRPMs {
		nvrs = append(nvrs, s.NVR)
	}
	cl, err := CheckLog(t.Context(), n.LogCheck(), nvrs)
	if err != nil {
		t.Fatalf("CheckLog: %v", err)
	}
	if len(cl.Cosigners) != len(n.Witnesses) {
		t.Errorf("checkpoint cosigned by %v, want all %d witnesses", cl.Cosigners, len(n.Witnesses))
	}
	if uint64(len(cl.All)) != cl.Size {
		t.Errorf("read %d entries of a tree of %d", len(cl.All), cl.Size)
	}
	return cl
}

func builderByName(t *testing.T, n *Network, op string) Builder {
	t.Helper()
	for _, b := range n.Builders {
		if b.Operator == op {
			return b
		}
	}
	t.Fatalf("no builder %s", op)
	return Builder{}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// TestBreakerScenario: hello-1.0-1 is reproduced; then four of the ten
// builders alter hello-1.1-1, the outlier rate trips the witnesses'
// circuit breaker, they log an alarm, and `skyline verify` fails closed
// (exit 3) for both packages, the one reproduced before included.
func TestBreakerScenario(t *testing.T) {
	s := BreakerScenario()
	n, res, err := startNetwork(t, s)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	before := res.Verify["hello-1.0-1"]
	if len(before) != 2 || before[0].Exit != 0 || before[0].Report.Status != witness.VerdictReproduced {
		t.Fatalf("hello-1.0-1 before the alarm: %+v, want reproduced (exit 0) then a second run", before)
	}
	for _, nvr := range []string{"hello-1.0-1", "hello-1.1-1"} {
		runs := res.Verify[nvr]
		r := runs[len(runs)-1]
		if r.Exit != 3 || r.Report.Status != witness.StatusVerificationFailed || len(r.Report.Alarms) == 0 {
			t.Errorf("verify %s after the alarm: %s exit %d, alarms %v; want verification-failed (exit 3) naming the alarm\n%s", nvr, r.Report.Status, r.Exit, r.Report.Alarms, r.Output)
		}
		if !strings.Contains(r.Output, "ALARM at entry") {
			t.Errorf("verify %s does not show the alarm:\n%s", nvr, r.Output)
		}
	}
	if res.AuditExit != 0 {
		t.Errorf("skyline audit: exit %d, want 0 (the alarm is re-derived)\n%s", res.AuditExit, res.AuditOutput)
	}
	// One outlier each: the four are told, not warned.
	for _, op := range s.Malicious {
		if st := res.Status[op]; st == nil || st.Counters.Outliers != 1 || st.Warning != "" {
			t.Errorf("%s's status %+v, want 1 outlier and no warning", op, st)
		}
	}
	cl := checkLog(t, n)
	alarms := cl.Alarms()
	var by []string
	for _, a := range alarms {
		al := a.Entry.Value.(*attest.Alarm)
		if !strings.HasPrefix(al.Reason, witness.ReasonOutlierRate) {
			t.Errorf("alarm at %d: reason %q, want %s", a.Index, al.Reason, witness.ReasonOutlierRate)
		}
		by = append(by, a.Signer)
	}
	if len(alarms) != len(n.Witnesses) {
		t.Errorf("alarms by %v, want one per witness (%d)", by, len(n.Witnesses))
	}
	for name, v := range cl.VerdictsBy("hello-1.1-1") {
		var ops []string
		for _, o := range v.Outliers {
			ops = append(ops, o.Operator)
		}
		slices.Sort(ops)
		if v.Verdict != witness.VerdictDisputed || !slices.Equal(ops, s.Malicious) {
			t.Errorf("hello-1.1-1: %s's verdict %s with outliers %v, want disputed naming %v", name, v.Verdict, ops, s.Malicious)
		}
	}
	if got := len(cl.VerdictsBy("hello-1.1-1")); got != len(n.Witnesses) {
		t.Errorf("hello-1.1-1: verdicts of %d witnesses, want %d", got, len(n.Witnesses))
	}
}

// checkOneWitnessDown is the real-process test of gathering (issue 7):
// the network's serve was configured with every witness and gathered all
// their cosignatures (checkLog); with the last witness stopped, serve
// keeps publishing checkpoints, now cosigned by the witnesses still up,
// and verify's k-of-n policy decides: k = n-1 passes, k = n fails closed.
func checkOneWitnessDown(t *testing.T, n *Network) {
	t.Helper()
	ctx := t.Context()
	down := n.Witnesses[len(n.Witnesses)-1]
	var wp *proc
	n.procs.mu.Lock()
	for _, p := range n.procs.list {
		if p.name == fmt.Sprintf("witness-%d", len(n.Witnesses)) {
			wp = p
		}
	}
	n.procs.mu.Unlock()
	if wp == nil {
		t.Fatalf("no process of %s", down.Name)
	}
	before, _ := latestCheckpoint(t, n)
	wp.stop(5 * time.Second)

	// A new entry (an enrolment) makes the log sign a new tree, which
	// the stopped witness cannot cosign.
	if _, err := n.must(ctx, false, "keygen", "--name", "late-builder", "--dir", "keys"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.must(ctx, false, "admin", "enroll", "--server", n.LogURL, "--admin-key", "keys/"+keyAdmin+".key", "--log-key", "keys/"+keyLog+".vkey",
		"--pub", "keys/late-builder.pub", "--role", attest.RoleBuilder, "--operator", "late", "--contact", "late@example.org"); err != nil {
		t.Fatal(err)
	}
	var up []string
	for _, w := range n.Witnesses[:len(n.Witnesses)-1] {
		up = append(up, w.Name)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		tree, cosigners := latestCheckpoint(t, n)
		slices.Sort(cosigners)
		if tree.N > before.N && slices.Equal(cosigners, up) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %s down: checkpoint of %d (was %d) cosigned by %v, want a larger one cosigned by %v", down.Name, tree.N, before.N, cosigners, up)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// verify with the network's policy (k = n-1) decides as before; the
	// cosigners it counts are the witnesses still up.
	r, err := n.skyline(ctx, "verify", "hello-1.0-1", "--policy", "policy.toml", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var vj verifyJSON
	if err := json.Unmarshal([]byte(r.Stdout), &vj); err != nil || vj.VerifyReport == nil {
		t.Fatalf("verify --json: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	if n.cfg.Scenario.WitnessQuorum != len(n.Witnesses)-1 {
		t.Fatalf("scenario witness quorum %d of %d: this check wants n-1", n.cfg.Scenario.WitnessQuorum, len(n.Witnesses))
	}
	got := slices.Clone(vj.Cosigners)
	slices.Sort(got)
	if r.Exit != 0 || vj.Status != witness.VerdictReproduced || len(got) != len(up) {
		t.Errorf("verify with %s down, quorum %d: exit %d status %s cosigners %v, want exit 0 reproduced with %d cosigners\n%s", down.Name, n.cfg.Scenario.WitnessQuorum, r.Exit, vj.Status, got, len(up), r.Stderr)
	}

	// The same policy asking for every witness fails closed.
	pol, err := os.ReadFile(n.Policy)
	if err != nil {
		t.Fatal(err)
	}
	all := bytes.Replace(pol, fmt.Appendf(nil, "witness_quorum = %d\n", n.cfg.Scenario.WitnessQuorum), fmt.Appendf(nil, "witness_quorum = %d\n", len(n.Witnesses)), 1)
	if bytes.Equal(all, pol) {
		t.Fatalf("policy.toml has no witness_quorum line:\n%s", pol)
	}
	if err := os.WriteFile(n.path("policy-all.toml"), all, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err = n.skyline(ctx, "verify", "hello-1.0-1", "--policy", "policy-all.toml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Exit != ExitVerification || !strings.Contains(r.Stdout+r.Stderr, fmt.Sprintf("cosigned by %d policy witnesses", len(up))) {
		t.Errorf("verify with %s down, quorum %d: exit %d, want %d (too few cosignatures)\n%s%s", down.Name, len(n.Witnesses), r.Exit, ExitVerification, r.Stdout, r.Stderr)
	}
}

// latestCheckpoint reads the log's checkpoint from its public read API and
// returns its tree and the witnesses whose cosignature verifies.
func latestCheckpoint(t *testing.T, n *Network) (tlog.Tree, []string) {
	t.Helper()
	lc := n.LogCheck()
	r := &reader{ctx: t.Context(), c: lc.Client, base: lc.URL}
	raw, err := r.get("checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	tree, cosigners, err := openCheckpoint(raw, lc)
	if err != nil {
		t.Fatal(err)
	}
	return tree, cosigners
}
