package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
)

// runAttest implements `skyline attest sign|verify`.
func runAttest(args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintf(stderr, `usage: skyline attest sign [flags] RESULTDIR
       skyline attest verify --pub K.pub [--json] ENVELOPE...

sign    digests the binary RPMs in RESULTDIR and prints the DSSE-signed
        in-toto attestation(s) of the build, one JSON envelope per line
        (large result sets are split into parts of at most 65535 bytes).
verify  checks envelopes (files with one envelope per line, - for stdin)
        against a public key and prints what they attest.

Run 'skyline attest sign --help' or 'skyline attest verify --help' for flags.
The format is described in docs/attestation.md.
`)
	}
	if len(args) == 0 {
		usage()
		return exitUsage
	}
	switch args[0] {
	case "sign":
		return runAttestSign(args[1:], stdout, stderr)
	case "verify":
		return runAttestVerify(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		usage()
		return exitOK
	}
	fmt.Fprintf(stderr, "skyline attest: unknown subcommand %q\n\n", args[0])
	usage()
	return exitUsage
}

func runAttestSign(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("attest sign", flag.ContinueOnError)
	fs.SetOutput(stderr)
	keyPath := fs.String("key", "", "builder private key (PKCS#8 PEM from skyline keygen) (required)")
	nvr := fs.String("nvr", "", "name-version-release of the build (required)")
	arch := fs.String("arch", "", "architecture built, e.g. x86_64 (required)")
	srpm := fs.String("srpm", "", "the source RPM that was rebuilt (required; its sha256 identifies the build)")
	srpmURL := fs.String("srpm-url", "", "where the SRPM was downloaded from")
	backend := fs.String("backend", "rpmbuild", "build backend: rpmbuild or mock")
	chroot := fs.String("chroot", "", "mock chroot or build root name")
	lease := fs.String("lease", "", "lease id from the coordinator")
	official := fs.Bool("official", false, "attest an official Koji build (importer) instead of a rebuild")
	started := fs.String("started", "", "build start time, RFC 3339")
	finished := fs.String("finished", "", "build end time, RFC 3339")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline attest sign --key K --nvr NVR --arch A --srpm FILE.src.rpm [flags] RESULTDIR

Digests every binary RPM in RESULTDIR (%s, docs/rpm-digest.md), builds an
in-toto Statement v1 with a SLSA Provenance v1 predicate for the build
(NVR, arch, SRPM sha256) and prints it DSSE-signed with the key, one JSON
envelope per line. Result sets too large for one 65535-byte log entry are
split into parts that carry the same result-set digest.

Exit status: 0 printed, 1 digesting or signing failed, 4 usage.

Flags:
`, rpm.DigestVersion)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *keyPath == "" || *nvr == "" || *arch == "" || *srpm == "" || fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	b := attest.Build{
		ID:       attest.BuildID{NVR: *nvr, Arch: *arch},
		SRPMURL:  *srpmURL,
		Backend:  *backend,
		Chroot:   *chroot,
		LeaseID:  *lease,
		Official: *official,
	}
	for _, t := range []struct {
		flag string
		in   string
		out  *time.Time
	}{{"started", *started, &b.Started}, {"finished", *finished, &b.Finished}} {
		if t.in == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, t.in)
		if err != nil {
			fmt.Fprintf(stderr, "skyline attest sign: --%s: %v\n", t.flag, err)
			return exitUsage
		}
		*t.out = v
	}
	if err := attest.CheckNVR(*nvr); err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: --nvr: %v\n", err)
		return exitUsage
	}
	if err := attest.CheckArch(*arch); err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: --arch: %v\n", err)
		return exitUsage
	}
	signer, err := attest.LoadSigner(*keyPath)
	if err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: %v\n", err)
		return exitUsage
	}
	sd, err := rpm.DigestFile(*srpm)
	if err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: --srpm: %v\n", err)
		return exitFail
	}
	if !sd.IsSource {
		fmt.Fprintf(stderr, "skyline attest sign: --srpm %s is not a source RPM\n", *srpm)
		return exitUsage
	}
	b.ID.SRPMSHA256 = sd.SHA256
	digests, err := rpm.DigestDir(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: %v\n", err)
		return exitFail
	}
	envs, err := attest.NewAttestations(b, digests, signer)
	if err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: %v\n", err)
		return exitFail
	}
	w := bufio.NewWriter(stdout)
	for _, e := range envs {
		w.Write(e)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintf(stderr, "skyline attest sign: %v\n", err)
		return exitFail
	}
	return exitOK
}

// verifiedEntry is one line of `attest verify --json` output.
type verifiedEntry struct {
	Source      string           `json:"source"`
	PayloadType string           `json:"payload_type"`
	KeyID       string           `json:"key_id"`
	Build       *attest.BuildID  `json:"build,omitempty"`
	Official    bool             `json:"official,omitempty"`
	ResultSet   string           `json:"result_set,omitempty"`
	Part        int              `json:"part,omitempty"`
	Parts       int              `json:"parts,omitempty"`
	Subjects    []attest.Subject `json:"subjects,omitempty"`
	Value       any              `json:"value,omitempty"`
}

func runAttestVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("attest verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pubPath := fs.String("pub", "", "public key (PKIX PEM) the envelopes must be signed with (required)")
	asJSON := fs.Bool("json", false, "print a JSON array of the verified entries")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline attest verify --pub K.pub [--json] ENVELOPE...

Each ENVELOPE is a file holding DSSE envelopes, one per line (as printed by
'skyline attest sign'), or - for stdin. Every envelope is parsed strictly
(docs/attestation.md lists the rejections) and its signature checked with
the key. Parts of a split result set are reassembled and checked against
their result-set digest.

Prints, per build, the build (NVR, arch, SRPM sha256), the result-set
digest and the subjects; with --json, an array of the entries.

Exit status: 0 every envelope verified, 1 some envelope failed (the reason
goes to stderr), 4 usage.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *pubPath == "" || fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	v, err := attest.LoadVerifier(*pubPath)
	if err != nil {
		fmt.Fprintf(stderr, "skyline attest verify: %v\n", err)
		return exitUsage
	}
	code := exitOK
	var out []verifiedEntry
	type setKey struct {
		build  attest.BuildID
		digest string
	}
	sets := map[setKey][]*attest.Attestation{}
	var order []setKey
	for _, src := range fs.Args() {
		data, err := readInput(src)
		if err != nil {
			fmt.Fprintf(stderr, "skyline attest verify: %v\n", err)
			code = exitFail
			continue
		}
		for i, line := range bytes.Split(data, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			where := fmt.Sprintf("%s:%d", src, i+1)
			e, err := attest.Parse(line, attest.ParseOptions{})
			if err == nil {
				err = e.Verify(v)
			}
			if err != nil {
				fmt.Fprintf(stderr, "skyline attest verify: %s: %v\n", where, err)
				code = exitFail
				continue
			}
			ve := verifiedEntry{Source: where, PayloadType: e.PayloadType, KeyID: e.KeyID}
			if a := e.Attestation(); a != nil {
				ve.Build, ve.Official, ve.ResultSet = &a.Build, a.Official, a.ResultSet.Digest
				ve.Part, ve.Parts, ve.Subjects = a.ResultSet.Part, a.ResultSet.Parts, a.Subjects
				k := setKey{a.Build, a.ResultSet.Digest}
				if _, ok := sets[k]; !ok {
					order = append(order, k)
				}
				sets[k] = append(sets[k], a)
			} else {
				ve.Value = e.Value
			}
			out = append(out, ve)
		}
	}
	for _, k := range order {
		rs, err := attest.Reassemble(sets[k])
		if err != nil {
			fmt.Fprintf(stderr, "skyline attest verify: build %s %s: %v\n", k.build.NVR, k.build.Arch, err)
			code = exitFail
			continue
		}
		if *asJSON {
			continue
		}
		kind := "rebuild"
		if rs.Official {
			kind = "official build"
		}
		fmt.Fprintf(stdout, "%s %s %s (srpm sha256 %s)\n", kind, rs.Build.NVR, rs.Build.Arch, rs.Build.SRPMSHA256)
		fmt.Fprintf(stdout, "  signed by %s\n", v.KeyID())
		fmt.Fprintf(stdout, "  result set %s %s (%d RPMs in %d parts)\n", attest.ResultSetVersion, rs.Digest, len(rs.Subjects), rs.Parts)
		for _, s := range rs.Subjects {
			fmt.Fprintf(stdout, "  %s  %s\n", s.Skyline, s.Name)
		}
	}
	if *asJSON {
		if out == nil {
			out = []verifiedEntry{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return exitFail
		}
	} else {
		for _, e := range out {
			if e.Build == nil {
				fmt.Fprintf(stdout, "%s: %s signed by %s\n", e.Source, e.PayloadType, e.KeyID)
			}
		}
	}
	return code
}

// readInput reads a file, or stdin for "-", up to a bound.
func readInput(src string) ([]byte, error) {
	var r io.Reader
	if src == "-" {
		r = os.Stdin
	} else {
		f, err := os.Open(src)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	const maxInput = 256 << 20
	data, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	if len(data) > maxInput {
		return nil, fmt.Errorf("%s: larger than %d bytes", src, maxInput)
	}
	return data, nil
}
