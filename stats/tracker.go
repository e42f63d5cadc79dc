package stats

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/witness"
)

// Kinds of an Event.
const (
	KindAgreed    = "agreed"    // the result is in a credited group
	KindOutlier   = "outlier"   // a verdict named the result an outlier
	KindFailed    = "failed"    // the lease ended with reason failed
	KindWithdrawn = "withdrawn" // a later verdict took back an agreed or outlier mark
)

// Account is the running tally of a builder key, an operator or a team.
// RAC is the recent average credit (credit per day) as of RACTime; read it
// at another time with RACAt.
type Account struct {
	Credit   float64   `json:"credit"`
	RAC      float64   `json:"rac"`
	RACTime  time.Time `json:"rac_time"`
	Results  int       `json:"results"` // result sets submitted
	Agreed   int       `json:"agreed"`
	Outliers int       `json:"outliers"`
	Failures int       `json:"failures"`
}

// Event is one thing that happened to an operator or a builder key.
type Event struct {
	Index  uint64         `json:"index"` // the log entry (verdict or lease end) that caused it
	Result uint64         `json:"result,omitempty"`
	Build  attest.BuildID `json:"build"`
	Kind   string         `json:"kind"`
	KeyID  string         `json:"key_id"`
	Credit float64        `json:"credit,omitempty"`
	Time   time.Time      `json:"time"`
}

// TeamSpan says that from log index From on, the operator's team was Team
// ("" for none).
type TeamSpan struct {
	From uint64 `json:"from"`
	Team string `json:"team"`
}

type keyState struct {
	Operator  string  `json:"operator"`
	Team      string  `json:"team"`
	Enrolled  uint64  `json:"enrolled"`
	Revoked   bool    `json:"revoked,omitempty"`
	RevokedAt uint64  `json:"revoked_at,omitempty"`
	Acct      Account `json:"account"`
	Recent    []Event `json:"-"` // stored apart, compactly (state.go)
}

// revokedBefore reports whether the key was revoked before index: from its
// revocation on, nothing changes for it (docs/stats.md "Revocation").
func (k *keyState) revokedBefore(index uint64) bool { return k.Revoked && k.RevokedAt < index }

type opState struct {
	Acct   Account    `json:"account"`
	Teams  []TeamSpan `json:"teams"`
	Keys   []string   `json:"keys"`
	Recent []Event    `json:"-"` // stored apart, compactly (state.go)
}

// teamAt returns the operator's team at log index i.
func (o *opState) teamAt(i uint64) string {
	n, _ := slices.BinarySearchFunc(o.Teams, i, func(s TeamSpan, i uint64) int { return cmp.Compare(s.From, i+1) })
	if n == 0 {
		return ""
	}
	return o.Teams[n-1].Team
}

func (o *opState) team() string {
	if len(o.Teams) == 0 {
		return ""
	}
	return o.Teams[len(o.Teams)-1].Team
}

type resultRec struct {
	Key   string        `json:"k"`
	Build string        `json:"b"` // buildKey
	Dur   time.Duration `json:"d"`
}

// effect is what a counted verdict did to one result's accounts.
type effect struct {
	Result   uint64    `json:"result"`
	Key      string    `json:"key"`
	Operator string    `json:"operator"`
	Team     string    `json:"team"`
	Kind     string    `json:"kind"` // KindAgreed or KindOutlier
	Credit   float64   `json:"credit"`
	Time     time.Time `json:"time"`
}

type buildState struct {
	Verdict   attest.Verdict `json:"verdict"`
	Index     uint64         `json:"index"`
	Witness   string         `json:"witness"`
	BuildTime time.Duration  `json:"build_time"`
	Credit    float64        `json:"credit"`
	Effects   []effect       `json:"-"` // stored apart, compactly (state.go)
}

// DayStats is what happened on one UTC day of the log's clock.
type DayStats struct {
	Day        string `json:"day"` // YYYY-MM-DD
	Results    int    `json:"results"`
	Failures   int    `json:"failures"`
	Decided    int    `json:"decided"` // builds whose counted verdict is not insufficient
	Reproduced int    `json:"reproduced"`
}

// BreakerState is the circuit breaker as the log shows it: tripped by a
// witness's alarm, cleared by a logged clear.
type BreakerState struct {
	Tripped    bool               `json:"tripped"`
	Open       []uint64           `json:"open"` // indices of alarms not cleared
	Alarm      *attest.Alarm      `json:"alarm,omitempty"`
	AlarmIndex uint64             `json:"alarm_index,omitempty"`
	Clears     int                `json:"clears"`
	LastClear  *attest.AlarmClear `json:"last_clear,omitempty"`
}

type state struct {
	Next      uint64                 `json:"next"`
	Clock     time.Time              `json:"clock"`
	Keys      map[string]*keyState   `json:"keys"`
	Operators map[string]*opState    `json:"operators"`
	Teams     map[string]*Account    `json:"teams"`
	Results   map[uint64]resultRec   `json:"-"` // stored apart, compactly (state.go)
	Official  map[string]string      `json:"official"`
	Closed    map[string]uint64      `json:"closed"` // buildKey -> index of its job close
	Builds    map[string]*buildState `json:"builds"`
	Days      map[string]*DayStats   `json:"days"`
	Breaker   BreakerState           `json:"breaker"`
	Refused   int                    `json:"refused"`
}

func newState() state {
	return state{
		Keys:      map[string]*keyState{},
		Operators: map[string]*opState{},
		Teams:     map[string]*Account{},
		Results:   map[uint64]resultRec{},
		Official:  map[string]string{},
		Closed:    map[string]uint64{},
		Builds:    map[string]*buildState{},
		Days:      map[string]*DayStats{},
		Breaker:   BreakerState{Open: []uint64{}},
	}
}

// Tracker is the stats of one log, fed its entries in order with Apply.
// It is safe for concurrent use: Apply and the readers take a lock.
type Tracker struct {
	cfg       Config
	witnesses map[string]bool

	metrics *metrics

	mu     sync.RWMutex
	st     state
	fold   *witness.Fold // the key rules: who may sign what
	intern map[string]string
	byNVR  map[string][]string // nvr -> build keys with a counted verdict
}

// New returns an empty tracker.
func New(cfg Config) (*Tracker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	t := &Tracker{cfg: cfg, metrics: m, st: newState(), fold: witness.NewFold(cfg.Coordinator)}
	t.init()
	return t, nil
}

func (t *Tracker) init() {
	t.witnesses = map[string]bool{}
	for _, w := range t.cfg.Witnesses {
		t.witnesses[w] = true
	}
	t.intern = map[string]string{}
	t.byNVR = map[string][]string{}
	for bk, b := range t.st.Builds {
		t.byNVR[b.Verdict.Build.NVR] = append(t.byNVR[b.Verdict.Build.NVR], bk)
	}
	for _, l := range t.byNVR {
		slices.Sort(l)
	}
}

// Next returns the index of the next entry Apply expects.
func (t *Tracker) Next() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.st.Next
}

func buildKey(b attest.BuildID) string { return b.NVR + "\x00" + b.Arch + "\x00" + b.SRPMSHA256 }

func (t *Tracker) internKey(s string) string {
	if v, ok := t.intern[s]; ok {
		return v
	}
	t.intern[s] = s
	return s
}

// utc strips the location and monotonic reading so that times compare
// equal after a JSON round trip.
func utc(tm time.Time) time.Time { return tm.UTC().Round(0) }

func day(tm time.Time) string { return tm.UTC().Format(time.DateOnly) }

// Apply feeds the entry at index (the raw DSSE envelope as the log serves
// it). Entries must come in log order without gaps. An entry that is
// malformed, signed by a key that may not make it, contradicting the log,
// or a verdict that does not count is refused with an error wrapping
// ErrEntry, ErrSigner, ErrContradicts, ErrWitness or ErrStale: the tracker
// moves past it and no number changes. ErrOutOfOrder changes nothing.
func (t *Tracker) Apply(index uint64, entry []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if index != t.st.Next {
		return fmt.Errorf("stats: entry %d, expected %d: %w", index, t.st.Next, ErrOutOfOrder)
	}
	err := t.apply(index, entry)
	t.st.Next++
	t.metrics.observe(err, t.st.Next, t.st.Breaker.Tripped)
	if err != nil {
		t.st.Refused++
		t.cfg.Logger.Debug("stats: entry refused", "index", index, "err", err)
	}
	return err
}

func (t *Tracker) apply(index uint64, entry []byte) error {
	e, err := attest.Parse(entry, attest.ParseOptions{})
	if err != nil {
		_ = t.fold.Skip(index)
		return fmt.Errorf("stats: entry %d: %w: %w", index, ErrEntry, err)
	}
	v, _, err := t.fold.Signer(e, nil)
	if err == nil {
		err = e.Verify(v)
	}
	if err != nil {
		_ = t.fold.Skip(index)
		return fmt.Errorf("stats: entry %d: %w: %w", index, ErrSigner, err)
	}
	switch e.Value.(type) {
	case *attest.Enrolment, *attest.Revocation, *attest.Alarm, *attest.AlarmClear:
		// The fold keeps the keys and the open alarms and refuses what
		// contradicts them.
		if _, err := t.fold.Apply(index, e); err != nil {
			return fmt.Errorf("stats: entry %d: %w: %w", index, ErrContradicts, err)
		}
	default:
		if err := t.fold.Skip(index); err != nil {
			return fmt.Errorf("stats: entry %d: %w", index, err)
		}
	}
	switch p := e.Value.(type) {
	case *attest.Enrolment:
		t.tick(p.Since)
		t.enrol(index, p)
	case *attest.Revocation:
		if k := t.st.Keys[p.KeyID]; k != nil {
			k.Revoked, k.RevokedAt = true, index
		}
	case *attest.Job:
		t.tick(p.Enqueued)
	case *attest.Lease:
		t.tick(p.Issued)
	case *attest.LeaseEnd:
		t.tick(p.At)
		t.leaseEnd(index, p)
	case *attest.JobClose:
		t.tick(p.At)
		bk := t.internKey(buildKey(p.Build))
		if _, ok := t.st.Closed[bk]; !ok {
			t.st.Closed[bk] = index
		}
	case *attest.Attestation:
		t.attestation(index, e.KeyID, p)
	case *attest.Verdict:
		return t.verdict(index, e.KeyID, p)
	case *attest.Alarm:
		t.tick(p.At)
		a := *p
		a.At = utc(a.At)
		b := &t.st.Breaker
		b.Open = append(b.Open, index)
		b.Tripped, b.Alarm, b.AlarmIndex = true, &a, index
	case *attest.AlarmClear:
		t.tick(p.At)
		c := *p
		c.At = utc(c.At)
		b := &t.st.Breaker
		b.Open = slices.DeleteFunc(b.Open, func(i uint64) bool { return i == p.AlarmIndex })
		b.Tripped = len(b.Open) > 0
		b.Clears++
		b.LastClear = &c
	}
	return nil
}

// tick advances the log's clock: the latest time the coordinator or a
// witness signed. Builders' own times never move it.
func (t *Tracker) tick(tm time.Time) {
	if tm = utc(tm); tm.After(t.st.Clock) {
		t.st.Clock = tm
	}
}

func (t *Tracker) dayStats(d string) *DayStats {
	s := t.st.Days[d]
	if s == nil {
		s = &DayStats{Day: d}
		t.st.Days[d] = s
	}
	return s
}

func (t *Tracker) enrol(index uint64, e *attest.Enrolment) {
	if e.Role != attest.RoleBuilder {
		return
	}
	t.st.Keys[e.KeyID] = &keyState{Operator: e.Operator, Team: e.Team, Enrolled: index, Recent: []Event{}}
	op := t.st.Operators[e.Operator]
	if op == nil {
		op = &opState{Teams: []TeamSpan{}, Recent: []Event{}}
		t.st.Operators[e.Operator] = op
	}
	op.Keys = append(op.Keys, e.KeyID)
	// An operator's team is the one its latest enrolment names; credit
	// already earned stays with the team it was earned for (BOINC).
	if len(op.Teams) == 0 || op.team() != e.Team {
		op.Teams = append(op.Teams, TeamSpan{From: index, Team: e.Team})
	}
	if e.Team != "" && t.st.Teams[e.Team] == nil {
		t.st.Teams[e.Team] = &Account{}
	}
}

// accounts returns the accounts a change for key k at log index i touches:
// the key's, its operator's and, when the operator was in a team at
// teamIndex, the team's.
func (t *Tracker) accounts(keyID, operator, team string) []*Account {
	acc := make([]*Account, 0, 3)
	if k := t.st.Keys[keyID]; k != nil {
		acc = append(acc, &k.Acct)
	}
	if op := t.st.Operators[operator]; op != nil {
		acc = append(acc, &op.Acct)
	}
	if team != "" {
		if a := t.st.Teams[team]; a != nil {
			acc = append(acc, a)
		}
	}
	return acc
}

func (t *Tracker) event(keyID, operator string, ev Event) {
	if t.cfg.Recent == 0 {
		return
	}
	push := func(l []Event) []Event {
		l = slices.Insert(l, 0, ev)
		if len(l) > t.cfg.Recent {
			l = l[:t.cfg.Recent]
		}
		return l
	}
	if k := t.st.Keys[keyID]; k != nil {
		k.Recent = push(k.Recent)
	}
	if op := t.st.Operators[operator]; op != nil {
		op.Recent = push(op.Recent)
	}
}

func (t *Tracker) leaseEnd(index uint64, le *attest.LeaseEnd) {
	if le.Reason != attest.LeaseFailed {
		return
	}
	k := t.st.Keys[le.KeyID]
	if k == nil || k.revokedBefore(index) {
		return
	}
	op := t.st.Operators[k.Operator]
	for _, a := range t.accounts(le.KeyID, k.Operator, op.teamAt(index)) {
		a.Failures++
	}
	t.dayStats(day(le.At)).Failures++
	t.event(le.KeyID, k.Operator, Event{Index: index, Kind: KindFailed, KeyID: le.KeyID, Time: utc(le.At)})
}

func (t *Tracker) attestation(index uint64, keyID string, a *attest.Attestation) {
	bk := t.internKey(buildKey(a.Build))
	if a.Official {
		if _, ok := t.st.Official[bk]; !ok {
			t.st.Official[bk] = a.ResultSet.Digest
		}
		return
	}
	k := t.st.Keys[keyID]
	if k == nil {
		return
	}
	// Every part gets a record: a verdict names a multi-part result by
	// the index of whichever part the witness saw first.
	t.st.Results[index] = resultRec{Key: t.internKey(keyID), Build: bk, Dur: max(a.Finished.Sub(a.Started), 0)}
	if a.ResultSet.Part > 1 || k.revokedBefore(index) {
		return
	}
	op := t.st.Operators[k.Operator]
	for _, acc := range t.accounts(keyID, k.Operator, op.teamAt(index)) {
		acc.Results++
	}
	if !t.st.Clock.IsZero() {
		t.dayStats(day(t.st.Clock)).Results++
	}
}

// verdict counts a witness's verdict for a build, replacing the one counted
// before (a verdict at a larger tree: the official build arrived, say).
func (t *Tracker) verdict(index uint64, witnessKey string, v *attest.Verdict) error {
	if len(t.witnesses) > 0 && !t.witnesses[witnessKey] {
		return fmt.Errorf("stats: entry %d: verdict signed by %s: %w", index, witnessKey, ErrWitness)
	}
	bk := t.internKey(buildKey(v.Build))
	prev := t.st.Builds[bk]
	if prev != nil && v.TreeSize <= prev.Verdict.TreeSize {
		return fmt.Errorf("stats: entry %d: verdict for %s at tree %d, counted one at %d: %w", index, v.Build.NVR, v.TreeSize, prev.Verdict.TreeSize, ErrStale)
	}
	t.tick(v.At)
	at := utc(v.At)
	official := t.st.Official[bk]
	if official == "" {
		official = v.Official
	}

	// docs/stats.md "Credit": the group that reached reproduced, or a group
	// equal to the official build, earns credit.
	var credited []uint64
	seen := map[uint64]bool{}
	ours := func(i uint64) (resultRec, bool) {
		r, ok := t.st.Results[i]
		if !ok || r.Build != bk || seen[i] {
			return resultRec{}, false
		}
		seen[i] = true
		return r, true
	}
	// ARCHITECTURE.md "Agreement": a verdict is final only once the job is
	// closed; one computed on a tree without the close counts nobody's
	// results, lest colluders racing to a quorum be paid.
	closedAt, closed := t.st.Closed[bk]
	final := closed && v.TreeSize > closedAt
	var durs []time.Duration
	for _, g := range v.Groups {
		if !final || !creditedGroup(v, g, official) {
			continue
		}
		for _, i := range g.Entries {
			if r, ok := ours(i); ok {
				credited = append(credited, i)
				durs = append(durs, r.Dur)
			}
		}
	}
	bs := &buildState{Verdict: *v, Index: index, Witness: witnessKey}
	bs.Verdict.At = at
	if len(durs) > 0 {
		bs.BuildTime = min(max(median(durs), t.cfg.MinBuildTime), t.cfg.MaxBuildTime)
		bs.Credit = bs.BuildTime.Hours() * t.cfg.CreditPerHour
	}
	var next []effect
	add := func(i uint64, kind string, credit float64) {
		r := t.st.Results[i]
		k := t.st.Keys[r.Key]
		if k == nil || k.revokedBefore(index) {
			return
		}
		next = append(next, effect{Result: i, Key: r.Key, Operator: k.Operator, Team: t.st.Operators[k.Operator].teamAt(i), Kind: kind, Credit: credit, Time: at})
	}
	for _, i := range credited {
		add(i, KindAgreed, bs.Credit)
	}
	for _, o := range v.Outliers {
		if r, ok := ours(o.Index); ok && final && r.Key == o.KeyID {
			add(o.Index, KindOutlier, 0)
		}
	}

	var keep []effect
	if prev != nil {
		t.countDay(prev.Verdict, -1)
		for _, e := range prev.Effects {
			switch {
			case t.st.Keys[e.Key].revokedBefore(index):
				// Nothing changes for a key after its revocation.
				keep = append(keep, e)
			case slices.ContainsFunc(next, func(n effect) bool { return sameEffect(n, e) }):
				keep = append(keep, e)
			default:
				t.undo(index, v.Build, e, at)
			}
		}
	}
	for _, n := range next {
		if slices.ContainsFunc(keep, func(e effect) bool { return sameEffect(n, e) }) {
			continue
		}
		t.do(index, v.Build, n)
		keep = append(keep, n)
	}
	slices.SortFunc(keep, func(a, b effect) int { return cmp.Or(cmp.Compare(a.Result, b.Result), cmp.Compare(a.Kind, b.Kind)) })
	bs.Effects = keep
	t.st.Builds[bk] = bs
	if prev == nil {
		l := t.byNVR[v.Build.NVR]
		n, _ := slices.BinarySearch(l, bk)
		t.byNVR[v.Build.NVR] = slices.Insert(l, n, bk)
	}
	t.countDay(bs.Verdict, 1)
	return nil
}

func creditedGroup(v *attest.Verdict, g attest.VerdictGroup, official string) bool {
	if v.Verdict == attest.VerdictReproduced && v.ResultSet != "" && g.ResultSet == v.ResultSet {
		return true
	}
	return official != "" && g.ResultSet == official
}

func sameEffect(a, b effect) bool {
	return a.Result == b.Result && a.Key == b.Key && a.Kind == b.Kind && a.Credit == b.Credit
}

func (t *Tracker) countDay(v attest.Verdict, n int) {
	if v.Verdict == attest.VerdictInsufficient {
		return
	}
	d := t.dayStats(day(v.At))
	d.Decided += n
	if v.Verdict == attest.VerdictReproduced {
		d.Reproduced += n
	}
}

func (t *Tracker) do(index uint64, b attest.BuildID, e effect) {
	for _, a := range t.accounts(e.Key, e.Operator, e.Team) {
		if e.Kind == KindAgreed {
			a.Agreed++
			a.Credit += e.Credit
			t.addRAC(a, e.Credit, e.Time)
		} else {
			a.Outliers++
		}
	}
	t.event(e.Key, e.Operator, Event{Index: index, Result: e.Result, Build: b, Kind: e.Kind, KeyID: e.Key, Credit: e.Credit, Time: e.Time})
}

func (t *Tracker) undo(index uint64, b attest.BuildID, e effect, at time.Time) {
	for _, a := range t.accounts(e.Key, e.Operator, e.Team) {
		if e.Kind == KindAgreed {
			a.Agreed--
			a.Credit -= e.Credit
			t.addRAC(a, -e.Credit, e.Time)
		} else {
			a.Outliers--
		}
	}
	t.event(e.Key, e.Operator, Event{Index: index, Result: e.Result, Build: b, Kind: KindWithdrawn, KeyID: e.Key, Credit: -e.Credit, Time: at})
}

// median returns the median of ds (the mean of the middle two for an even
// count). It sorts ds.
func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return ds[n/2-1] + (ds[n/2]-ds[n/2-1])/2
}

// decay is the factor a credit loses over d: 2^(-d/half-life) (BOINC RAC).
func (t *Tracker) decay(d time.Duration) float64 {
	return math.Exp2(-d.Seconds() / t.cfg.HalfLife.Seconds())
}

// addRAC adds credit granted at tm to a's RAC. RAC is in credit per day:
// the decayed sum of grants times ln 2 / half-life in days, so that a
// steady rate of c credit a day converges to a RAC of c.
func (t *Tracker) addRAC(a *Account, credit float64, tm time.Time) {
	k := math.Ln2 / (t.cfg.HalfLife.Hours() / 24)
	if tm.After(a.RACTime) {
		a.RAC *= t.decay(tm.Sub(a.RACTime))
		a.RACTime = tm
	}
	a.RAC += k * credit * t.decay(a.RACTime.Sub(tm))
}

// RACAt returns a's recent average credit at tm (no earlier than its last
// grant).
func (t *Tracker) RACAt(a Account, tm time.Time) float64 {
	if !tm.After(a.RACTime) {
		return a.RAC
	}
	return a.RAC * t.decay(tm.Sub(a.RACTime))
}
