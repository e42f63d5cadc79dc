package coord

import (
	"fmt"
	"sort"

	"github.com/fedora-skyline/skyline/attest"
)

// JobStatus is a job as the state knows it, for `skyline admin jobs`, the
// API and the agreement code.
type JobStatus struct {
	Job   attest.Job `json:"job"`
	Index uint64     `json:"index"` // log index of the job entry
	// Closed jobs carry the JobClose entry and its index.
	Closed     bool            `json:"closed"`
	Close      attest.JobClose `json:"close,omitzero"`
	CloseIndex uint64          `json:"close_index,omitempty"`
	Slots      []SlotStatus    `json:"slots"`
	Live       []attest.Lease  `json:"live,omitempty"`    // live leases, in slot order
	Results    []Delivery      `json:"results,omitempty"` // counted results, in slot order
}

// SlotStatus is one of a job's slots.
type SlotStatus struct {
	Attempts int    `json:"attempts"`       // leases applied on the slot
	Live     string `json:"live,omitempty"` // id of the slot's live lease, if any
	Done     bool   `json:"done"`           // a lease delivered its result
}

// Delivery is a counted result: the lease whose holder delivered every part
// of its result set, and the log indices of those parts.
type Delivery struct {
	LeaseID   string   `json:"lease_id"`
	KeyID     string   `json:"key_id"`
	Operator  string   `json:"operator"`
	ResultSet string   `json:"result_set"`
	Entries   []uint64 `json:"entries"`
}

// KeyStatus is an enrolled key.
type KeyStatus struct {
	Enrolment attest.Enrolment `json:"enrolment"`
	Index     uint64           `json:"index"` // log index of the enrolment
	Revoked   bool             `json:"revoked"`
	// Revocation and RevokedIndex are set when Revoked.
	Revocation   attest.Revocation `json:"revocation,omitzero"`
	RevokedIndex uint64            `json:"revoked_index,omitempty"`
}

func (c *Coordinator) status(j *job) JobStatus {
	st := JobStatus{Job: j.j, Index: j.index, Closed: j.closed, Close: j.jc, CloseIndex: j.closeAt, Slots: make([]SlotStatus, len(j.slots))}
	for i, s := range j.slots {
		st.Slots[i] = SlotStatus{Attempts: s.attempts, Done: s.done}
		if s.lease != nil {
			st.Slots[i].Live = s.lease.l.LeaseID
			st.Live = append(st.Live, s.lease.l)
		}
		if s.result != nil {
			l := s.result
			st.Results = append(st.Results, Delivery{LeaseID: l.l.LeaseID, KeyID: l.l.KeyID, Operator: l.l.Operator, ResultSet: l.set, Entries: l.entries()})
		}
	}
	return st
}

// Jobs lists every job, open and closed, in enqueue order.
func (c *Coordinator) Jobs() []JobStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]JobStatus, len(c.order))
	for i, j := range c.order {
		out[i] = c.status(j)
	}
	return out
}

// Job returns the job jobID, or ErrUnknownJob.
func (c *Coordinator) Job(jobID string) (JobStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	j := c.jobs[jobID]
	if j == nil {
		return JobStatus{}, fmt.Errorf("coord: job %q: %w", jobID, ErrUnknownJob)
	}
	return c.status(j), nil
}

// JobsFor lists the jobs of build b, in enqueue order; at most the last is
// open. A verdict on b is final only when its job is closed.
func (c *Coordinator) JobsFor(b attest.BuildID) []JobStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []JobStatus
	for _, j := range c.builds[b] {
		out = append(out, c.status(j))
	}
	return out
}

// Key returns the enrolment state of keyID, or ErrUnknownKey.
func (c *Coordinator) Key(keyID string) (KeyStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[keyID]
	if k == nil {
		return KeyStatus{}, fmt.Errorf("coord: key %q: %w", keyID, ErrUnknownKey)
	}
	return k.status(), nil
}

func (k *key) status() KeyStatus {
	return KeyStatus{Enrolment: k.enrol, Index: k.index, Revoked: k.revoked, Revocation: k.revocation, RevokedIndex: k.revokedAt}
}

// Keys lists every enrolled key, revoked or not, in enrolment order.
func (c *Coordinator) Keys() []KeyStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]KeyStatus, 0, len(c.keys))
	for _, k := range c.keys {
		out = append(out, k.status())
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out
}

// Operator returns the operator a key is enrolled for (revoked or not), or
// ErrUnknownKey.
func (c *Coordinator) Operator(keyID string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[keyID]
	if k == nil {
		return "", fmt.Errorf("coord: key %q: %w", keyID, ErrUnknownKey)
	}
	return k.enrol.Operator, nil
}

// Alarms returns the log indices of the active alarms, ascending. Leasing is
// paused while it is not empty.
func (c *Coordinator) Alarms() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]uint64, 0, len(c.alarms))
	for i := range c.alarms {
		out = append(out, i)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// Stats are gauges of the coordinator's state, for metrics.
type Stats struct {
	OpenJobs     int `json:"open_jobs"`     // jobs not closed
	LeasableJobs int `json:"leasable_jobs"` // open jobs with a free slot
	LiveLeases   int `json:"live_leases"`
	Outstanding  int `json:"outstanding"` // decisions not yet applied or released (result and alarm holds excluded)
	ActiveAlarms int `json:"active_alarms"`
}

// Stats returns the current gauges.
func (c *Coordinator) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{OpenJobs: len(c.open), LiveLeases: len(c.live), Outstanding: len(c.pending), ActiveAlarms: len(c.alarms)}
	for _, p := range c.pool {
		st.LeasableJobs += len(p.jobs)
	}
	return st
}
