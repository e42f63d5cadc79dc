package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/witness"
)

// runVerify implements `skyline verify <nvr>`, the release gate.
func runVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	arch := fs.String("arch", "", "verify only the build of this arch (default: every build of the NVR)")
	policyPath := fs.String("policy", "", "the verify policy file (TOML; required)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	rpmDir := fs.String("rpm-dir", "", "a directory of the RPMs about to be released: they must be exactly the agreed result set")
	logURL := fs.String("log", "", "the log's base URL (default: the policy's log.url)")
	state := fs.String("state", "", "a file holding the last verified checkpoint: the new one must extend it (fork and rollback detection); updated on success")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline verify <nvr> --policy FILE [--arch A] [--json] [--rpm-dir DIR] [--log URL] [--state FILE]

The release gate (docs/verify.md). It fetches the log's checkpoint and
requires k-of-n cosignatures of the policy's witnesses (C2SP
tlog-cosignature), reads the entries of the NVR from the log's lookup
index and proves each against the checkpoint, checks every signature,
recomputes the agreement locally, and requires k policy witnesses'
verdicts made at a tree size covering every entry it saw that agree with
the recomputation (they vouch that no dissenting entry is hidden). A
logged circuit-breaker alarm without a logged clearing fails closed.

Exit status:
  0  reproduced (and, with --rpm-dir, the RPMs are the agreed result set)
  1  disputed or official-mismatch, or the RPMs in --rpm-dir differ
  2  insufficient or unreproducible
  3  verification failure: bad signature or proof, fork, rollback, too
     few witness cosignatures or verdicts, a witness disagrees, alarm
     active, the log unreachable
  4  usage or policy error

Flags:
`)
		fs.PrintDefaults()
	}
	// The NVR may come before or after the flags.
	var nvr string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		nvr, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if nvr == "" && fs.NArg() > 0 {
		nvr = fs.Arg(0)
		if code, ok := parseFlags(fs, fs.Args()[1:]); !ok {
			return code
		}
	}
	if nvr == "" || fs.NArg() > 0 || *policyPath == "" {
		fs.Usage()
		return witness.ExitUsage
	}
	pol, err := witness.LoadVerifyPolicy(*policyPath)
	if err != nil {
		fmt.Fprintf(stderr, "skyline verify: %v\n", err)
		return witness.ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	cfg := witness.VerifyConfig{
		Policy: pol,
		LogURL: *logURL,
		Client: &http.Client{Timeout: *timeout},
		// The report and the error say what happened; the log only adds
		// what goes wrong beyond them.
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	if *state != "" {
		prev, err := loadVerifyState(*state, pol)
		if err != nil {
			fmt.Fprintf(stderr, "skyline verify: state %s: %v\n", *state, err)
			return witness.ExitVerification
		}
		cfg.Previous = prev
	}
	rep, err := witness.Verify(ctx, cfg, witness.VerifyRequest{NVR: nvr, Arch: *arch, RPMDir: *rpmDir})
	code := witness.VerifyExit(rep, err)
	if err == nil && *state != "" {
		if err := saveVerifyState(*state, rep); err != nil {
			fmt.Fprintf(stderr, "skyline verify: save state: %v\n", err)
			return witness.ExitVerification
		}
	}
	if *asJSON {
		out := struct {
			*witness.VerifyReport
			Exit int `json:"exit"`
		}{rep, code}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			fmt.Fprintf(stderr, "skyline verify: %v\n", err)
		}
	} else {
		printVerifyReport(stdout, rep, code)
	}
	if err != nil {
		fmt.Fprintf(stderr, "skyline verify: %v\n", err)
	}
	return code
}

// loadVerifyState reads the checkpoint a previous run verified; a missing
// file means none.
func loadVerifyState(path string, pol *witness.VerifyPolicy) (*witness.Checkpoint, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cp, err := pol.ParseLogCheckpoint(data)
	if err != nil {
		return nil, err
	}
	return &cp, nil
}

// saveVerifyState writes the verified checkpoint atomically.
func saveVerifyState(path string, rep *witness.VerifyReport) error {
	if rep == nil || rep.Checkpoint == nil || len(rep.CheckpointNote) == 0 {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".verify-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(rep.CheckpointNote); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// printVerifyReport writes the report for a person.
func printVerifyReport(w io.Writer, rep *witness.VerifyReport, code int) {
	if rep == nil {
		return
	}
	fmt.Fprintf(w, "%s: %s (exit %d)\n", rep.NVR, rep.Status, code)
	if cp := rep.Checkpoint; cp != nil {
		fmt.Fprintf(w, "checkpoint: %s size %d root %s, cosigned by %s\n", cp.Origin, cp.Size, cp.Root, strings.Join(rep.Cosigners, ", "))
	}
	for _, a := range rep.Alarms {
		fmt.Fprintf(w, "ALARM at entry %d (key %s): %s\n", a.Index, a.KeyID, a.Reason)
	}
	for _, b := range rep.Builds {
		fmt.Fprintf(w, "\nbuild %s.%s (srpm %s): %s", b.Build.NVR, b.Build.Arch, b.Build.SRPMSHA256, b.Verdict)
		if !b.Final {
			fmt.Fprintf(w, " (job not closed)")
		}
		fmt.Fprintln(w)
		if b.ResultSet != "" {
			fmt.Fprintf(w, "  agreed result set %s\n", b.ResultSet)
		}
		for _, g := range b.Groups {
			fmt.Fprintf(w, "  group %s: %d operators (%s), entries %v\n", g.ResultSet, len(g.Operators), strings.Join(g.Operators, ", "), g.Entries)
		}
		for _, o := range b.Outliers {
			fmt.Fprintf(w, "  outlier: entry %d, key %s, operator %s, result set %s\n", o.Index, o.KeyID, o.Operator, o.ResultSet)
			printDiffs(w, "    ", o.Diff)
		}
		if len(b.Split) > 0 {
			fmt.Fprintf(w, "  split operators (their keys disagree): %s\n", strings.Join(b.Split, ", "))
		}
		if b.Official != "" {
			fmt.Fprintf(w, "  official build: %s\n", b.Official)
			printDiffs(w, "    ", b.OfficialDiff)
		}
		for _, ig := range b.Ignored {
			fmt.Fprintf(w, "  not counted: entry %d by key %s: %s\n", ig.Index, ig.KeyID, ig.Reason)
		}
		for _, wc := range b.Witnesses {
			state := "agrees"
			switch {
			case !wc.Covers:
				state = "stale (does not cover every entry)"
			case !wc.Agrees:
				state = "DISAGREES: " + strings.Join(wc.Diffs, "; ")
			}
			fmt.Fprintf(w, "  witness %s: %s at tree size %d (entry %d): %s\n", wc.Witness, wc.Verdict, wc.TreeSize, wc.Index, state)
		}
	}
	if r := rep.RPMs; r != nil {
		if r.Match {
			fmt.Fprintf(w, "\nRPMs in %s: exactly the agreed result set (%d files)\n", r.Dir, len(r.Files))
		} else {
			fmt.Fprintf(w, "\nRPMs in %s DIFFER from the agreed result set:\n", r.Dir)
			printDiffs(w, "  ", r.Diffs)
			for _, u := range r.Unreadable {
				fmt.Fprintf(w, "  unreadable: %s\n", u)
			}
		}
	}
	label := "note"
	if code == witness.ExitVerification {
		label = "problem"
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "%s: %s\n", label, p)
	}
}

func printDiffs(w io.Writer, indent string, ds []witness.RPMDiff) {
	for _, d := range ds {
		switch {
		case d.Want == "":
			fmt.Fprintf(w, "%s%s: extra RPM (digest %s)\n", indent, d.File, d.Got)
		case d.Got == "":
			fmt.Fprintf(w, "%s%s: missing\n", indent, d.File)
		default:
			fmt.Fprintf(w, "%s%s: digest %s, agreed %s\n", indent, d.File, d.Got, d.Want)
		}
	}
}
