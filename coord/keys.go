package coord

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Enrol decides the enrolment of a key (Since set to now when zero). The
// Reservation's Payload is the attest.Enrolment to log. A key id that is
// enrolled, revoked or being enrolled is refused (ErrDuplicate,
// ErrRevoked).
func (c *Coordinator) Enrol(en attest.Enrolment, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if en.Since.IsZero() {
		en.Since = norm(now)
	}
	if err := validEnrolment(en); err != nil {
		return nil, err
	}
	if k := c.keys[en.KeyID]; k != nil {
		if k.revoked {
			return nil, fmt.Errorf("coord: enrol %q: %w", en.KeyID, ErrRevoked)
		}
		return nil, fmt.Errorf("coord: enrol %q: %w", en.KeyID, ErrDuplicate)
	}
	if _, ok := c.enrols[en.KeyID]; ok {
		return nil, fmt.Errorf("coord: enrol %q: being logged: %w", en.KeyID, ErrDuplicate)
	}
	c.enrols[en.KeyID] = struct{}{}
	return c.reserve(pendKey{pendEnrol, en.KeyID}, en, func() { delete(c.enrols, en.KeyID) }), nil
}

// Revoke decides the revocation of keyID for reason, trusted until now. It
// stops new leases and result holds for the key at once, then waits (until
// ctx is done) for the key's outstanding lease reservations and result
// holds to be applied or released, so that no lease or result of the key
// can be logged after the revocation yet applied before it
// (coordinator.md §Decide, log, apply). The Reservation's Payload is the
// attest.Revocation to log. Expire then ends the key's live leases.
func (c *Coordinator) Revoke(ctx context.Context, keyID, reason string, now time.Time) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !validText(reason, maxText, false) {
		return nil, invalid("revoke", "reason")
	}
	k := c.keys[keyID]
	switch {
	case k == nil:
		return nil, fmt.Errorf("coord: revoke %q: %w", keyID, ErrUnknownKey)
	case k.revoked:
		return nil, fmt.Errorf("coord: revoke %q: %w", keyID, ErrRevoked)
	case k.revoking:
		return nil, fmt.Errorf("coord: revoke %q: %w", keyID, ErrBusy)
	}
	k.revoking = true
	if err := c.wait(ctx, func() bool { return k.holding == 0 }); err != nil {
		k.revoking = false
		return nil, err
	}
	rv := attest.Revocation{KeyID: keyID, Operator: k.enrol.Operator, Reason: reason, Until: norm(now)}
	return c.reserve(pendKey{pendRevoke, keyID}, rv, func() { k.revoking = false }), nil
}

// HoldAlarm prepares the logging of alarm a, signed by signer (an enrolled
// witness when Config.Authority is set): it pauses leasing at once and
// waits (until ctx is done) for the outstanding lease reservations to be
// applied or released, so that no lease is logged after the alarm
// (coordinator.md §Alarms). The Reservation's Payload is a and its Signer
// signer; log the witness's envelope, Apply it, then Release.
func (c *Coordinator) HoldAlarm(ctx context.Context, signer string, a attest.Alarm) (*Reservation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.alarmErr(0, signer, a); err != nil {
		return nil, err
	}
	c.pausing++
	if err := c.wait(ctx, func() bool { return c.leasing == 0 }); err != nil {
		c.pausing--
		return nil, err
	}
	return &Reservation{Payload: a, Signer: signer, c: c, undo: func() { c.pausing-- }}, nil
}
