package builder

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	overheadTime = flag.Duration("builder.overhead", 3*time.Second, "how long TestIdleOverhead measures the idle daemon")
	overheadPoll = flag.Duration("builder.overhead-poll", 100*time.Millisecond, "the poll_interval TestIdleOverhead runs the daemon with")
)

// userHZ is the unit of utime and stime in /proc/PID/stat on Linux.
const userHZ = 100

// procCPU returns the user+system CPU time of pid.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / userHZ
}

// procMem returns VmRSS and VmHWM (peak) of pid in KiB.
func procMem(t *testing.T, pid int) (rss, peak int64) {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var v int64
		if n, _ := fmt.Sscanf(sc.Text(), "VmRSS: %d kB", &v); n == 1 {
			rss = v
		}
		if n, _ := fmt.Sscanf(sc.Text(), "VmHWM: %d kB", &v); n == 1 {
			peak = v
		}
	}
	return rss, peak
}

// TestIdleOverhead runs a daemon process (this test binary, re-executed)
// that polls a coordinator with no work every 100ms, 600 times as often
// as the default poll_interval, checking the power supply and free disk
// each time, and measures its resident memory and CPU use from
// /proc. Targets: < 50 MB RSS and < 1% of a core. Under -race the figures
// are reported only (the race detector multiplies both).
// -builder.overhead=30s measures longer; -builder.overhead-poll=1m uses
// the default interval.
func TestIdleOverhead(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.PollInterval = *overheadPoll
	cfg.MaxCPUBusy = 1 // other tests keep this machine busy: do not pause
	dir := t.TempDir()
	pemKey, err := f.signer.PrivatePEM()
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "builder.key")
	if err := os.WriteFile(keyPath, pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(helperSpec{Config: cfg, KeyPath: keyPath, RealMachine: true})
	specPath := filepath.Join(dir, "spec.json")
	if err := os.WriteFile(specPath, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBuilderProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+specPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid

	time.Sleep(time.Second) // start-up is not idle polling
	_, _, leases0, _ := f.si.snapshot()
	cpu0, t0 := procCPU(t, pid), time.Now()
	time.Sleep(*overheadTime)
	cpu1, t1 := procCPU(t, pid), time.Now()
	_, _, leases1, _ := f.si.snapshot()
	rss, peak := procMem(t, pid)

	wall := t1.Sub(t0)
	share := float64(cpu1-cpu0) / float64(wall)
	polls := leases1 - leases0
	t.Logf("idle daemon over %v: %d polls, CPU %v = %.3f%% of a core, RSS %.1f MB (peak %.1f MB), race=%v",
		wall.Round(time.Millisecond), polls, cpu1-cpu0, 100*share, float64(rss)/1024, float64(peak)/1024, raceEnabled)
	if want := int(wall / cfg.PollInterval); polls < want/2 {
		t.Fatalf("only %d polls in %v at a %v interval: the daemon is not polling; output:\n%s", polls, wall, cfg.PollInterval, out.String())
	}
	if polls > int(wall/cfg.PollInterval)+2 {
		t.Errorf("%d polls in %v at a %v interval: polling faster than configured", polls, wall, cfg.PollInterval)
	}
	if !raceEnabled {
		if rss > 50*1024 {
			t.Errorf("RSS %d KiB; target < 50 MB", rss)
		}
		if share >= 0.01 {
			t.Errorf("CPU %.3f%% of a core; target < 1%%", 100*share)
		}
	}
}
