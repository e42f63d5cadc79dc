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
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/stats"
)

// serveConfig is /etc/skyline/serve.toml: the settings of `skyline serve`,
// mapped onto log.Config, coord.ServiceConfig and api.Config. Every field
// but Origin, LogKey and CoordinatorKey has a default; unknown keys are an
// error. packaging/serve.toml.example shows every key; docs/serve.md
// explains them.
type serveConfig struct {
	// Listen is the TCP address to serve on. Default "127.0.0.1:8080".
	Listen string `toml:"listen"`
	// DataDir holds the log's Pebble database. Default
	// "/var/lib/skyline/log".
	DataDir string `toml:"data_dir"`
	// Origin is the log's checkpoint origin (C2SP tlog-checkpoint), e.g.
	// "skyline.example.org". Required.
	Origin string `toml:"origin"`
	// LogKey is the Ed25519 private key file (skyline keygen) that signs
	// checkpoints, under the note name Origin. Required.
	LogKey string `toml:"log_key"`
	// CoordinatorKey is the private key file that signs enrolments, jobs,
	// leases and closes. Required (it may be the log key's file).
	CoordinatorKey string `toml:"coordinator_key"`
	// AdminKeys are public key files (PKIX PEM) of the admins allowed to
	// enrol, revoke and enqueue. Default none: only keys enrolled with the
	// admin role.
	AdminKeys []string `toml:"admin_keys"`
	// CheckpointInterval is how often a grown tree gets a new checkpoint.
	// Default 1s.
	CheckpointInterval time.Duration `toml:"checkpoint_interval"`
	// TickInterval is how often leases are expired and jobs closed.
	// Default 10s.
	TickInterval time.Duration `toml:"tick_interval"`
	// LeaseTTL is how long a lease lasts. Default 2h.
	LeaseTTL time.Duration `toml:"lease_ttl"`
	// JobTTL is how long after its enqueue a job may be leased: the job's
	// logged deadline. Past it the job closes once its last lease ended,
	// with the results it has, so its verdict becomes final. Default 168h
	// (7 days), at most 8760h (coord.MaxJobTTL).
	JobTTL time.Duration `toml:"job_ttl"`
	// MaxAttempts is how many leases one job slot may have. Default 3.
	MaxAttempts int `toml:"max_attempts"`
	// DefaultWanted is a job's result count when the enqueuer gives none.
	// Default 10.
	DefaultWanted int `toml:"default_wanted"`
	// MaxWanted bounds a job's result count. Default 100.
	MaxWanted int `toml:"max_wanted"`
	// WaitTimeout bounds POST /submit?wait=1. Default 10s.
	WaitTimeout time.Duration `toml:"wait_timeout"`
	// RequestWindow is the accepted clock skew of signed requests.
	// Default 5m.
	RequestWindow time.Duration `toml:"request_window"`
	// KeyRate and KeyBurst limit each key's signed requests (per second,
	// burst). Default 2 and 30; a negative rate turns the limit off.
	KeyRate  float64 `toml:"key_rate"`
	KeyBurst int     `toml:"key_burst"`
	// SubmitRate and SubmitBurst limit each client address's submissions.
	// Default 100 and 500; a negative rate turns the limit off.
	SubmitRate  float64 `toml:"submit_rate"`
	SubmitBurst int     `toml:"submit_burst"`
	// MaxSubmitBytes bounds a submission body. Default 66559 (64 KiB entry
	// plus 1 KiB).
	MaxSubmitBytes int64 `toml:"max_submit_bytes"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout bound the
	// phases of an HTTP connection. Defaults 5s, 30s, wait_timeout+20s,
	// 120s.
	ReadHeaderTimeout time.Duration `toml:"read_header_timeout"`
	ReadTimeout       time.Duration `toml:"read_timeout"`
	WriteTimeout      time.Duration `toml:"write_timeout"`
	IdleTimeout       time.Duration `toml:"idle_timeout"`
	// TLSCert and TLSKey are PEM files; both set: serve HTTPS. Default
	// unset.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// AllowPlainHTTP allows plain HTTP on a non-loopback listen address
	// (behind a TLS-terminating proxy). Default false.
	AllowPlainHTTP bool `toml:"allow_plain_http"`
	// LogLevel is debug, info, warn or error. Default info.
	LogLevel string `toml:"log_level"`
	// Witnesses ([[witness]]: name, url, verifier_key) are asked to cosign
	// every new checkpoint (C2SP tlog-witness); the checkpoint is served
	// with their cosignatures. Default none.
	Witnesses []log.WitnessConfig `toml:"witness"`
	// Stats serves the stats tracker's pages at /stats/ and its JSON at
	// /api/stats/, derived from this log's entries; its state is kept in
	// DataDir/stats.json. Default true.
	Stats bool `toml:"stats"`
}

var errConfig = errors.New("bad serve configuration")

// loadServeConfig reads path strictly and fills the defaults.
func loadServeConfig(path string) (serveConfig, error) {
	cfg := serveConfig{
		Listen:   "127.0.0.1:8080",
		DataDir:  "/var/lib/skyline/log",
		LogLevel: "info",
		Stats:    true,
	}
	md, err := toml.DecodeFile(path, &cfg)
	if err != nil {
		return cfg, fmt.Errorf("serve: %s: %w: %v", path, errConfig, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return cfg, fmt.Errorf("serve: %s: unknown key %q: %w", path, un[0].String(), errConfig)
	}
	switch {
	case cfg.Origin == "":
		return cfg, fmt.Errorf("serve: %s: origin is required: %w", path, errConfig)
	case cfg.LogKey == "" || cfg.CoordinatorKey == "":
		return cfg, fmt.Errorf("serve: %s: log_key and coordinator_key are required: %w", path, errConfig)
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return cfg, fmt.Errorf("serve: %s: set both tls_cert and tls_key, or neither: %w", path, errConfig)
	case cfg.JobTTL < 0 || cfg.JobTTL > coord.MaxJobTTL:
		return cfg, fmt.Errorf("serve: %s: job_ttl %s not in (0, %s]: %w", path, cfg.JobTTL, coord.MaxJobTTL, errConfig)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return cfg, fmt.Errorf("serve: %s: log_level %q: %w", path, cfg.LogLevel, errConfig)
	}
	return cfg, nil
}

// runServe implements `skyline serve [--config FILE] [--listen ADDR]`.
func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "/etc/skyline/serve.toml", "configuration file")
	listen := fs.String("listen", "", "listen address (overrides the file's listen)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline serve [--config FILE] [--listen ADDR]

Runs the log and coordinator: the C2SP tlog-tiles read API, submissions,
leases, enrolment and the admin API (docs/serve.md, docs/api.md). Stops
gracefully on SIGTERM or SIGINT.

Exit status: 0 stopped cleanly, 1 failed, 4 bad flags or configuration.

Flags:
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
	cfg, err := loadServeConfig(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := serve(ctx, cfg, stderr, nil); err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, errConfig) || errors.Is(err, api.ErrPlainHTTP) {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

// serve runs the server of cfg until ctx is done. When ready is set, it
// receives the listener's address once requests are served.
func serve(ctx context.Context, cfg serveConfig, stderr io.Writer, ready chan<- string) error {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	logKey, err := attest.LoadSigner(cfg.LogKey)
	if err != nil {
		return fmt.Errorf("serve: log key: %w: %w", errConfig, err)
	}
	noteSigner, err := logKey.NoteSigner(cfg.Origin)
	if err != nil {
		return fmt.Errorf("serve: log key: %w: %w", errConfig, err)
	}
	coordKey, err := attest.LoadSigner(cfg.CoordinatorKey)
	if err != nil {
		return fmt.Errorf("serve: coordinator key: %w: %w", errConfig, err)
	}
	var admins []*attest.Verifier
	for _, p := range cfg.AdminKeys {
		v, err := attest.LoadVerifier(p)
		if err != nil {
			return fmt.Errorf("serve: admin key: %w: %w", errConfig, err)
		}
		admins = append(admins, v)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("serve: data dir: %w", err)
	}
	idx := &coord.IndexCache{}
	lg, err := log.Open(ctx, log.Config{
		Dir: cfg.DataDir, Origin: cfg.Origin, Signer: noteSigner, Indexer: idx.Index,
		CheckpointInterval: cfg.CheckpointInterval, Logger: logger, Registerer: reg,
	})
	if err != nil {
		return fmt.Errorf("serve: open log: %w", err)
	}
	defer lg.Close()
	svc, err := coord.NewService(ctx, coord.ServiceConfig{
		Log: lg, Signer: coordKey, IndexCache: idx, AdminKeys: admins, TickInterval: cfg.TickInterval, Logger: logger,
		Coord: coord.Config{LeaseTTL: cfg.LeaseTTL, JobTTL: cfg.JobTTL, MaxAttempts: cfg.MaxAttempts, DefaultWanted: cfg.DefaultWanted, MaxWanted: cfg.MaxWanted},
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	gatherer, err := log.NewGatherer(lg, log.GathererConfig{Witnesses: cfg.Witnesses, Logger: logger})
	if err != nil {
		return fmt.Errorf("serve: %w: %w", errConfig, err)
	}
	var tracker *stats.Tracker
	mounts := map[string]http.Handler{}
	statsPath := filepath.Join(cfg.DataDir, "stats.json")
	if cfg.Stats {
		tracker, err = stats.LoadFile(stats.Config{Coordinator: coordKey.Verifier(), Logger: logger, Registerer: reg}, statsPath)
		if err != nil {
			return fmt.Errorf("serve: stats: %w", err)
		}
		h := stats.Handler(tracker)
		mounts["/stats/"], mounts["/api/stats/"] = h, h
	}
	srv, err := api.NewServer(api.Config{
		MaxSubmitBytes: cfg.MaxSubmitBytes, WaitTimeout: cfg.WaitTimeout, RequestWindow: cfg.RequestWindow,
		KeyRate: cfg.KeyRate, KeyBurst: cfg.KeyBurst, SubmitRate: cfg.SubmitRate, SubmitBurst: cfg.SubmitBurst,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout, ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		TLSCertFile: cfg.TLSCert, TLSKeyFile: cfg.TLSKey, AllowPlainHTTP: cfg.AllowPlainHTTP,
		Logger: logger, Registerer: reg, Gatherer: reg, Mounts: mounts,
	}, svc, gatherer.Served())
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("serve: listen: %w", err)
	}
	defer ln.Close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = svc.Run(runCtx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = gatherer.Run(runCtx)
	}()
	if tracker != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tracker.Follow(runCtx, stats.LogSource(lg), stats.FollowConfig{StatePath: statsPath}); err != nil && runCtx.Err() == nil {
				logger.Error("serve: stats stopped following the log", "err", err)
			}
		}()
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	err = srv.Serve(runCtx, ln)
	cancel()
	wg.Wait()
	logger.Info("serve stopped", "err", err)
	return err
}
