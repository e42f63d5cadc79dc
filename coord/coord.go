// Package coord is skyline's coordinator: the job queue, the random leasing
// of job slots to volunteer builders, lease expiry, and job closing.
//
// The coordinator's state is a deterministic fold over the log's entries
// (enrolments, revocations, jobs, leases, lease ends, job closes, build
// attestations, alarms and their clearings): Apply folds one entry in, so a
// restarted server, a witness or an auditor re-derives the same state by
// replaying the log. Decisions (Enqueue, NextLease, EndLease, Expire,
// Closable) are returned as Reservations holding attest payloads that the
// caller signs and appends to the log first and only then applies: the lease
// is logged before the builder sees it (ARCHITECTURE.md, "Trust and failure
// rules"). docs/coordinator.md is the specification this package implements;
// comments of the form "coordinator.md §X" name the rule a line implements.
package coord

import (
	"container/heap"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Errors returned by the coordinator, checked with errors.Is. Every error
// means that nothing changed.
var (
	// ErrUnknownKey: the key id was never enrolled.
	ErrUnknownKey = errors.New("unknown key")
	// ErrRevoked: the key was revoked.
	ErrRevoked = errors.New("key revoked")
	// ErrNotBuilder: the key is enrolled, but not with the builder role.
	ErrNotBuilder = errors.New("key not enrolled as a builder")
	// ErrPaused: an alarm is active, so no lease is issued.
	ErrPaused = errors.New("leasing paused by an active alarm")
	// ErrNoJob: no open job is eligible for this builder right now.
	ErrNoJob = errors.New("no eligible job")
	// ErrUnknownJob: no job has this id.
	ErrUnknownJob = errors.New("unknown job")
	// ErrDuplicateJob: an open job for the same build exists (the enqueue
	// key is the BuildID).
	ErrDuplicateJob = errors.New("an open job for this build exists")
	// ErrJobClosed: the job is closed.
	ErrJobClosed = errors.New("job closed")
	// ErrJobExpired: the lease is dated at or after its job's deadline.
	ErrJobExpired = errors.New("job past its deadline")
	// ErrNoLease: no lease has this id.
	ErrNoLease = errors.New("no such lease")
	// ErrNotLeaseHolder: the key does not hold the lease.
	ErrNotLeaseHolder = errors.New("key does not hold the lease")
	// ErrBuildMismatch: the build is not the one the lease is for.
	ErrBuildMismatch = errors.New("build does not match the lease")
	// ErrLeaseExpired: the lease is past its expiry, or expired.
	ErrLeaseExpired = errors.New("lease expired")
	// ErrLeaseEnded: the lease was ended as failed or abandoned.
	ErrLeaseEnded = errors.New("lease ended")
	// ErrDelivered: the lease already delivered its whole result.
	ErrDelivered = errors.New("lease already delivered its result")
	// ErrBusy: another decision about the same lease, slot or job is being
	// logged; retry.
	ErrBusy = errors.New("another decision on it is being logged")
	// ErrInvalid: a field value is malformed or out of range.
	ErrInvalid = errors.New("invalid value")
	// ErrDuplicate: the id (job, lease, key) is already in use.
	ErrDuplicate = errors.New("duplicate id")
	// ErrConflict: the entry contradicts the state (slot taken, attempt out
	// of order, operator already on the job, lease not yet expired, job not
	// closable, result set or parts inconsistent).
	ErrConflict = errors.New("entry conflicts with the state")
	// ErrSigner: the entry is not signed by a key allowed to make it.
	ErrSigner = errors.New("wrong signer")
	// ErrNoAlarm: the alarm to clear is not active.
	ErrNoAlarm = errors.New("no such active alarm")
	// ErrUnsupported: Apply was given a payload it does not know.
	ErrUnsupported = errors.New("unsupported payload")
)

// Config configures a Coordinator. The zero value is usable: every field
// has a default. MaxAttempts, MaxWanted and Authority change what Apply
// accepts, so a replay must use the values the log was written with; the
// other fields shape decisions only (a lease's expiry and a job's deadline
// and wanted count are logged, and Apply checks those).
type Config struct {
	// LeaseTTL is how long a lease lasts before it may be expired.
	// Default 2h.
	LeaseTTL time.Duration
	// JobTTL is how long after its enqueue a job may be leased: a job's
	// logged Deadline is its enqueue time plus JobTTL. From the deadline on
	// no lease is issued, and the job closes once its live leases have
	// ended, with the results counted so far. Default 7 days; at most
	// MaxJobTTL (larger values are cut to it). Apply checks the logged
	// deadline, not this value, so a replay need not know it.
	JobTTL time.Duration
	// MaxAttempts is how many leases one slot may have in total: the first
	// and MaxAttempts-1 re-leases after a failure, abandonment or expiry.
	// Default 3.
	MaxAttempts int
	// DefaultWanted is the number of results (and slots) of a job enqueued
	// with Wanted 0. Default 10.
	DefaultWanted int
	// MaxWanted bounds a job's Wanted. Default 100.
	MaxWanted int
	// Rand is the source of randomness for job choice and ids. Default
	// crypto/rand; tests inject a seeded source.
	Rand io.Reader
	// Authority is the key id of the coordinator's signing key. When set,
	// Apply refuses coordinator entries (enrolment, revocation, job, lease,
	// lease end, job close) signed by another key, alarms not signed by an
	// enrolled witness, and alarm clearings not signed by the authority or
	// an enrolled admin. Empty: signers are not checked, except that a
	// result must be signed by its lease's holder.
	Authority string
	// Logger receives one line per event worth an operator's attention:
	// refused entries, expiries, revocations. Default: discard.
	Logger *slog.Logger
}

// Job deadlines (coordinator.md §Closing, §Configuration).
const (
	// DefaultJobTTL is Config.JobTTL's default.
	DefaultJobTTL = 7 * 24 * time.Hour
	// MaxJobTTL bounds Config.JobTTL and, in Apply, how far a logged job's
	// deadline may lie after its enqueue time.
	MaxJobTTL = 365 * 24 * time.Hour
)

// Defaults of the other Config fields (coordinator.md §Configuration). An
// auditor replaying a log (witness.AuditConfig) uses the same defaults.
const (
	DefaultLeaseTTL      = 2 * time.Hour
	DefaultMaxAttempts   = 3
	DefaultWantedResults = 10
	DefaultMaxWanted     = 100
)

func (cfg Config) withDefaults() Config {
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.JobTTL <= 0 {
		cfg.JobTTL = DefaultJobTTL
	}
	if cfg.JobTTL > MaxJobTTL {
		cfg.JobTTL = MaxJobTTL
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxWanted <= 0 {
		cfg.MaxWanted = DefaultMaxWanted
	}
	if cfg.DefaultWanted <= 0 {
		cfg.DefaultWanted = DefaultWantedResults
	}
	if cfg.DefaultWanted > cfg.MaxWanted {
		cfg.DefaultWanted = cfg.MaxWanted
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Event is one parsed log entry as the coordinator sees it.
type Event struct {
	// Signer is the key id of the entry's one DSSE signature.
	Signer string
	// Payload is the parsed payload: attest.Enrolment, attest.Revocation,
	// attest.Job, attest.Lease, attest.LeaseEnd, attest.JobClose,
	// attest.Alarm, attest.AlarmClear (values or pointers), or a Result for
	// a build attestation. attest.Verdict is accepted and ignored.
	Payload any
}

// Result is what the coordinator needs from a builder's build attestation:
// the build, the lease it was built under, and which part of which result
// set the entry carries. A result set too large for one entry is split into
// Parts entries numbered 0..Parts-1 that carry the same ResultSet digest.
type Result struct {
	Build     attest.BuildID
	LeaseID   string
	ResultSet string
	Part      int
	Parts     int
}

// Coordinator is the job queue and lease state. It is safe for concurrent
// use.
type Coordinator struct {
	cfg Config

	mu      sync.Mutex
	keys    map[string]*key
	jobs    map[string]*job
	order   []*job                      // jobs in enqueue order
	open    map[attest.BuildID]*job     // the open job of a build
	builds  map[attest.BuildID][]*job   // every job of a build
	leases  map[string]*lease           // every lease ever applied
	live    map[string]*lease           // live leases
	expiry  leaseHeap                   // leases by expiry; ended ones are dropped lazily
	due     jobHeap                     // jobs not yet seen past their deadline, by deadline; closed ones are dropped lazily
	revoked map[*key]struct{}           // revoked keys that may hold live leases
	pool    map[string]*pool            // per arch: open jobs with a leasable slot
	close   map[*job]struct{}           // jobs that may close now
	alarms  map[uint64]attest.Alarm     // active alarms by log index
	pending map[pendKey]*Reservation    // outstanding decisions
	enqs    map[attest.BuildID]struct{} // builds with an outstanding enqueue
	enrols  map[string]struct{}         // key ids with an outstanding enrolment
	leasing int                         // outstanding lease reservations
	pausing int                         // outstanding alarm holds
	changed chan struct{}               // closed and replaced on every release
}

// New returns an empty coordinator: Apply every log entry in order to
// rebuild its state.
func New(cfg Config) *Coordinator {
	return &Coordinator{
		cfg:     cfg.withDefaults(),
		keys:    make(map[string]*key),
		jobs:    make(map[string]*job),
		open:    make(map[attest.BuildID]*job),
		builds:  make(map[attest.BuildID][]*job),
		leases:  make(map[string]*lease),
		live:    make(map[string]*lease),
		revoked: make(map[*key]struct{}),
		pool:    make(map[string]*pool),
		close:   make(map[*job]struct{}),
		alarms:  make(map[uint64]attest.Alarm),
		pending: make(map[pendKey]*Reservation),
		enqs:    make(map[attest.BuildID]struct{}),
		enrols:  make(map[string]struct{}),
		changed: make(chan struct{}),
	}
}

// key is an enrolled key.
type key struct {
	enrol      attest.Enrolment
	index      uint64
	revoked    bool
	revocation attest.Revocation
	revokedAt  uint64
	revoking   bool // an outstanding Revoke decision
	holding    int  // outstanding lease reservations and result holds
	live       map[*lease]struct{}
}

// job is a job and its slots.
type job struct {
	j       attest.Job
	index   uint64
	slots   []slot
	ops     map[string]opState // operators that held, hold or are reserved a lease; nil once closed
	live    int                // slots with a live lease
	free    int                // slots leasable now: no lease, not reserved, not delivered, attempts left
	held    int                // slots reserved by an outstanding lease decision
	done    int                // slots whose lease delivered its whole result
	closing bool               // a JobClose decision is outstanding
	closed  bool
	overdue bool // a decision's clock reached the deadline: not leasable
	jc      attest.JobClose
	closeAt uint64
	poolAt  int // position in its arch pool, -1 when absent
}

type opState uint8

const (
	opReserved opState = iota + 1
	opLeased
)

// slot is one of a job's Wanted result slots.
type slot struct {
	attempts int    // leases applied on this slot
	lease    *lease // the live lease
	reserved bool
	done     bool
	result   *lease // the lease that delivered, when done
}

// lease is an applied lease. The state keeps every lease ever applied, so
// its size is the coordinator's memory per result (BenchmarkLeaseMemory):
// what only some leases need (an end, the parts of a multi-part result) is
// held by pointer, and l's strings are the job's and the enrolment's.
type lease struct {
	l      attest.Lease
	index  uint64
	job    *job
	end    *leaseEnd  // set when ended
	set    string     // result-set digest of the parts seen, "" before the first
	entry  uint64     // log index of a one-part result
	multi  *multipart // the parts of a result set of more than one part
	holds  int32      // outstanding result holds
	ending ending     // reason of an outstanding LeaseEnd decision
	done   bool       // the whole result set is in
}

// ended reports whether a LeaseEnd ended the lease.
func (l *lease) ended() bool { return l.end != nil }

// ending is the reason of a lease's outstanding LeaseEnd decision, in a
// byte rather than a string so that a lease fits in 256 bytes.
type ending uint8

const (
	notEnding ending = iota
	endingFailed
	endingAbandoned
	endingExpired
)

// endingOf returns the ending of a LeaseEnd reason.
func endingOf(reason string) ending {
	switch reason {
	case attest.LeaseFailed:
		return endingFailed
	case attest.LeaseAbandoned:
		return endingAbandoned
	}
	return endingExpired
}

// String returns the LeaseEnd reason.
func (e ending) String() string {
	switch e {
	case endingFailed:
		return attest.LeaseFailed
	case endingAbandoned:
		return attest.LeaseAbandoned
	case endingExpired:
		return attest.LeaseExpired
	}
	return ""
}

// leaseEnd is the LeaseEnd entry that ended a lease, and its log index.
type leaseEnd struct {
	le    attest.LeaseEnd
	index uint64
}

// multipart is what a lease has of a result set split into several parts.
type multipart struct {
	seen    []bool   // by part number
	entries []uint64 // log indices of the parts seen, in log order
}

// parts returns the number of parts of the lease's result set, once one
// part is in.
func (l *lease) parts() int {
	if l.multi == nil {
		return 1
	}
	return len(l.multi.seen)
}

// seen reports whether part of the lease's result set is in.
func (l *lease) seen(part int) bool {
	if l.multi == nil {
		return l.set != ""
	}
	return l.multi.seen[part]
}

// entries returns the log indices of the parts in, in log order.
func (l *lease) entries() []uint64 {
	switch {
	case l.set == "":
		return nil
	case l.multi == nil:
		return []uint64{l.entry}
	}
	return append([]uint64(nil), l.multi.entries...)
}

// pool is an indexed set of jobs, for uniform random choice in O(1).
type pool struct{ jobs []*job }

func (p *pool) add(j *job) {
	j.poolAt = len(p.jobs)
	p.jobs = append(p.jobs, j)
}

func (p *pool) remove(j *job) {
	last := p.jobs[len(p.jobs)-1]
	p.jobs[j.poolAt] = last
	last.poolAt = j.poolAt
	p.jobs = p.jobs[:len(p.jobs)-1]
	j.poolAt = -1
}

// refresh recomputes a job's membership of its arch pool and of the
// closable set after its state changed. Callers hold c.mu.
func (c *Coordinator) refresh(j *job) {
	// coordinator.md §Leasing: a job is leasable when open, not closing,
	// before its deadline, with a free slot.
	leasable := !j.closed && !j.closing && !j.overdue && j.free > 0
	p := c.pool[j.j.Build.Arch]
	switch {
	case leasable && j.poolAt < 0:
		if p == nil {
			p = &pool{}
			c.pool[j.j.Build.Arch] = p
		}
		p.add(j)
	case !leasable && j.poolAt >= 0:
		p.remove(j)
	}
	if !j.closed && !j.closing && c.closable(j) {
		c.close[j] = struct{}{}
	} else {
		delete(c.close, j)
	}
}

// closable reports whether a job may close now, as the decisions' clock
// last saw it (j.overdue).
func (c *Coordinator) closable(j *job) bool { return closableAt(j, j.overdue) }

// closableAt reports whether a job may close, its deadline having passed
// or not. coordinator.md §Closing: its wanted results are in, or no lease
// is live or being logged and either no slot can be leased any more (its
// leases are spent) or its deadline has passed.
func closableAt(j *job, pastDeadline bool) bool {
	if j.done == len(j.slots) {
		return true
	}
	return j.live == 0 && j.held == 0 && (j.free == 0 || pastDeadline)
}

// advance marks the open jobs whose deadline is at or before now as
// overdue: they leave the leasing pools and, once no lease is live, join
// the closable set. Decisions call it with their clock; Apply never does,
// since it checks the dates the entries carry. Callers hold c.mu.
func (c *Coordinator) advance(now time.Time) {
	for len(c.due) > 0 && !now.Before(c.due[0].j.Deadline) {
		j := heap.Pop(&c.due).(*job)
		if j.closed {
			continue
		}
		j.overdue = true
		c.refresh(j)
	}
}

// randN returns a uniform integer in [0, n) from the configured source.
func (c *Coordinator) randN(n int) (int, error) {
	if n <= 0 {
		return 0, fmt.Errorf("coord: random choice among %d: %w", n, ErrInvalid)
	}
	// Reject the low 2^64 mod n values so that every residue is equally
	// likely.
	thresh := -uint64(n) % uint64(n)
	var b [8]byte
	for {
		if _, err := io.ReadFull(c.cfg.Rand, b[:]); err != nil {
			return 0, fmt.Errorf("coord: read randomness: %w", err)
		}
		v := binary.LittleEndian.Uint64(b[:])
		if v >= thresh {
			return int(v % uint64(n)), nil
		}
	}
}

// newID returns a random 128-bit id in lowercase hex.
func (c *Coordinator) newID() (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(c.cfg.Rand, b[:]); err != nil {
		return "", fmt.Errorf("coord: read randomness: %w", err)
	}
	return fmt.Sprintf("%x", b[:]), nil
}

// jobHeap is a min-heap of jobs by deadline, then log index
// (container/heap).
type jobHeap []*job

func (h jobHeap) Len() int { return len(h) }
func (h jobHeap) Less(a, b int) bool {
	if !h[a].j.Deadline.Equal(h[b].j.Deadline) {
		return h[a].j.Deadline.Before(h[b].j.Deadline)
	}
	return h[a].index < h[b].index
}
func (h jobHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *jobHeap) Push(x any)   { *h = append(*h, x.(*job)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return j
}

// leaseHeap is a min-heap of leases by expiry, then log index
// (container/heap).
type leaseHeap []*lease

func (h leaseHeap) Len() int { return len(h) }
func (h leaseHeap) Less(a, b int) bool {
	if !h[a].l.Expires.Equal(h[b].l.Expires) {
		return h[a].l.Expires.Before(h[b].l.Expires)
	}
	return h[a].index < h[b].index
}
func (h leaseHeap) Swap(a, b int) { h[a], h[b] = h[b], h[a] }
func (h *leaseHeap) Push(x any)   { *h = append(*h, x.(*lease)) }
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return l
}
