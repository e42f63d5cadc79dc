package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// The load generator of skyline-bench serve runs, by default, as a child
// process (the hidden benchmark serve-load), so that the server's own CPU
// per submission is measured apart from the generator's: both share the
// machine's cores, but getrusage tells their CPU seconds apart.

// childLoad is the serve-load child's answer on stdout.
type childLoad struct {
	LatNS     []int64 `json:"lat_ns"`
	Failures  int     `json:"failures"`
	FirstErr  string  `json:"first_err"`
	ElapsedNS int64   `json:"elapsed_ns"`
	CPU       float64 `json:"cpu_s"`
}

// runChildLoad writes the requests to a file, runs serve-load on them
// against addr and returns what it measured.
func runChildLoad(ctx context.Context, f serveFlags, addr string, envs [][]byte, stderr io.Writer) (loadResult, error) {
	dir, err := os.MkdirTemp(f.dir, "skyline-serve-load-")
	if err != nil {
		return loadResult{}, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "requests")
	var b bytes.Buffer
	for _, req := range rawRequests(addr, f.wait, envs) {
		b.Write(binary.BigEndian.AppendUint32(nil, uint32(len(req))))
		b.Write(req)
	}
	if err := os.WriteFile(file, b.Bytes(), 0o600); err != nil {
		return loadResult{}, err
	}
	self, err := os.Executable()
	if err != nil {
		return loadResult{}, err
	}
	cmd := exec.CommandContext(ctx, self, "serve-load", "-addr", addr, "-requests", file,
		"-c", fmt.Sprint(f.conc), "-rate", fmt.Sprint(f.rate))
	cmd.Stderr = stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return loadResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return loadResult{}, fmt.Errorf("load generator: %w", err)
	}
	// The child says "start" as it begins to submit and answers once it
	// is done: the server's CPU is taken over exactly that window.
	out := bufio.NewReader(pipe)
	line, err := out.ReadString('\n')
	if err != nil || line != "start\n" {
		cmd.Wait()
		return loadResult{}, fmt.Errorf("load generator did not start: %q %v", line, err)
	}
	cpu0 := cpuSeconds()
	answer, err := out.ReadBytes('\n')
	serverCPU := cpuSeconds() - cpu0
	if werr := cmd.Wait(); werr != nil {
		return loadResult{}, fmt.Errorf("load generator: %w", werr)
	}
	if err != nil {
		return loadResult{}, fmt.Errorf("load generator answer: %w", err)
	}
	var cl childLoad
	if err := json.Unmarshal(answer, &cl); err != nil {
		return loadResult{}, fmt.Errorf("load generator answer: %w", err)
	}
	if len(cl.LatNS) != len(envs) {
		return loadResult{}, fmt.Errorf("load generator measured %d submissions of %d", len(cl.LatNS), len(envs))
	}
	r := loadResult{lat: make([]time.Duration, len(cl.LatNS)), failures: cl.Failures, firstErr: cl.FirstErr,
		elapsed: time.Duration(cl.ElapsedNS), cpu: cl.CPU, serverCPU: serverCPU}
	for i, ns := range cl.LatNS {
		r.lat[i] = time.Duration(ns)
	}
	return r, nil
}

// runServeLoad is the child: it submits the pre-formatted requests of
// -requests to -addr with -c raw clients and prints a childLoad.
func runServeLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "", "server host:port")
	file := fs.String("requests", "", "file of length-prefixed HTTP requests")
	conc := fs.Int("c", 64, "concurrent clients")
	rate := fs.Float64("rate", 0, "fixed rate per second (0: closed loop)")
	if err := fs.Parse(args); err != nil {
		return 4
	}
	if *addr == "" || *file == "" || *conc <= 0 || *rate < 0 {
		fmt.Fprintln(stderr, "skyline-bench serve-load: need -addr, -requests, -c > 0, -rate >= 0")
		return 4
	}
	reqs, err := readRequests(*file)
	if err != nil {
		fmt.Fprintln(stderr, "skyline-bench serve-load:", err)
		return 1
	}
	subs := rawSubmitters(*addr, reqs, *conc)
	fmt.Fprintln(stdout, "start")
	cpu0 := cpuSeconds()
	load := drive(context.Background(), subs, len(reqs), *rate)
	cpu := cpuSeconds() - cpu0
	for _, s := range subs {
		s.close()
	}
	out := childLoad{LatNS: make([]int64, len(load.lat)), Failures: load.failures, FirstErr: load.firstErr,
		ElapsedNS: int64(load.elapsed), CPU: cpu}
	for i, d := range load.lat {
		out.LatNS[i] = int64(d)
	}
	if err := json.NewEncoder(stdout).Encode(out); err != nil {
		fmt.Fprintln(stderr, "skyline-bench serve-load:", err)
		return 1
	}
	return 0
}

func readRequests(file string) ([][]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var reqs [][]byte
	for {
		var n [4]byte
		if _, err := io.ReadFull(r, n[:]); errors.Is(err, io.EOF) {
			return reqs, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		req := make([]byte, binary.BigEndian.Uint32(n[:]))
		if _, err := io.ReadFull(r, req); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		reqs = append(reqs, req)
	}
}
