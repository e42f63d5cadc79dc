package builder

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Build errors. A *BuildError carries the exit status and the log tail of
// a failed build; ErrBuildFailed matches it with errors.Is.
var (
	ErrBuildFailed  = errors.New("build failed")
	ErrNoRPMs       = errors.New("build produced no binary RPMs")
	ErrBuildTimeout = errors.New("build timed out")
)

// Backend rebuilds one SRPM. Build leaves the binary RPMs it produced, and
// nothing else, directly in resultDir (which exists and is empty). A failed
// build returns an error that wraps ErrBuildFailed or ErrNoRPMs; when ctx
// ends first, the error wraps context.Cause(ctx).
type Backend interface {
	Build(ctx context.Context, srpm, resultDir string) error
}

// BuildError is a build that ran and failed.
type BuildError struct {
	Command string // what ran, for the log line
	Status  string // the exit status as the OS reports it
	Tail    string // the end of the build log
	Err     error  // ErrBuildFailed or ErrNoRPMs
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("builder: %s: %s: %v", e.Command, e.Status, e.Err)
}

func (e *BuildError) Unwrap() error { return e.Err }

// Child is how a build child process runs: at idle priority (nice 19,
// SCHED_IDLE, idle I/O class), in its own process group, with a scrubbed
// environment and its output in a log file.
type Child struct {
	// Path is the only variable of the daemon's environment passed on.
	Path string
	// LogTail is how many bytes of the log a BuildError keeps.
	LogTail int
	// KillGrace is the wait between SIGTERM and SIGKILL to the process group
	// when the build's context ends. Zero means 10s.
	KillGrace time.Duration
}

// idlePrefix runs the command at the lowest CPU and I/O priority:
// nice 19, then the idle I/O class (ionice -c 3), then SCHED_IDLE
// (chrt --idle 0); each tool execs the next, so the build inherits all
// three. They are util-linux and coreutils, present on every Fedora.
var idlePrefix = []string{"nice", "-n", "19", "ionice", "-c", "3", "chrt", "--idle", "0"}

// Run runs argv in dir with HOME=home and the scrubbed environment,
// writing its output to logPath. When ctx ends the whole process group gets
// SIGTERM, then SIGKILL after KillGrace; after the leader exits, whatever is
// left of the group is killed too, so no build process outlives its job.
//
// The child inherits no descriptor but stdin (/dev/null) and the log file
// (Go opens every file close-on-exec), and no path to the builder key.
func (c Child) Run(ctx context.Context, dir, home, logPath string, extraEnv []string, argv ...string) error {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("builder: build log: %w", err)
	}
	defer logf.Close()
	full := append(append([]string{}, idlePrefix...), argv...)
	bin, err := lookPathIn(full[0], c.Path)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, full[1:]...)
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Env = append([]string{
		"PATH=" + c.Path,
		"HOME=" + home,
		"LANG=C.UTF-8",
		"TZ=UTC",
	}, extraEnv...)
	// Pdeathsig: the build's leader dies with the daemon even on SIGKILL.
	// (It fires when the forking OS thread exits; the Go runtime does not
	// retire threads this package has not locked.) What else of the group
	// survives is killed by the next daemon through recordGroup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("builder: start %s: %w", argv[0], err)
	}
	pgid := cmd.Process.Pid
	recordGroup(dir, pgid)
	grace := c.KillGrace
	if grace <= 0 {
		grace = 10 * time.Second
	}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	werr := cmd.Wait()
	close(done)
	<-stopped
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if ctx.Err() != nil {
		return fmt.Errorf("builder: %s stopped: %w", argv[0], context.Cause(ctx))
	}
	if werr != nil {
		return &BuildError{Command: strings.Join(argv, " "), Status: werr.Error(), Tail: tailFile(logPath, c.LogTail), Err: ErrBuildFailed}
	}
	return nil
}

// tailFile returns the last n bytes of a file, cut to start at a line.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil || n <= 0 {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-int64(n), 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	if off > 0 {
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return strings.ToValidUTF8(string(buf), "?")
}

// collectRPMs moves the binary RPMs found under from (recursively) into
// resultDir and returns how many there were; source RPMs are left behind.
func collectRPMs(from, resultDir string) (int, error) {
	n := 0
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.Type().IsRegular() || !strings.HasSuffix(name, ".rpm") || strings.HasSuffix(name, ".src.rpm") {
			return nil
		}
		if err := os.Rename(path, filepath.Join(resultDir, name)); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("builder: collect rpms: %w", err)
	}
	return n, nil
}

// Mock is the mock backend, the way Fedora builds:
//
//	mock -r CHROOT --rebuild SRPM --resultdir DIR --uniqueext UNIQ [Args...]
//
// --uniqueext gives every job its own buildroot, so jobs on one machine run
// side by side instead of waiting on mock's buildroot lock. mock takes the
// reproducibility settings (SOURCE_DATE_EPOCH from the changelog, the build
// host, the fixed /builddir) from the chroot configuration, as Koji does.
type Mock struct {
	Chroot string
	Args   []string
	Child  Child
}

// Build implements Backend.
func (m *Mock) Build(ctx context.Context, srpm, resultDir string) error {
	out := resultDir + ".mock"
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("builder: mock: %w", err)
	}
	home := resultDir + ".home"
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("builder: mock: %w", err)
	}
	logPath := resultDir + ".log"
	argv := append([]string{"mock", "-r", m.Chroot, "--rebuild", srpm, "--resultdir", out,
		"--uniqueext", "skyline-" + filepath.Base(filepath.Dir(resultDir))}, m.Args...)
	err := m.Child.Run(ctx, filepath.Dir(resultDir), home, logPath, nil, argv...)
	var be *BuildError
	if errors.As(err, &be) {
		be.Command = "mock -r " + m.Chroot + " --rebuild " + filepath.Base(srpm)
		// mock's build.log has rpmbuild's output; its own stdout mostly
		// says that the build failed.
		if t := tailFile(filepath.Join(out, "build.log"), m.Child.LogTail); t != "" {
			be.Tail = t
		}
	}
	if err != nil {
		return err
	}
	n, err := collectRPMs(out, resultDir)
	if err != nil {
		return err
	}
	if n == 0 {
		return &BuildError{Command: "mock", Status: "exit status 0", Tail: tailFile(logPath, m.Child.LogTail), Err: ErrNoRPMs}
	}
	return nil
}

// Rpmbuild is the rpmbuild backend:
//
//	unshare [--user --map-root-user] --mount --propagation private \
//	  sh -c 'hide the key; mount --bind TOPDIR BUILDPATH; exec rpmbuild --rebuild --nodeps ...'
//
// Paths leak into binaries (debug info, __FILE__), so every build happens
// at the same BuildPath: each job's private top directory is bind-mounted
// there inside a private mount namespace that only the build sees, so two
// builders on one machine both build at BuildPath, at the same time,
// without seeing each other. The reproducibility macros clamp every time
// to SOURCE_DATE_EPOCH (taken from the SRPM's newest changelog entry, else
// its build time) and fix the build host name.
//
// --nodeps: BuildRequires are not checked because the host's rpm database
// need not describe the build environment (on a non-Fedora host it is
// empty); mock is the backend that installs them.
type Rpmbuild struct {
	// BuildPath is the fixed path the build sees as its top directory.
	BuildPath string
	// UserNamespace adds --user --map-root-user so that an unprivileged
	// daemon may make the mount namespace. Needed unless running as root.
	UserNamespace bool
	// Hide lists files (the builder key) covered with /dev/null, and
	// directories covered with an empty tmpfs, inside the build's mount
	// namespace: the build runs as the daemon's user, so permissions alone
	// would not keep it from reading them.
	Hide  []string
	Child Child
}

// hideAndBind runs in the build's private mount namespace: it covers the
// N paths to hide, bind-mounts the job's top directory on the fixed build
// path, then execs the build. Arguments: N, the N paths, TOP, BUILDPATH,
// the build command.
const hideAndBind = `n=$1; shift
while [ "$n" -gt 0 ]; do
	if [ -d "$1" ]; then mount -t tmpfs -o size=4k,mode=0 skyline-hidden "$1"; elif [ -e "$1" ]; then mount --bind /dev/null "$1"; fi
	n=$((n - 1)); shift
done
mount --bind "$1" "$2"; shift 2
exec "$@"`

// Build implements Backend.
func (r *Rpmbuild) Build(ctx context.Context, srpm, resultDir string) error {
	epoch, err := SourceDateEpoch(ctx, srpm, r.Child.Path)
	if err != nil {
		return err
	}
	top := resultDir + ".top"
	home := resultDir + ".home"
	for _, d := range []string{top, home, r.BuildPath} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("builder: rpmbuild: %w", err)
		}
	}
	argv := []string{"unshare"}
	if r.UserNamespace {
		argv = append(argv, "--user", "--map-root-user")
	}
	argv = append(argv, "--mount", "--propagation", "private", "sh", "-ec", hideAndBind, "skyline-build", strconv.Itoa(len(r.Hide)))
	argv = append(argv, r.Hide...)
	argv = append(argv, top, r.BuildPath,
		"rpmbuild", "--rebuild", "--nodeps",
		"--define", "_topdir "+r.BuildPath,
		"--define", "_tmppath "+r.BuildPath+"/tmp",
		"--define", "_buildhost skyline",
		"--define", "use_source_date_epoch_as_buildtime 1",
		"--define", "clamp_mtime_to_source_date_epoch 1",
		srpm)
	if err := os.MkdirAll(filepath.Join(top, "tmp"), 0o755); err != nil {
		return fmt.Errorf("builder: rpmbuild: %w", err)
	}
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(epoch, 10)}
	if err := r.Child.Run(ctx, filepath.Dir(resultDir), home, resultDir+".log", env, argv...); err != nil {
		var be *BuildError
		if errors.As(err, &be) {
			be.Command = "rpmbuild --rebuild " + filepath.Base(srpm)
		}
		return err
	}
	n, err := collectRPMs(filepath.Join(top, "RPMS"), resultDir)
	if err != nil {
		return err
	}
	if n == 0 {
		return &BuildError{Command: "rpmbuild", Status: "exit status 0", Tail: tailFile(resultDir+".log", r.Child.LogTail), Err: ErrNoRPMs}
	}
	return nil
}

// SourceDateEpoch returns the SOURCE_DATE_EPOCH for rebuilding srpm: the
// time of its newest changelog entry (what %source_date_epoch_from_changelog
// uses), or its build time when it has no changelog. Both are in the SRPM,
// so every builder derives the same value.
func SourceDateEpoch(ctx context.Context, srpm, path string) (int64, error) {
	bin, err := lookPathIn("rpm", path)
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, bin, "-qp", "--nosignature", "--nodigest",
		"--qf", "%{CHANGELOGTIME}\n%{BUILDTIME}\n", srpm)
	cmd.Env = []string{"PATH=" + path, "LANG=C.UTF-8", "TZ=UTC", "HOME=/nonexistent"}
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("builder: query %s: %w", filepath.Base(srpm), err)
	}
	for _, line := range strings.SplitN(strings.TrimSpace(string(out)), "\n", 2) {
		if v, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64); err == nil && v > 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("builder: %s has neither a changelog time nor a build time: %w", filepath.Base(srpm), ErrBuildFailed)
}

// lookPathIn finds an executable in a PATH list: the children's PATH, not
// the daemon's.
func lookPathIn(name, pathList string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("builder: %s not found in %s: %w", name, pathList, exec.ErrNotFound)
}

// groupFile names the file in a job directory recording the process group
// of its build, so that a restarted daemon can kill what a killed one left.
const groupFile = ".skyline-build-group"

// recordGroup notes the build's process group and its leader's start time.
// Best effort: without it a restart cannot reap leftovers, nothing else.
func recordGroup(dir string, pgid int) {
	start, ok := procStart(pgid)
	if !ok {
		return
	}
	_ = os.WriteFile(filepath.Join(dir, groupFile), fmt.Appendf(nil, "%d %d\n", pgid, start), 0o644)
}

// procStat returns the process group and start time (clock ticks since
// boot) of pid from /proc/PID/stat (proc(5) fields 5 and 22).
func procStat(pid int) (pgid int, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) may hold spaces: parse after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, 0, false
	}
	pg, err1 := strconv.Atoi(f[2])
	st, err2 := strconv.ParseUint(f[19], 10, 64)
	return pg, st, err1 == nil && err2 == nil
}

func procStart(pid int) (uint64, bool) {
	_, st, ok := procStat(pid)
	return st, ok
}

// KillStaleBuild kills the process group recorded in a job directory by a
// daemon that died mid-build, if that group still exists and is still
// ours. The kernel does not reuse a number as a process id while a process
// group of that number exists, so: if the leader is alive with the
// recorded start time, or if no process has the leader's pid but some
// process is in the group, the group is the build's.
func KillStaleBuild(dir string) (killed bool) {
	b, err := os.ReadFile(filepath.Join(dir, groupFile))
	if err != nil {
		return false
	}
	var pgid int
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pgid, &start); err != nil || pgid <= 1 {
		return false
	}
	if st, alive := procStart(pgid); alive {
		if st != start {
			return false // the number belongs to someone else now
		}
	} else if !groupExists(pgid) {
		return false
	}
	return syscall.Kill(-pgid, syscall.SIGKILL) == nil
}

func groupExists(pgid int) bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pg, _, ok := procStat(pid); ok && pg == pgid {
			return true
		}
	}
	return false
}
