package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"github.com/fedora-skyline/skyline/attest/rpm"
)

// runDigest implements `skyline digest [--json] FILE.rpm...`.
func runDigest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("digest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print a JSON array of digests instead of lines")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline digest [--json] FILE.rpm...

Prints the %s digest of each RPM (docs/rpm-digest.md): a SHA-256 that
ignores the signature header and the volatile tags BUILDTIME, BUILDHOST and
COOKIE, so signed and unsigned copies, and reproducible rebuilds, agree.

Output, one line per file, columns separated by two spaces:
  <skyline digest>  <sha256 of the whole file>  <file as given>
With --json: a JSON array of objects (file, sha256, skyline, name, version,
release, arch, epoch, sourcerpm, is_source), in argument order.

Exit status: 0 all files digested, 1 some file failed (the error, naming
the file, goes to stderr; the others are still printed), 4 usage.

Flags:
`, rpm.DigestVersion)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	code := exitOK
	digests := []rpm.Digest{}
	for _, path := range fs.Args() {
		d, err := rpm.DigestFile(path)
		if err != nil {
			fmt.Fprintf(stderr, "skyline digest: %s: %v\n", path, err)
			code = exitFail
			continue
		}
		if *asJSON {
			digests = append(digests, d)
			continue
		}
		fmt.Fprintf(stdout, "%s  %s  %s\n", d.Skyline, d.SHA256, path)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(digests); err != nil {
			fmt.Fprintf(stderr, "skyline digest: %v\n", err)
			return exitFail
		}
	}
	return code
}
