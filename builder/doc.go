// Package builder is the skyline volunteer daemon: it leases a rebuild job
// from the coordinator, downloads the job's SRPM and checks its sha256,
// rebuilds it at idle priority with mock or rpmbuild, digests every RPM
// (skyline-rpm-v1), signs an in-toto attestation per result set, submits
// the DSSE envelopes to the log and checks the returned inclusion proof
// (RFC 6962 section 2.1.1) against a checkpoint whose C2SP signed-note
// signature it verifies with the log's key (C2SP tlog-checkpoint,
// C2SP signed-note).
//
// The daemon keeps a durable state directory so that a restart resumes the
// lease it held and resubmits, byte for byte, any envelope that was signed
// but not yet acknowledged: the log deduplicates identical envelopes, so a
// resubmission can never count as a second vote. docs/builder.md describes
// the configuration, the build sandbox and the packaging.
package builder
