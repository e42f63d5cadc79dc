package coord

import (
	"container/heap"
	"fmt"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Apply folds the log entry at index into the state. It is deterministic:
// the same entries applied in log order give the same state, whoever applies
// them. An entry that is malformed or contradicts the state is refused with
// an error and changes nothing (a replaying caller logs it and goes on; such
// an entry has no effect on leases, slots or results). If the entry is the
// one an outstanding Reservation was made for, the reservation is consumed.
//
// Apply must see every coordinator entry and every builder result, in log
// order when possible; entries logged concurrently through Reservations
// commute, so applying them in completion order gives the same state.
func (c *Coordinator) Apply(index uint64, e Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.apply(index, e, nil)
	if err != nil {
		c.cfg.Logger.Warn("coord: entry refused", "index", index, "payload", fmt.Sprintf("%T", e.Payload), "signer", e.Signer, "err", err)
	}
	return err
}

// Follow is Apply for an auditor, who follows the log rather than
// enforcing it (coordinator.md §Auditing). A coordinator entry that breaks
// one of the coordinator's own rules but fits the state is applied as
// logged, and the rule it breaks is returned as violation (the error Apply
// would return): a lease at or after its job's deadline (ErrJobExpired),
// during an active alarm (ErrPaused), to a revoked key (ErrRevoked), beyond
// MaxAttempts (ErrInvalid), with an attempt out of order or to an operator
// who already had the job (ErrConflict); a lease end `expired` before the
// lease's expiry (ErrConflict); a job close while the job may not close or
// with the wrong result count (ErrConflict). So the entries after it are
// judged against the state the log describes, and one broken rule is
// reported once, not again for every entry that builds on it. An entry
// that does not fit (unknown job, lease or key, a slot that is taken, a
// second close, a result that may not count, any malformed entry) is
// refused as by Apply: err is set, violation is nil, nothing changed.
func (c *Coordinator) Follow(index uint64, e Event) (violation, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var v error
	if err := c.apply(index, e, &v); err != nil {
		return nil, err
	}
	return v, nil
}

// broken handles an entry that breaks a rule, err: Apply (viol nil)
// refuses it; Follow records the first broken rule and goes on.
func broken(viol *error, err error) error {
	if viol == nil {
		return err
	}
	if *viol == nil {
		*viol = err
	}
	return nil
}

func (c *Coordinator) apply(index uint64, e Event, viol *error) error {
	switch p := e.Payload.(type) {
	case attest.Enrolment:
		return c.applyEnrolment(index, e.Signer, p)
	case *attest.Enrolment:
		if p != nil {
			return c.applyEnrolment(index, e.Signer, *p)
		}
	case attest.Revocation:
		return c.applyRevocation(index, e.Signer, p)
	case *attest.Revocation:
		if p != nil {
			return c.applyRevocation(index, e.Signer, *p)
		}
	case attest.Job:
		return c.applyJob(index, e.Signer, p)
	case *attest.Job:
		if p != nil {
			return c.applyJob(index, e.Signer, *p)
		}
	case attest.Lease:
		return c.applyLease(index, e.Signer, p, viol)
	case *attest.Lease:
		if p != nil {
			return c.applyLease(index, e.Signer, *p, viol)
		}
	case attest.LeaseEnd:
		return c.applyLeaseEnd(index, e.Signer, p, viol)
	case *attest.LeaseEnd:
		if p != nil {
			return c.applyLeaseEnd(index, e.Signer, *p, viol)
		}
	case attest.JobClose:
		return c.applyJobClose(index, e.Signer, p, viol)
	case *attest.JobClose:
		if p != nil {
			return c.applyJobClose(index, e.Signer, *p, viol)
		}
	case attest.Alarm:
		return c.applyAlarm(index, e.Signer, p)
	case *attest.Alarm:
		if p != nil {
			return c.applyAlarm(index, e.Signer, *p)
		}
	case attest.AlarmClear:
		return c.applyAlarmClear(index, e.Signer, p)
	case *attest.AlarmClear:
		if p != nil {
			return c.applyAlarmClear(index, e.Signer, *p)
		}
	case Result:
		return c.applyResult(index, e.Signer, p)
	case *Result:
		if p != nil {
			return c.applyResult(index, e.Signer, *p)
		}
	case attest.Verdict, *attest.Verdict:
		return nil
	}
	return fmt.Errorf("coord: apply entry %d: payload %T: %w", index, e.Payload, ErrUnsupported)
}

// byAuthority checks that a coordinator entry is signed by the coordinator
// key (coordinator.md §Signers).
func (c *Coordinator) byAuthority(what string, index uint64, signer string) error {
	if c.cfg.Authority != "" && signer != c.cfg.Authority {
		return fmt.Errorf("coord: %s at %d signed by %q, not the coordinator key: %w", what, index, signer, ErrSigner)
	}
	return nil
}

// activeRole reports whether keyID is enrolled with role and not revoked.
func (c *Coordinator) activeRole(keyID, role string) bool {
	k := c.keys[keyID]
	return k != nil && !k.revoked && k.enrol.Role == role
}

func (c *Coordinator) applyEnrolment(index uint64, signer string, en attest.Enrolment) error {
	if err := c.byAuthority("enrolment", index, signer); err != nil {
		return err
	}
	if err := validEnrolment(en); err != nil {
		return err
	}
	if k := c.keys[en.KeyID]; k != nil {
		if k.revoked {
			return fmt.Errorf("coord: enrolment of %q: %w", en.KeyID, ErrRevoked)
		}
		return fmt.Errorf("coord: enrolment of %q: already enrolled at %d: %w", en.KeyID, k.index, ErrDuplicate)
	}
	c.consume(pendKey{pendEnrol, en.KeyID})
	c.keys[en.KeyID] = &key{enrol: en, index: index}
	return nil
}

func (c *Coordinator) applyRevocation(index uint64, signer string, rv attest.Revocation) error {
	if err := c.byAuthority("revocation", index, signer); err != nil {
		return err
	}
	if !validText(rv.Reason, maxText, false) {
		return invalid("revocation", "reason of key %q", rv.KeyID)
	}
	k := c.keys[rv.KeyID]
	if k == nil {
		return fmt.Errorf("coord: revocation of %q: %w", rv.KeyID, ErrUnknownKey)
	}
	if k.revoked {
		return fmt.Errorf("coord: revocation of %q: revoked at %d: %w", rv.KeyID, k.revokedAt, ErrRevoked)
	}
	if rv.Operator != k.enrol.Operator {
		return fmt.Errorf("coord: revocation of %q: operator %q, enrolled for %q: %w", rv.KeyID, rv.Operator, k.enrol.Operator, ErrConflict)
	}
	// coordinator.md §Keys: from here on the key gets no lease and its
	// results do not count; Expire ends its live leases.
	c.consume(pendKey{pendRevoke, rv.KeyID})
	k.revoked, k.revocation, k.revokedAt = true, rv, index
	c.revoked[k] = struct{}{}
	c.cfg.Logger.Info("coord: key revoked", "index", index, "key", rv.KeyID, "operator", rv.Operator, "reason", rv.Reason, "live_leases", len(k.live))
	return nil
}

func (c *Coordinator) applyJob(index uint64, signer string, j attest.Job) error {
	if err := c.byAuthority("job", index, signer); err != nil {
		return err
	}
	if err := c.validJob(j); err != nil {
		return err
	}
	if c.jobs[j.JobID] != nil {
		return fmt.Errorf("coord: job %q: %w", j.JobID, ErrDuplicate)
	}
	// coordinator.md §Enqueue: the enqueue key is the BuildID.
	if o := c.open[j.Build]; o != nil {
		return fmt.Errorf("coord: job %q for %s.%s: open job %q: %w", j.JobID, j.Build.NVR, j.Build.Arch, o.j.JobID, ErrDuplicateJob)
	}
	c.consume(pendKey{pendJob, j.JobID})
	nj := &job{j: j, index: index, slots: make([]slot, j.Wanted), ops: make(map[string]opState), poolAt: -1}
	c.jobs[j.JobID] = nj
	c.order = append(c.order, nj)
	c.open[j.Build] = nj
	c.builds[j.Build] = append(c.builds[j.Build], nj)
	heap.Push(&c.due, nj)
	c.recount(nj)
	return nil
}

func (c *Coordinator) applyLease(index uint64, signer string, l attest.Lease, viol *error) error {
	if err := c.byAuthority("lease", index, signer); err != nil {
		return err
	}
	if err := validLeaseEntry(l); err != nil {
		return err
	}
	if c.leases[l.LeaseID] != nil {
		return fmt.Errorf("coord: lease %q: %w", l.LeaseID, ErrDuplicate)
	}
	j := c.jobs[l.JobID]
	if j == nil {
		return fmt.Errorf("coord: lease %q: job %q: %w", l.LeaseID, l.JobID, ErrUnknownJob)
	}
	if j.closed {
		return fmt.Errorf("coord: lease %q: job %q: %w", l.LeaseID, l.JobID, ErrJobClosed)
	}
	// coordinator.md §Leasing: no lease at or after the job's deadline.
	if !l.Issued.Before(j.j.Deadline) {
		if err := broken(viol, fmt.Errorf("coord: lease %q issued %s, job %q deadline %s: %w", l.LeaseID, l.Issued.Format(time.RFC3339), l.JobID, j.j.Deadline.Format(time.RFC3339), ErrJobExpired)); err != nil {
			return err
		}
	}
	if l.Build != j.j.Build || l.SRPMURL != j.j.SRPMURL {
		return fmt.Errorf("coord: lease %q: build or srpm url differs from job %q: %w", l.LeaseID, l.JobID, ErrConflict)
	}
	if l.Slot >= len(j.slots) {
		return invalid("lease", "slot %d of %d, attempt %d of %d", l.Slot, len(j.slots), l.Attempt, c.cfg.MaxAttempts)
	}
	if l.Attempt > c.cfg.MaxAttempts {
		// coordinator.md §Expiry: at most MaxAttempts leases per slot.
		if err := broken(viol, invalid("lease", "slot %d of %d, attempt %d of %d", l.Slot, len(j.slots), l.Attempt, c.cfg.MaxAttempts)); err != nil {
			return err
		}
	}
	k := c.keys[l.KeyID]
	if k == nil {
		return fmt.Errorf("coord: lease %q: key %q: %w", l.LeaseID, l.KeyID, ErrUnknownKey)
	}
	if k.revoked {
		// coordinator.md §Eligibility: no lease to a revoked key.
		if err := broken(viol, fmt.Errorf("coord: lease %q: key %q: %w", l.LeaseID, l.KeyID, ErrRevoked)); err != nil {
			return err
		}
	}
	switch {
	case k.enrol.Role != attest.RoleBuilder:
		return fmt.Errorf("coord: lease %q: key %q: %w", l.LeaseID, l.KeyID, ErrNotBuilder)
	case l.Operator != k.enrol.Operator:
		return fmt.Errorf("coord: lease %q: operator %q, key enrolled for %q: %w", l.LeaseID, l.Operator, k.enrol.Operator, ErrConflict)
	}
	// coordinator.md §Alarms: no lease while an alarm is active.
	if len(c.alarms) > 0 {
		if err := broken(viol, fmt.Errorf("coord: lease %q: %w", l.LeaseID, ErrPaused)); err != nil {
			return err
		}
	}
	if r := c.pending[pendKey{pendLease, l.LeaseID}]; r != nil {
		if rl := r.Payload.(attest.Lease); rl.JobID != l.JobID || rl.Slot != l.Slot || rl.Operator != l.Operator {
			return fmt.Errorf("coord: lease %q differs from its reservation: %w", l.LeaseID, ErrConflict)
		}
		c.release(r)
	}
	s := &j.slots[l.Slot]
	switch {
	case s.reserved:
		return fmt.Errorf("coord: lease %q: slot %d of job %q is being leased: %w", l.LeaseID, l.Slot, l.JobID, ErrBusy)
	case s.lease != nil || s.done:
		return fmt.Errorf("coord: lease %q: slot %d of job %q is taken: %w", l.LeaseID, l.Slot, l.JobID, ErrConflict)
	}
	if l.Attempt != s.attempts+1 {
		// coordinator.md §Expiry: attempts are numbered 1..MaxAttempts per slot.
		if err := broken(viol, fmt.Errorf("coord: lease %q: attempt %d, slot %d had %d: %w", l.LeaseID, l.Attempt, l.Slot, s.attempts, ErrConflict)); err != nil {
			return err
		}
	}
	// coordinator.md §Eligibility: one lease per operator per job, ever.
	if j.ops[l.Operator] == opReserved {
		return fmt.Errorf("coord: lease %q: operator %q is being leased job %q: %w", l.LeaseID, l.Operator, l.JobID, ErrBusy)
	}
	if j.ops[l.Operator] == opLeased {
		if err := broken(viol, fmt.Errorf("coord: lease %q: operator %q already leased job %q: %w", l.LeaseID, l.Operator, l.JobID, ErrConflict)); err != nil {
			return err
		}
	}
	// Keep the job's and the enrolment's strings, equal to the entry's as
	// checked above, rather than the entry's own copies: every lease ever
	// applied stays in memory.
	l.JobID, l.Build, l.SRPMURL = j.j.JobID, j.j.Build, j.j.SRPMURL
	l.KeyID, l.Operator = k.enrol.KeyID, k.enrol.Operator
	nl := &lease{l: l, index: index, job: j}
	c.leases[l.LeaseID] = nl
	c.live[l.LeaseID] = nl
	heap.Push(&c.expiry, nl)
	if k.live == nil {
		k.live = make(map[*lease]struct{})
	}
	k.live[nl] = struct{}{}
	s.lease = nl
	s.attempts++
	j.ops[l.Operator] = opLeased
	c.recount(j)
	return nil
}

func (c *Coordinator) applyLeaseEnd(index uint64, signer string, le attest.LeaseEnd, viol *error) error {
	if err := c.byAuthority("lease end", index, signer); err != nil {
		return err
	}
	switch le.Reason {
	case attest.LeaseFailed, attest.LeaseAbandoned, attest.LeaseExpired:
	default:
		return invalid("lease end", "reason %q", le.Reason)
	}
	if !validText(le.Detail, maxLong, true) || le.At.IsZero() {
		return invalid("lease end", "detail or time of lease %q", le.LeaseID)
	}
	l := c.leases[le.LeaseID]
	if l == nil {
		return fmt.Errorf("coord: lease end: lease %q: %w", le.LeaseID, ErrNoLease)
	}
	if le.JobID != l.l.JobID {
		return fmt.Errorf("coord: lease end of %q: job %q, lease is for %q: %w", le.LeaseID, le.JobID, l.l.JobID, ErrConflict)
	}
	if le.KeyID != l.l.KeyID {
		return fmt.Errorf("coord: lease end of %q: key %q: %w", le.LeaseID, le.KeyID, ErrNotLeaseHolder)
	}
	if err := l.liveErr(); err != nil {
		return fmt.Errorf("coord: lease end of %q: %w", le.LeaseID, err)
	}
	if le.Reason == attest.LeaseExpired && le.At.Before(l.l.Expires) {
		// coordinator.md §Expiry: a lease expires at its expiry, or
		// earlier only when its holder was revoked.
		if k := c.keys[l.l.KeyID]; k == nil || !k.revoked {
			if err := broken(viol, fmt.Errorf("coord: lease end of %q: expired at %s before its expiry %s: %w", le.LeaseID, le.At, l.l.Expires, ErrConflict)); err != nil {
				return err
			}
		}
	}
	c.consume(pendKey{pendEnd, le.LeaseID})
	// Keep the lease's strings, equal as checked above, as applyLease does.
	le.LeaseID, le.JobID, le.KeyID = l.l.LeaseID, l.l.JobID, l.l.KeyID
	l.end = &leaseEnd{le: le, index: index}
	delete(c.live, le.LeaseID)
	delete(c.keys[l.l.KeyID].live, l)
	j := l.job
	j.slots[l.l.Slot].lease = nil
	c.recount(j)
	return nil
}

// liveErr says why a lease is not live, or nil when it is.
func (l *lease) liveErr() error {
	switch {
	case l.done:
		return ErrDelivered
	case l.ended() && l.end.le.Reason == attest.LeaseExpired:
		return ErrLeaseExpired
	case l.ended():
		return fmt.Errorf("%w (%s)", ErrLeaseEnded, l.end.le.Reason)
	}
	return nil
}

func (c *Coordinator) applyJobClose(index uint64, signer string, jc attest.JobClose, viol *error) error {
	if err := c.byAuthority("job close", index, signer); err != nil {
		return err
	}
	if jc.At.IsZero() {
		return invalid("job close", "no time")
	}
	j := c.jobs[jc.JobID]
	if j == nil {
		return fmt.Errorf("coord: job close: job %q: %w", jc.JobID, ErrUnknownJob)
	}
	if j.closed {
		return fmt.Errorf("coord: job close: job %q: %w", jc.JobID, ErrJobClosed)
	}
	if jc.Build != j.j.Build {
		return fmt.Errorf("coord: job close of %q: build differs from the job's: %w", jc.JobID, ErrConflict)
	}
	// coordinator.md §Closing: judged by the close's own date, so that a
	// replay checks that no job was closed before its deadline.
	pastDeadline := !jc.At.Before(j.j.Deadline)
	if !closableAt(j, pastDeadline) {
		err := fmt.Errorf("coord: job close of %q: %d of %d results in, %d live leases, %d slots leasable: %w", jc.JobID, j.done, len(j.slots), j.live, j.free+j.held, ErrConflict)
		if closableAt(j, true) {
			err = fmt.Errorf("coord: job close of %q: %d of %d results in, %d slots leasable, closed at %s before its deadline %s: %w", jc.JobID, j.done, len(j.slots), j.free, jc.At.Format(time.RFC3339), j.j.Deadline.Format(time.RFC3339), ErrConflict)
		}
		if err := broken(viol, err); err != nil {
			return err
		}
	}
	if jc.Results != j.done {
		if err := broken(viol, fmt.Errorf("coord: job close of %q: says %d results, %d are in: %w", jc.JobID, jc.Results, j.done, ErrConflict)); err != nil {
			return err
		}
	}
	c.consume(pendKey{pendClose, jc.JobID})
	j.closed, j.jc, j.closeAt = true, jc, index
	// Only leasing reads a job's operators, and a closed job is leased no
	// more (applyLease refuses it first): free them, since every job ever
	// applied stays in memory.
	j.ops = nil
	delete(c.open, j.j.Build)
	c.refresh(j)
	return nil
}

func (c *Coordinator) applyAlarm(index uint64, signer string, a attest.Alarm) error {
	if err := c.alarmErr(index, signer, a); err != nil {
		return err
	}
	if _, ok := c.alarms[index]; ok {
		return fmt.Errorf("coord: alarm at %d: %w", index, ErrDuplicate)
	}
	c.alarms[index] = a
	return nil
}

// alarmErr checks an alarm entry that needs no state but its signer.
func (c *Coordinator) alarmErr(index uint64, signer string, a attest.Alarm) error {
	// coordinator.md §Signers: alarms come from enrolled witnesses.
	if c.cfg.Authority != "" && signer != c.cfg.Authority && !c.activeRole(signer, attest.RoleWitness) {
		return fmt.Errorf("coord: alarm at %d signed by %q, not an enrolled witness: %w", index, signer, ErrSigner)
	}
	if a.At.IsZero() || !validText(a.Reason, maxText, false) {
		return invalid("alarm", "no time or reason")
	}
	return nil
}

func (c *Coordinator) applyAlarmClear(index uint64, signer string, ac attest.AlarmClear) error {
	if c.cfg.Authority != "" && signer != c.cfg.Authority && !c.activeRole(signer, attest.RoleAdmin) {
		return fmt.Errorf("coord: alarm clear at %d signed by %q, not an admin: %w", index, signer, ErrSigner)
	}
	if _, ok := c.alarms[ac.AlarmIndex]; !ok {
		return fmt.Errorf("coord: alarm clear at %d: alarm %d: %w", index, ac.AlarmIndex, ErrNoAlarm)
	}
	delete(c.alarms, ac.AlarmIndex)
	return nil
}

// resultErr checks that a result entry for lease l, signed by keyID, may
// count (coordinator.md §Results). Callers hold c.mu.
func (c *Coordinator) resultErr(keyID string, b attest.BuildID, leaseID string) (*lease, error) {
	k := c.keys[keyID]
	if k == nil {
		return nil, fmt.Errorf("coord: result of %q: %w", keyID, ErrUnknownKey)
	}
	if k.revoked {
		return nil, fmt.Errorf("coord: result of %q: %w", keyID, ErrRevoked)
	}
	l := c.leases[leaseID]
	if l == nil {
		return nil, fmt.Errorf("coord: result under lease %q: %w", leaseID, ErrNoLease)
	}
	if l.l.KeyID != keyID {
		return nil, fmt.Errorf("coord: result of %q under lease %q: %w", keyID, leaseID, ErrNotLeaseHolder)
	}
	if l.l.Build != b {
		return nil, fmt.Errorf("coord: result for %s.%s under lease %q for %s.%s: %w", b.NVR, b.Arch, leaseID, l.l.Build.NVR, l.l.Build.Arch, ErrBuildMismatch)
	}
	if l.job.closed {
		return nil, fmt.Errorf("coord: result under lease %q: job %q: %w", leaseID, l.l.JobID, ErrJobClosed)
	}
	if err := l.liveErr(); err != nil {
		return nil, fmt.Errorf("coord: result under lease %q: %w", leaseID, err)
	}
	return l, nil
}

// partErr checks that a result part fits the parts already in.
func partErr(l *lease, r Result) error {
	if r.Parts < 1 || r.Parts > maxParts || r.Part < 0 || r.Part >= r.Parts || !validText(r.ResultSet, maxText, false) {
		return invalid("result", "part %d of %d of result set %q", r.Part, r.Parts, r.ResultSet)
	}
	if l.set != "" && (r.ResultSet != l.set || r.Parts != l.parts()) {
		return fmt.Errorf("coord: result under lease %q: part of result set %q (%d parts), lease has %q (%d parts): %w", r.LeaseID, r.ResultSet, r.Parts, l.set, l.parts(), ErrConflict)
	}
	if l.set != "" && l.seen(r.Part) {
		return fmt.Errorf("coord: result under lease %q: part %d: %w", r.LeaseID, r.Part, ErrDuplicate)
	}
	return nil
}

func (c *Coordinator) applyResult(index uint64, signer string, r Result) error {
	l, err := c.resultErr(signer, r.Build, r.LeaseID)
	if err != nil {
		return err
	}
	if err := partErr(l, r); err != nil {
		return err
	}
	if l.set == "" {
		l.set = sharedSet(l.job, r.ResultSet)
		if r.Parts > 1 {
			l.multi = &multipart{seen: make([]bool, r.Parts)}
		}
	}
	complete := true
	if m := l.multi; m != nil {
		m.seen[r.Part] = true
		m.entries = append(m.entries, index)
		complete = len(m.entries) == len(m.seen)
	} else {
		l.entry = index
	}
	if complete {
		// coordinator.md §Results: the lease's result counts once all its
		// parts are in; the slot is filled.
		l.done = true
		delete(c.live, r.LeaseID)
		delete(c.keys[signer].live, l)
		s := &l.job.slots[l.l.Slot]
		s.lease, s.done, s.result = nil, true, l
		c.recount(l.job)
	}
	return nil
}

// sharedSet returns set, as the copy held by a result the job counted
// already when one has the same digest: a job's results mostly agree, and
// every lease ever applied stays in memory.
func sharedSet(j *job, set string) string {
	for _, s := range j.slots {
		if s.result != nil && s.result.set == set {
			return s.result.set
		}
	}
	return set
}

// recount recomputes a job's slot counters and pool membership. Callers
// hold c.mu.
func (c *Coordinator) recount(j *job) {
	j.live, j.free, j.held, j.done = 0, 0, 0, 0
	for i := range j.slots {
		s := &j.slots[i]
		switch {
		case s.done:
			j.done++
		case s.lease != nil:
			j.live++
		case s.reserved:
			j.held++
		case s.attempts < c.cfg.MaxAttempts:
			j.free++
		}
	}
	c.refresh(j)
}

// validEnrolment checks an Enrolment's fields, including that KeyID is the
// id of PublicKey.
func validEnrolment(en attest.Enrolment) error {
	switch en.Role {
	case attest.RoleBuilder, attest.RoleWitness, attest.RoleImporter, attest.RoleAdmin:
	default:
		return invalid("enrolment", "role %q", en.Role)
	}
	if !validText(en.Operator, maxText, false) || !validText(en.Contact, maxText, true) || !validText(en.Team, maxText, true) {
		return invalid("enrolment", "operator, contact or team of key %q", en.KeyID)
	}
	if en.Since.IsZero() {
		return invalid("enrolment", "no since time")
	}
	v, err := attest.ParsePublicPEM([]byte(en.PublicKey))
	if err != nil {
		return fmt.Errorf("coord: enrolment of %q: public key: %w: %w", en.KeyID, ErrInvalid, err)
	}
	if v.KeyID() != en.KeyID {
		return invalid("enrolment", "key id %q is not the public key's id %q", en.KeyID, v.KeyID())
	}
	return nil
}
