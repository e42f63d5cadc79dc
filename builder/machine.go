package builder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrProcFormat is returned for a /proc or /sys file that does not parse.
var ErrProcFormat = errors.New("unexpected /proc format")

// Machine tells the daemon how busy the computer is. ProcMachine reads the
// real one; tests use their own.
type Machine interface {
	// CPUTimes returns cumulative CPU time (any unit) spent on work that is
	// not at nice > 0, and in total. Builds run at nice 19, so they do not
	// count as the owner's work.
	CPUTimes() (busy, total uint64, err error)
	// OnBattery reports whether the machine runs on battery power.
	OnBattery() (bool, error)
	// FreeDisk returns the bytes available to the daemon on the file system
	// holding dir.
	FreeDisk(dir string) (int64, error)
}

// ProcMachine reads /proc/stat, /sys/class/power_supply and statfs(2).
// Root is prefixed to the /proc and /sys paths ("" for the real ones).
type ProcMachine struct {
	Root string
}

// CPUTimes implements Machine from the "cpu" line of /proc/stat (proc(5)):
// user nice system idle iowait irq softirq steal guest guest_nice.
func (m ProcMachine) CPUTimes() (busy, total uint64, err error) {
	data, err := os.ReadFile(filepath.Join(m.Root, "/proc/stat"))
	if err != nil {
		return 0, 0, fmt.Errorf("builder: cpu times: %w", err)
	}
	return parseProcStat(data)
}

func parseProcStat(data []byte) (busy, total uint64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return 0, 0, fmt.Errorf("builder: /proc/stat cpu line has %d fields: %w", len(f), ErrProcFormat)
		}
		var v [10]uint64
		for i := 1; i < len(f) && i <= len(v); i++ {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("builder: /proc/stat cpu field %d: %w", i, ErrProcFormat)
			}
			v[i-1] = n
		}
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		// guest time is already included in user (proc(5)).
		busy = user + system + irq + softirq + steal
		total = busy + nice + idle + iowait
		if total < busy {
			return 0, 0, fmt.Errorf("builder: /proc/stat cpu counters overflow: %w", ErrProcFormat)
		}
		return busy, total, nil
	}
	return 0, 0, fmt.Errorf("builder: /proc/stat has no cpu line: %w", ErrProcFormat)
}

// OnBattery implements Machine: on battery when no mains supply is online
// and some battery is discharging (sysfs-class-power).
func (m ProcMachine) OnBattery() (bool, error) {
	dir := filepath.Join(m.Root, "/sys/class/power_supply")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil // no power supply class: a server or a VM
	}
	if err != nil {
		return false, fmt.Errorf("builder: power supply: %w", err)
	}
	read := func(name, attr string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name, attr))
		return strings.TrimSpace(string(b))
	}
	discharging := false
	for _, e := range entries {
		switch read(e.Name(), "type") {
		case "Mains", "USB":
			if read(e.Name(), "online") == "1" {
				return false, nil
			}
		case "Battery":
			if read(e.Name(), "status") == "Discharging" {
				discharging = true
			}
		}
	}
	return discharging, nil
}

// FreeDisk implements Machine with statfs(2).
func (m ProcMachine) FreeDisk(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("builder: statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// diskUsage returns the bytes allocated to the files under dir. Files that
// vanish while it walks (a build deleting its temporaries) are skipped.
func diskUsage(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
				return nil
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += st.Blocks * 512
		} else {
			total += info.Size()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("builder: disk usage of %s: %w", dir, err)
	}
	return total, nil
}
