package coord

import (
	"container/heap"
	"fmt"
	"sort"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// rejectTries bounds the rejection sampling of NextLease before it falls
// back to listing the eligible jobs.
const rejectTries = 32

// Enqueue decides to enqueue a job for j.Build, to be fetched from j.SRPMURL,
// with j.Wanted results (0: Config.DefaultWanted). The job id, enqueue
// time and deadline (enqueue time plus Config.JobTTL) are set here; the returned Reservation's Payload is the attest.Job to
// log. A build with an open job (or one being logged) is refused with
// ErrDuplicateJob: the BuildID is the idempotent enqueue key.
func (c *Coordinator) Enqueue(j attest.Job, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id, err := c.newID()
	if err != nil {
		return nil, err
	}
	j.JobID, j.Enqueued = id, norm(now)
	j.Deadline = j.Enqueued.Add(c.cfg.JobTTL)
	if j.Wanted == 0 {
		j.Wanted = c.cfg.DefaultWanted
	}
	if err := c.validJob(j); err != nil {
		return nil, err
	}
	// coordinator.md §Enqueue.
	if o := c.open[j.Build]; o != nil {
		return nil, fmt.Errorf("coord: enqueue %s.%s: job %q: %w", j.Build.NVR, j.Build.Arch, o.j.JobID, ErrDuplicateJob)
	}
	if _, ok := c.enqs[j.Build]; ok {
		return nil, fmt.Errorf("coord: enqueue %s.%s: a job is being logged: %w", j.Build.NVR, j.Build.Arch, ErrDuplicateJob)
	}
	c.enqs[j.Build] = struct{}{}
	b := j.Build
	return c.reserve(pendKey{pendJob, j.JobID}, j, func() { delete(c.enqs, b) }), nil
}

// builderKey returns the enrolled, unrevoked builder key keyID.
func (c *Coordinator) builderKey(keyID string) (*key, error) {
	k := c.keys[keyID]
	switch {
	case k == nil:
		return nil, fmt.Errorf("coord: key %q: %w", keyID, ErrUnknownKey)
	case k.revoked || k.revoking:
		return nil, fmt.Errorf("coord: key %q: %w", keyID, ErrRevoked)
	case k.enrol.Role != attest.RoleBuilder:
		return nil, fmt.Errorf("coord: key %q has role %q: %w", keyID, k.enrol.Role, ErrNotBuilder)
	}
	return k, nil
}

// NextLease decides a lease for the builder key keyID, which builds for
// arches, at time now. The job is chosen uniformly at random among the jobs
// the key is eligible for (coordinator.md §Eligibility): open, before its
// deadline at now, for one of arches, with a free slot, and not leased
// before to the key's operator through any of its keys. The returned Reservation's Payload is the
// attest.Lease to log; it holds the slot until applied or released.
//
// Errors: ErrUnknownKey, ErrRevoked, ErrNotBuilder, ErrPaused, ErrNoJob,
// ErrInvalid (empty arch list).
func (c *Coordinator) NextLease(keyID string, arches []string, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, err := c.builderKey(keyID)
	if err != nil {
		return nil, err
	}
	// coordinator.md §Alarms.
	if len(c.alarms) > 0 || c.pausing > 0 {
		return nil, fmt.Errorf("coord: lease for %q: %w", keyID, ErrPaused)
	}
	if len(arches) == 0 {
		return nil, invalid("lease", "key %q builds no arch", keyID)
	}
	now = norm(now)
	// coordinator.md §Leasing: jobs at or past their deadline leave the pools.
	c.advance(now)
	op := k.enrol.Operator
	pools := make([]*pool, 0, len(arches))
	total := 0
	for i, a := range arches {
		p := c.pool[a]
		if p == nil || len(p.jobs) == 0 || containsBefore(arches, i, a) {
			continue
		}
		pools = append(pools, p)
		total += len(p.jobs)
	}
	if total == 0 {
		return nil, fmt.Errorf("coord: lease for %q: %w", keyID, ErrNoJob)
	}
	// Rejection sampling over the union of the arch pools is uniform over
	// the eligible jobs; so is the fallback, and so their mixture.
	var chosen *job
	for range rejectTries {
		n, err := c.randN(total)
		if err != nil {
			return nil, err
		}
		j := pick(pools, n)
		if j.ops[op] == 0 {
			chosen = j
			break
		}
	}
	if chosen == nil {
		var eligible []*job
		for _, p := range pools {
			for _, j := range p.jobs {
				if j.ops[op] == 0 {
					eligible = append(eligible, j)
				}
			}
		}
		if len(eligible) == 0 {
			return nil, fmt.Errorf("coord: lease for %q: every open job was leased to operator %q: %w", keyID, op, ErrNoJob)
		}
		n, err := c.randN(len(eligible))
		if err != nil {
			return nil, err
		}
		chosen = eligible[n]
	}
	si := -1
	for i := range chosen.slots {
		if s := &chosen.slots[i]; s.lease == nil && !s.reserved && !s.done && s.attempts < c.cfg.MaxAttempts {
			si = i
			break
		}
	}
	if si < 0 {
		return nil, fmt.Errorf("coord: lease for %q: job %q in the pool without a free slot: %w", keyID, chosen.j.JobID, ErrConflict)
	}
	id, err := c.newID()
	if err != nil {
		return nil, err
	}
	l := attest.Lease{
		LeaseID:  id,
		JobID:    chosen.j.JobID,
		Build:    chosen.j.Build,
		SRPMURL:  chosen.j.SRPMURL,
		KeyID:    keyID,
		Operator: op,
		Slot:     si,
		Attempt:  chosen.slots[si].attempts + 1,
		Issued:   now,
		Expires:  now.Add(c.cfg.LeaseTTL),
	}
	s := &chosen.slots[si]
	s.reserved = true
	chosen.ops[op] = opReserved
	c.leasing++
	k.holding++
	c.recount(chosen)
	return c.reserve(pendKey{pendLease, id}, l, func() {
		c.leasing--
		k.holding--
		s.reserved = false
		if chosen.ops[op] == opReserved {
			delete(chosen.ops, op)
		}
		c.recount(chosen)
	}), nil
}

// containsBefore reports whether a occurs in list before position i.
func containsBefore(list []string, i int, a string) bool {
	for _, b := range list[:i] {
		if b == a {
			return true
		}
	}
	return false
}

// pick returns the n-th job of the concatenated pools.
func pick(pools []*pool, n int) *job {
	for _, p := range pools {
		if n < len(p.jobs) {
			return p.jobs[n]
		}
		n -= len(p.jobs)
	}
	panic("coord: pick beyond the pools")
}

// EndLease decides that the lease leaseID ends without a result because its
// holder keyID failed to build it or abandons it (reason attest.LeaseFailed
// or attest.LeaseAbandoned). Only the holder may end its lease. The
// Reservation's Payload is the attest.LeaseEnd to log; the slot is re-leased
// once it is applied, if it has attempts left.
func (c *Coordinator) EndLease(keyID, leaseID, reason, detail string, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if reason != attest.LeaseFailed && reason != attest.LeaseAbandoned {
		return nil, invalid("end lease", "reason %q is not %q or %q", reason, attest.LeaseFailed, attest.LeaseAbandoned)
	}
	if !validText(detail, maxLong, true) {
		return nil, invalid("end lease", "detail")
	}
	l := c.leases[leaseID]
	if l == nil {
		return nil, fmt.Errorf("coord: end lease %q: %w", leaseID, ErrNoLease)
	}
	// coordinator.md §Expiry: only the holder fails or abandons its lease.
	if l.l.KeyID != keyID {
		return nil, fmt.Errorf("coord: end lease %q by %q: %w", leaseID, keyID, ErrNotLeaseHolder)
	}
	if err := l.liveErr(); err != nil {
		return nil, fmt.Errorf("coord: end lease %q: %w", leaseID, err)
	}
	if l.ending != notEnding || l.holds > 0 {
		return nil, fmt.Errorf("coord: end lease %q: %w", leaseID, ErrBusy)
	}
	le := attest.LeaseEnd{LeaseID: leaseID, JobID: l.l.JobID, KeyID: keyID, Reason: reason, Detail: detail, At: norm(now)}
	return c.reserveEnd(l, le), nil
}

// reserveEnd reserves a lease's ending. Callers hold c.mu.
func (c *Coordinator) reserveEnd(l *lease, le attest.LeaseEnd) *Reservation {
	l.ending = endingOf(le.Reason)
	return c.reserve(pendKey{pendEnd, le.LeaseID}, le, func() { l.ending = notEnding })
}

// Expire decides the ends of the live leases that are past their expiry at
// now, or whose holder key was revoked (coordinator.md §Expiry): one
// Reservation per lease, its Payload an attest.LeaseEnd with reason
// attest.LeaseExpired, in lease order. Leases with a result being logged are
// left alone.
func (c *Coordinator) Expire(now time.Time) []*Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	now = norm(now)
	var ends, keep []*lease
	seen := make(map[*lease]bool)
	// Pop every lease due by now; the live ones go back on the heap, so
	// that an expiry whose logging fails is decided again later.
	for len(c.expiry) > 0 && !now.Before(c.expiry[0].l.Expires) {
		l := heap.Pop(&c.expiry).(*lease)
		if l.ended() || l.done {
			continue
		}
		keep = append(keep, l)
		if l.ending == notEnding && l.holds == 0 {
			ends = append(ends, l)
			seen[l] = true
		}
	}
	for _, l := range keep {
		heap.Push(&c.expiry, l)
	}
	for k := range c.revoked {
		if len(k.live) == 0 {
			delete(c.revoked, k)
			continue
		}
		for l := range k.live {
			if !seen[l] && l.ending == notEnding && l.holds == 0 {
				ends = append(ends, l)
				seen[l] = true
			}
		}
	}
	sort.Slice(ends, func(a, b int) bool { return ends[a].index < ends[b].index })
	if len(ends) > 0 {
		c.cfg.Logger.Info("coord: leases expired", "count", len(ends), "live", len(c.live))
	}
	rs := make([]*Reservation, 0, len(ends))
	for _, l := range ends {
		detail := "lease expired at " + l.l.Expires.Format(time.RFC3339)
		if now.Before(l.l.Expires) {
			detail = "holder key revoked"
		}
		le := attest.LeaseEnd{LeaseID: l.l.LeaseID, JobID: l.l.JobID, KeyID: l.l.KeyID, Reason: attest.LeaseExpired, Detail: detail, At: now}
		rs = append(rs, c.reserveEnd(l, le))
	}
	return rs
}

// Closable decides the closing of every job that may close now
// (coordinator.md §Closing): its wanted results are in, or no lease is live
// and either no slot can be leased any more or the job's deadline is at or
// before now. One Reservation per job, its Payload an attest.JobClose with
// the results counted so far, in enqueue order. A closing job gets no new
// lease.
func (c *Coordinator) Closable(now time.Time) []*Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	now = norm(now)
	c.advance(now)
	jobs := make([]*job, 0, len(c.close))
	for j := range c.close {
		jobs = append(jobs, j)
	}
	sort.Slice(jobs, func(a, b int) bool { return jobs[a].index < jobs[b].index })
	rs := make([]*Reservation, 0, len(jobs))
	for _, j := range jobs {
		if !closableAt(j, !now.Before(j.j.Deadline)) {
			// Overdue by an earlier decision's later clock: Apply would
			// refuse a close dated now.
			continue
		}
		j.closing = true
		c.refresh(j)
		jc := attest.JobClose{JobID: j.j.JobID, Build: j.j.Build, Results: j.done, At: now}
		rs = append(rs, c.reserve(pendKey{pendClose, j.j.JobID}, jc, func() {
			j.closing = false
			c.refresh(j)
		}))
	}
	return rs
}

// CheckResult reports whether a build attestation signed by keyID for build
// b under lease leaseID may be logged and counted at time now: the key is
// enrolled and not revoked and holds that live, unexpired lease for that
// exact build, and the job is open (coordinator.md §Results). Errors:
// ErrUnknownKey, ErrRevoked, ErrNoLease, ErrNotLeaseHolder, ErrBuildMismatch,
// ErrJobClosed, ErrLeaseExpired, ErrLeaseEnded, ErrDelivered.
func (c *Coordinator) CheckResult(keyID string, b attest.BuildID, leaseID string, now time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.checkResult(keyID, b, leaseID, now)
	return err
}

func (c *Coordinator) checkResult(keyID string, b attest.BuildID, leaseID string, now time.Time) (*lease, error) {
	l, err := c.resultErr(keyID, b, leaseID)
	if err != nil {
		return nil, err
	}
	switch {
	case c.keys[keyID].revoking:
		return nil, fmt.Errorf("coord: result of %q: being revoked: %w", keyID, ErrRevoked)
	case l.ending == endingExpired || !now.Before(l.l.Expires):
		return nil, fmt.Errorf("coord: result under lease %q: expired at %s: %w", leaseID, l.l.Expires.Format(time.RFC3339), ErrLeaseExpired)
	case l.ending != notEnding:
		return nil, fmt.Errorf("coord: result under lease %q: being ended as %s: %w", leaseID, l.ending, ErrLeaseEnded)
	}
	return l, nil
}

// HoldResult is CheckResult for one part r of a result that the caller is
// about to log: it also checks that the part fits the parts already in, and
// holds the lease so that it is not expired or ended while the entry is
// logged. The Reservation's Payload is r and its Signer keyID; Apply it
// with the builder's envelope's index, then Release it.
func (c *Coordinator) HoldResult(keyID string, r Result, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, err := c.checkResult(keyID, r.Build, r.LeaseID, now)
	if err != nil {
		return nil, err
	}
	if err := partErr(l, r); err != nil {
		return nil, err
	}
	k := c.keys[keyID]
	l.holds++
	k.holding++
	return &Reservation{Payload: r, Signer: keyID, c: c, undo: func() {
		l.holds--
		k.holding--
	}}, nil
}
