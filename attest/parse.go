package attest

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
)

// Entry is a parsed, schema-checked log entry.
type Entry struct {
	PayloadType string
	Payload     []byte      // the decoded DSSE payload
	Signatures  []Signature // exactly one (skyline policy: one signer per entry)
	KeyID       string      // the signer's key id, Signatures[0].KeyID
	PayloadHash [32]byte    // SHA-256 of Payload: with KeyID, the log's deduplication key
	// Value is the decoded payload: *Attestation for PayloadInToto, else
	// *Enrolment, *Revocation, *Job, *Lease, *LeaseEnd, *JobClose,
	// *Verdict, *Alarm or *AlarmClear.
	Value any
	// Verified is set once Verify (or Parse with ParseOptions.Keys) has
	// checked the signature.
	Verified bool
}

// ParseOptions configures Parse.
type ParseOptions struct {
	// Keys, when set, looks up the verifier of the signer's key id; Parse
	// then verifies the signature and fails with ErrSignature (or the
	// lookup's error, wrapped) when it does not verify. When nil, Parse
	// checks only the format and the caller must call Entry.Verify.
	Keys func(keyID string) (*Verifier, error)
}

// Parse is the one strict parser of untrusted log entries (DSSE v1.0
// envelope, skyline payloads). It rejects, in this order: envelopes over
// MaxEntrySize; malformed or non-strict envelope JSON; unknown payload
// types; signature counts other than one; non-canonical base64; malformed
// or non-strict payloads and payloads that break a skyline rule. See
// docs/attestation.md for the errors.
func Parse(data []byte, opts ParseOptions) (*Entry, error) {
	// C2SP tlog-tiles: entries are at most 65535 bytes.
	if len(data) > MaxEntrySize {
		return nil, fmt.Errorf("attest: entry of %d bytes: %w", len(data), ErrTooLarge)
	}
	var env envelope
	if err := decodeStrict("envelope", data, &env); err != nil {
		return nil, err
	}
	if !knownPayloadType(env.PayloadType) {
		return nil, fmt.Errorf("attest: payloadType %q: %w", trunc(env.PayloadType), ErrPayloadType)
	}
	if len(env.Signatures) != 1 {
		return nil, fmt.Errorf("attest: %d signatures: %w", len(env.Signatures), ErrSignatureCount)
	}
	payload, err := decodeB64("payload", env.Payload)
	if err != nil {
		return nil, err
	}
	sig, err := decodeB64("signature", env.Signatures[0].Sig)
	if err != nil {
		return nil, err
	}
	keyID := env.Signatures[0].KeyID
	if err := checkHex("signature keyid", keyID); err != nil {
		return nil, err
	}
	e := &Entry{
		PayloadType: env.PayloadType,
		Payload:     payload,
		Signatures:  []Signature{{KeyID: keyID, Sig: sig}},
		KeyID:       keyID,
		PayloadHash: sha256.Sum256(payload),
	}
	if e.Value, err = parsePayload(env.PayloadType, payload, keyID); err != nil {
		return nil, err
	}
	if opts.Keys != nil {
		v, err := opts.Keys(keyID)
		if err != nil {
			return nil, fmt.Errorf("attest: key %s: %w", keyID, err)
		}
		if v == nil {
			return nil, fmt.Errorf("attest: key %s: %w", keyID, ErrUnknownKey)
		}
		if err := e.Verify(v); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Verify checks the entry's signature with v (DSSE v1.0: the signature is
// over PAE(payloadType, payload)). The signature's keyid must be v's key
// id.
func (e *Entry) Verify(v *Verifier) error {
	if e.KeyID != v.KeyID() {
		return fmt.Errorf("attest: signed by %s, verifying with %s: %w", e.KeyID, v.KeyID(), ErrKeyID)
	}
	if err := v.verifySig(e.PayloadType, e.Payload, e.Signatures[0].Sig); err != nil {
		return err
	}
	e.Verified = true
	return nil
}

// Attestation returns the entry's attestation, or nil if it is another
// kind of entry.
func (e *Entry) Attestation() *Attestation {
	a, _ := e.Value.(*Attestation)
	return a
}

// decodeB64 decodes canonical standard base64 (RFC 4648 section 4, with
// padding): Go's decoder rejects non-zero trailing bits in strict mode.
func decodeB64(what, s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("attest: %s: %w", what, ErrBadBase64)
	}
	return b, nil
}

func knownPayloadType(t string) bool {
	switch t {
	case PayloadInToto, PayloadEnrolment, PayloadRevocation, PayloadJob, PayloadLease,
		PayloadLeaseEnd, PayloadJobClose, PayloadVerdict, PayloadAlarm, PayloadAlarmClear:
		return true
	}
	return false
}

// parsePayload decodes and checks a payload of a known type.
func parsePayload(payloadType string, payload []byte, keyID string) (any, error) {
	var v interface{ check() error }
	switch payloadType {
	case PayloadInToto:
		return parseStatement(payload, keyID)
	case PayloadEnrolment:
		v = &Enrolment{}
	case PayloadRevocation:
		v = &Revocation{}
	case PayloadJob:
		v = &Job{}
	case PayloadLease:
		v = &Lease{}
	case PayloadLeaseEnd:
		v = &LeaseEnd{}
	case PayloadJobClose:
		v = &JobClose{}
	case PayloadVerdict:
		v = &Verdict{}
	case PayloadAlarm:
		v = &Alarm{}
	case PayloadAlarmClear:
		v = &AlarmClear{}
	default:
		return nil, fmt.Errorf("attest: payloadType %q: %w", trunc(payloadType), ErrPayloadType)
	}
	if err := decodeStrict(payloadType, payload, v); err != nil {
		return nil, err
	}
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("attest: %s: %w", payloadType, err)
	}
	return v, nil
}

func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("attest: %s missing: %w", what, ErrBadField)
	}
	return nil
}

func (e *Enrolment) check() error {
	if err := checkHex("key_id", e.KeyID); err != nil {
		return err
	}
	v, err := ParsePublicPEM([]byte(e.PublicKey))
	if err != nil {
		return fmt.Errorf("attest: public_key: %w: %w", ErrBadField, err)
	}
	if v.KeyID() != e.KeyID {
		return fmt.Errorf("attest: public_key has key id %s, not %s: %w", v.KeyID(), e.KeyID, ErrBadField)
	}
	switch e.Role {
	case RoleBuilder, RoleWitness, RoleImporter, RoleAdmin:
	default:
		return fmt.Errorf("attest: role %q: %w", trunc(e.Role), ErrBadField)
	}
	if err := checkText("operator", e.Operator, true); err != nil {
		return err
	}
	if err := checkText("contact", e.Contact, true); err != nil {
		return err
	}
	if err := checkText("team", e.Team, false); err != nil {
		return err
	}
	return checkTime("since", e.Since)
}

func (r *Revocation) check() error {
	if err := checkHex("key_id", r.KeyID); err != nil {
		return err
	}
	if err := checkText("operator", r.Operator, true); err != nil {
		return err
	}
	if err := checkText("reason", r.Reason, true); err != nil {
		return err
	}
	return checkTime("until", r.Until)
}

func (j *Job) check() error {
	if err := checkText("job_id", j.JobID, true); err != nil {
		return err
	}
	if err := checkBuildID(j.Build); err != nil {
		return err
	}
	if err := checkText("srpm_url", j.SRPMURL, false); err != nil {
		return err
	}
	if j.Wanted < 1 {
		return fmt.Errorf("attest: wanted %d: %w", j.Wanted, ErrBadField)
	}
	if err := checkTime("enqueued", j.Enqueued); err != nil {
		return err
	}
	if err := checkTime("deadline", j.Deadline); err != nil {
		return err
	}
	if !j.Deadline.After(j.Enqueued) {
		return fmt.Errorf("attest: job deadline %s not after its enqueue time %s: %w", j.Deadline.Format(time.RFC3339), j.Enqueued.Format(time.RFC3339), ErrBadField)
	}
	return nil
}

func (l *Lease) check() error {
	for _, f := range []struct{ what, v string }{{"lease_id", l.LeaseID}, {"job_id", l.JobID}, {"operator", l.Operator}} {
		if err := checkText(f.what, f.v, true); err != nil {
			return err
		}
	}
	if err := checkBuildID(l.Build); err != nil {
		return err
	}
	if err := checkText("srpm_url", l.SRPMURL, false); err != nil {
		return err
	}
	if err := checkHex("key_id", l.KeyID); err != nil {
		return err
	}
	if l.Slot < 0 || l.Attempt < 0 {
		return fmt.Errorf("attest: slot %d attempt %d: %w", l.Slot, l.Attempt, ErrBadField)
	}
	if err := checkTime("issued", l.Issued); err != nil {
		return err
	}
	if err := checkTime("expires", l.Expires); err != nil {
		return err
	}
	if !l.Expires.After(l.Issued) {
		return fmt.Errorf("attest: lease expires before it is issued: %w", ErrBadField)
	}
	return nil
}

func (l *LeaseEnd) check() error {
	if err := checkText("lease_id", l.LeaseID, true); err != nil {
		return err
	}
	if err := checkText("job_id", l.JobID, true); err != nil {
		return err
	}
	if err := checkHex("key_id", l.KeyID); err != nil {
		return err
	}
	switch l.Reason {
	case LeaseFailed, LeaseAbandoned, LeaseExpired:
	default:
		return fmt.Errorf("attest: lease-end reason %q: %w", trunc(l.Reason), ErrBadField)
	}
	if err := checkText("detail", l.Detail, false); err != nil {
		return err
	}
	return checkTime("at", l.At)
}

func (j *JobClose) check() error {
	if err := checkText("job_id", j.JobID, true); err != nil {
		return err
	}
	if err := checkBuildID(j.Build); err != nil {
		return err
	}
	if j.Results < 0 {
		return fmt.Errorf("attest: results %d: %w", j.Results, ErrBadField)
	}
	return checkTime("at", j.At)
}

// Verdicts a witness may sign (ARCHITECTURE.md, Agreement).
const (
	VerdictReproduced       = "reproduced"
	VerdictDisputed         = "disputed"
	VerdictOfficialMismatch = "official-mismatch"
	VerdictUnreproducible   = "unreproducible"
	VerdictInsufficient     = "insufficient"
)

func (v *Verdict) check() error {
	if err := checkBuildID(v.Build); err != nil {
		return err
	}
	switch v.Verdict {
	case VerdictReproduced, VerdictDisputed, VerdictOfficialMismatch, VerdictUnreproducible, VerdictInsufficient:
	default:
		return fmt.Errorf("attest: verdict %q: %w", trunc(v.Verdict), ErrBadField)
	}
	for _, rs := range []string{v.ResultSet, v.Official} {
		if rs != "" {
			if err := checkHex("result set", rs); err != nil {
				return err
			}
		}
	}
	for _, g := range v.Groups {
		if err := checkHex("group result_set", g.ResultSet); err != nil {
			return err
		}
		for _, op := range g.Operators {
			if err := checkText("operator", op, true); err != nil {
				return err
			}
		}
	}
	for _, o := range v.Outliers {
		if err := checkHex("outlier key_id", o.KeyID); err != nil {
			return err
		}
		if err := checkHex("outlier result_set", o.ResultSet); err != nil {
			return err
		}
		if err := checkText("outlier operator", o.Operator, true); err != nil {
			return err
		}
	}
	return checkTime("at", v.At)
}

func (a *Alarm) check() error {
	if err := checkText("reason", a.Reason, true); err != nil {
		return err
	}
	if a.Rate < 0 || a.Rate > 1 || a.Window < 1 {
		return fmt.Errorf("attest: alarm rate %v window %d: %w", a.Rate, a.Window, ErrBadField)
	}
	return checkTime("at", a.At)
}

func (a *AlarmClear) check() error {
	if err := checkText("reason", a.Reason, true); err != nil {
		return err
	}
	return checkTime("at", a.At)
}
