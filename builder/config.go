package builder

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/fedora-skyline/skyline/attest"
	"golang.org/x/mod/sumdb/note"
)

// ErrConfig is returned for a configuration that cannot run.
var ErrConfig = errors.New("invalid configuration")

// Backends a Config may name.
const (
	BackendMock     = "mock"
	BackendRpmbuild = "rpmbuild"
)

// Config is the whole configuration of the volunteer daemon. cmd/skyline
// fills it from one TOML file (/etc/skyline/builder.toml) plus flags; every
// field has a default (see DefaultConfig) except the three that identify
// the network: Coordinator, Key and LogKey.
type Config struct {
	// Coordinator is the base URL of the coordinator and log
	// (`skyline serve`). No default: required.
	Coordinator string `toml:"coordinator"`
	// Key is the path of this builder's private key (PKCS#8 PEM, made by
	// `skyline keygen`). The daemon reads it once into memory; build
	// children never get the path or a descriptor. No default: required.
	Key string `toml:"key"`
	// LogKey is the log's C2SP signed-note verifier key
	// ("<name>+<hash>+<base64>"); checkpoints not signed by it are not
	// acknowledgements. No default: required.
	LogKey string `toml:"log_key"`
	// LogOrigin is the origin line the log's checkpoints must carry.
	// Default: the name of LogKey (C2SP tlog-checkpoint recommends that the
	// key name equals the origin).
	LogOrigin string `toml:"log_origin"`

	// StateDir holds the durable JSON state: the current leases, signed but
	// unacknowledged envelopes, receipts and counters. Default
	// /var/lib/skyline/builder.
	StateDir string `toml:"state_dir"`
	// WorkDir holds one scratch directory per job (SRPM, build tree, results),
	// removed after every job. Default /var/tmp/skyline-work.
	WorkDir string `toml:"work_dir"`

	// Backend is "mock" (the Fedora way, needs the mock group) or
	// "rpmbuild" (rpmbuild --rebuild --nodeps in a private mount namespace).
	// Default "mock".
	Backend string `toml:"backend"`
	// Chroot is the mock configuration passed as `mock -r`. Default
	// "fedora-rawhide-x86_64".
	Chroot string `toml:"chroot"`
	// MockArgs are extra arguments appended to every mock command line.
	// Default none.
	MockArgs []string `toml:"mock_args"`
	// BuildPath is the one fixed path at which the rpmbuild backend builds,
	// inside a private mount namespace, so that paths compiled into
	// binaries are the same on every builder. Default /var/tmp/skyline-build.
	BuildPath string `toml:"build_path"`
	// Path is the PATH given to build children; nothing else of the
	// daemon's environment is passed on. Default
	// /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin.
	Path string `toml:"path"`

	// Arches are the RPM architectures this builder asks for jobs of.
	// Default: the host's (x86_64, aarch64, ...).
	Arches []string `toml:"arches"`
	// Jobs is how many builds run at once. Default 1.
	Jobs int `toml:"jobs"`
	// BuildTimeout bounds one build; on expiry the whole process group of
	// the build is killed and the lease handed back. Default 6h.
	BuildTimeout time.Duration `toml:"build_timeout"`
	// StopGrace is how long a running build may go on after SIGTERM before
	// it is killed and its lease handed back. Default 2m.
	StopGrace time.Duration `toml:"stop_grace"`
	// PollInterval is the wait between lease requests when there is no work
	// or the machine is busy. Default 1m.
	PollInterval time.Duration `toml:"poll_interval"`
	// RetryBase and RetryMax bound the exponential backoff (with jitter)
	// used when the coordinator or the SRPM server fails. Defaults 2s, 5m.
	RetryBase time.Duration `toml:"retry_base"`
	RetryMax  time.Duration `toml:"retry_max"`
	// FetchAttempts is how many times an SRPM download is tried before the
	// lease is handed back. Default 5.
	FetchAttempts int `toml:"fetch_attempts"`
	// SubmitAttempts is how many times a submission is tried in one go
	// before the result is left in the state directory for a later retry.
	// Default 5.
	SubmitAttempts int `toml:"submit_attempts"`
	// NoticeInterval is how often the daemon asks for outlier notices about
	// its results. Default 1h.
	NoticeInterval time.Duration `toml:"notice_interval"`

	// MaxSRPMSize is the largest SRPM downloaded, in bytes. Default 4 GiB.
	MaxSRPMSize int64 `toml:"max_srpm_size"`
	// MaxBuildDisk caps the bytes one job's scratch directory may use; a
	// build that grows past it is stopped and its lease handed back.
	// Default 40 GiB.
	MaxBuildDisk int64 `toml:"max_build_disk"`
	// MinFreeDisk is the free space WorkDir's file system must have before
	// a job is leased. Default 10 GiB.
	MinFreeDisk int64 `toml:"min_free_disk"`
	// DiskCheckInterval is how often a running build's disk use is
	// measured. Default 15s.
	DiskCheckInterval time.Duration `toml:"disk_check_interval"`

	// MaxCPUBusy pauses leasing while the machine's CPUs are busier than
	// this fraction with work that is not ours (time at nice > 0, like our
	// builds, does not count). 0 < MaxCPUBusy <= 1; 1 never pauses.
	// Default 0.5.
	MaxCPUBusy float64 `toml:"max_cpu_busy"`
	// PauseOnBattery pauses leasing while the machine runs on battery.
	// Default true.
	PauseOnBattery bool `toml:"pause_on_battery"`

	// MetricsListen, when set, is the address (e.g. "127.0.0.1:9464") where
	// the daemon serves Prometheus metrics at /metrics. Default "": off.
	MetricsListen string `toml:"metrics_listen"`

	// LogTail is how many bytes from the end of a failed build's log are
	// reported to the coordinator, line breaks shown as " | "; the whole
	// report is cut to MaxLeaseDetail (1024) bytes. Default 768.
	LogTail int `toml:"log_tail"`
}

// DefaultConfig returns the configuration with every default filled in and
// the three required fields empty.
func DefaultConfig() Config {
	return Config{
		StateDir:          "/var/lib/skyline/builder",
		WorkDir:           "/var/tmp/skyline-work",
		Backend:           BackendMock,
		Chroot:            "fedora-rawhide-x86_64",
		BuildPath:         "/var/tmp/skyline-build",
		Path:              "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		Arches:            []string{HostArch()},
		Jobs:              1,
		BuildTimeout:      6 * time.Hour,
		StopGrace:         2 * time.Minute,
		PollInterval:      time.Minute,
		RetryBase:         2 * time.Second,
		RetryMax:          5 * time.Minute,
		FetchAttempts:     5,
		SubmitAttempts:    5,
		NoticeInterval:    time.Hour,
		MaxSRPMSize:       4 << 30,
		MaxBuildDisk:      40 << 30,
		MinFreeDisk:       10 << 30,
		DiskCheckInterval: 15 * time.Second,
		MaxCPUBusy:        0.5,
		PauseOnBattery:    true,
		LogTail:           768,
	}
}

// ParseConfig decodes a TOML configuration over DefaultConfig. Unknown keys
// are rejected, so a misspelt setting is an error rather than a silent
// default. The result is validated.
func ParseConfig(data []byte) (Config, error) {
	cfg := DefaultConfig()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		return Config{}, fmt.Errorf("builder: config: %w: %w", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("builder: config: unknown keys %s: %w", strings.Join(keys, ", "), ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("builder: config: "+format+": %w", append(args, ErrConfig)...)
	}
	switch {
	case c.Coordinator == "":
		return bad("coordinator is required")
	case c.Key == "":
		return bad("key is required")
	case c.LogKey == "":
		return bad("log_key is required")
	case !validVerifierKey(c.LogKey):
		return bad("log_key %q is not a signed-note verifier key", c.LogKey)
	case c.Backend != BackendMock && c.Backend != BackendRpmbuild:
		return bad("backend %q is not %q or %q", c.Backend, BackendMock, BackendRpmbuild)
	case c.Backend == BackendMock && c.Chroot == "":
		return bad("chroot is required for the mock backend")
	case !filepath.IsAbs(c.StateDir) || !filepath.IsAbs(c.WorkDir) || !filepath.IsAbs(c.BuildPath):
		return bad("state_dir, work_dir and build_path must be absolute paths")
	case c.StateDir == c.WorkDir:
		return bad("state_dir and work_dir must differ: work_dir is wiped after every job")
	case c.Path == "":
		return bad("path must not be empty")
	case len(c.Arches) == 0:
		return bad("arches must name at least one architecture")
	case !validArches(c.Arches):
		return bad("arches %q: not RPM architecture names", c.Arches)
	case c.Jobs < 1 || c.Jobs > 64:
		return bad("jobs %d is not between 1 and 64", c.Jobs)
	case c.BuildTimeout <= 0 || c.StopGrace < 0 || c.PollInterval <= 0 || c.NoticeInterval <= 0 || c.DiskCheckInterval <= 0:
		return bad("build_timeout, poll_interval, notice_interval and disk_check_interval must be positive, stop_grace not negative")
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return bad("retry_base must be positive and retry_max at least retry_base")
	case c.FetchAttempts < 1 || c.SubmitAttempts < 1:
		return bad("fetch_attempts and submit_attempts must be at least 1")
	case c.MaxSRPMSize <= 0 || c.MaxBuildDisk <= 0 || c.MinFreeDisk < 0:
		return bad("max_srpm_size and max_build_disk must be positive, min_free_disk not negative")
	case !(c.MaxCPUBusy > 0 && c.MaxCPUBusy <= 1):
		return bad("max_cpu_busy %v is not in (0, 1]", c.MaxCPUBusy)
	case c.MetricsListen != "" && !validHostPort(c.MetricsListen):
		return bad("metrics_listen %q is not host:port", c.MetricsListen)
	case c.LogTail < 0 || c.LogTail > MaxLeaseDetail:
		return bad("log_tail %d is not between 0 and %d", c.LogTail, MaxLeaseDetail)
	}
	return nil
}

func validVerifierKey(vkey string) bool {
	_, err := note.NewVerifier(vkey)
	return err == nil
}

func validArches(arches []string) bool {
	for _, a := range arches {
		if attest.CheckArch(a) != nil {
			return false
		}
	}
	return true
}

// HostArch is the RPM architecture of the machine the daemon runs on.
func HostArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "i686"
	}
	return runtime.GOARCH // ppc64le, s390x, riscv64 are spelled alike
}

func validHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	return err == nil && port != ""
}
