package builder

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

const minimalTOML = `
coordinator = "https://skyline.example.org"
key = "/etc/skyline/builder.key"
log_key = "skyline.example.org+934185ef+AR1t4T86Tsvmy/jmTUMQkpdY2IiFnNaHl8w85tujkmZA"
`

func TestParseConfigDefaultsAndOverrides(t *testing.T) {
	cfg, err := ParseConfig([]byte(minimalTOML))
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	if cfg.Jobs != 1 || cfg.Backend != BackendMock || cfg.BuildTimeout != 6*time.Hour || !cfg.PauseOnBattery || cfg.StateDir != want.StateDir ||
		len(cfg.Arches) != 1 || cfg.Arches[0] != HostArch() {
		t.Errorf("defaults not applied: %+v", cfg)
	}
	cfg, err = ParseConfig([]byte(minimalTOML + `
backend = "rpmbuild"
jobs = 2
build_timeout = "90m"
stop_grace = "30s"
max_cpu_busy = 0.25
pause_on_battery = false
mock_args = ["--isolation=simple"]
arches = ["aarch64", "noarch"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Backend != BackendRpmbuild || cfg.Jobs != 2 || cfg.BuildTimeout != 90*time.Minute || cfg.StopGrace != 30*time.Second ||
		cfg.MaxCPUBusy != 0.25 || cfg.PauseOnBattery || len(cfg.MockArgs) != 1 || len(cfg.Arches) != 2 {
		t.Errorf("overrides not applied: %+v", cfg)
	}
}

// TestParseConfigRejects: every bad setting is its own error, wrapping
// ErrConfig and naming the setting.
func TestParseConfigRejects(t *testing.T) {
	for _, tc := range []struct{ toml, mention string }{
		{minimalTOML + "jobz = 2\n", "jobz"},
		{minimalTOML + "[extra]\nx = 1\n", "extra"},
		{`key = "k"` + "\n" + `log_key = "l"`, "coordinator"},
		{minimalTOML + `backend = "docker"`, "backend"},
		{minimalTOML + "jobs = 0", "jobs"},
		{minimalTOML + "arches = []", "arches"},
		{minimalTOML + `metrics_listen = "9464"`, "metrics_listen"},
		{minimalTOML + `arches = ["x86 64"]`, "arches"},
		{minimalTOML + `build_timeout = "soon"`, "soon"},
		{minimalTOML + "max_cpu_busy = 1.5", "max_cpu_busy"},
		{minimalTOML + `state_dir = "relative"`, "absolute"},
		{minimalTOML + `work_dir = "/var/lib/skyline/builder"`, "differ"},
		{minimalTOML + `retry_max = "1s"`, "retry_max"},
		{minimalTOML + "jobs = \"two\"", "jobs"},
		{strings.Replace(minimalTOML, "+AR1t", "+ZZ", 1), "log_key"},
	} {
		_, err := ParseConfig([]byte(tc.toml))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseConfig(%q) = %v; want ErrConfig mentioning %q", tc.toml, err, tc.mention)
		}
	}
}

// TestExampleConfigParses keeps the packaged example configuration valid.
func TestExampleConfigParses(t *testing.T) {
	data, err := os.ReadFile("../packaging/builder.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseConfig(data); err != nil {
		t.Fatalf("packaging/builder.toml: %v", err)
	}
}
