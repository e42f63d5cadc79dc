package witness

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
)

// coordRules returns the coordinator-rule discrepancies of ds.
func coordRules(ds []Discrepancy) []Discrepancy {
	var out []Discrepancy
	for _, d := range ds {
		if d.Kind == DiscCoordinatorRule {
			out = append(out, d)
		}
	}
	return out
}

// TestAuditCoordinatorRules: a coordinator that breaks one of its own rules
// in a log that is otherwise honest (every signature good, every verdict
// honestly computed) is caught by the audit: exactly one coordinator-rule
// discrepancy, at the entry that breaks the rule, naming the build, the
// coordinator key and the coord error (with its sentinel); the replay
// follows the log after it, so the entries that build on the misdeed (the
// friend's re-lease and result, the close) are not reported again, and
// the rest of the audit runs (root, verdicts, exit 1).
func TestAuditCoordinatorRules(t *testing.T) {
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	cases := []struct {
		name string
		// log logs the job and returns the index of the entry that breaks
		// the rule.
		log  func(n *vnet) uint64
		want error
		says string
	}{
		{
			name: "early expiry, then the slot re-leased to a friend",
			log: func(n *vnet) uint64 {
				job := n.job(b)
				var leases []attest.Lease
				for i := range 10 {
					leases = append(leases, n.lease(b, job, n.builders[i], i))
				}
				for i := range 9 {
					n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
				}
				bad := n.end(leases[9], attest.LeaseExpired, leases[9].Issued.Add(time.Minute))
				friend := n.leaseAt(b, job, n.builders[10], 9, 2, n.tick())
				n.result(friend, n.builders[10], vnetSubjects(b, ""))
				n.close(b, job, 10)
				return bad
			},
			want: coord.ErrConflict, says: "before its expiry",
		},
		{
			name: "close before the job may close",
			log: func(n *vnet) uint64 {
				job := n.job(b)
				var leases []attest.Lease
				for i := range 10 {
					leases = append(leases, n.lease(b, job, n.builders[i], i))
				}
				for i := range 5 {
					n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
				}
				// Five agreeing results are a quorum: closing now makes
				// the verdict final before the other five are in.
				return n.close(b, job, 5)
			},
			want: coord.ErrConflict, says: "5 live leases",
		},
		{
			name: "lease at the job's deadline",
			log: func(n *vnet) uint64 {
				job := n.job(b)
				deadline := n.now.Add(vnetJobTTL)
				var leases []attest.Lease
				for i := range 9 {
					leases = append(leases, n.lease(b, job, n.builders[i], i))
				}
				for i := range 9 {
					n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
				}
				n.now = deadline
				late := n.leaseAt(b, job, n.builders[9], 9, 1, deadline)
				n.result(late, n.builders[9], vnetSubjects(b, ""))
				n.close(b, job, 10)
				size, _ := n.l.Size()
				return size - 3 // the late lease: before its result and the close
			},
			want: coord.ErrJobExpired, says: "deadline",
		},
		{
			name: "second lease of one job to the same operator",
			log: func(n *vnet) uint64 {
				job := n.job(b)
				var leases []attest.Lease
				for i := range 9 {
					leases = append(leases, n.lease(b, job, n.builders[i], i))
				}
				leases = append(leases, n.leaseAt(b, job, n.builders[0], 9, 1, n.tick()))
				size, _ := n.l.Size()
				for i, l := range leases {
					n.result(l, n.builders[i%9], vnetSubjects(b, ""))
				}
				n.close(b, job, 10)
				return size - 1
			},
			want: coord.ErrConflict, says: "already leased",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := newVNet(t, 11)
			bad := tc.log(n)
			n.verdicts(b, 3)
			rep, _, err := n.audit(t, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Discrepancies) != 1 {
				t.Fatalf("%d discrepancies, want 1 coordinator-rule: %+v", len(rep.Discrepancies), rep.Discrepancies)
			}
			d := rep.Discrepancies[0]
			if d.Kind != DiscCoordinatorRule || d.Index != bad || d.Build == nil || *d.Build != b || d.KeyID != n.coord.KeyID() {
				t.Fatalf("discrepancy %+v, want %s at %d on %s by the coordinator", d, DiscCoordinatorRule, bad, b.NVR)
			}
			if !strings.Contains(d.Detail, tc.want.Error()) || !strings.Contains(d.Detail, tc.says) {
				t.Fatalf("detail %q does not say %q (%v)", d.Detail, tc.says, tc.want)
			}
			size, _ := n.l.Size()
			if !rep.RootMatches || rep.To != size || rep.Verdicts != 3 || rep.Counts[DiscCoordinatorRule] != 1 || AuditExit(rep, err) != ExitRejected {
				t.Fatalf("report %+v, exit %d", rep, AuditExit(rep, err))
			}
		})
	}
}

// TestAuditCoordinatorResume: an audit that stopped right after a broken
// rule and resumes from its state rebuilds the coordinator replay as it
// followed the log: the re-lease after the early expiry is not reported
// again, and the states of the resumed and the single audit are equal.
func TestAuditCoordinatorResume(t *testing.T) {
	n := newVNet(t, 11)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	job := n.job(b)
	var leases []attest.Lease
	for i := range 10 {
		leases = append(leases, n.lease(b, job, n.builders[i], i))
	}
	for i := range 9 {
		n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
	}
	bad := n.end(leases[9], attest.LeaseExpired, leases[9].Issued.Add(time.Minute))
	rep1, st1, err := n.audit(t, nil, nil)
	if err != nil || len(rep1.Discrepancies) != 1 || rep1.Discrepancies[0].Index != bad {
		t.Fatalf("first run: %v %+v", err, rep1.Discrepancies)
	}
	saved, err := json.Marshal(st1)
	if err != nil {
		t.Fatal(err)
	}
	friend := n.leaseAt(b, job, n.builders[10], 9, 2, n.tick())
	n.result(friend, n.builders[10], vnetSubjects(b, ""))
	n.close(b, job, 10)
	n.verdicts(b, 3)
	var prev AuditState
	if err := json.Unmarshal(saved, &prev); err != nil {
		t.Fatal(err)
	}
	rep2, st2, err := n.audit(t, &prev, nil)
	if err != nil || len(rep2.Discrepancies) != 0 || rep2.Total != 1 || AuditExit(rep2, err) != ExitRejected {
		t.Fatalf("resumed run: %v, discrepancies %+v, total %d", err, rep2.Discrepancies, rep2.Total)
	}
	_, stFull, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(st2.Coordinator) != string(stFull.Coordinator) || string(st2.Fold) != string(stFull.Fold) || st2.Counts[DiscCoordinatorRule] != 1 || stFull.Counts[DiscCoordinatorRule] != 1 {
		t.Fatalf("resumed state differs from a single audit: counts %v vs %v", st2.Counts, stFull.Counts)
	}
	// A state whose coordinator replay no longer applies is refused.
	broken := prev
	var events []coordEvent
	if err := json.Unmarshal(prev.Coordinator, &events); err != nil {
		t.Fatal(err)
	}
	events = slices.DeleteFunc(events, func(ce coordEvent) bool { return ce.Job != nil })
	broken.Coordinator, _ = json.Marshal(events)
	if _, _, err := n.audit(t, &broken, nil); !errors.Is(err, ErrState) || AuditExit(nil, err) != ExitUsage {
		t.Fatalf("state without the job: %v", err)
	}
	// So is a state past index 0 without a coordinator replay (an older
	// skyline's).
	old := prev
	old.Coordinator = nil
	if _, _, err := n.audit(t, &old, nil); !errors.Is(err, ErrState) {
		t.Fatalf("state without a coordinator replay: %v", err)
	}
}

// TestAuditCoordinatorSettings: the server's policy settings the log does
// not carry are the auditor's to give (AuditConfig.Coord): a third attempt
// on a slot is within the default MaxAttempts (3, skyline serve's default)
// and breaks a MaxAttempts of 2.
func TestAuditCoordinatorSettings(t *testing.T) {
	n := newVNet(t, 12)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	job := n.job(b)
	var leases []attest.Lease
	for i := range 10 {
		leases = append(leases, n.lease(b, job, n.builders[i], i))
	}
	for i := range 9 {
		n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
	}
	l := leases[9]
	for attempt := 2; attempt <= 3; attempt++ {
		n.now = l.Expires
		n.end(l, attest.LeaseExpired, l.Expires)
		l = n.leaseAt(b, job, n.builders[8+attempt], 9, attempt, n.tick())
	}
	third, _ := n.l.Size()
	third--
	n.result(l, n.builders[11], vnetSubjects(b, ""))
	n.close(b, job, 10)
	n.verdicts(b, 3)
	n.size()
	cfg := AuditConfig{URL: n.srv.URL, LogKey: n.vkey}
	rep, _, err := Audit(t.Context(), cfg, nil)
	if err != nil || len(rep.Discrepancies) != 0 {
		t.Fatalf("default settings: %v %+v", err, rep.Discrepancies)
	}
	cfg.Coord.MaxAttempts = 2
	rep, _, err = Audit(t.Context(), cfg, nil)
	if err != nil || len(rep.Discrepancies) != 1 {
		t.Fatalf("max attempts 2: %v %+v", err, rep.Discrepancies)
	}
	if d := rep.Discrepancies[0]; d.Kind != DiscCoordinatorRule || d.Index != third || !strings.Contains(d.Detail, coord.ErrInvalid.Error()) || !strings.Contains(d.Detail, "attempt 3 of 2") {
		t.Fatalf("discrepancy %+v, want the third attempt at %d", d, third)
	}
	cfg.Coord.MaxAttempts = -1
	if _, _, err := Audit(t.Context(), cfg, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative max attempts: %v", err)
	}
}

// TestAuditCoordinatorNotTwice: what the fold already reports is not
// reported again by the coordinator replay: a result under no lease is
// result-not-counted only, a second close of a job is contradicts-log only.
func TestAuditCoordinatorNotTwice(t *testing.T) {
	n := newVNet(t, 11)
	b := vnetBuild("hello-2.12-1.fc41", "x86_64")
	job := n.job(b)
	var leases []attest.Lease
	for i := range 10 {
		leases = append(leases, n.lease(b, job, n.builders[i], i))
	}
	fake := leases[0]
	fake.LeaseID = "never-leased"
	noLease := n.result(fake, n.builders[10], vnetSubjects(b, ""))
	for i := range 10 {
		n.result(leases[i], n.builders[i], vnetSubjects(b, ""))
	}
	n.close(b, job, 10)
	again := n.close(b, job, 10)
	n.verdicts(b, 3)
	rep, _, err := n.audit(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for _, d := range rep.Discrepancies {
		got[d.Index] = d.Kind
	}
	want := map[uint64]string{noLease: DiscNotCounted, again: DiscContradicts}
	if len(rep.Discrepancies) != len(want) || got[noLease] != want[noLease] || got[again] != want[again] || len(coordRules(rep.Discrepancies)) != 0 {
		t.Fatalf("discrepancies %+v, want %v", rep.Discrepancies, want)
	}
}
