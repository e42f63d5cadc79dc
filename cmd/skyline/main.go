// Command skyline is the one binary of the skyline network: the log and
// coordinator (serve), the volunteer daemon (builder), the witness, the
// release gate (verify), the auditor (audit) and the tools around them.
//
// Each subcommand parses its flags, builds the components from the packages,
// runs them and maps errors to exit codes; the logic lives in the packages.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Exit codes shared by every subcommand unless its help says otherwise.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and the answer is "no" or an operation failed
	exitUsage = 4 // bad flags, arguments or configuration
)

// command is one subcommand.
type command struct {
	summary string
	// run executes the command with its arguments (not including its name)
	// and returns the process exit code.
	run func(args []string, stdout, stderr io.Writer) int
}

// commands is the table of subcommands. Add a line here for a new one.
var commands = map[string]command{
	"serve":   {"run the log and coordinator (C2SP tlog-tiles, submissions, leases, admin API)", runServe},
	"admin":   {"enrol and revoke keys, enqueue and list jobs, import official builds", runAdmin},
	"keygen":  {"generate a signing key pair", runKeygen},
	"digest":  {"print the skyline-rpm-v1 digest of RPM files", runDigest},
	"attest":  {"sign or verify a build attestation (attest sign|verify)", runAttest},
	"builder": {"the volunteer build daemon (builder run|status|enroll-request)", runBuilder},
	"verify":  {"the release gate: is an NVR reproduced? (exit 0 yes, 1 no, 2 undecided, 3 verification failure)", runVerify},
	"audit":   {"replay a whole log: root, signatures, verdicts and breaker re-derived", runAudit},
	"witness": {"the witness daemon: follow logs, refuse forks, cosign checkpoints, sign verdicts", runWitness},
	"stats":   {"the stats tracker: BOINC-style leaderboard of a log, from its public tiles (--log URL --pub K)", runStats},

	// Fedora's side (docs/fedora.md).
	"koji-listen":  {"import Koji builds: fedora-messaging listener + poller (enqueue jobs, log official builds)", runKojiListen},
	"koji-publish": {"publish final verdicts from the log to ResultsDB (Greenwave gates on them)", runKojiPublish},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "skyline: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	return cmd.run(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: skyline <command> [flags] [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-16s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "\nRun 'skyline <command> --help' for a command's flags.\n")
}

// parseFlags parses a subcommand's flags and reports the exit code to use
// when parsing did not succeed: exitOK for --help, exitUsage otherwise.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK, false
	}
	if err != nil {
		return exitUsage, false
	}
	return exitOK, true
}

// vkeyArg returns the signed-note verifier key a flag gives: the key
// itself, or the name of a file holding it.
func vkeyArg(arg string) string {
	if data, err := os.ReadFile(arg); err == nil {
		return strings.TrimSpace(string(data))
	}
	return arg
}
