// Command skyline-demo is `make demo`: a whole skyline network on this
// machine, with real processes (package demo): one `skyline serve` on its
// embedded Pebble log, three `skyline witness`, ten `skyline builder` on
// the rpmbuild backend (one of them malicious), the jobs, the release gate
// on every package, the malicious builder's notice and a full audit.
//
// It prints what it does as it goes and a progress line while builds run.
// On exit, on Ctrl-C or SIGTERM it stops every process it started (each
// runs in its own process group; should this command be killed outright,
// the kernel kills them: PR_SET_PDEATHSIG).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fedora-skyline/skyline/demo"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("skyline-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	skyline := fs.String("skyline", "bin/skyline", "the skyline binary")
	root := fs.String("root", ".", "the repository root (testdata/specs, demo/testdata)")
	dir := fs.String("dir", "", "work directory, empty or new (default: a new directory under $TMPDIR, removed unless --keep or a failure)")
	keep := fs.Bool("keep", false, "keep the work directory (keys, configs, state, process logs)")
	timeout := fs.Duration("timeout", 3*time.Minute, "give up on any one wait (builds of a stage, verdicts, notices) after this long")
	linger := fs.Bool("linger", false, "after the scenario, keep the network running until Ctrl-C (to browse the stats pages and the log)")
	scenario := fs.String("scenario", "demo", "demo (one malicious builder, one package per verdict) or breaker (four malicious builders trip the circuit breaker)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline-demo [--skyline bin/skyline] [--root .] [--dir D] [--keep] [--linger] [--scenario demo|breaker]

Runs a whole skyline network on this machine with real processes (see
README.md, "make demo"): one skyline serve, three skyline witness, ten
skyline builder (rpmbuild backend; mallory's is malicious), five packages,
skyline verify on each, mallory's notice, skyline audit. --scenario
breaker runs the end-to-end test's second network instead: four builders
turn malicious, the witnesses' circuit breaker trips and skyline verify
fails closed (exit 3). Needs rpmbuild,
rpm, unshare and mount, and root or unprivileged user namespaces.

Exit status: 0 every result as expected, 1 a result differs or the network
failed, 2 usage, 130 interrupted.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var sc demo.Scenario
	switch *scenario {
	case "demo":
		sc = demo.DemoScenario()
	case "breaker":
		sc = demo.BreakerScenario()
	default:
		fmt.Fprintf(stderr, "skyline-demo: unknown scenario %q (demo, breaker)\n", *scenario)
		return 2
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "skyline-demo.")
		if err != nil {
			fmt.Fprintf(stderr, "skyline-demo: %v\n", err)
			return 1
		}
		work = d
	} else if err := os.MkdirAll(work, 0o755); err != nil {
		fmt.Fprintf(stderr, "skyline-demo: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := &lineWriter{w: stdout, tty: isTTY(stdout)}
	start := time.Now()
	fmt.Fprintf(out, "skyline demo (scenario %s): a whole network on this machine, work directory %s\n", sc.Name, work)
	fmt.Fprintf(out, "policy: the default (quorum 5 operators of 10 leases, official build must match) but max dissent 0:\n")
	fmt.Fprintf(out, "        under the default max dissent 1 one altered result is tolerated (reproduced, outlier named);\n")
	fmt.Fprintf(out, "        with 0, the demo's single malicious builder makes the packages it altered disputed.\n")
	n, err := demo.Start(ctx, demo.Config{
		Skyline:  abs(*skyline),
		Root:     abs(*root),
		Dir:      abs(work),
		Scenario: sc,
		Out:      out,
		Progress: out.progress,
		Timeout:  *timeout,
	})
	var res *demo.Result
	if err == nil {
		res, err = n.Run(ctx)
	}
	if err == nil {
		summary(out, n, res)
		if *linger {
			fmt.Fprintf(out, "\nthe network keeps running (--linger): press Ctrl-C to stop it\n")
			<-ctx.Done()
			stop()
		}
	}
	out.flush()
	fmt.Fprintf(stdout, "\nstopping %d processes...\n", len(n.Logs()))
	_ = n.Close()
	elapsed := time.Since(start).Round(time.Second)
	switch {
	case ctx.Err() != nil && err == nil && *linger:
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "skyline-demo: interrupted after %v; every process stopped; work directory kept: %s\n", elapsed, work)
		return 130
	case err != nil:
		fmt.Fprintf(stderr, "\nskyline-demo: FAILED after %v: %v\n", elapsed, err)
		for _, l := range n.Logs() {
			fmt.Fprintf(stderr, "  log: %s\n", l)
		}
		fmt.Fprintf(stderr, "work directory kept: %s\n", work)
		return 1
	}
	fmt.Fprintf(stdout, "demo finished in %v: every verdict, the notice and the audit as expected\n", elapsed)
	if *keep || *dir != "" {
		fmt.Fprintf(stdout, "work directory: %s\n", work)
	} else {
		_ = os.RemoveAll(work)
	}
	return 0
}

// summary prints the verdicts in one table.
func summary(out io.Writer, n *demo.Network, res *demo.Result) {
	fmt.Fprintf(out, "\n== summary\n")
	for _, s := range n.SRPMs {
		runs := res.Verify[s.NVR]
		if len(runs) == 0 {
			continue
		}
		r := runs[len(runs)-1]
		status := ""
		if r.Report != nil {
			status = r.Report.Status
		}
		fmt.Fprintf(out, "   %-16s %-18s exit %d   %s\n", s.NVR, status, r.Exit, s.Story)
	}
	fmt.Fprintf(out, "   skyline audit: exit %d\n", res.AuditExit)
	fmt.Fprintf(out, "   the log: %s/checkpoint (C2SP tlog-tiles under %s/tile/), metrics at %s/metrics\n", n.LogURL, n.LogURL, n.LogURL)
	fmt.Fprintf(out, "   the stats pages: %s/stats/ (JSON under %s/api/stats/)\n", n.StatsURL, n.StatsURL)
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// lineWriter is the narration's writer: on a terminal, the progress line
// is redrawn in place and ended before anything else is written.
type lineWriter struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	pending bool // a progress line is on screen, unterminated
	last    string
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending {
		fmt.Fprintln(l.w)
		l.pending = false
	}
	return l.w.Write(p)
}

func (l *lineWriter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending {
		fmt.Fprintln(l.w)
		l.pending = false
	}
}

// progress shows the jobs' progress: a bar redrawn in place on a terminal,
// else a line whenever the counts change.
func (l *lineWriter) progress(p demo.Progress) {
	const width = 30
	done := 0
	if p.Wanted > 0 {
		done = width * p.Results / p.Wanted
	}
	bar := strings.Repeat("#", done) + strings.Repeat(".", width-done)
	line := fmt.Sprintf("   [%s] %d/%d results, %d/%d jobs closed, %d building", bar, p.Results, p.Wanted, p.Closed, p.Jobs, p.Live)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tty {
		fmt.Fprintf(l.w, "\r\033[K%s  %v", line, p.Elapsed)
		l.pending = true
		return
	}
	if line != l.last {
		fmt.Fprintf(l.w, "%s  %v\n", line, p.Elapsed)
		l.last = line
	}
}
