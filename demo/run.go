package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/stats"
	"github.com/fedora-skyline/skyline/witness"
)

// ErrUnexpected: the network reached another result than the scenario
// wants.
var ErrUnexpected = errors.New("unexpected result")

// ErrTimeout: the network did not get somewhere in time.
var ErrTimeout = errors.New("timed out")

// Result is what a scenario run found.
type Result struct {
	// Verify holds, per NVR, every settled `skyline verify` run: the one
	// after its stage, then (Scenario.Alarm) the one after the alarm.
	Verify map[string][]VerifyRun
	// Status is every builder's status (what `skyline builder status
	// --json` prints): of those of Scenario.Warned once warned, of the
	// others at the end.
	Status map[string]*builder.Status
	// StatusText is the same, as the command prints it.
	StatusText map[string]string
	// Leaderboard is the stats tracker's operator board once every
	// builder's results are in it.
	Leaderboard *stats.Board
	// Audit is `skyline audit`'s exit status and output.
	AuditExit   int
	AuditOutput string
	// Log is what CheckLog verified at the end.
	Log *CheckedLog
}

// VerifyRun is one `skyline verify <nvr>` run.
type VerifyRun struct {
	NVR    string
	Exit   int
	Report *witness.VerifyReport
	// Output is what the command printed without --json.
	Output string
}

// verifyJSON is the output of `skyline verify --json`.
type verifyJSON struct {
	*witness.VerifyReport
	Exit int `json:"exit"`
}

// Run runs the scenario on the started network: stage by stage it
// enqueues the packages (skyline admin enqueue), shows progress while the
// builders build, waits for the witnesses' verdicts and runs `skyline
// verify` on each package; then it waits for the alarm when the scenario
// trips the breaker, shows the warned builders' status and the stats
// tracker's leaderboard, runs `skyline audit` over the whole log and
// checks the log independently (CheckLog). It returns an error wrapping
// ErrUnexpected when a verdict, exit status, notice, audit or verdict
// entry is not what the scenario wants, ErrTimeout when the network did
// not get there in Config.Timeout.
func (n *Network) Run(ctx context.Context) (*Result, error) {
	s := n.cfg.Scenario
	res := &Result{Verify: map[string][]VerifyRun{}, Status: map[string]*builder.Status{}, StatusText: map[string]string{}}
	var stages []int
	for _, p := range s.Packages {
		if !slices.Contains(stages, p.Stage) {
			stages = append(stages, p.Stage)
		}
	}
	slices.Sort(stages)
	var problems []error
	for si, stage := range stages {
		var pkgs []SRPM
		for _, p := range n.SRPMs {
			if p.Stage == stage {
				pkgs = append(pkgs, p)
			}
		}
		if err := n.enqueue(ctx, stage, pkgs); err != nil {
			return res, err
		}
		if err := n.waitJobs(ctx, stage, pkgs); err != nil {
			return res, err
		}
		if s.Alarm && si == len(stages)-1 {
			break
		}
		n.say("the release gate: skyline verify <nvr> --policy policy.toml (witness quorum %d of %d, max dissent %d)", s.WitnessQuorum, s.Witnesses, s.Policy.MaxDissent)
		for _, p := range pkgs {
			vr, err := n.verify(ctx, p, false)
			if err != nil {
				return res, err
			}
			res.Verify[p.NVR] = append(res.Verify[p.NVR], vr)
			if err := expectVerify(vr, p.Want, p.WantExit); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if s.Alarm {
		n.say("the circuit breaker: waiting for the witnesses' alarm, then verify again (it must fail closed: exit 3)")
		for _, p := range n.SRPMs {
			vr, err := n.verify(ctx, p, true)
			if err != nil {
				return res, err
			}
			res.Verify[p.NVR] = append(res.Verify[p.NVR], vr)
			if vr.Exit != p.AfterAlarm {
				problems = append(problems, fmt.Errorf("demo: verify %s after the alarm: exit %d, want %d: %w", p.NVR, vr.Exit, p.AfterAlarm, ErrUnexpected))
			}
		}
	}
	if err := n.notices(ctx, res); errors.Is(err, ErrUnexpected) {
		problems = append(problems, err)
	} else if err != nil {
		return res, err
	}
	if err := n.leaderboard(ctx, res); err != nil {
		problems = append(problems, err)
	}
	if err := n.audit(ctx, res); err != nil {
		problems = append(problems, err)
	}
	if err := n.checkLog(ctx, res); err != nil {
		problems = append(problems, err)
	}
	return res, errors.Join(problems...)
}

func expectVerify(vr VerifyRun, want string, exit int) error {
	got := ""
	if vr.Report != nil {
		got = vr.Report.Status
	}
	if got != want || vr.Exit != exit {
		return fmt.Errorf("demo: verify %s: %s (exit %d), want %s (exit %d): %w", vr.NVR, got, vr.Exit, want, exit, ErrUnexpected)
	}
	return nil
}

func (n *Network) enqueue(ctx context.Context, stage int, pkgs []SRPM) error {
	n.say("stage %d: the jobs (skyline admin enqueue), %d results wanted each", stage, len(n.cfg.Scenario.Builders))
	for _, p := range pkgs {
		n.note("%s: %s", p.NVR, p.Story)
	}
	for i, p := range pkgs {
		if _, err := n.must(ctx, i == 0, "admin", "enqueue", "--server", n.LogURL, "--admin-key", "keys/"+keyAdmin+".key", "--log-key", "keys/"+keyLog+".vkey",
			"--nvr", p.NVR, "--arch", builder.HostArch(), "--srpm-url", p.URL, "--srpm-sha256", p.SHA256,
			"--wanted", strconv.Itoa(len(n.cfg.Scenario.Builders))); err != nil {
			return err
		}
	}
	if len(pkgs) > 1 {
		n.note("(and %d more)", len(pkgs)-1)
	}
	return nil
}

// waitJobs shows progress until every job of pkgs is closed.
func (n *Network) waitJobs(ctx context.Context, stage int, pkgs []SRPM) error {
	n.say("stage %d: the builders lease, download, rebuild, attest and submit (each builds every job once)", stage)
	start := time.Now()
	deadline := start.Add(n.cfg.Timeout)
	var last Progress
	for {
		jobs, err := n.admin.Jobs(ctx)
		if err != nil {
			return fmt.Errorf("demo: jobs: %w", err)
		}
		pr := Progress{Stage: stage, Elapsed: time.Since(start).Round(time.Second)}
		for _, j := range jobs {
			if !slices.ContainsFunc(pkgs, func(p SRPM) bool { return p.SHA256 == j.Job.Build.SRPMSHA256 }) {
				continue
			}
			pr.Jobs++
			pr.Wanted += j.Job.Wanted
			pr.Results += len(j.Results)
			pr.Live += len(j.Live)
			if j.Closed {
				pr.Closed++
			}
		}
		if n.cfg.Progress != nil {
			n.cfg.Progress(pr)
		} else if pr.Results != last.Results || pr.Closed != last.Closed {
			n.note("%d/%d results, %d/%d jobs closed, %d builds running (%v)", pr.Results, pr.Wanted, pr.Closed, pr.Jobs, pr.Live, pr.Elapsed)
		}
		last = pr
		if pr.Jobs == len(pkgs) && pr.Closed == pr.Jobs {
			n.note("every job of stage %d closed after %v", stage, pr.Elapsed)
			return nil
		}
		if err := n.procs.dead(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: stage %d: %d of %d jobs closed after %v (see %s): %w", stage, pr.Closed, pr.Jobs, n.cfg.Timeout, n.path("logs"), ErrTimeout)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// verify runs `skyline verify --json` on p until it is settled: every
// build final and covered by every witness's verdict (or, with alarm, the
// alarm reported), then shows the command's report.
func (n *Network) verify(ctx context.Context, p SRPM, alarm bool) (VerifyRun, error) {
	args := []string{"verify", p.NVR, "--policy", "policy.toml"}
	deadline := time.Now().Add(n.cfg.Timeout)
	var last verifyJSON
	var lastOut string
	for {
		r, err := n.skyline(ctx, append(slices.Clone(args), "--json")...)
		if err != nil {
			return VerifyRun{}, err
		}
		var vj verifyJSON
		if err := json.Unmarshal([]byte(r.Stdout), &vj); err != nil || vj.VerifyReport == nil {
			return VerifyRun{}, fmt.Errorf("demo: skyline verify --json %s (exit %d) printed no report: %v: %s", p.NVR, r.Exit, err, lastLines(r.Stderr, 5))
		}
		if vj.Exit != r.Exit {
			return VerifyRun{}, fmt.Errorf("demo: skyline verify %s: report says exit %d, the process exited %d: %w", p.NVR, vj.Exit, r.Exit, ErrUnexpected)
		}
		last, lastOut = vj, r.Stdout
		if settled(vj, alarm, len(n.Witnesses)) {
			break
		}
		if time.Now().After(deadline) {
			return VerifyRun{NVR: p.NVR, Exit: last.Exit, Report: last.VerifyReport, Output: lastOut},
				fmt.Errorf("demo: verify %s not settled after %v: status %s, problems %q: %w", p.NVR, n.cfg.Timeout, last.Status, last.Problems, ErrTimeout)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return VerifyRun{}, err
		}
	}
	r, err := n.skyline(ctx, args...)
	if err != nil {
		return VerifyRun{}, err
	}
	n.showCmd(r)
	fmt.Fprintf(n.out, "     -> exit %d\n", r.Exit)
	if r.Exit != last.Exit {
		return VerifyRun{}, fmt.Errorf("demo: skyline verify %s: exit %d, a moment ago %d: %w", p.NVR, r.Exit, last.Exit, ErrUnexpected)
	}
	return VerifyRun{NVR: p.NVR, Exit: r.Exit, Report: last.VerifyReport, Output: r.Stdout}, nil
}

// settled reports whether a verify report is final: with alarm, that it
// failed closed on the alarms of every witness; else that it decided (exit 0, 1 or 2)
// on final builds that every witness's verdict covers.
func settled(vj verifyJSON, alarm bool, witnesses int) bool {
	if alarm {
		return vj.Exit == ExitVerification && len(vj.Alarms) >= witnesses
	}
	if vj.Exit == ExitVerification || len(vj.Builds) == 0 {
		return false
	}
	for _, b := range vj.Builds {
		covering := 0
		for _, w := range b.Witnesses {
			if w.Covers && w.Agrees {
				covering++
			}
		}
		if !b.Final || covering < witnesses {
			return false
		}
	}
	return true
}

// notices waits until every builder of Scenario.Warned has been warned
// by its daemon (its results were outliers more than once) and shows its
// status.
func (n *Network) notices(ctx context.Context, res *Result) error {
	for _, b := range n.Builders {
		if !slices.Contains(n.cfg.Scenario.Warned, b.Operator) {
			continue
		}
		n.say("what %s's daemon was told: skyline builder status --config builder-%s/builder.toml", b.Operator, b.Operator)
		deadline := time.Now().Add(n.cfg.Timeout)
		for {
			st, err := builder.ReadStatus(b.StateDir, 10)
			if err == nil && st.Warning != "" {
				res.Status[b.Operator] = st
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("demo: builder %s was not warned after %v (status: %+v, %v): %w", b.Operator, n.cfg.Timeout, st, err, ErrTimeout)
			}
			if err := sleep(ctx, time.Second); err != nil {
				return err
			}
		}
		r, err := n.must(ctx, true, "builder", "status", "--config", "builder-"+b.Operator+"/builder.toml")
		if err != nil {
			return err
		}
		res.StatusText[b.Operator] = r.Stdout
	}
	// No other builder is warned (one outlier is not enough), every
	// malicious one is told of its outlier, and an honest builder is never
	// an outlier.
	var problems []error
	for _, b := range n.Builders {
		if slices.Contains(n.cfg.Scenario.Warned, b.Operator) {
			continue
		}
		st, err := builder.ReadStatus(b.StateDir, 10)
		// A malicious builder altered a build, so it hears of an outlier.
		for deadline := time.Now().Add(n.cfg.Timeout); b.Malicious && err == nil && st.Counters.Outliers == 0 && time.Now().Before(deadline); {
			if err := sleep(ctx, time.Second); err != nil {
				return err
			}
			st, err = builder.ReadStatus(b.StateDir, 10)
		}
		if err != nil {
			return fmt.Errorf("demo: builder %s: %w", b.Operator, err)
		}
		res.Status[b.Operator] = st
		if st.Warning != "" || b.Malicious != (st.Counters.Outliers > 0) {
			problems = append(problems, fmt.Errorf("demo: builder %s (malicious %v): %d outliers, warning %q: %w", b.Operator, b.Malicious, st.Counters.Outliers, st.Warning, ErrUnexpected))
		}
	}
	return errors.Join(problems...)
}

// leaderboard waits until the stats tracker has followed the log to where
// it stood once every verdict was settled (so that every credit and every
// outlier is counted), and shows the operators' board.
func (n *Network) leaderboard(ctx context.Context, res *Result) error {
	n.say("the leaderboard (skyline stats): %s/stats/", n.StatsURL)
	c := &http.Client{Timeout: 10 * time.Second}
	cp, err := n.admin.Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	size, err := api.CheckpointSize(cp)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	deadline := time.Now().Add(n.cfg.Timeout)
	for {
		var h stats.Health
		if err := getJSON(ctx, c, n.StatsURL, "api/stats/health", &h); err != nil {
			return err
		}
		if h.Next >= size {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the stats tracker followed the log to %d after %v, want %d: %w", h.Next, n.cfg.Timeout, size, ErrTimeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	var b stats.Board
	if err := getJSON(ctx, c, n.StatsURL, "api/stats/leaderboard", &b); err != nil {
		return err
	}
	res.Leaderboard = &b
	n.note("%4s  %-10s %8s %8s %9s %10s", "rank", "operator", "results", "agreed", "outliers", "credit")
	for _, r := range res.Leaderboard.Rows {
		n.note("%4d  %-10s %8d %8d %9d %10.4f", r.Rank, r.Name, r.Results, r.Agreed, r.Outliers, r.Credit)
	}
	return nil
}

// getJSON decodes the JSON at path of the server at base.
func getJSON(ctx context.Context, c *http.Client, base, path string, v any) error {
	b, err := (&reader{ctx: ctx, c: c, base: base}).get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("demo: %s/%s: %w", base, path, err)
	}
	return nil
}

// audit replays the whole log with `skyline audit`.
func (n *Network) audit(ctx context.Context, res *Result) error {
	s := n.cfg.Scenario
	n.say("the auditor: skyline audit replays the whole log from entry 0, trusting only the log key")
	r, err := n.skyline(ctx, "audit", "--log", n.LogURL, "--pub", "keys/"+keyLog+".vkey", "--coordinator", "keys/"+keyCoordinator+".pub",
		"--leases", strconv.Itoa(s.Policy.Leases), "--quorum", strconv.Itoa(s.Policy.Quorum), "--max-dissent", strconv.Itoa(s.Policy.MaxDissent),
		"--breaker-window", strconv.Itoa(s.Breaker.Window), "--breaker-threshold", strconv.FormatFloat(s.Breaker.Threshold, 'f', -1, 64),
		"--breaker-min-sample", strconv.Itoa(s.Breaker.MinSample))
	if err != nil {
		return err
	}
	n.showCmd(r)
	fmt.Fprintf(n.out, "     -> exit %d\n", r.Exit)
	res.AuditExit, res.AuditOutput = r.Exit, r.Stdout
	if r.Exit != 0 {
		return fmt.Errorf("demo: skyline audit: exit %d, want 0 (clean): %s: %w", r.Exit, lastLines(r.Stdout+r.Stderr, 10), ErrUnexpected)
	}
	return nil
}

// checkLog verifies the log without skyline's code (CheckLog) and
// compares the witnesses' verdict entries with the scenario.
func (n *Network) checkLog(ctx context.Context, res *Result) error {
	n.say("an independent check, with only the Go module's sumdb/note and sumdb/tlog and attest.Parse")
	var nvrs []string
	for _, p := range n.SRPMs {
		nvrs = append(nvrs, p.NVR)
	}
	// A verdict the witnesses queued with their alarm may reach the log a
	// moment after the alarm: check again until the verdicts are all in.
	deadline := time.Now().Add(n.cfg.Timeout)
	for {
		cl, err := CheckLog(ctx, n.LogCheck(), nvrs)
		if err != nil {
			return err
		}
		res.Log = cl
		err = n.compareVerdicts(cl, io.Discard)
		if err == nil || time.Now().After(deadline) {
			return n.compareVerdicts(cl, n.out)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
	}
}

// compareVerdicts compares the latest verdict entry of every witness with
// the scenario's, and narrates what the check found to out.
func (n *Network) compareVerdicts(cl *CheckedLog, out io.Writer) error {
	note := func(format string, a ...any) { fmt.Fprintf(out, "   "+format+"\n", a...) }
	note("checkpoint %s size %d root %s", Origin, cl.Size, cl.Root)
	note("signed by the log key, cosigned by %s", strings.Join(cl.Cosigners, ", "))
	note("all %d entries read from the entry bundles, each proven in the tree over the hash tiles and signed by a key allowed to make it", len(cl.All))
	if a := cl.Alarms(); len(a) > 0 {
		note("%d circuit-breaker alarm entries, the first at index %d by %s", len(a), a[0].Index, a[0].Signer)
	}
	var problems []error
	if len(cl.Cosigners) < n.cfg.Scenario.WitnessQuorum {
		problems = append(problems, fmt.Errorf("demo: checkpoint cosigned by %v, want %d witnesses: %w", cl.Cosigners, n.cfg.Scenario.WitnessQuorum, ErrUnexpected))
	}
	for _, p := range n.SRPMs {
		byWitness := map[string]string{}
		for w, v := range cl.VerdictsBy(p.NVR) {
			byWitness[w] = v.Verdict
		}
		note("%-16s %3d entries in the lookup index, none hidden; latest verdicts: %v", p.NVR, len(cl.Entries[p.NVR]), byWitness)
		for _, w := range n.Witnesses {
			if got := byWitness[w.Name]; got != p.Want {
				problems = append(problems, fmt.Errorf("demo: %s: %s's latest verdict entry is %q, want %q: %w", p.NVR, w.Name, got, p.Want, ErrUnexpected))
			}
		}
	}
	return errors.Join(problems...)
}

// LogCheck returns what CheckLog needs to check this network's log: the
// log's key and every key allowed to sign its entries.
func (n *Network) LogCheck() LogCheck {
	lc := LogCheck{URL: n.LogURL, Origin: Origin, LogVKey: n.LogVKey, Coordinator: n.Coordinator, Importer: n.Importer, Admin: n.Admin,
		Client: &http.Client{Timeout: 30 * time.Second}}
	for _, w := range n.Witnesses {
		lc.Witnesses = append(lc.Witnesses, CheckWitness{Name: w.Name, CosignVKey: w.CosignVKey, Verdict: w.VerdictKey})
	}
	for _, b := range n.Builders {
		lc.Builders = append(lc.Builders, CheckBuilder{Operator: b.Operator, KeyID: b.KeyID, Public: n.path("keys", "builder-"+b.Operator+".pub")})
	}
	return lc
}
