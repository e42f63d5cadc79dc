package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/koji"
	"golang.org/x/mod/sumdb/note"
)

// adminCommand is one subcommand of `skyline admin`.
type adminCommand struct {
	synopsis string // its flags and arguments, for its usage line
	summary  string // one line for `skyline admin --help`
	run      func(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int
}

// adminCommands are the subcommands of `skyline admin`.
var adminCommands = map[string]adminCommand{
	"enroll": {"--server URL --admin-key KEY (--log-key LOG.vkey | --origin O) --pub K.pub --operator O --contact C [--team T] [--role builder|witness|importer|admin] [--json]",
		"enrol a key for an operator; the enrolment is a log entry signed by the coordinator", adminEnroll},
	"revoke": {"--server URL --admin-key KEY (--log-key LOG.vkey | --origin O) --key-id ID --reason R [--json]",
		"revoke a key; the revocation is a log entry signed by the coordinator", adminRevoke},
	"jobs": {"--server URL --admin-key KEY (--log-key LOG.vkey | --origin O) [--json]",
		"list the jobs, their state, live leases and results", adminJobs},
	"enqueue": {"--server URL --admin-key KEY (--log-key LOG.vkey | --origin O) --nvr N --arch A --srpm-url U --srpm-sha256 S [--wanted 10] [--json]",
		"enqueue a rebuild job", adminEnqueue},
	"import-official": {"--server URL --key IMPORTER.key --nvr N --arch A --srpm-sha256 S [--srpm-url U] [--json] RPMDIR",
		"log the digests of Koji's RPMs of a build, signed by the importer key", adminImportOfficial},
}

// adminExit documents the exit codes of every admin subcommand.
const adminExit = "Exit status: 0 done, 1 the server refused or failed, 4 usage (bad flags,\nunreadable key file, or a request the server calls malformed).\n"

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
		fmt.Fprintf(stderr, "\nRun 'skyline admin <subcommand> --help' for its flags (docs/serve.md).\n\n%s", adminExit)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	name := args[0]
	sub, ok := adminCommands[name]
	if !ok {
		fmt.Fprintf(stderr, "skyline admin: unknown subcommand %q\n\n", name)
		usage()
		return exitUsage
	}
	fs := flag.NewFlagSet("admin "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: skyline admin %s %s\n\n%s.\n\n%s\nFlags:\n", name, sub.synopsis, strings.ToUpper(sub.summary[:1])+sub.summary[1:], adminExit)
		fs.PrintDefaults()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return sub.run(ctx, fs, args[1:], stdout, stderr)
}

// adminFlags are the flags every admin subcommand takes.
type adminFlags struct {
	server, key *string
	timeout     *time.Duration
	json        *bool
	// origin and logKey name the log a signed request is for; nil for a
	// subcommand that signs no request.
	origin, logKey *string
}

// addAdminFlags adds the common flags; signs says that the subcommand
// sends signed requests, which name the log they are for.
func addAdminFlags(fs *flag.FlagSet, keyFlag, keyHelp string, signs bool) adminFlags {
	f := adminFlags{
		server:  fs.String("server", "", "URL of skyline serve (required)"),
		key:     fs.String(keyFlag, "", keyHelp),
		timeout: fs.Duration("timeout", time.Minute, "give up after this long"),
		json:    fs.Bool("json", false, "print the server's answer as JSON instead of a line"),
	}
	if signs {
		f.logKey = fs.String("log-key", "", "the log's signed-note verifier key (log.vkey), or a file holding it: its name is the log's origin, which every request names as the log it is for (this or --origin required)")
		f.origin = fs.String("origin", "", "the log's checkpoint origin, named by every request as the log it is for (default: the name of --log-key)")
	}
	return f
}

// logOrigin returns the origin of the log the requests are for: --origin,
// else the name of --log-key. It never asks the server: a server that
// named the log could relay the request to another log.
func (f adminFlags) logOrigin() (string, error) {
	if f.origin == nil {
		return "", nil
	}
	if *f.origin != "" {
		return *f.origin, nil
	}
	if *f.logKey == "" {
		return "", errors.New("--log-key or --origin is required: a request names the log it is for")
	}
	v, err := note.NewVerifier(vkeyArg(*f.logKey))
	if err != nil {
		return "", fmt.Errorf("--log-key: not a signed-note verifier key: %w", err)
	}
	return v.Name(), nil
}

// print writes v as indented JSON with --json, else the line.
func (f adminFlags) print(stdout io.Writer, v any, format string, args ...any) error {
	if *f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	_, err := fmt.Fprintf(stdout, format, args...)
	return err
}

// call makes the API client of the flags, signing with the key file, and
// runs f with it under the timeout; it returns the exit code.
func (f adminFlags) call(ctx context.Context, stderr io.Writer, f2 func(ctx context.Context, c *api.Client, s *attest.Signer) error) int {
	if *f.server == "" || *f.key == "" {
		fmt.Fprintln(stderr, "skyline admin: --server and the key flag are required")
		return exitUsage
	}
	origin, err := f.logOrigin()
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		return exitUsage
	}
	s, err := attest.LoadSigner(*f.key)
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		return exitUsage
	}
	c, err := api.NewClient(api.ClientConfig{URL: *f.server, Signer: s, Origin: origin})
	if err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	defer cancel()
	if err := f2(ctx, c, s); err != nil {
		fmt.Fprintf(stderr, "skyline admin: %v\n", err)
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			return exitUsage
		}
		return exitFail
	}
	return exitOK
}

func adminEnroll(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)", true)
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
	return af.call(ctx, stderr, func(ctx context.Context, c *api.Client, _ *attest.Signer) error {
		res, err := c.Enrol(ctx, api.EnrolBody{PublicKey: string(pem), Role: *role, Operator: *operator, Contact: *contact, Team: *team})
		if err != nil {
			return err
		}
		return af.print(stdout, res, "enrolled %s as %s for %s at index %d\n", res.KeyID, *role, *operator, res.Index)
	})
}

func adminRevoke(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)", true)
	keyID := fs.String("key-id", "", "key id to revoke (required)")
	reason := fs.String("reason", "", "why (required; logged)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *keyID == "" || *reason == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "skyline admin revoke: --key-id and --reason are required")
		return exitUsage
	}
	return af.call(ctx, stderr, func(ctx context.Context, c *api.Client, _ *attest.Signer) error {
		res, err := c.Revoke(ctx, *keyID, *reason)
		if err != nil {
			return err
		}
		return af.print(stdout, res, "revoked %s at index %d\n", *keyID, res.Index)
	})
}

func adminJobs(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)", true)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "skyline admin jobs: no arguments expected")
		return exitUsage
	}
	return af.call(ctx, stderr, func(ctx context.Context, c *api.Client, _ *attest.Signer) error {
		jobs, err := c.Jobs(ctx)
		if err != nil {
			return err
		}
		if *af.json {
			return af.print(stdout, jobs, "")
		}
		fmt.Fprintf(stdout, "%-32s  %-40s  %-8s  %-6s  %-5s  %-7s  %s\n", "JOB", "NVR", "ARCH", "STATE", "LIVE", "RESULTS", "DEADLINE")
		for _, j := range jobs {
			state := "open"
			if j.Closed {
				state = "closed"
			}
			results := fmt.Sprintf("%d/%d", len(j.Results), j.Job.Wanted)
			fmt.Fprintf(stdout, "%-32s  %-40s  %-8s  %-6s  %-5d  %-7s  %s\n", j.Job.JobID, j.Job.Build.NVR, j.Job.Build.Arch, state, len(j.Live), results, j.Job.Deadline.UTC().Format(time.RFC3339))
		}
		return nil
	})
}

func adminEnqueue(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "admin-key", "admin private key file (required)", true)
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
	return af.call(ctx, stderr, func(ctx context.Context, c *api.Client, _ *attest.Signer) error {
		res, err := c.Enqueue(ctx, api.EnqueueBody{NVR: *nvr, Arch: *arch, SRPMURL: *srpmURL, SRPMSHA256: *srpmSHA, Wanted: *wanted})
		if err != nil {
			return err
		}
		return af.print(stdout, res, "enqueued job %s (%s.%s, %d wanted, deadline %s) at index %d\n", res.Job.JobID, *nvr, *arch, res.Job.Wanted, res.Job.Deadline.UTC().Format(time.RFC3339), res.Index)
	})
}

func adminImportOfficial(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer) int {
	af := addAdminFlags(fs, "key", "importer private key file, enrolled with role importer (required)", false)
	nvr := fs.String("nvr", "", "name-version-release (required)")
	arch := fs.String("arch", "", "architecture (required)")
	srpmURL := fs.String("srpm-url", "", "where Koji's SRPM is (optional)")
	srpmSHA := fs.String("srpm-sha256", "", "SHA-256 of the SRPM, lowercase hex (required)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *nvr == "" || *arch == "" || *srpmSHA == "" || fs.NArg() != 1 {
		fmt.Fprintln(stderr, "skyline admin import-official: --nvr, --arch, --srpm-sha256 and one RPMDIR are required")
		return exitUsage
	}
	return af.call(ctx, stderr, func(ctx context.Context, c *api.Client, s *attest.Signer) error {
		r, err := koji.ImportOfficial(ctx, c, s, koji.Official{
			Build:   attest.BuildID{NVR: *nvr, Arch: *arch, SRPMSHA256: *srpmSHA},
			SRPMURL: *srpmURL,
			Dir:     fs.Arg(0),
		})
		if err != nil {
			return err
		}
		if *af.json {
			return af.print(stdout, r, "")
		}
		for _, e := range r.Entries {
			fmt.Fprintf(stdout, "official %s.%s logged at index %d\n", *nvr, *arch, e.Index)
		}
		return nil
	})
}
