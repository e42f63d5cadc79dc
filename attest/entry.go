package attest

import (
	"encoding/json"
	"fmt"
	"time"
)

// DSSE payloadType of every skyline log entry. One strict parser (Parse)
// handles all of them; each maps to exactly one Go type below.
const (
	PayloadInToto     = "application/vnd.in-toto+json"                // build attestation and official build (in-toto Statement v1)
	PayloadEnrolment  = "application/vnd.skyline.enrolment.v1+json"   // coordinator enrols a key for an operator
	PayloadRevocation = "application/vnd.skyline.revocation.v1+json"  // coordinator revokes a key
	PayloadJob        = "application/vnd.skyline.job.v1+json"         // a job was enqueued
	PayloadLease      = "application/vnd.skyline.lease.v1+json"       // a job slot was leased to a builder key
	PayloadLeaseEnd   = "application/vnd.skyline.lease-end.v1+json"   // a lease failed, was abandoned or expired
	PayloadJobClose   = "application/vnd.skyline.job-close.v1+json"   // the job is closed: verdicts may be final
	PayloadVerdict    = "application/vnd.skyline.verdict.v1+json"     // a witness's agreement result
	PayloadAlarm      = "application/vnd.skyline.alarm.v1+json"       // circuit breaker tripped (signed by a witness)
	PayloadAlarmClear = "application/vnd.skyline.alarm-clear.v1+json" // an admin cleared it
)

// MaxEntrySize is the largest envelope the log accepts: C2SP tlog-tiles
// entry bundles carry each entry with a 16-bit length prefix.
const MaxEntrySize = 65535

// BuildID identifies a build: agreement is computed per (NVR, arch, SRPM
// sha256).
type BuildID struct {
	NVR        string `json:"nvr"`
	Arch       string `json:"arch"`
	SRPMSHA256 string `json:"srpm_sha256"` // lowercase hex
}

// Enrolment says that the coordinator enrolled a key for an operator.
type Enrolment struct {
	KeyID     string    `json:"key_id"`
	PublicKey string    `json:"public_key"` // PKIX PEM
	Role      string    `json:"role"`       // builder|witness|importer|admin
	Operator  string    `json:"operator"`
	Contact   string    `json:"contact"`
	Team      string    `json:"team,omitempty"`
	Since     time.Time `json:"since"`
}

// Key roles of an Enrolment.
const (
	RoleBuilder  = "builder"
	RoleWitness  = "witness"
	RoleImporter = "importer"
	RoleAdmin    = "admin"
)

// Revocation says that a key stops being trusted.
type Revocation struct {
	KeyID    string    `json:"key_id"`
	Operator string    `json:"operator"`
	Reason   string    `json:"reason"`
	Until    time.Time `json:"until"`
}

// Job says that a build job was enqueued with Wanted leases. No lease is
// issued at or after Deadline, and once it has passed the job closes as
// soon as no lease is live (docs/coordinator.md §Closing): the deadline is
// logged so that a replay can check the closing without the server's
// configuration.
type Job struct {
	JobID    string    `json:"job_id"`
	Build    BuildID   `json:"build"`
	SRPMURL  string    `json:"srpm_url"`
	Wanted   int       `json:"wanted"`
	Enqueued time.Time `json:"enqueued"`
	Deadline time.Time `json:"deadline"`
}

// Lease says that a job slot was leased to a builder key until Expires.
type Lease struct {
	LeaseID  string    `json:"lease_id"`
	JobID    string    `json:"job_id"`
	Build    BuildID   `json:"build"`
	SRPMURL  string    `json:"srpm_url"`
	KeyID    string    `json:"key_id"`
	Operator string    `json:"operator"`
	Slot     int       `json:"slot"`
	Attempt  int       `json:"attempt"`
	Issued   time.Time `json:"issued"`
	Expires  time.Time `json:"expires"`
}

// LeaseEnd says that a lease ended without a result.
type LeaseEnd struct {
	LeaseID string    `json:"lease_id"`
	JobID   string    `json:"job_id"`
	KeyID   string    `json:"key_id"`
	Reason  string    `json:"reason"` // failed|abandoned|expired
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// Reasons of a LeaseEnd.
const (
	LeaseFailed    = "failed"
	LeaseAbandoned = "abandoned"
	LeaseExpired   = "expired"
)

// JobClose says that a job is closed: its wanted results are in, or every
// lease returned or expired and either no slot can be leased any more or
// the job's deadline has passed, so verdicts on its build may be final.
type JobClose struct {
	JobID   string    `json:"job_id"`
	Build   BuildID   `json:"build"`
	Results int       `json:"results"`
	At      time.Time `json:"at"`
}

// Verdict is a witness's agreement result for one build at a tree size.
type Verdict struct {
	Build     BuildID        `json:"build"`
	Verdict   string         `json:"verdict"`
	TreeSize  uint64         `json:"tree_size"`
	ResultSet string         `json:"result_set,omitempty"`
	Groups    []VerdictGroup `json:"groups"`
	Outliers  []Outlier      `json:"outliers,omitempty"`
	Official  string         `json:"official,omitempty"`
	At        time.Time      `json:"at"`
}

// VerdictGroup is the set of operators and entries that agree on one result
// set.
type VerdictGroup struct {
	ResultSet string   `json:"result_set"`
	Operators []string `json:"operators"`
	Entries   []uint64 `json:"entries"`
}

// Outlier is an entry whose result set disagrees with the agreeing group.
type Outlier struct {
	Index     uint64 `json:"index"`
	KeyID     string `json:"key_id"`
	Operator  string `json:"operator"`
	ResultSet string `json:"result_set"`
}

// Alarm says that the circuit breaker tripped.
type Alarm struct {
	Reason   string    `json:"reason"`
	Rate     float64   `json:"rate"`
	Window   int       `json:"window"`
	TreeSize uint64    `json:"tree_size"`
	At       time.Time `json:"at"`
}

// AlarmClear says that an admin cleared the alarm logged at AlarmIndex.
type AlarmClear struct {
	AlarmIndex uint64    `json:"alarm_index"`
	Reason     string    `json:"reason"`
	At         time.Time `json:"at"`
}

// payloadTypeOf returns the payloadType of a JSON payload kind.
func payloadTypeOf(payload any) (string, bool) {
	switch payload.(type) {
	case *Enrolment, Enrolment:
		return PayloadEnrolment, true
	case *Revocation, Revocation:
		return PayloadRevocation, true
	case *Job, Job:
		return PayloadJob, true
	case *Lease, Lease:
		return PayloadLease, true
	case *LeaseEnd, LeaseEnd:
		return PayloadLeaseEnd, true
	case *JobClose, JobClose:
		return PayloadJobClose, true
	case *Verdict, Verdict:
		return PayloadVerdict, true
	case *Alarm, Alarm:
		return PayloadAlarm, true
	case *AlarmClear, AlarmClear:
		return PayloadAlarmClear, true
	}
	return "", false
}

// Sign marshals payload (one of the JSON payload kinds above) to JSON and
// returns the DSSE envelope signed by s. payloadType must be the kind's
// payload type; in-toto statements are made by NewAttestations instead.
func Sign(s *Signer, payloadType string, payload any) (envelopeJSON []byte, err error) {
	want, ok := payloadTypeOf(payload)
	if !ok {
		return nil, fmt.Errorf("attest: sign: %T is not a JSON payload kind: %w", payload, ErrPayloadType)
	}
	if want != payloadType {
		return nil, fmt.Errorf("attest: sign: %T has payload type %q, not %q: %w", payload, want, payloadType, ErrPayloadType)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("attest: sign %s: %w", payloadType, err)
	}
	return s.SignEnvelope(payloadType, body)
}
