package main

// `skyline koji-listen` and `skyline koji-publish`: Fedora's side
// (docs/fedora.md, "The build listener" and "Publishing verdicts").

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/witness"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/mod/sumdb/note"
)

// kojiDuration is a TOML duration written as a Go duration string ("5m").
type kojiDuration struct{ time.Duration }

func (d *kojiDuration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}

// kojiConfig is /etc/skyline/koji.toml. docs/fedora.md shows a complete one.
type kojiConfig struct {
	// MetricsListen, when set, serves Prometheus metrics at /metrics.
	MetricsListen string `toml:"metrics_listen"`
	Hub           struct {
		URL    string `toml:"url"`    // Koji hub XML-RPC endpoint
		Topdir string `toml:"topdir"` // kojipkgs (Koji's topurl)
	} `toml:"hub"`
	AMQP struct {
		Enabled     *bool  `toml:"enabled"`      // default true
		URL         string `toml:"url"`          // default Fedora's public broker
		CAFile      string `toml:"ca_file"`      // broker CA (PEM)
		CertFile    string `toml:"cert_file"`    // client certificate (PEM)
		KeyFile     string `toml:"key_file"`     // client key (PEM)
		TopicPrefix string `toml:"topic_prefix"` // default org.fedoraproject.prod
		Instance    string `toml:"instance"`     // default primary
	} `toml:"amqp"`
	Poll struct {
		Interval kojiDuration `toml:"interval"` // default 5m
		Overlap  kojiDuration `toml:"overlap"`  // default 10m
	} `toml:"poll"`
	Import struct {
		State       string   `toml:"state"`         // importer state file (required)
		Arches      []string `toml:"arches"`        // default every arch
		NoarchArch  string   `toml:"noarch_arch"`   // default x86_64
		SigKeys     []string `toml:"sig_keys"`      // signed copies to prefer
		Wanted      int      `toml:"wanted"`        // default: the coordinator's
		MaxSRPMSize int64    `toml:"max_srpm_size"` // bytes, default 4 GiB
		MaxRPMSize  int64    `toml:"max_rpm_size"`  // bytes, default 4 GiB
	} `toml:"import"`
	Skyline struct {
		Server      string `toml:"server"`       // skyline serve base URL
		AdminKey    string `toml:"admin_key"`    // enqueues jobs
		ImporterKey string `toml:"importer_key"` // signs official builds
		// The log the signed requests (enqueue) are for, named in each as
		// its audience: origin, else the name of log_key (the log's
		// signed-note verifier key), else publish.policy's log origin.
		LogKey string `toml:"log_key"`
		Origin string `toml:"origin"`
	} `toml:"skyline"`
	Publish struct {
		Enabled   bool         `toml:"enabled"`   // koji-listen also publishes
		Policy    string       `toml:"policy"`    // the verify policy: log and witness keys
		ResultsDB string       `toml:"resultsdb"` // API root, .../api/v2.0
		Username  string       `toml:"username"`
		Password  string       `toml:"password"`
		Token     string       `toml:"token"`
		State     string       `toml:"state"`    // publisher state (required)
		RefURL    string       `toml:"ref_url"`  // with %d for the log index
		Interval  kojiDuration `toml:"interval"` // default 1m
	} `toml:"publish"`
}

func loadKojiConfig(path string) (*kojiConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c kojiConfig
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("%s: unknown keys %s", path, strings.Join(keys, ", "))
	}
	dir := filepath.Dir(path)
	for _, p := range []*string{&c.AMQP.CAFile, &c.AMQP.CertFile, &c.AMQP.KeyFile, &c.Import.State, &c.Skyline.AdminKey,
		&c.Skyline.ImporterKey, &c.Publish.Policy, &c.Publish.State} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return &c, nil
}

func runKojiListen(args []string, stdout, stderr io.Writer) int {
	return runKoji("koji-listen", args, stderr)
}

func runKojiPublish(args []string, stdout, stderr io.Writer) int {
	return runKoji("koji-publish", args, stderr)
}

func runKoji(name string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/skyline/koji.toml", "configuration file (TOML)")
	once := fs.Bool("once", false, "koji-listen: poll once and exit (no broker); koji-publish: one step and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: skyline %s [--config FILE] [--once]\n\n", name)
		if name == "koji-listen" {
			fmt.Fprintf(stderr, "Imports Koji builds into skyline: fedora-messaging build.state.change and\ntag messages plus a poller of listBuilds; with [publish] enabled = true it\nalso publishes verdicts to ResultsDB (docs/fedora.md).\n\n")
		} else {
			fmt.Fprintf(stderr, "Follows the log's verdict entries and publishes each verdict a quorum of\nthe policy's witnesses agree on to ResultsDB (docs/fedora.md).\n\n")
		}
		fmt.Fprintf(stderr, "Exit status: 0 stopped cleanly, 1 failed, 4 usage or configuration error.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, err := loadKojiConfig(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "skyline %s: %v\n", name, err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reg := prometheus.NewRegistry()
	metrics, err := koji.NewListenMetrics(reg)
	if err != nil {
		fmt.Fprintf(stderr, "skyline %s: %v\n", name, err)
		return exitFail
	}
	if cfg.MetricsListen != "" {
		ln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			fmt.Fprintf(stderr, "skyline %s: metrics_listen: %v\n", name, err)
			return exitFail
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go ms.Serve(ln)
		defer ms.Close()
	}

	var runs []func(context.Context) error
	if name == "koji-listen" {
		l, poller, err := buildListener(cfg, logger, metrics)
		if err != nil {
			fmt.Fprintf(stderr, "skyline %s: %v\n", name, err)
			return exitUsage
		}
		if *once {
			runs = append(runs, func(ctx context.Context) error { _, err := poller.Poll(ctx); return err })
		} else {
			runs = append(runs, l.Run)
		}
	}
	if name == "koji-publish" || cfg.Publish.Enabled {
		feed, err := buildFeed(cfg, logger)
		if err != nil {
			fmt.Fprintf(stderr, "skyline %s: %v\n", name, err)
			return exitUsage
		}
		if *once {
			runs = append(runs, func(ctx context.Context) error { _, err := feed.Step(ctx); return err })
		} else {
			runs = append(runs, feed.Run)
		}
	}
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r(ctx)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "skyline %s: %v\n", name, err)
		return exitFail
	}
	return exitOK
}

func buildListener(cfg *kojiConfig, logger *slog.Logger, metrics *koji.ListenMetrics) (*koji.Listener, *koji.Poller, error) {
	if cfg.Hub.URL == "" || cfg.Hub.Topdir == "" || cfg.Import.State == "" || cfg.Skyline.Server == "" ||
		cfg.Skyline.AdminKey == "" || cfg.Skyline.ImporterKey == "" {
		return nil, nil, errors.New("hub.url, hub.topdir, import.state, skyline.server, skyline.admin_key and skyline.importer_key are required")
	}
	hub, err := koji.NewClient(koji.Config{HubURL: cfg.Hub.URL, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	admin, err := attest.LoadSigner(cfg.Skyline.AdminKey)
	if err != nil {
		return nil, nil, err
	}
	importer, err := attest.LoadSigner(cfg.Skyline.ImporterKey)
	if err != nil {
		return nil, nil, err
	}
	origin, err := kojiLogOrigin(cfg)
	if err != nil {
		return nil, nil, err
	}
	adminClient, err := api.NewClient(api.ClientConfig{URL: cfg.Skyline.Server, Signer: admin, Origin: origin})
	if err != nil {
		return nil, nil, err
	}
	server, err := api.NewClient(api.ClientConfig{URL: cfg.Skyline.Server, Signer: importer, Origin: origin})
	if err != nil {
		return nil, nil, err
	}
	im, err := koji.NewImporter(koji.ImporterConfig{
		Hub: hub, Paths: koji.PathInfo{Topdir: cfg.Hub.Topdir},
		Sink:      &koji.APISink{Admin: adminClient, Server: server, ImporterKey: importer},
		StatePath: cfg.Import.State, Arches: cfg.Import.Arches, NoarchArch: cfg.Import.NoarchArch,
		SigKeys: cfg.Import.SigKeys, Wanted: cfg.Import.Wanted,
		MaxSRPMSize: cfg.Import.MaxSRPMSize, MaxRPMSize: cfg.Import.MaxRPMSize, Logger: logger, Metrics: metrics,
	})
	if err != nil {
		return nil, nil, err
	}
	poller := koji.NewPoller(hub, im, koji.PollerConfig{Interval: cfg.Poll.Interval.Duration, Overlap: cfg.Poll.Overlap.Duration, Logger: logger})
	l := &koji.Listener{Poller: poller}
	if cfg.AMQP.Enabled == nil || *cfg.AMQP.Enabled {
		tc, err := brokerTLS(cfg)
		if err != nil {
			return nil, nil, err
		}
		l.Consumer, err = koji.NewConsumer(koji.AMQPConfig{
			URL: cfg.AMQP.URL, TLS: tc, Logger: logger, Metrics: metrics,
			Filter: koji.MessageFilter{TopicPrefix: cfg.AMQP.TopicPrefix, Instance: cfg.AMQP.Instance},
		}, im)
		if err != nil {
			return nil, nil, err
		}
	}
	return l, poller, nil
}

// kojiLogOrigin returns the origin of the log the importer's signed
// requests are for, from the importer's own configuration (never from the
// server): skyline.origin, else the name of skyline.log_key, else the log
// origin of publish.policy.
func kojiLogOrigin(cfg *kojiConfig) (string, error) {
	switch {
	case cfg.Skyline.Origin != "":
		return cfg.Skyline.Origin, nil
	case cfg.Skyline.LogKey != "":
		v, err := note.NewVerifier(cfg.Skyline.LogKey)
		if err != nil {
			return "", fmt.Errorf("skyline.log_key: not a signed-note verifier key: %w", err)
		}
		return v.Name(), nil
	case cfg.Publish.Policy != "":
		pol, err := witness.LoadVerifyPolicy(cfg.Publish.Policy)
		if err != nil {
			return "", err
		}
		return pol.Log.Origin, nil
	}
	return "", errors.New("skyline.origin, skyline.log_key or publish.policy is required: a signed request names the log it is for")
}

// brokerTLS loads the client certificate and the broker's CA.
func brokerTLS(cfg *kojiConfig) (*tls.Config, error) {
	if cfg.AMQP.CertFile == "" || cfg.AMQP.KeyFile == "" || cfg.AMQP.CAFile == "" {
		return nil, errors.New("amqp.ca_file, amqp.cert_file and amqp.key_file are required (Fedora's public broker authenticates by certificate)")
	}
	cert, err := tls.LoadX509KeyPair(cfg.AMQP.CertFile, cfg.AMQP.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("amqp client certificate: %w", err)
	}
	ca, err := os.ReadFile(cfg.AMQP.CAFile)
	if err != nil {
		return nil, fmt.Errorf("amqp CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("amqp CA %s: no PEM certificate", cfg.AMQP.CAFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func buildFeed(cfg *kojiConfig, logger *slog.Logger) (*koji.VerdictFeed, error) {
	p := cfg.Publish
	if p.Policy == "" || p.ResultsDB == "" || p.State == "" {
		return nil, errors.New("publish.policy, publish.resultsdb and publish.state are required")
	}
	pol, err := witness.LoadVerifyPolicy(p.Policy)
	if err != nil {
		return nil, err
	}
	if pol.Log.URL == "" {
		return nil, fmt.Errorf("%s: log.url is required for publishing", p.Policy)
	}
	lv, err := note.NewVerifier(pol.Log.VKey)
	if err != nil {
		return nil, err
	}
	var keys []*attest.Verifier
	for _, w := range pol.Witnesses {
		k, err := loadKeyPolicy(w.Verdict, filepath.Dir(p.Policy))
		if err != nil {
			return nil, fmt.Errorf("%s: witness %s: %w", p.Policy, w.Name, err)
		}
		keys = append(keys, k)
	}
	pub, err := koji.NewPublisher(koji.PublisherConfig{URL: p.ResultsDB, Username: p.Username, Password: p.Password, Token: p.Token,
		StatePath: p.State, Logger: logger})
	if err != nil {
		return nil, err
	}
	return koji.NewVerdictFeed(koji.VerdictFeedConfig{
		Log:       witness.FollowerConfig{URL: pol.Log.URL, Origin: pol.Log.Origin, Verifier: lv},
		Witnesses: keys, Quorum: pol.WitnessQuorum, Publisher: pub,
		StatePath: p.State + ".feed", RefURL: p.RefURL, Interval: p.Interval.Duration, Logger: logger,
	})
}

// loadKeyPolicy loads a verify policy's verdict key (inline PEM or file
// relative to the policy's directory).
func loadKeyPolicy(k witness.KeyPolicy, dir string) (*attest.Verifier, error) {
	switch {
	case k.PublicKey != "":
		return attest.ParsePublicPEM([]byte(k.PublicKey))
	case k.PublicKeyFile != "":
		path := k.PublicKeyFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		return attest.LoadVerifier(path)
	}
	return nil, errors.New("no verdict key")
}
