package builder

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unitFile parses a systemd unit into section.key -> values (a key may
// repeat, e.g. LoadCredential=).
func unitFile(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "packaging", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q is not key=value", name, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestBuilderUnitPriorityAndHardening(t *testing.T) {
	u := unitFile(t, "skyline-builder.service")
	for key, want := range map[string]string{
		// Invisible: idle CPU and I/O for the daemon and its builds.
		"Service.Nice":                "19",
		"Service.CPUSchedulingPolicy": "idle",
		"Service.IOSchedulingClass":   "idle",
		"Service.CPUWeight":           "idle",
		"Service.IOWeight":            "1",
		"Service.User":                "skyline",
		"Service.SupplementaryGroups": "mock",
		// SIGTERM to the daemon only, so a build may finish in stop_grace.
		"Service.KillMode":       "mixed",
		"Service.KillSignal":     "SIGTERM",
		"Service.ProtectSystem":  "full",
		"Service.ProtectHome":    "yes",
		"Service.PrivateTmp":     "yes",
		"Service.StateDirectory": "skyline/builder",
		"Service.ExecStart":      "/usr/bin/skyline builder run --config /etc/skyline/builder.toml",
		"Service.LoadCredential": "builder.key:/etc/skyline/builder.key",
		"Install.WantedBy":       "multi-user.target",
	} {
		if got := u[key]; len(got) != 1 || got[0] != want {
			t.Errorf("skyline-builder.service %s = %q; want %q", key, got, want)
		}
	}
	// mock runs set-uid userhelper: nothing may switch no_new_privs on.
	for _, key := range []string{"NoNewPrivileges", "SystemCallFilter", "SystemCallArchitectures", "RestrictNamespaces",
		"RestrictSUIDSGID", "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectClock", "MemoryDenyWriteExecute", "RestrictRealtime", "LockPersonality", "DynamicUser", "CapabilityBoundingSet"} {
		if v, ok := u["Service."+key]; ok {
			t.Errorf("skyline-builder.service sets %s=%q, which breaks mock (no_new_privs or capabilities)", key, v)
		}
	}
	// systemd must wait longer than the daemon's stop grace.
	stop, err := time.ParseDuration(strings.TrimSuffix(u["Service.TimeoutStopSec"][0], "in"))
	if err != nil {
		t.Fatal(err)
	}
	if stop <= DefaultConfig().StopGrace+time.Minute {
		t.Errorf("TimeoutStopSec %v leaves no time after stop_grace %v to submit", stop, DefaultConfig().StopGrace)
	}
	// The packaged configuration reads the key where LoadCredential= puts it.
	cfg, err := os.ReadFile("../packaging/builder.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c.Key != "/run/credentials/skyline-builder.service/builder.key" {
		t.Errorf("builder.toml key = %q; want the LoadCredential path", c.Key)
	}
}

func TestServerUnitsHardening(t *testing.T) {
	for _, name := range []string{"skyline-serve.service", "skyline-witness.service"} {
		u := unitFile(t, name)
		for key, want := range map[string]string{
			"Service.NoNewPrivileges":  "yes",
			"Service.ProtectSystem":    "strict",
			"Service.PrivateTmp":       "yes",
			"Service.PrivateDevices":   "yes",
			"Service.User":             "skyline",
			"Service.SystemCallFilter": "@system-service",
		} {
			if got := u[key]; len(got) != 1 || got[0] != want {
				t.Errorf("%s %s = %q; want %q", name, key, got, want)
			}
		}
		if len(u["Service.StateDirectory"]) != 1 || !strings.HasPrefix(u["Service.ExecStart"][0], "/usr/bin/skyline ") {
			t.Errorf("%s: no StateDirectory or ExecStart %q", name, u["Service.ExecStart"])
		}
	}
}

// TestRPMPackaging runs packaging/rpm.sh (what `make rpm` runs after
// `make build`) on a stand-in binary and checks the package holds the
// binary, the three units and the configuration.
func TestRPMPackaging(t *testing.T) {
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "skyline"), []byte("#!/bin/sh\necho skyline\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("../packaging/rpm.sh", bin)
	cmd.Env = append(os.Environ(), "SKYLINE_VERSION=9.8.7")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rpm.sh: %v\n%s", err, out)
	}
	rpms, _ := filepath.Glob(filepath.Join(bin, "rpm", "RPMS", "*", "skyline-9.8.7-1*.rpm"))
	if len(rpms) != 1 {
		t.Fatalf("rpm.sh made %q; want one skyline-9.8.7 RPM\n%s", rpms, out)
	}
	list, err := exec.Command("rpm", "-qlp", "--nosignature", rpms[0]).Output()
	if err != nil {
		t.Fatal(err)
	}
	files := strings.Fields(string(list))
	for _, want := range []string{
		"/usr/bin/skyline",
		"/usr/lib/systemd/system/skyline-builder.service",
		"/usr/lib/systemd/system/skyline-serve.service",
		"/usr/lib/systemd/system/skyline-witness.service",
		"/etc/skyline/builder.toml",
	} {
		if !slices.Contains(files, want) {
			t.Errorf("the RPM lacks %s; it has %q", want, files)
		}
	}
	conf, err := exec.Command("rpm", "-qcp", "--nosignature", rpms[0]).Output()
	if err != nil || !strings.Contains(string(conf), "/etc/skyline/builder.toml") {
		t.Errorf("builder.toml is not a %%config file: %s %v", conf, err)
	}
}
