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
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/witness"
)

// runAudit implements `skyline audit`, the full replay.
func runAudit(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	logURL := fs.String("log", "", "the log's base URL (required)")
	pub := fs.String("pub", "", "the log's signed-note verifier key, or a file holding it (required)")
	origin := fs.String("origin", "", "the checkpoint origin (default: the key's name)")
	from := fs.String("from", "", "resume from this state file (written by an earlier audit)")
	save := fs.String("save", "", "write the state to resume from here (default: the --from file)")
	coordPub := fs.String("coordinator", "", "the coordinator's PEM public key file (default: the log key)")
	asJSON := fs.Bool("json", false, "print a JSON summary")
	var cosigners []string
	fs.Func("cosigner", "a witness's cosignature verifier key (C2SP tlog-cosignature); repeat for each witness", func(v string) error {
		cosigners = append(cosigners, v)
		return nil
	})
	cosignersRequired := fs.Int("cosigners-required", 0, "fail (exit 3) when fewer of the --cosigner witnesses cosigned the checkpoint")
	checkIndex := fs.Bool("check-index", false, "also check that the log's /lookup index lists every entry of the NVRs replayed")
	quorum := fs.Int("quorum", witness.DefaultPolicy().Quorum, "agreement quorum the witnesses apply")
	dissent := fs.Int("max-dissent", witness.DefaultPolicy().MaxDissent, "dissent the witnesses tolerate")
	leases := fs.Int("leases", witness.DefaultPolicy().Leases, "leases per job")
	official := fs.Bool("official-must-match", true, "a differing official build is an official-mismatch")
	bw := fs.Int("breaker-window", witness.DefaultBreakerConfig().Window, "circuit breaker window the witnesses use")
	bt := fs.Float64("breaker-threshold", witness.DefaultBreakerConfig().Threshold, "circuit breaker outlier-rate threshold")
	bm := fs.Int("breaker-min-sample", witness.DefaultBreakerConfig().MinSample, "circuit breaker minimum sample")
	maxAttempts := fs.Int("max-attempts", coord.DefaultMaxAttempts, "leases per job slot the coordinator allows (skyline serve's max_attempts)")
	maxWanted := fs.Int("max-wanted", coord.DefaultMaxWanted, "results a job may want (skyline serve's max_wanted)")
	timeout := fs.Duration("timeout", 0, "give up after this long (0: no limit; Ctrl-C saves the state reached)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline audit --log URL --pub KEY [--origin O] [--from STATE] [--save STATE] [--json] [--check-index]
       [--cosigner VKEY]... [--cosigners-required K] [--coordinator PEM]
       [--quorum N --max-dissent N --leases N --official-must-match]
       [--breaker-window N --breaker-threshold F --breaker-min-sample N]
       [--max-attempts N --max-wanted N]

Replays every entry of the log from index 0, or from the state an earlier
audit saved (docs/audit.md): checks each new checkpoint's signature and its
consistency with the last one verified, reads every entry from the C2SP
tlog-tiles entry bundles (each checked against the signed tree),
recomputes the root, verifies every signature, rebuilds the builds'
records, recomputes every verdict and the circuit breaker with the
agreement engine, and compares them with the witnesses' verdict entries.
It also replays the coordinator's own rules (leases in attempt order and
within --max-attempts, one per operator per job, none to a revoked key,
during an alarm or past the job's deadline; no early expiry; no close of
a job that may not close). Each discrepancy is printed (verdict differs,
verdict before the job closed, entries of unenrolled keys, results
without lease, alarms the breaker does not re-derive, coordinator-rule,
...). With --check-index it also checks the log's /lookup index: an
index that hides an entry misleads every verify.

The agreement and breaker flags must be the witnesses' settings, and
--max-attempts and --max-wanted the server's (skyline serve's
max_attempts and max_wanted); the defaults are theirs.

Progress goes to stderr: a bar on a terminal, a line every few seconds
otherwise.

Exit status: 0 clean, 1 discrepancies of any kind, coordinator-rule
included (in any run of the state), 3 verification failure (signature,
consistency, fork, rollback, tile, bundle, root), 4 usage.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *logURL == "" || *pub == "" || fs.NArg() > 0 {
		fs.Usage()
		return witness.ExitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "skyline audit: "+format+"\n", a...)
		return witness.ExitUsage
	}
	if *cosignersRequired < 0 || *cosignersRequired > len(cosigners) {
		return usage("--cosigners-required %d with %d --cosigner keys", *cosignersRequired, len(cosigners))
	}
	if *maxAttempts < 1 || *maxWanted < 1 {
		return usage("--max-attempts %d and --max-wanted %d must be at least 1", *maxAttempts, *maxWanted)
	}
	cfg := witness.AuditConfig{
		URL: *logURL, Origin: *origin, LogKey: vkeyArg(*pub),
		Policy:     &witness.Policy{Leases: *leases, Quorum: *quorum, MaxDissent: *dissent, RequireOfficialMatch: *official},
		Breaker:    &witness.BreakerConfig{Window: *bw, Threshold: *bt, MinSample: *bm, Mismatches: witness.DefaultBreakerConfig().Mismatches, MismatchWindow: witness.DefaultBreakerConfig().MismatchWindow},
		Client:     &http.Client{Timeout: time.Minute},
		Coord:      coord.Config{MaxAttempts: *maxAttempts, MaxWanted: *maxWanted},
		CheckIndex: *checkIndex,
		Cosigners:  cosigners, CosignerQuorum: *cosignersRequired,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if *coordPub != "" {
		v, err := attest.LoadVerifier(*coordPub)
		if err != nil {
			return usage("%v", err)
		}
		cfg.Coordinator = v
	}
	var prev *witness.AuditState
	if *from != "" {
		data, err := os.ReadFile(*from)
		if err != nil {
			return usage("%v", err)
		}
		prev = &witness.AuditState{}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(prev); err != nil {
			return usage("state %s: %v", *from, err)
		}
		if *save == "" {
			*save = *from
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	prog := newProgress(stderr)
	cfg.Progress = prog.update
	rep, st, err := witness.Audit(ctx, cfg, prev)
	prog.done()
	code := witness.AuditExit(rep, err)
	if st != nil && *save != "" && st.Checkpoint != "" {
		if serr := writeAuditState(*save, st); serr != nil {
			fmt.Fprintf(stderr, "skyline audit: save state: %v\n", serr)
			if code == witness.ExitReproduced {
				code = witness.ExitVerification
			}
		}
	}
	if rep != nil {
		if *asJSON {
			out := struct {
				*witness.AuditReport
				Error string `json:"error,omitempty"`
				Exit  int    `json:"exit"`
			}{AuditReport: rep, Exit: code}
			if err != nil {
				out.Error = err.Error()
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if e := enc.Encode(out); e != nil {
				fmt.Fprintf(stderr, "skyline audit: %v\n", e)
			}
		} else {
			printAuditReport(stdout, rep)
		}
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(stderr, "skyline audit: interrupted; state saved up to the last replayed batch\n")
		}
		fmt.Fprintf(stderr, "skyline audit: %v\n", err)
	}
	return code
}

func printAuditReport(w io.Writer, rep *witness.AuditReport) {
	for _, d := range rep.Discrepancies {
		build := ""
		if d.Build != nil {
			build = fmt.Sprintf(" %s.%s", d.Build.NVR, d.Build.Arch)
		}
		key := ""
		if d.KeyID != "" {
			key = " key " + d.KeyID
		}
		fmt.Fprintf(w, "entry %d: %s%s%s: %s\n", d.Index, d.Kind, build, key, d.Detail)
	}
	fmt.Fprintf(w, "checkpoint %s size %d root %s\n", rep.Checkpoint.Origin, rep.Checkpoint.Size, rep.Checkpoint.Root)
	if len(rep.Cosigners) > 0 {
		fmt.Fprintf(w, "cosigned by %s\n", strings.Join(rep.Cosigners, ", "))
	}
	fmt.Fprintf(w, "replayed entries %d..%d (%d), %d builds, %d verdicts checked, root recomputed: %v\n", rep.From, rep.To, rep.Entries, rep.Builds, rep.Verdicts, rep.RootMatches)
	fmt.Fprintf(w, "circuit breaker tripped: %v (outlier rate %.2f%%)\n", rep.BreakerTripped, 100*rep.OutlierRate)
	fmt.Fprintf(w, "discrepancies: %d in this run, %d in total\n", len(rep.Discrepancies), rep.Total)
}

// writeAuditState writes the state file atomically.
func writeAuditState(path string, st *witness.AuditState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".audit-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
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

// progress shows the replay's progress on stderr: a bar redrawn in place
// on a terminal, a plain line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

func (p *progress) update(done, total uint64) {
	now := time.Now()
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-9)
	if p.tty {
		if now.Sub(p.last) < 100*time.Millisecond && done < total {
			return
		}
		const width = 40
		fill := 0
		if total > 0 {
			fill = int(width * done / total)
		}
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d entries %.0f/s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), done, total, rate)
		p.drawn = true
	} else {
		if now.Sub(p.last) < 5*time.Second && done < total {
			return
		}
		fmt.Fprintf(p.w, "audit: %d/%d entries (%.0f/s)\n", done, total, rate)
	}
	p.last = now
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}
