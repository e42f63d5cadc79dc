package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/fedora-skyline/skyline/attest"
)

// runKeygen implements `skyline keygen --name NAME [--dir D] [--type T] [--note-name N]`.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "base name of the key files (required)")
	dir := fs.String("dir", ".", "directory to write the key files to")
	keyType := fs.String("type", attest.KeyEd25519, "key type: ed25519 or ecdsa-p256")
	noteName := fs.String("note-name", "", "signed-note key name in NAME.vkey (default NAME)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: skyline keygen --name NAME [--dir D] [--type ed25519|ecdsa-p256] [--note-name N]

Generates a signing key pair for a builder, witness, importer or the log
(docs/attestation.md, "Keys") and writes:

  D/NAME.key   private key, PKCS#8 PEM, mode 0600
  D/NAME.pub   public key, PKIX PEM (what the coordinator enrols)
  D/NAME.vkey  Ed25519 only: C2SP signed-note verifier key named N,
               for checkpoints and witness cosignatures

It refuses to overwrite: if any of the files exists nothing is written.
The key id (lowercase hex SHA-256 of the PKIX DER public key) is printed
on stdout.

Exit status: 0 written, 1 a file exists or writing failed, 4 usage.

Flags:
`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *name == "" || fs.NArg() != 0 {
		fs.Usage()
		return exitUsage
	}
	if *noteName == "" {
		*noteName = *name
	}
	s, err := attest.GenerateKey(*keyType)
	if err != nil {
		fmt.Fprintf(stderr, "skyline keygen: %v\n", err)
		return exitUsage
	}
	// A new key directory is private: it will hold the private key.
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		fmt.Fprintf(stderr, "skyline keygen: %v\n", err)
		return exitFail
	}
	kf, err := attest.WriteKeyFiles(*dir, *name, *noteName, s)
	if err != nil {
		fmt.Fprintf(stderr, "skyline keygen: %v\n", err)
		if errors.Is(err, attest.ErrBadName) {
			return exitUsage
		}
		return exitFail
	}
	fmt.Fprintf(stdout, "%s\n", s.KeyID())
	fmt.Fprintf(stderr, "skyline keygen: wrote %s and %s", kf.Private, kf.Public)
	if kf.NoteVKey != "" {
		fmt.Fprintf(stderr, " and %s", kf.NoteVKey)
	}
	fmt.Fprintln(stderr)
	return exitOK
}
