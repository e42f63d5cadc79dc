package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/stats"
	"github.com/fedora-skyline/skyline/witness"
)

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// runStats implements `skyline stats --log URL --pub K`: the read-only
// stats tracker of a remote log, from its public tiles alone.
func runStats(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	logURL := fs.String("log", "", "the log's base URL (its C2SP tlog-tiles read API; required)")
	pub := fs.String("pub", "", "the log's key: a C2SP signed-note verifier key, or a public key file (PKIX PEM, Ed25519) with --origin (required)")
	origin := fs.String("origin", "", "the log's checkpoint origin (default: the verifier key's name, or the log URL's host and path)")
	coordPub := fs.String("coordinator", "", "the coordinator's public key file (PKIX PEM; default: the log's key)")
	var witnesses multiFlag
	fs.Var(&witnesses, "witness", "key id of a witness whose verdicts count (repeatable; default: every enrolled witness)")
	listen := fs.String("listen", "127.0.0.1:8081", "address to serve the pages on")
	state := fs.String("state", "", "file to keep the stats in across restarts (default: none, replay from entry 0)")
	interval := fs.Duration("interval", 10*time.Second, "how often to poll the log")
	once := fs.Bool("once", false, "catch up once, print the network's health as JSON and exit")
	verbose := fs.Bool("v", false, "log each entry that does not count")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline stats --log URL --pub KEY [--origin O] [--coordinator K.pub] [--witness ID]... [--listen ADDR] [--state FILE] [--once]

The read-only stats tracker (docs/stats.md): it follows the log with the
verified follower (every checkpoint signed by the log key and consistent
with the last, every entry proved against it), derives the BOINC-style
leaderboard from the entries and the witnesses' verdicts, and serves it
under /stats/ (HTML) and /api/stats/ (JSON). Stops on SIGTERM or SIGINT,
saving --state.

Exit status: 0 stopped cleanly, 1 the log misbehaved or failed, 4 bad flags.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *logURL == "" || *pub == "" {
		fs.Usage()
		return exitUsage
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	f, coord, err := statsFollower(*logURL, *pub, *origin, *coordPub)
	if err != nil {
		fmt.Fprintf(stderr, "skyline stats: %v\n", err)
		return exitUsage
	}
	reg := prometheus.NewRegistry()
	cfg := stats.Config{Coordinator: coord, Witnesses: witnesses, Logger: logger, Registerer: reg}
	var tr *stats.Tracker
	if *state != "" {
		tr, err = stats.LoadFile(cfg, *state)
	} else {
		tr, err = stats.New(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "skyline stats: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	src := stats.FollowerSource(f)
	if *once {
		if _, err := tr.CatchUp(ctx, src, 0); err != nil {
			fmt.Fprintf(stderr, "skyline stats: %v\n", err)
			return exitFail
		}
		if *state != "" {
			if err := tr.SaveFile(*state); err != nil {
				fmt.Fprintf(stderr, "skyline stats: %v\n", err)
				return exitFail
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(tr.Health()); err != nil {
			return exitFail
		}
		return exitOK
	}
	if err := serveStats(ctx, tr, src, *listen, stats.FollowConfig{Interval: *interval, StatePath: *state}, logger, reg, nil); err != nil {
		fmt.Fprintf(stderr, "skyline stats: %v\n", err)
		return exitFail
	}
	return exitOK
}

// statsFollower returns the verified follower of the log and the
// coordinator's key.
func statsFollower(logURL, pub, origin, coordPub string) (*witness.Follower, *attest.Verifier, error) {
	logKey, coord, org, err := statsKeys(pub, origin, coordPub, logURL)
	if err != nil {
		return nil, nil, err
	}
	f, err := witness.NewFollower(witness.FollowerConfig{URL: logURL, Origin: org, Verifier: logKey}, witness.EmptyTree(org))
	if err != nil {
		return nil, nil, err
	}
	return f, coord, nil
}

// statsKeys returns the log's note verifier, the coordinator's key and the
// origin from the flags.
func statsKeys(pub, origin, coordPub, logURL string) (note.Verifier, *attest.Verifier, string, error) {
	var logKey note.Verifier
	var pubKey *attest.Verifier
	if v, err := note.NewVerifier(pub); err == nil {
		logKey = v
		if origin == "" {
			origin = v.Name()
		}
		edPub, err := witness.NoteKeyPublic(pub)
		if err != nil {
			return nil, nil, "", err
		}
		if pubKey, err = attest.NewVerifier(edPub); err != nil {
			return nil, nil, "", err
		}
	} else {
		if pubKey, err = attest.LoadVerifier(pub); err != nil {
			return nil, nil, "", fmt.Errorf("--pub: %w", err)
		}
		if origin == "" {
			u, err := url.Parse(logURL)
			if err != nil {
				return nil, nil, "", fmt.Errorf("--log: %w", err)
			}
			origin = u.Host + strings.TrimSuffix(u.Path, "/")
		}
		vkey, err := attest.NoteVerifierKey(origin, pubKey.Public())
		if err != nil {
			return nil, nil, "", fmt.Errorf("--pub: %w", err)
		}
		if logKey, err = note.NewVerifier(vkey); err != nil {
			return nil, nil, "", fmt.Errorf("--pub: %w", err)
		}
	}
	coord := pubKey
	if coordPub != "" {
		var err error
		if coord, err = attest.LoadVerifier(coordPub); err != nil {
			return nil, nil, "", fmt.Errorf("--coordinator: %w", err)
		}
	}
	return logKey, coord, origin, nil
}

// serveStats follows src into tr and serves tr's pages on listen until ctx
// is done, and the metrics of gatherer (when set) at /metrics. When ready
// is set it receives the listener's address.
func serveStats(ctx context.Context, tr *stats.Tracker, src stats.Source, listen string, fc stats.FollowConfig, logger *slog.Logger, gatherer prometheus.Gatherer, ready chan<- string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", stats.Handler(tr))
	if gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	}
	hs := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	followErr := make(chan error, 1)
	go func() { followErr <- tr.Follow(runCtx, src, fc) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	logger.Info("stats: serving", "addr", ln.Addr().String())
	if ready != nil {
		ready <- ln.Addr().String()
	}
	var ferr error
	select {
	case <-ctx.Done():
		cancel()
		ferr = <-followErr
	case ferr = <-followErr:
	case err := <-serveErr:
		cancel()
		<-followErr
		return fmt.Errorf("serve: %w", err)
	}
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Warn("stats: shutdown", "err", err)
	}
	<-serveErr
	return ferr
}
