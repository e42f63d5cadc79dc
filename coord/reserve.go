package coord

import (
	"context"
	"fmt"

	"github.com/fedora-skyline/skyline/attest"
)

type pendKind uint8

const (
	pendJob pendKind = iota + 1
	pendLease
	pendEnd
	pendClose
	pendEnrol
	pendRevoke
)

type pendKey struct {
	kind pendKind
	id   string
}

// A Reservation is a decision (or a result about to be logged) that the
// caller must append to the log and then Apply. Until it is applied or
// released, the coordinator treats what it decides as taken: its slot, its
// operator's place on the job, its lease's ending, its job's closing. So
// concurrent decisions cannot conflict, and the entries logged concurrently
// apply in any order to the same state (coordinator.md §Decide, log, apply).
//
// Always call Release when done with it, whether logging succeeded or not;
// Commit does the whole sequence.
type Reservation struct {
	// Payload is the entry to log: an attest.Job, attest.Lease,
	// attest.LeaseEnd or attest.JobClose decision, to be signed by the
	// coordinator key; or, from HoldResult, the Result of the builder's
	// own attestation envelope.
	Payload any
	// Signer is the key id the entry is applied with: Config.Authority for
	// decisions, the builder's key for a result.
	Signer string

	c    *Coordinator
	key  pendKey // zero for result holds, which Apply does not consume
	done bool
	undo func() // reverts the reservation; called with c.mu held
}

// PayloadType returns the DSSE payloadType of the entry to log.
func (r *Reservation) PayloadType() string {
	switch r.Payload.(type) {
	case attest.Job:
		return attest.PayloadJob
	case attest.Lease:
		return attest.PayloadLease
	case attest.LeaseEnd:
		return attest.PayloadLeaseEnd
	case attest.JobClose:
		return attest.PayloadJobClose
	case attest.Enrolment:
		return attest.PayloadEnrolment
	case attest.Revocation:
		return attest.PayloadRevocation
	case attest.Alarm:
		return attest.PayloadAlarm
	case Result:
		return attest.PayloadInToto
	}
	return ""
}

// Release gives up the reservation. It is a no-op once the reservation was
// applied or released; call it after Apply in every case.
func (r *Reservation) Release() {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	r.c.release(r)
}

// release undoes r. Callers hold c.mu.
func (c *Coordinator) release(r *Reservation) {
	if r.done {
		return
	}
	r.done = true
	if r.key.kind != 0 && c.pending[r.key] == r {
		delete(c.pending, r.key)
	}
	r.undo()
	// Wake the decisions waiting for outstanding reservations to drain.
	close(c.changed)
	c.changed = make(chan struct{})
}

// wait blocks until ready reports true, re-checking it whenever a
// reservation is released. Callers hold c.mu; wait releases it while
// blocked.
func (c *Coordinator) wait(ctx context.Context, ready func() bool) error {
	for !ready() {
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
			c.mu.Lock()
		case <-ctx.Done():
			c.mu.Lock()
			return fmt.Errorf("coord: waiting for outstanding reservations: %w", ctx.Err())
		}
	}
	return nil
}

// reserve records an outstanding decision. Callers hold c.mu.
func (c *Coordinator) reserve(k pendKey, payload any, undo func()) *Reservation {
	r := &Reservation{Payload: payload, Signer: c.cfg.Authority, c: c, key: k, undo: undo}
	c.pending[k] = r
	return r
}

// consume releases the outstanding reservation of k, if any, just before
// the entry that it reserved for is applied. Callers hold c.mu.
func (c *Coordinator) consume(k pendKey) {
	if r := c.pending[k]; r != nil {
		c.release(r)
	}
}

// Commit runs the decide, log, apply sequence for r: appendEntry signs and
// appends r.Payload to the log and returns its index once the entry is
// durable; then Commit applies the entry and releases r. When appendEntry
// fails, r is released and the state is unchanged. The caller shows a lease
// to its builder only after Commit returned nil.
func (c *Coordinator) Commit(r *Reservation, appendEntry func(*Reservation) (uint64, error)) error {
	defer r.Release()
	index, err := appendEntry(r)
	if err != nil {
		return fmt.Errorf("coord: log %s: %w", r.PayloadType(), err)
	}
	return c.Apply(index, Event{Signer: r.Signer, Payload: r.Payload})
}
