package builder

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestParseProcStat(t *testing.T) {
	// user nice system idle iowait irq softirq steal guest guest_nice
	busy, total, err := parseProcStat([]byte("cpu  100 900 50 800 20 5 5 20 0 0\ncpu0 1 2 3 4\nintr 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if busy != 180 || total != 1900 {
		t.Errorf("busy %d total %d; want 180 (nice excluded) and 1900", busy, total)
	}
	for _, bad := range []string{"", "cpu 1 2\n", "cpu a b c d e\n", "intr 5\n"} {
		if _, _, err := parseProcStat([]byte(bad)); !errors.Is(err, ErrProcFormat) {
			t.Errorf("parseProcStat(%q) = %v; want ErrProcFormat", bad, err)
		}
	}
	// The real one parses.
	if _, total, err := (ProcMachine{}).CPUTimes(); err != nil || total == 0 {
		t.Errorf("ProcMachine.CPUTimes() = %d, %v", total, err)
	}
}

func writeSupply(t *testing.T, root, name string, attrs map[string]string) {
	t.Helper()
	dir := filepath.Join(root, "sys/class/power_supply", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range attrs {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOnBattery(t *testing.T) {
	for _, tc := range []struct {
		name     string
		supplies map[string]map[string]string
		want     bool
	}{
		{"no power supply class", nil, false},
		{"laptop on mains", map[string]map[string]string{
			"AC":   {"type": "Mains", "online": "1"},
			"BAT0": {"type": "Battery", "status": "Charging"},
		}, false},
		{"laptop unplugged", map[string]map[string]string{
			"AC":   {"type": "Mains", "online": "0"},
			"BAT0": {"type": "Battery", "status": "Discharging"},
		}, true},
		{"battery full, no mains info", map[string]map[string]string{
			"BAT0": {"type": "Battery", "status": "Full"},
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for name, attrs := range tc.supplies {
				writeSupply(t, root, name, attrs)
			}
			got, err := ProcMachine{Root: root}.OnBattery()
			if err != nil || got != tc.want {
				t.Errorf("OnBattery() = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestDiskUsageAndFreeDisk(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a/b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a/b/f"), make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := diskUsage(dir)
	if err != nil || n < 1<<20 {
		t.Errorf("diskUsage = %d, %v; want at least 1 MiB", n, err)
	}
	free, err := ProcMachine{}.FreeDisk(dir)
	if err != nil || free <= 0 {
		t.Errorf("FreeDisk = %d, %v", free, err)
	}
}
