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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newBuilderCoordinator makes the api client the daemon talks to the
// coordinator and log with; requests are signed with the builder key for
// the log of origin (from log_origin or log_key, never from the server).
func newBuilderCoordinator(cfg builder.Config, s *attest.Signer, origin string) (builder.Coordinator, error) {
	return api.NewClient(api.ClientConfig{URL: cfg.Coordinator, Signer: s, Origin: origin, Arches: cfg.Arches})
}

// runBuilder implements `skyline builder [run|status|enroll-request] ...`.
func runBuilder(args []string, stdout, stderr io.Writer) int {
	sub := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "run":
		return runBuilderRun(args, stderr)
	case "status":
		return runBuilderStatus(args, stdout, stderr)
	case "enroll-request":
		return runBuilderEnroll(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "skyline builder: unknown subcommand %q (run, status, enroll-request)\n", sub)
	return exitUsage
}

const defaultBuilderConfig = "/etc/skyline/builder.toml"

// loadBuilderConfig reads the TOML file and applies the flags that were set.
func loadBuilderConfig(path string, override func(*builder.Config)) (builder.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return builder.Config{}, fmt.Errorf("%w: %w", builder.ErrConfig, err)
	}
	cfg, err := builder.ParseConfig(data)
	if err != nil {
		return builder.Config{}, err
	}
	if override != nil {
		override(&cfg)
		if err := cfg.Validate(); err != nil {
			return builder.Config{}, err
		}
	}
	return cfg, nil
}

func runBuilderRun(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("builder run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultBuilderConfig, "configuration file (TOML)")
	jobs := fs.Int("jobs", 0, "builds at once (overrides jobs)")
	backend := fs.String("backend", "", "mock or rpmbuild (overrides backend)")
	stateDir := fs.String("state-dir", "", "state directory (overrides state_dir)")
	verbose := fs.Bool("v", false, "log debug messages")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline builder [run] [--config FILE] [--jobs N] [--backend B] [--state-dir D] [-v]
       skyline builder status [--json]          (see skyline builder status --help)
       skyline builder enroll-request ...       (see skyline builder enroll-request --help)

Runs the volunteer build daemon: lease a job, download and check its SRPM,
rebuild it at idle priority, sign an attestation of the RPM digests, submit
it and check the log's inclusion proof; repeat. SIGTERM lets a running build
finish for stop_grace, then hands its lease back. docs/builder.md describes
the configuration file (default %s).

Exit status: 0 stopped by a signal, 1 failed to start, 4 usage or configuration.

Flags:
`, defaultBuilderConfig)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, err := loadBuilderConfig(*config, func(c *builder.Config) {
		if *jobs != 0 {
			c.Jobs = *jobs
		}
		if *backend != "" {
			c.Backend = *backend
		}
		if *stateDir != "" {
			c.StateDir = *stateDir
		}
	})
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder: %s: %v\n", *config, err)
		return exitUsage
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// The key is read once, here; build children never see its path.
	signer, err := attest.LoadSigner(cfg.Key)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder: %v\n", err)
		return exitUsage
	}
	logKey, origin, err := builder.LogVerifier(cfg.LogKey, cfg.LogOrigin)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder: %v\n", err)
		return exitUsage
	}
	coord, err := newBuilderCoordinator(cfg, signer, origin)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder: %v\n", err)
		return exitUsage
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d, err := builder.New(cfg, builder.Deps{
		Coordinator: coord,
		Attest:      builder.SignerAttester(signer),
		KeyID:       signer.KeyID(),
		LogKey:      logKey,
		LogOrigin:   origin,
		Logger:      logger,
		Registerer:  reg,
	})
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder: %v\n", err)
		if errors.Is(err, builder.ErrConfig) {
			return exitUsage
		}
		return exitFail
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			fmt.Fprintf(stderr, "skyline builder: metrics_listen: %v\n", err)
			return exitFail
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go ms.Serve(ln)
		defer ms.Close()
	}
	logger.Info("builder starting", "key_id", signer.KeyID(), "coordinator", cfg.Coordinator, "backend", cfg.Backend, "jobs", cfg.Jobs)
	if err := d.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "skyline builder: %v\n", err)
		return exitFail
	}
	logger.Info("builder stopped")
	return exitOK
}

func runBuilderStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("builder status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", defaultBuilderConfig, "configuration file (TOML), for state_dir")
	stateDir := fs.String("state-dir", "", "state directory (instead of reading --config)")
	asJSON := fs.Bool("json", false, "print JSON")
	recent := fs.Int("recent", 10, "how many finished jobs to show")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline builder status [--config FILE | --state-dir D] [--json] [--recent N]

Shows, from the daemon's state directory: the current job, builds done,
agreed, outliers, failures and the notices received. When this builder's
results were outliers more than once it says so first, with what to check.

Exit status: 0 shown, 1 the state cannot be read, 4 usage.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 || *recent < 0 {
		fs.Usage()
		return exitUsage
	}
	dir := *stateDir
	if dir == "" {
		cfg, err := loadBuilderConfig(*config, nil)
		if err != nil {
			fmt.Fprintf(stderr, "skyline builder status: %s: %v\n", *config, err)
			return exitUsage
		}
		dir = cfg.StateDir
	}
	st, err := builder.ReadStatus(dir, *recent)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder status: %v\n", err)
		return exitFail
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return exitFail
		}
		return exitOK
	}
	if err := st.WriteText(stdout); err != nil {
		return exitFail
	}
	return exitOK
}

func runBuilderEnroll(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("builder enroll-request", flag.ContinueOnError)
	fs.SetOutput(stderr)
	key := fs.String("key", "", "the builder's private key file (required)")
	operator := fs.String("operator", "", "the person or organisation running the builder (required)")
	contact := fs.String("contact", "", "how to reach the operator, e.g. an e-mail address (required)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline builder enroll-request --key K --operator O --contact C

Prints, as JSON, what an operator sends to the coordinator's admins to have
this builder enrolled: key id, public key (PKIX PEM), role, operator and
contact. Nothing secret is printed.

Exit status: 0 printed, 1 the key cannot be read, 4 usage.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *key == "" || fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	s, err := attest.LoadSigner(*key)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder enroll-request: %v\n", err)
		return exitFail
	}
	req, err := builder.NewEnrollRequest(s, *operator, *contact)
	if err != nil {
		fmt.Fprintf(stderr, "skyline builder enroll-request: %v\n", err)
		return exitUsage
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(req); err != nil {
		return exitFail
	}
	return exitOK
}
