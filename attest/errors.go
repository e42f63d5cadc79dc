package attest

import "errors"

// Errors returned by Parse, Verify and Reassemble, one per kind of rejected
// input, checked with errors.Is. docs/attestation.md lists them.
var (
	// ErrTooLarge: the envelope is larger than MaxEntrySize bytes.
	ErrTooLarge = errors.New("entry larger than 65535 bytes")
	// ErrSyntax: the envelope or payload is not valid JSON of the right shape.
	ErrSyntax = errors.New("malformed JSON")
	// ErrBadBase64: payload or signature is not canonical standard base64.
	ErrBadBase64 = errors.New("bad base64")
	// ErrPayloadType: the payloadType is not one of skyline's.
	ErrPayloadType = errors.New("unknown payload type")
	// ErrSignatureCount: the envelope does not carry exactly one signature.
	ErrSignatureCount = errors.New("not exactly one signature")
	// ErrUnknownField: a JSON object has a field the format does not define.
	ErrUnknownField = errors.New("unknown JSON field")
	// ErrDuplicateKey: a JSON object has the same key twice.
	ErrDuplicateKey = errors.New("duplicate JSON key")
	// ErrCaseFoldedKey: a JSON key matches a field name only case-insensitively.
	ErrCaseFoldedKey = errors.New("JSON key differs from the field name in case")
	// ErrTrailingData: bytes follow the JSON value.
	ErrTrailingData = errors.New("trailing data after JSON value")
	// ErrStatementType: the in-toto statement has the wrong _type.
	ErrStatementType = errors.New("wrong in-toto statement _type")
	// ErrPredicateType: the statement's predicateType is not SLSA Provenance v1.
	ErrPredicateType = errors.New("wrong predicate type")
	// ErrBuildType: the provenance buildType is not one of skyline's.
	ErrBuildType = errors.New("wrong build type")
	// ErrSubjects: subjects are empty, unsorted, duplicated, badly digested,
	// or do not hash to the result-set digest.
	ErrSubjects = errors.New("bad subjects")
	// ErrBadName: an RPM file name, NVR or arch is malformed (path tricks,
	// control characters, grammar).
	ErrBadName = errors.New("bad name")
	// ErrBadField: a field value is malformed (digest, key id, time, role,
	// reason, result-set part numbers).
	ErrBadField = errors.New("bad field value")
	// ErrKeyID: the signature's keyid does not match the verifying key.
	ErrKeyID = errors.New("key id mismatch")
	// ErrSignature: the signature does not verify.
	ErrSignature = errors.New("signature does not verify")
	// ErrUnknownKey: the key lookup does not know the signer's key id.
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrKeyType: the key is not Ed25519 or ECDSA P-256.
	ErrKeyType = errors.New("unsupported key type")
	// ErrKeyFormat: a key file is not the expected PEM encoding.
	ErrKeyFormat = errors.New("bad key file")
	// ErrParts: result-set parts do not fit together (missing, duplicated,
	// foreign or inconsistent parts).
	ErrParts = errors.New("result-set parts do not fit together")
)
