package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/witness"
)

// witnessSubmitter submits verdicts and alarms through the api client.
type witnessSubmitter struct{ c *api.Client }

func (s witnessSubmitter) SubmitEntry(ctx context.Context, env []byte) (uint64, error) {
	r, err := s.c.SubmitOne(ctx, env, false)
	if err != nil {
		return 0, err
	}
	return r.Index, nil
}

// runWitness implements `skyline witness [--config FILE] [--listen ADDR]
// [--show-keys] [-v]`.
func runWitness(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("witness", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/skyline/witness.toml", "configuration file (TOML)")
	listen := fs.String("listen", "", "HTTP address (overrides listen)")
	showKeys := fs.Bool("show-keys", false, "print the cosignature verifier key and the verdict key id, then exit")
	verbose := fs.Bool("v", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline witness [--config FILE] [--listen ADDR] [--show-keys] [-v]

Follows the logs of the configuration file: checks every checkpoint against
the last one it cosigned (refusing forks, rollbacks and bad proofs, durably),
verifies and folds every entry, computes agreement, signs and submits
verdicts and alarms, and serves C2SP tlog-witness POST /add-checkpoint,
GET /notices/{keyid} and GET /metrics. docs/witness.md describes the
configuration.

Exit status: 0 stopped by a signal, 1 failed, 4 usage or configuration.
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	data, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintf(stderr, "skyline witness: %v\n", err)
		return exitUsage
	}
	cfg, err := witness.ParseConfig(data)
	if err != nil {
		fmt.Fprintf(stderr, "skyline witness: %s: %v\n", *path, err)
		return exitUsage
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	lvl := slog.LevelInfo
	if *verbose {
		lvl = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d, err := witness.NewDaemon(cfg, witness.Env{
		Logger:     logger,
		Registerer: reg,
		Submitter: func(lc witness.LogConfig) (witness.Submitter, error) {
			c, err := api.NewClient(api.ClientConfig{URL: lc.SubmitURL, HTTP: &http.Client{Timeout: cfg.Timeout}})
			return witnessSubmitter{c}, err
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "skyline witness: %v\n", err)
		if errors.Is(err, witness.ErrConfig) {
			return exitUsage
		}
		return exitFail
	}
	if *showKeys {
		fmt.Fprintf(stdout, "cosignature key: %s\nverdict key id:  %s\n", d.Cosigner().VerifierKey(), d.VerdictKeyID())
		return exitOK
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runWitnessDaemon(ctx, cfg, d, reg, logger, nil); err != nil {
		fmt.Fprintf(stderr, "skyline witness: %v\n", err)
		return exitFail
	}
	return exitOK
}

// runWitnessDaemon serves the witness's HTTP interface and runs the daemon
// until ctx is done. ready, when set, receives the listening address.
func runWitnessDaemon(ctx context.Context, cfg witness.Config, d *witness.Daemon, reg *prometheus.Registry, logger *slog.Logger, ready chan<- string) error {
	mux := http.NewServeMux()
	mux.Handle("/", d.Handler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	logger.Info("witness started", "listen", ln.Addr().String(), "cosignature_key", d.Cosigner().VerifierKey(), "verdict_key", d.VerdictKeyID(), "logs", len(cfg.Logs))
	if ready != nil {
		ready <- ln.Addr().String()
	}
	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- err
		}
	})
	runErr := d.Run(ctx)
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	wg.Wait()
	select {
	case err := <-serveErr:
		return errors.Join(runErr, err)
	default:
	}
	logger.Info("witness stopped")
	return runErr
}
