// Command skyline-bench runs skyline's benchmarks that need more than
// testing.B: whole-component runs whose key=value output lines up with the
// peer benchmarks in shared/bench (see its README), so that
// shared/bench/side-by-side.sh can compare them in the same session.
//
//	skyline-bench log -n 100000 -size 2048 -dir /tmp -c 1024
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
)

// command is one benchmark.
type command struct {
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

// commands is the table of benchmarks. Add a line here for a new one
// (skyline-bench serve comes with the HTTP API).
var commands = map[string]command{
	"log":   {"append, publish, prove and replay with package log (same output as tessera-posix)", runLog},
	"serve": {"submit signed attestations to skyline serve over HTTP (throughput, latency)", runServe},
	// serve-load is serve's load generator process (serve -loadgen child).
	"serve-load": {"(run by serve) submit pre-formatted requests and report what was measured", runServeLoad},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 4
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "skyline-bench: unknown benchmark %q\n\n", args[0])
		usage(stderr)
		return 4
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: skyline-bench <benchmark> [flags]\n\nbenchmarks:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-8s %s\n", name, commands[name].summary)
	}
}
