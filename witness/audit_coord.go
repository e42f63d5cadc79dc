package witness

// The audit's replay of the coordinator's own rules (docs/audit.md
// "Coordinator rules", docs/coordinator.md §Auditing): every entry whose
// signature verifies is converted as the server's replay converts it
// (coord.EventOf) and given to coord.Coordinator.Follow.

import (
	"errors"
	"fmt"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
)

// coordEvent is an entry the coordinator replay applied, as the audit state
// keeps it: a resumed audit applies them again to rebuild the coordinator's
// state. Exactly one payload field is set.
type coordEvent struct {
	Index      uint64             `json:"index"`
	Signer     string             `json:"signer"`
	Enrolment  *attest.Enrolment  `json:"enrolment,omitempty"`
	Revocation *attest.Revocation `json:"revocation,omitempty"`
	Job        *attest.Job        `json:"job,omitempty"`
	Lease      *attest.Lease      `json:"lease,omitempty"`
	LeaseEnd   *attest.LeaseEnd   `json:"lease_end,omitempty"`
	JobClose   *attest.JobClose   `json:"job_close,omitempty"`
	Alarm      *attest.Alarm      `json:"alarm,omitempty"`
	AlarmClear *attest.AlarmClear `json:"alarm_clear,omitempty"`
	Result     *coord.Result      `json:"result,omitempty"`
}

// errCoordEvent: a saved coordinator event without exactly one payload.
var errCoordEvent = errors.New("coordinator event needs exactly one payload")

// newCoordEvent returns the saved form of ev, logged at index.
func newCoordEvent(index uint64, ev coord.Event) coordEvent {
	ce := coordEvent{Index: index, Signer: ev.Signer}
	switch p := ev.Payload.(type) {
	case *attest.Enrolment:
		ce.Enrolment = p
	case *attest.Revocation:
		ce.Revocation = p
	case *attest.Job:
		ce.Job = p
	case *attest.Lease:
		ce.Lease = p
	case *attest.LeaseEnd:
		ce.LeaseEnd = p
	case *attest.JobClose:
		ce.JobClose = p
	case *attest.Alarm:
		ce.Alarm = p
	case *attest.AlarmClear:
		ce.AlarmClear = p
	case coord.Result:
		ce.Result = &p
	}
	return ce
}

// event returns the coordinator event ce holds.
func (ce coordEvent) event() (coord.Event, error) {
	var payloads []any
	add := func(set bool, p any) {
		if set {
			payloads = append(payloads, p)
		}
	}
	add(ce.Enrolment != nil, ce.Enrolment)
	add(ce.Revocation != nil, ce.Revocation)
	add(ce.Job != nil, ce.Job)
	add(ce.Lease != nil, ce.Lease)
	add(ce.LeaseEnd != nil, ce.LeaseEnd)
	add(ce.JobClose != nil, ce.JobClose)
	add(ce.Alarm != nil, ce.Alarm)
	add(ce.AlarmClear != nil, ce.AlarmClear)
	if ce.Result != nil {
		payloads = append(payloads, *ce.Result)
	}
	if len(payloads) != 1 {
		return coord.Event{}, fmt.Errorf("entry %d: %d payloads: %w", ce.Index, len(payloads), errCoordEvent)
	}
	return coord.Event{Signer: ce.Signer, Payload: payloads[0]}, nil
}

// coordinate applies the verified entry at index to the coordinator replay
// and returns what to report: the rule a coordinator entry breaks, or why
// it does not fit the coordinator's state. A result's refusal is not
// returned: the fold judges results (DiscNotCounted), once.
func (a *auditor) coordinate(index uint64, e *attest.Entry) error {
	if _, ok := e.Value.(*attest.Verdict); ok {
		return nil // the coordinator ignores verdicts
	}
	ev, ok := coord.EventOf(e)
	if !ok {
		return nil
	}
	viol, err := a.co.Follow(index, ev)
	if err == nil {
		a.events = append(a.events, newCoordEvent(index, ev))
	}
	if _, ok := ev.Payload.(coord.Result); ok {
		return nil
	}
	if err != nil {
		return err
	}
	return viol
}

// coordBuild returns the build a coordinator entry is about, when it names
// one or the replay knows its job.
func (a *auditor) coordBuild(e *attest.Entry) *attest.BuildID {
	var b attest.BuildID
	switch v := e.Value.(type) {
	case *attest.Job:
		b = v.Build
	case *attest.Lease:
		b = v.Build
	case *attest.JobClose:
		b = v.Build
	case *attest.LeaseEnd:
		st, err := a.co.Job(v.JobID)
		if err != nil {
			return nil
		}
		b = st.Job.Build
	default:
		return nil
	}
	return &b
}

// restoreCoordinator rebuilds the coordinator replay from a saved state:
// every saved event, in order, before prev.Next, must apply as it did.
func (a *auditor) restoreCoordinator(prev *AuditState) error {
	if len(prev.Coordinator) == 0 {
		if prev.Next > 0 {
			return errors.New("no coordinator replay in a state at a position past 0 (saved by an older skyline: audit from index 0)")
		}
		return nil
	}
	var events []coordEvent
	if err := decodeStrict(prev.Coordinator, &events); err != nil {
		return err
	}
	var next uint64
	for _, ce := range events {
		if ce.Index < next || ce.Index >= prev.Next {
			return fmt.Errorf("entry %d out of order or past %d", ce.Index, prev.Next)
		}
		next = ce.Index + 1
		ev, err := ce.event()
		if err != nil {
			return err
		}
		if _, err := a.co.Follow(ce.Index, ev); err != nil {
			return fmt.Errorf("entry %d no longer applies (other coordinator settings?): %w", ce.Index, err)
		}
	}
	a.events = events
	return nil
}
