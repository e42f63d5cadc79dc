package api

import (
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
)

// Request actions (attest.Request.Action) and the bodies they carry.
const (
	ActionLease    = "lease"
	ActionLeaseEnd = "lease-end"
	ActionNotices  = "notices"
	ActionEnqueue  = "enqueue"
	ActionEnrol    = "enrol"
	ActionRevoke   = "revoke"
	ActionJobs     = "jobs"
)

// LeaseBody asks for a lease on a job for one of Arches.
type LeaseBody struct {
	Arches []string `json:"arches"`
}

// LeaseResponse is a logged lease.
type LeaseResponse struct {
	Lease attest.Lease `json:"lease"`
	Index uint64       `json:"index"`
}

// LeaseEndBody ends a lease without a result: Reason is attest.LeaseFailed
// or attest.LeaseAbandoned.
type LeaseEndBody struct {
	LeaseID string `json:"lease_id"`
	Reason  string `json:"reason"`
	Detail  string `json:"detail,omitempty"`
}

// EmptyBody is the body of actions that take no parameters.
type EmptyBody struct{}

// EnqueueBody asks for a job.
type EnqueueBody struct {
	NVR        string `json:"nvr"`
	Arch       string `json:"arch"`
	SRPMURL    string `json:"srpm_url"`
	SRPMSHA256 string `json:"srpm_sha256"`
	Wanted     int    `json:"wanted,omitempty"` // 0: the server's default
}

// EnqueueResponse is a logged job.
type EnqueueResponse struct {
	Job   attest.Job `json:"job"`
	Index uint64     `json:"index"`
}

// EnrolBody asks for the enrolment of PublicKey (PKIX PEM) for Operator.
type EnrolBody struct {
	PublicKey string `json:"public_key"`
	Role      string `json:"role"`
	Operator  string `json:"operator"`
	Contact   string `json:"contact"`
	Team      string `json:"team,omitempty"`
}

// RevokeBody asks for the revocation of KeyID.
type RevokeBody struct {
	KeyID  string `json:"key_id"`
	Reason string `json:"reason"`
}

// IndexResponse names the log entry an action made.
type IndexResponse struct {
	KeyID string `json:"key_id,omitempty"`
	Index uint64 `json:"index"`
}

// JobsResponse lists every job.
type JobsResponse struct {
	Jobs []coord.JobStatus `json:"jobs"`
}

// NoticesResponse lists a builder's notices.
type NoticesResponse struct {
	Notices []coord.Notice `json:"notices"`
}

// SubmitResponse places a submitted envelope in the log. With ?wait=1 it
// also carries the inclusion proof of the entry in the first checkpoint
// that covers it (when that came within the server's wait timeout).
type SubmitResponse struct {
	Index      uint64   `json:"index"`
	Duplicate  bool     `json:"duplicate"`
	Proof      [][]byte `json:"proof,omitempty"`
	Checkpoint string   `json:"checkpoint,omitempty"` // the signed note the proof is against
}

// InclusionResponse is an RFC 6962 inclusion proof.
type InclusionResponse struct {
	Index uint64   `json:"index"`
	Size  uint64   `json:"size"`
	Proof [][]byte `json:"proof"`
}

// ConsistencyResponse is an RFC 6962 consistency proof.
type ConsistencyResponse struct {
	From  uint64   `json:"from"`
	To    uint64   `json:"to"`
	Proof [][]byte `json:"proof"`
}

// LookupEntry is one entry of an NVR lookup.
type LookupEntry struct {
	Index uint64 `json:"index"`
	Type  string `json:"type"`
}

// LookupResponse lists the entries indexed under an NVR.
type LookupResponse struct {
	NVR     string        `json:"nvr"`
	Entries []LookupEntry `json:"entries"`
}
