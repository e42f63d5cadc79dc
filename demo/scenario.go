package demo

import (
	"time"

	"github.com/fedora-skyline/skyline/witness"
)

// Verdicts and what `skyline verify` exits with for them (docs/verify.md).
const (
	ExitReproduced   = 0
	ExitNo           = 1 // disputed, official-mismatch
	ExitUndecided    = 2 // insufficient, unreproducible
	ExitVerification = 3 // verification failure, alarm active
)

// Official builds a Package may have logged by the Koji importer.
const (
	OfficialNone     = ""         // no official build is imported
	OfficialHonest   = "honest"   // the SRPM rebuilt as the builders rebuild it
	OfficialTampered = "tampered" // rebuilt with Package.Tamper knobs: poisoned infrastructure
)

// Package is one build the scenario enqueues: an SRPM made from
// testdata/specs/Spec with its Version: replaced.
type Package struct {
	NVR     string // must be the name-version-release the spec makes
	Spec    string // file in testdata/specs
	Version string // the spec's Version: ("" keeps it)
	// Official says whether and how an official build is imported (before
	// the job is enqueued, as Koji builds before skyline rebuilds).
	Official string
	// Tamper are the --define knobs of a tampered official build.
	Tamper map[string]string
	// Stage orders enqueueing: every package of stage n is verified before
	// stage n+1 is enqueued.
	Stage int
	// Want is the verdict `skyline verify` must reach and the witnesses'
	// verdict entries must carry, WantExit verify's exit status; AfterAlarm
	// is verify's exit status once the scenario's alarm is logged
	// (Scenario.Alarm).
	Want       string
	WantExit   int
	AfterAlarm int
	// Story is one line for the narration.
	Story string
}

// Scenario is a network and what it builds.
type Scenario struct {
	Name string
	// Builders names the builders' operators, one builder key each; each
	// builder is its own operator (one vote per operator).
	Builders []string
	// Malicious are the builders whose rpmbuild backend runs
	// demo/testdata/malicious/rpmbuild (it alters hello-1.1-1 and
	// hello-1.3-1 only).
	Malicious []string
	// Warned are the builders whose daemon must have been warned that
	// their results were outliers more than once (`skyline builder
	// status`); no other builder may be.
	Warned []string
	// Witnesses is how many witnesses run; WitnessQuorum how many of them
	// the verify policy requires (k of n).
	Witnesses     int
	WitnessQuorum int
	// Policy is the agreement policy of the witnesses and of the verify
	// policy: they must be the same, or verify finds the witnesses'
	// verdicts disagreeing with its recomputation.
	Policy witness.Policy
	// Breaker is the witnesses' circuit breaker.
	Breaker witness.BreakerConfig
	// Alarm says that the breaker must trip in the last stage. That
	// stage's packages are not verified before the alarm (it is logged as
	// soon as their verdicts are); once it is, every package is verified
	// again and must exit AfterAlarm, and the witnesses' verdict entries
	// must still say Want.
	Alarm    bool
	Packages []Package
}

// DemoPolicy is the agreement policy of the demo: the default (10 leases,
// quorum 5 operators, official build must match) except that no dissent
// is tolerated. Under the default MaxDissent of 1 a single altered result
// is tolerated: the verdict is reproduced with the outlier named. The demo
// has one malicious builder and wants it to show as disputed, so it runs
// with MaxDissent 0.
func DemoPolicy() witness.Policy {
	p := witness.DefaultPolicy()
	p.MaxDissent = 0
	return p
}

// builderNames returns the demo's ten volunteer operators.
func builderNames() []string {
	return []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "mallory"}
}

// DemoScenario is `make demo`: one log, three witnesses, ten builders of
// which one (mallory) is malicious, and five packages, one per verdict.
func DemoScenario() Scenario {
	return Scenario{
		Name:          "demo",
		Builders:      builderNames(),
		Malicious:     []string{"mallory"},
		Warned:        []string{"mallory"},
		Witnesses:     3,
		WitnessQuorum: 2,
		Policy:        DemoPolicy(),
		Breaker:       witness.DefaultBreakerConfig(),
		Packages: []Package{
			{NVR: "hello-1.0-1", Spec: "hello.spec", Version: "1.0", Official: OfficialHonest, Stage: 1,
				Want: witness.VerdictReproduced, WantExit: ExitReproduced,
				Story: "an honest package: every builder, and Koji, get the same RPMs"},
			{NVR: "hello-1.1-1", Spec: "hello.spec", Version: "1.1", Stage: 1,
				Want: witness.VerdictDisputed, WantExit: ExitNo,
				Story: "mallory's toolchain changes the program's greeting"},
			{NVR: "hello-1.2-1", Spec: "hello.spec", Version: "1.2", Official: OfficialTampered, Stage: 1,
				Tamper: map[string]string{"post_msg": "hello installed; koji was here"},
				Want:   witness.VerdictOfficialMismatch, WantExit: ExitNo,
				Story: "the builders agree, but the official (Koji) RPMs were built with a changed %post"},
			{NVR: "hello-1.3-1", Spec: "hello.spec", Version: "1.3", Stage: 1,
				Want: witness.VerdictDisputed, WantExit: ExitNo,
				Story: "mallory's toolchain changes the %post scriptlet: mallory's second outlier"},
			{NVR: "timestamp-1.0-1", Spec: "timestamp.spec", Stage: 1,
				Want: witness.VerdictUnreproducible, WantExit: ExitUndecided,
				Story: "a package that embeds its build time: no two builds agree"},
		},
	}
}

// BreakerScenario is the second run of the end-to-end test: hello-1.0-1 is
// reproduced first; then four of ten builders turn malicious on
// hello-1.1-1, 4 outliers among the 20 results in a breaker window of 20
// (threshold 15%), which trips the circuit breaker: the witnesses log an
// alarm and `skyline verify` fails closed (exit 3) for every package,
// also the one that was reproduced.
func BreakerScenario() Scenario {
	return Scenario{
		Name:          "breaker",
		Builders:      builderNames(),
		Malicious:     []string{"carol", "frank", "ivan", "mallory"},
		Witnesses:     3,
		WitnessQuorum: 2,
		Policy:        DemoPolicy(),
		Breaker: witness.BreakerConfig{Window: 20, Threshold: 0.15, MinSample: 20,
			Mismatches: 2, MismatchWindow: 24 * time.Hour},
		Alarm: true,
		Packages: []Package{
			{NVR: "hello-1.0-1", Spec: "hello.spec", Version: "1.0", Stage: 1,
				Want: witness.VerdictReproduced, WantExit: ExitReproduced, AfterAlarm: ExitVerification,
				Story: "reproduced while the network is healthy"},
			{NVR: "hello-1.1-1", Spec: "hello.spec", Version: "1.1", Stage: 2,
				Want: witness.VerdictDisputed, WantExit: ExitNo, AfterAlarm: ExitVerification,
				Story: "four builders alter it: the outlier rate trips the breaker"},
		},
	}
}
