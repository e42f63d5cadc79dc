package builder

import (
	"context"
	"errors"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Coordinator errors that change what the daemon does. Any other error is
// treated as transient: retried with backoff.
var (
	// ErrNoWork: no job is eligible for this builder now.
	ErrNoWork = errors.New("no work")
	// ErrRejected: the log refused the envelopes for good (bad signature,
	// no valid lease): retrying the same bytes cannot succeed.
	ErrRejected = errors.New("rejected by the log")
)

// Coordinator is what the daemon needs from `skyline serve`; the api
// package's client implements it over HTTP.
type Coordinator interface {
	// Lease asks for a job; ErrNoWork when nothing is eligible.
	Lease(ctx context.Context) (*attest.Lease, error)
	// Submit sends the signed envelopes of one result set; the receipt
	// places each in the log. Submitting envelopes again returns the
	// entries they already have (the log deduplicates).
	Submit(ctx context.Context, envelopes [][]byte) (*Receipt, error)
	// EndLease hands a lease back without a result; reason is
	// attest.LeaseFailed or attest.LeaseAbandoned, detail says why (for a
	// failed build: the end of its log).
	EndLease(ctx context.Context, leaseID, reason, detail string) error
	// Notices returns the notices about this builder's results.
	Notices(ctx context.Context) ([]Notice, error)
}

// Kinds of a Notice.
const (
	NoticeOutlier = "outlier" // our result disagreed with the agreeing group
	NoticeAgreed  = "agreed"  // our result was in the agreeing group
)

// Notice tells a builder what the witnesses concluded about one of its
// results.
type Notice struct {
	// Index is the log index of the verdict the notice comes from. Notices
	// are counted once per (Kind, Build, ResultSet): several witnesses and
	// later verdicts repeat the same judgement.
	Index     uint64         `json:"index"`
	Kind      string         `json:"kind"`
	Build     attest.BuildID `json:"build"`
	Verdict   string         `json:"verdict,omitempty"`
	ResultSet string         `json:"result_set,omitempty"` // ours
	Expected  string         `json:"expected,omitempty"`   // the agreeing group's
	At        time.Time      `json:"at"`
}
