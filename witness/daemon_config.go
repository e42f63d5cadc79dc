package witness

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"golang.org/x/mod/sumdb/note"
)

// Config is the whole configuration of `skyline witness`, filled by
// cmd/skyline from one TOML file (docs/witness.md "Configuration"). Every
// field has a default except the witness's name, its two keys and the logs.
type Config struct {
	// StateDir holds the durable state, one directory per log. Default
	// /var/lib/skyline/witness.
	StateDir string `toml:"state_dir"`
	// Listen is the address of the HTTP interface (POST /add-checkpoint,
	// GET /notices/{keyid}, GET /metrics). Default 127.0.0.1:7380.
	Listen string `toml:"listen"`
	// Name is the witness's name, the key name of its cosignatures (C2SP
	// signed-note), e.g. "witness.example.org/w1". Required.
	Name string `toml:"name"`
	// CosignKey is the path of the Ed25519 private key (PKCS#8 PEM, made by
	// `skyline keygen`) that cosigns checkpoints. Required.
	CosignKey string `toml:"cosign_key"`
	// VerdictKey is the path of the private key that signs verdicts and
	// alarms; it must differ from CosignKey and be enrolled with role
	// witness in every log the witness submits to. Required.
	VerdictKey string `toml:"verdict_key"`
	// PollInterval is how often every log's checkpoint is fetched.
	// Default 10s.
	PollInterval time.Duration `toml:"poll_interval"`
	// Timeout bounds each HTTP request to a log. Default 30s.
	Timeout time.Duration `toml:"timeout"`
	// BatchSize is how many entries are read and verified together.
	// Default 1024.
	BatchSize int `toml:"batch_size"`
	// Policy is the agreement policy. Default witness.DefaultPolicy().
	Policy Policy `toml:"policy"`
	// Breaker configures the circuit breaker. Default
	// witness.DefaultBreakerConfig().
	Breaker BreakerConfig `toml:"breaker"`
	// ReputationWindow and MaxOutliers configure builder reputation.
	// Defaults 50 and 1.
	ReputationWindow int `toml:"reputation_window"`
	MaxOutliers      int `toml:"max_outliers"`
	// Logs are the logs the witness follows. At least one.
	Logs []LogConfig `toml:"log"`
}

// LogConfig is one followed log.
type LogConfig struct {
	// Name names the log in state, metrics and notices ([a-z0-9._-]).
	// Required.
	Name string `toml:"name"`
	// URL is the base URL of the log's C2SP tlog-tiles read API. Required.
	URL string `toml:"url"`
	// SubmitURL is the base URL of the log's API (POST /submit) for
	// verdicts and alarms. Default URL.
	SubmitURL string `toml:"submit_url"`
	// LogKey is the log's signed-note verifier key. Required.
	LogKey string `toml:"log_key"`
	// Origin is the checkpoint origin line. Default: the name of LogKey.
	Origin string `toml:"origin"`
	// CoordinatorKey is the path of the coordinator's public key (PKIX
	// PEM): only it may sign enrolments, revocations, jobs, leases, lease
	// ends and job closes. Required.
	CoordinatorKey string `toml:"coordinator_key"`
	// CoordinatorKeyID, when set, must be the key id of CoordinatorKey.
	CoordinatorKeyID string `toml:"coordinator_key_id"`
	// Submit makes the witness submit its verdicts and alarms to the log.
	// Default true.
	Submit *bool `toml:"submit"`
}

// Submits reports whether verdicts and alarms are submitted to the log.
func (l LogConfig) Submits() bool { return l.Submit == nil || *l.Submit }

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	return Config{
		StateDir:         "/var/lib/skyline/witness",
		Listen:           "127.0.0.1:7380",
		PollInterval:     10 * time.Second,
		Timeout:          defaultTimeout,
		BatchSize:        1024,
		Policy:           DefaultPolicy(),
		Breaker:          DefaultBreakerConfig(),
		ReputationWindow: DefaultReputationWindow,
		MaxOutliers:      DefaultMaxOutliers,
	}
}

// ParseConfig decodes a TOML configuration over DefaultConfig. Unknown keys
// are ErrConfig, so that a misspelt setting is not silently a default.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		return Config{}, fmt.Errorf("witness: config: %w: %v", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("witness: config: unknown keys %s: %w", strings.Join(keys, ", "), ErrConfig)
	}
	for i := range cfg.Logs {
		if cfg.Logs[i].Origin == "" {
			name, _, _ := strings.Cut(cfg.Logs[i].LogKey, "+")
			cfg.Logs[i].Origin = name
		}
		if cfg.Logs[i].SubmitURL == "" {
			cfg.Logs[i].SubmitURL = cfg.Logs[i].URL
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("witness: config: "+format+": %w", append(args, ErrConfig)...)
	}
	switch {
	case c.StateDir == "":
		return bad("state_dir is required")
	case c.Name == "" || strings.ContainsAny(c.Name, "+ \n\t"):
		return bad("name %q must be a signed-note key name", c.Name)
	case c.CosignKey == "" || c.VerdictKey == "":
		return bad("cosign_key and verdict_key are required")
	case c.CosignKey == c.VerdictKey:
		return bad("cosign_key and verdict_key must be different keys")
	case c.PollInterval <= 0 || c.Timeout <= 0:
		return bad("poll_interval and timeout must be positive")
	case c.BatchSize < 1 || c.BatchSize > 1<<20:
		return bad("batch_size %d not in 1..1048576", c.BatchSize)
	case len(c.Logs) == 0:
		return bad("no [[log]]")
	}
	if err := c.Policy.Validate(); err != nil {
		return bad("policy: %v", err)
	}
	if err := c.Breaker.Validate(); err != nil {
		return bad("breaker: %v", err)
	}
	if _, err := NewReputation(c.ReputationWindow, c.MaxOutliers); err != nil {
		return bad("reputation: %v", err)
	}
	names, origins := map[string]bool{}, map[string]bool{}
	for _, l := range c.Logs {
		switch {
		case !logNameRE.MatchString(l.Name):
			return bad("log name %q is not [a-z0-9._-]", l.Name)
		case names[l.Name]:
			return bad("log %q twice", l.Name)
		case !httpURL(l.URL) || !httpURL(l.SubmitURL):
			return bad("log %s: url and submit_url must be http(s) URLs", l.Name)
		case l.CoordinatorKey == "":
			return bad("log %s: coordinator_key is required", l.Name)
		case l.Origin == "" || origins[l.Origin]:
			return bad("log %s: origin %q empty or used twice", l.Name, l.Origin)
		}
		if _, err := note.NewVerifier(l.LogKey); err != nil {
			return bad("log %s: log_key is not a signed-note verifier key: %v", l.Name, err)
		}
		names[l.Name], origins[l.Origin] = true, true
	}
	return nil
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
