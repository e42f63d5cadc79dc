// Package attest is skyline's entry format: signing keys, in-toto
// attestations of rebuilt RPMs, the result-set digest, DSSE signing and
// verification, and the one strict parser of untrusted log entries.
//
// Every log entry is a DSSE envelope (DSSE v1.0, github.com/secure-systems-lab/dsse)
// with exactly one signature. Build attestations are in-toto Statements v1
// (in-toto attestation spec v1, "Statement") whose predicate is SLSA
// Provenance v1 (https://slsa.dev/provenance/v1); the other entry kinds are
// skyline JSON payloads named by their payloadType. docs/attestation.md
// describes the formats, the key id and the result-set digest.
package attest
