package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
)

// adminCommands are the subcommands of `skyline admin`.
var adminCommands = map[string]struct {
	summary string
	run     func(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int
}{
	"enroll":          {"enrol a key for an operator (--pub K.pub --operator O --contact C [--team T] [--role builder|witness|importer|admin])", adminEnroll},
	"revoke":          {"revoke a key (--key-id ID --reason R)", adminRevoke},
	"jobs":            {"list the jobs ([--json])", adminJobs},
	"enqueue":         {"enqueue a job (--nvr N --arch A --srpm-url U --srpm-sha256 S [--wanted 10])", adminEnqueue},
	"import-official": {"attest Koji's RPMs of a build (--nvr N --arch A --srpm-sha256 S --key importer.key RPMDIR)", adminImportOfficial},
}

// runAdmin implements `skyline admin <subcommand> --server URL --admin-key K ...`.
func runAdmin(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintf(stderr, "usage: skyline admin <subcommand> --server URL --admin-key KEY [flags]\n\nsubcommands:\n")
		names := make([]string, 0, len(adminCommands))
		for n := range adminCommands {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(stderr, "  %-16s %s\n", n, adminCommands[n].summary)
		}
		fmt.Fprintf(stderr, "\nExit status: 0 done, 1 the server refused or failed, 4 usage.\n")
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	sub, ok := adminCommands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "skyline admin: unknown subcommand %q\n\n", args[0])
		usage()
		return exitUsage
	}
	fs := flag.NewFlagSet("admin "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return sub.run(ctx, fs, args[1:], stdout, stderr)
}

// adminFlags are the flags every admin subcommand takes.
type adminFlags struct {
	server, key *string
	timeout     *time.Duration
}

func addAdminFlags(fs *flag.FlagSet, keyFlag, keyHelp string) adminFlags {
	return adminFlags{
		server:  fs.String("server", "", "URL of `skyline serve` (required)"),
		key:     fs.String(keyFlag, "", keyHelp),
		timeout: fs.Duration("timeout", time.Minute, "give up after this long"),
	}
}

// client makes the API client of the flags, signing with the key file.
func (f adminFlags) client(stderr io.Writer) (*api.Client, *attest.Signer, bool) {
	if *f.server == "" || *f.key == "" {
		fmt.Fprintln(stderr, "skyline admin: --server and the key flag are required")
		return nil, nil, false
	}
	s, err := attest.LoadSigner(*f.key)
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		return nil, nil, false
	}
	c, err := api.NewClient(api.ClientConfig{URL: *f.server, Signer: s})
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		return nil, nil, false
	}
	return c, s, true
}

// failed reports an error of the server or the network.
func failed(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "skyline admin: %v\n", err)
	var ae *api.Error
	if errors.As(err, &ae) && ae.Status == 400 {
		return exitUsage
	}
	return exitFail
}

func adminEnroll(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)")
	pub := fs.String("pub", "", "public key file (PKIX PEM) to enrol (required)")
	operator := fs.String("operator", "", "the person or organisation running the key (required)")
	contact := fs.String("contact", "", "where notices about the key go (required)")
	team := fs.String("team", "", "optional team")
	role := fs.String("role", attest.RoleBuilder, "builder, witness, importer or admin")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *pub == "" || *operator == "" || *contact == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "skyline admin enroll: --pub, --operator and --contact are required")
		return exitUsage
	}
	pem, err := os.ReadFile(*pub)
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin enroll: %v\n", err)
		return exitUsage
	}
	c, _, ok := af.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *af.timeout)
	defer cancel()
	res, err := c.Enrol(ctx, api.EnrolBody{PublicKey: string(pem), Role: *role, Operator: *operator, Contact: *contact, Team: *team})
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintf(stdout, "enrolled %s as %s for %s at index %d\n", res.KeyID, *role, *operator, res.Index)
	return exitOK
}

func adminRevoke(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)")
	keyID := fs.String("key-id", "", "key id to revoke (required)")
	reason := fs.String("reason", "", "why (required; logged)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *keyID == "" || *reason == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "skyline admin revoke: --key-id and --reason are required")
		return exitUsage
	}
	c, _, ok := af.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *af.timeout)
	defer cancel()
	res, err := c.Revoke(ctx, *keyID, *reason)
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintf(stdout, "revoked %s at index %d\n", *keyID, res.Index)
	return exitOK
}

func adminJobs(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		return exitUsage
	}
	c, _, ok := af.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *af.timeout)
	defer cancel()
	jobs, err := c.Jobs(ctx)
	if err != nil {
		return failed(stderr, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(jobs); err != nil {
			return failed(stderr, err)
		}
		return exitOK
	}
	fmt.Fprintf(stdout, "%-32s  %-40s  %-8s  %-6s  %-5s  %s\n", "JOB", "NVR", "ARCH", "STATE", "LIVE", "RESULTS")
	for _, j := range jobs {
		state := "open"
		if j.Closed {
			state = "closed"
		}
		fmt.Fprintf(stdout, "%-32s  %-40s  %-8s  %-6s  %-5d  %d/%d\n", j.Job.JobID, j.Job.Build.NVR, j.Job.Build.Arch, state, len(j.Live), len(j.Results), j.Job.Wanted)
	}
	return exitOK
}

func adminEnqueue(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)")
	nvr := fs.String("nvr", "", "name-version-release (required)")
	arch := fs.String("arch", "", "architecture (required)")
	srpmURL := fs.String("srpm-url", "", "where builders fetch the SRPM (required)")
	srpmSHA := fs.String("srpm-sha256", "", "SHA-256 of the SRPM, lowercase hex (required)")
	wanted := fs.Int("wanted", 0, "results wanted (0: the server's default, 10)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *nvr == "" || *arch == "" || *srpmURL == "" || *srpmSHA == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "skyline admin enqueue: --nvr, --arch, --srpm-url and --srpm-sha256 are required")
		return exitUsage
	}
	c, _, ok := af.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *af.timeout)
	defer cancel()
	res, err := c.Enqueue(ctx, api.EnqueueBody{NVR: *nvr, Arch: *arch, SRPMURL: *srpmURL, SRPMSHA256: *srpmSHA, Wanted: *wanted})
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintf(stdout, "enqueued job %s (%s.%s, %d wanted) at index %d\n", res.Job.JobID, *nvr, *arch, res.Job.Wanted, res.Index)
	return exitOK
}

func adminImportOfficial(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "key", "importer private key file, enrolled with role importer (required)")
	nvr := fs.String("nvr", "", "name-version-release (required)")
	arch := fs.String("arch", "", "architecture (required)")
	srpmURL := fs.String("srpm-url", "", "where Koji's SRPM is (optional)")
	srpmSHA := fs.String("srpm-sha256", "", "SHA-256 of the SRPM, lowercase hex (required)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *nvr == "" || *arch == "" || *srpmSHA == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: skyline admin import-official --server URL --key importer.key --nvr N --arch A --srpm-sha256 S RPMDIR")
		return exitUsage
	}
	c, s, ok := af.client(stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *af.timeout)
	defer cancel()
	r, err := api.ImportOfficial(ctx, c, s, api.Official{
		Build:   attest.BuildID{NVR: *nvr, Arch: *arch, SRPMSHA256: *srpmSHA},
		SRPMURL: *srpmURL,
		Dir:     fs.Arg(0),
	})
	if err != nil {
		return failed(stderr, err)
	}
	for _, e := range r.Entries {
		fmt.Fprintf(stdout, "official %s.%s logged at index %d\n", *nvr, *arch, e.Index)
	}
	return exitOK
}
