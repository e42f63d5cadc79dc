package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrProcess: a process of the network failed to start or died.
var ErrProcess = errors.New("process failed")

// proc is one long-running process of the network (serve, a witness, a
// builder). It runs in its own process group, so that stopping it stops
// whatever it started (build children included), and a terminal's Ctrl-C
// reaches only the demo, which then stops every group in order.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // set before done is closed
}

// procs owns the network's processes.
type procs struct {
	mu   sync.Mutex
	list []*proc
	dir  string // log files
}

// start runs argv (argv[0] is a path) with its output in dir/NAME.log.
func (ps *procs) start(name string, argv ...string) (*proc, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("demo: %s: log: %w", name, err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	// Setpgid: a group of its own (see proc). Pdeathsig: should the demo
	// be killed outright, the kernel kills its children.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("demo: start %s: %w: %w", name, ErrProcess, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// exited reports whether p has stopped, and how.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to p's process group and waits up to grace for p to
// exit, then kills the group. Whatever is left of the group after p exits
// (a build child) is killed too.
func (p *proc) stop(grace time.Duration) {
	pgid := p.cmd.Process.Pid
	if ok, _ := p.exited(); !ok {
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(grace)
		select {
		case <-p.done:
		case <-t.C:
		}
		t.Stop()
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	<-p.done
}

// stopAll stops every process, the last started first (builders before
// witnesses before the log), each group concurrently within its kind.
func (ps *procs) stopAll(grace time.Duration) {
	ps.mu.Lock()
	list := ps.list
	ps.list = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		if strings.HasPrefix(p.name, "builder-") {
			wg.Go(func() { p.stop(grace) })
			continue
		}
		wg.Wait()
		p.stop(grace)
	}
	wg.Wait()
}

// dead returns an error naming the first process that exited.
func (ps *procs) dead() error {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.list {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("demo: %s exited (%v); see %s: %w", p.name, err, p.log, ErrProcess)
		}
	}
	return nil
}

// cmdResult is what a short command printed and its exit status.
type cmdResult struct {
	Args   []string
	Stdout string
	Stderr string
	Exit   int
}

// runCmd runs a short command to completion in its own process group
// (killed with ctx) and returns its output. A command that could not run
// at all is an error; a non-zero exit is not.
func runCmd(ctx context.Context, argv ...string) (cmdResult, error) {
	return execCmd(ctx, "", nil, argv...)
}

// runCmdEnv is runCmd with the environment env.
func runCmdEnv(ctx context.Context, env []string, argv ...string) (cmdResult, error) {
	return execCmd(ctx, "", env, argv...)
}

// execIn is runCmd in the directory dir.
func execIn(ctx context.Context, dir string, argv ...string) (cmdResult, error) {
	return execCmd(ctx, dir, nil, argv...)
}

func execCmd(ctx context.Context, dir string, env []string, argv ...string) (cmdResult, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	r := cmdResult{Args: argv, Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil && ee.Exited():
		r.Exit = ee.ExitCode()
	case ctx.Err() != nil:
		return r, fmt.Errorf("demo: %s: %w", filepath.Base(argv[0]), context.Cause(ctx))
	default:
		return r, fmt.Errorf("demo: %s: %w: %w", strings.Join(argv, " "), ErrProcess, err)
	}
	return r, nil
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a process to listen on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("demo: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// tail returns the last n lines of a file, for error reports.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
