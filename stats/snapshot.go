package stats

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Totals are an account's numbers, with the RAC read at the log's clock.
type Totals struct {
	Credit   float64 `json:"credit"`
	RAC      float64 `json:"rac"` // credit per day, at the log's clock
	Results  int     `json:"results"`
	Agreed   int     `json:"agreed"`
	Outliers int     `json:"outliers"`
	Failures int     `json:"failures"`
}

// OperatorStats is one operator: rank (by total credit), team, keys and
// recent events.
type OperatorStats struct {
	Name  string     `json:"name"`
	Rank  int        `json:"rank"`
	Team  string     `json:"team,omitempty"`
	Teams []TeamSpan `json:"teams"` // team history, oldest first
	Totals
	Keys   []string `json:"keys"`
	Recent []Event  `json:"recent"`
}

// TeamStats is one team.
type TeamStats struct {
	Name string `json:"name"`
	Rank int    `json:"rank"`
	Totals
	Members []string `json:"members"` // operators whose current team it is
}

// BuilderStats is one builder key.
type BuilderStats struct {
	KeyID     string `json:"key_id"`
	Operator  string `json:"operator"`
	Rank      int    `json:"rank"`
	Team      string `json:"team,omitempty"` // as enrolled
	Enrolled  uint64 `json:"enrolled"`
	Revoked   bool   `json:"revoked"`
	RevokedAt uint64 `json:"revoked_at,omitempty"`
	Totals
	Recent []Event `json:"recent"`
}

// ResultStats is one result a counted verdict credited or named an outlier.
type ResultStats struct {
	Index    uint64        `json:"index"`
	KeyID    string        `json:"key_id"`
	Operator string        `json:"operator"`
	Team     string        `json:"team,omitempty"`
	Kind     string        `json:"kind"`
	Credit   float64       `json:"credit"`
	BuildDur time.Duration `json:"build_time"` // the builder's own finishedOn - startedOn
}

// BuildStats is one build and the verdict counted for it.
type BuildStats struct {
	Build        attest.BuildID `json:"build"`
	Verdict      attest.Verdict `json:"verdict"`
	VerdictIndex uint64         `json:"verdict_index"`
	Witness      string         `json:"witness"`
	Official     string         `json:"official,omitempty"` // the logged official build's result set
	BuildTime    time.Duration  `json:"build_time"`         // agreed: median over the credited results, clamped
	Credit       float64        `json:"credit"`             // per credited result
	Results      []ResultStats  `json:"results"`
}

// Health is the network's state: per-day activity and the breaker.
type Health struct {
	Clock    time.Time    `json:"clock"`
	Next     uint64       `json:"next"`
	Refused  int          `json:"refused"`
	Days     []DayStats   `json:"days"` // oldest first
	Breaker  BreakerState `json:"breaker"`
	Builds   int          `json:"builds"`
	Network  Totals       `json:"network"`
	Builders int          `json:"builders"`
	Teams    int          `json:"teams"`
	Ops      int          `json:"operators"`
}

// Snapshot is everything the tracker knows, in a canonical order: equal
// logs give deeply equal snapshots.
type Snapshot struct {
	Next      uint64          `json:"next"`
	Clock     time.Time       `json:"clock"`
	Operators []OperatorStats `json:"operators"` // by rank
	Teams     []TeamStats     `json:"teams"`     // by rank
	Builders  []BuilderStats  `json:"builders"`  // by rank
	Builds    []BuildStats    `json:"builds"`    // by NVR, arch, SRPM
	Health    Health          `json:"health"`
}

func (t *Tracker) totals(a Account) Totals {
	return Totals{Credit: a.Credit, RAC: t.RACAt(a, t.st.Clock), Results: a.Results, Agreed: a.Agreed, Outliers: a.Outliers, Failures: a.Failures}
}

// byCredit orders by credit descending, then name: the rank order.
func byCredit(ca, cb float64, na, nb string) int {
	return cmp.Or(cmp.Compare(cb, ca), strings.Compare(na, nb))
}

func (t *Tracker) operator(name string, rank int) OperatorStats {
	op := t.st.Operators[name]
	return OperatorStats{
		Name: name, Rank: rank, Team: op.team(), Teams: slices.Clone(op.Teams),
		Totals: t.totals(op.Acct), Keys: slices.Clone(op.Keys), Recent: slices.Clone(op.Recent),
	}
}

func (t *Tracker) builder(id string, rank int) BuilderStats {
	k := t.st.Keys[id]
	return BuilderStats{
		KeyID: id, Operator: k.Operator, Rank: rank, Team: k.Team, Enrolled: k.Enrolled,
		Revoked: k.Revoked, RevokedAt: k.RevokedAt, Totals: t.totals(k.Acct), Recent: slices.Clone(k.Recent),
	}
}

func (t *Tracker) members() map[string][]string {
	m := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(t.st.Operators)) {
		if team := t.st.Operators[name].team(); team != "" {
			m[team] = append(m[team], name)
		}
	}
	return m
}

// ranked returns names sorted by credit (the rank order).
func ranked[V any](m map[string]V, credit func(V) float64) []string {
	names := slices.Collect(maps.Keys(m))
	slices.SortFunc(names, func(a, b string) int { return byCredit(credit(m[a]), credit(m[b]), a, b) })
	return names
}

func (t *Tracker) build(bk string) BuildStats {
	b := t.st.Builds[bk]
	bs := BuildStats{
		Build: b.Verdict.Build, Verdict: b.Verdict, VerdictIndex: b.Index, Witness: b.Witness,
		Official: t.st.Official[bk], BuildTime: b.BuildTime, Credit: b.Credit, Results: []ResultStats{},
	}
	for _, e := range b.Effects {
		bs.Results = append(bs.Results, ResultStats{
			Index: e.Result, KeyID: e.Key, Operator: e.Operator, Team: e.Team, Kind: e.Kind,
			Credit: e.Credit, BuildDur: t.st.Results[e.Result].Dur,
		})
	}
	return bs
}

func (t *Tracker) health() Health {
	h := Health{
		Clock: t.st.Clock, Next: t.st.Next, Refused: t.st.Refused, Days: []DayStats{},
		Breaker: t.st.Breaker, Builds: len(t.st.Builds), Builders: len(t.st.Keys),
		Teams: len(t.st.Teams), Ops: len(t.st.Operators),
	}
	h.Breaker.Open = slices.Clone(h.Breaker.Open)
	for _, d := range slices.Sorted(maps.Keys(t.st.Days)) {
		h.Days = append(h.Days, *t.st.Days[d])
	}
	// Sorted, so that the float sums are the same in every run.
	for _, name := range slices.Sorted(maps.Keys(t.st.Operators)) {
		op := t.st.Operators[name]
		h.Network.Credit += op.Acct.Credit
		h.Network.RAC += t.RACAt(op.Acct, t.st.Clock)
		h.Network.Results += op.Acct.Results
		h.Network.Agreed += op.Acct.Agreed
		h.Network.Outliers += op.Acct.Outliers
		h.Network.Failures += op.Acct.Failures
	}
	return h
}

// Snapshot returns everything the tracker knows.
func (t *Tracker) Snapshot() Snapshot {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Snapshot{Next: t.st.Next, Clock: t.st.Clock, Operators: []OperatorStats{}, Teams: []TeamStats{}, Builders: []BuilderStats{}, Builds: []BuildStats{}}
	for i, name := range ranked(t.st.Operators, func(o *opState) float64 { return o.Acct.Credit }) {
		s.Operators = append(s.Operators, t.operator(name, i+1))
	}
	members := t.members()
	for i, name := range ranked(t.st.Teams, func(a *Account) float64 { return a.Credit }) {
		s.Teams = append(s.Teams, TeamStats{Name: name, Rank: i + 1, Totals: t.totals(*t.st.Teams[name]), Members: members[name]})
	}
	for i, id := range ranked(t.st.Keys, func(k *keyState) float64 { return k.Acct.Credit }) {
		s.Builders = append(s.Builders, t.builder(id, i+1))
	}
	for _, bk := range slices.Sorted(maps.Keys(t.st.Builds)) {
		s.Builds = append(s.Builds, t.build(bk))
	}
	s.Health = t.health()
	return s
}

// Sort columns of a leaderboard.
const (
	SortCredit   = "credit"
	SortRAC      = "rac"
	SortAgreed   = "agreed"
	SortOutliers = "outliers"
)

// Kinds of a leaderboard.
const (
	BoardOperators = "operators"
	BoardTeams     = "teams"
)

// Row is one leaderboard row: an operator or a team.
type Row struct {
	Rank int    `json:"rank"` // by total credit, whatever the sort
	Name string `json:"name"`
	Team string `json:"team,omitempty"` // an operator's current team
	Totals
}

// Board is one page of a leaderboard.
type Board struct {
	Kind  string    `json:"kind"`
	Sort  string    `json:"sort"`
	Page  int       `json:"page"` // 1-based
	Pages int       `json:"pages"`
	Total int       `json:"total"` // rows in all pages
	Clock time.Time `json:"clock"`
	Rows  []Row     `json:"rows"`
}

// Leaderboard returns page (1-based) of the operators' or teams' board
// sorted by column (SortCredit, SortRAC, SortAgreed, SortOutliers; "" is
// SortCredit), PageSize rows a page. Rank is by total credit.
func (t *Tracker) Leaderboard(kind, column string, page int) (Board, error) {
	if column == "" {
		column = SortCredit
	}
	var key func(r *Row) float64
	switch column {
	case SortCredit:
		key = func(r *Row) float64 { return r.Credit }
	case SortRAC:
		key = func(r *Row) float64 { return r.RAC }
	case SortAgreed:
		key = func(r *Row) float64 { return float64(r.Agreed) }
	case SortOutliers:
		key = func(r *Row) float64 { return float64(r.Outliers) }
	default:
		return Board{}, fmt.Errorf("stats: sort by %q: want credit, rac, agreed or outliers: %w", trunc(column), ErrQuery)
	}
	if page < 1 {
		return Board{}, fmt.Errorf("stats: page %d: %w", page, ErrQuery)
	}
	t.mu.RLock()
	var rows []Row
	switch kind {
	case BoardOperators:
		rows = make([]Row, 0, len(t.st.Operators))
		for name, op := range t.st.Operators {
			rows = append(rows, Row{Name: name, Team: op.team(), Totals: t.totals(op.Acct)})
		}
	case BoardTeams:
		rows = make([]Row, 0, len(t.st.Teams))
		for name, a := range t.st.Teams {
			rows = append(rows, Row{Name: name, Totals: t.totals(*a)})
		}
	default:
		t.mu.RUnlock()
		return Board{}, fmt.Errorf("stats: board %q: want operators or teams: %w", trunc(kind), ErrQuery)
	}
	clock := t.st.Clock
	t.mu.RUnlock()

	// Sort indices, not rows: a row is ~100 bytes and there may be tens of
	// thousands.
	order := make([]int32, len(rows))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortFunc(order, func(a, b int32) int {
		return byCredit(rows[a].Credit, rows[b].Credit, rows[a].Name, rows[b].Name)
	})
	for r, i := range order {
		rows[i].Rank = r + 1
	}
	if column != SortCredit {
		slices.SortFunc(order, func(a, b int32) int {
			return cmp.Or(cmp.Compare(key(&rows[b]), key(&rows[a])), cmp.Compare(rows[a].Rank, rows[b].Rank))
		})
	}
	pages := max(1, (len(rows)+PageSize-1)/PageSize)
	if page > pages {
		return Board{}, fmt.Errorf("stats: page %d of %d: %w", page, pages, ErrQuery)
	}
	lo := (page - 1) * PageSize
	hi := min(lo+PageSize, len(rows))
	out := make([]Row, 0, hi-lo)
	for _, i := range order[lo:hi] {
		out = append(out, rows[i])
	}
	return Board{Kind: kind, Sort: column, Page: page, Pages: pages, Total: len(rows), Clock: clock, Rows: out}, nil
}

// rank returns the credit rank of name among m.
func rank[V any](m map[string]V, name string, credit func(V) float64) int {
	c := credit(m[name])
	r := 1
	for n, v := range m {
		if byCredit(credit(v), c, n, name) < 0 {
			r++
		}
	}
	return r
}

// Operator returns one operator's stats (ErrNotFound when unknown).
func (t *Tracker) Operator(name string) (OperatorStats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.st.Operators[name] == nil {
		return OperatorStats{}, fmt.Errorf("stats: operator %q: %w", trunc(name), ErrNotFound)
	}
	return t.operator(name, rank(t.st.Operators, name, func(o *opState) float64 { return o.Acct.Credit })), nil
}

// Team returns one team's stats (ErrNotFound when unknown).
func (t *Tracker) Team(name string) (TeamStats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	a := t.st.Teams[name]
	if a == nil {
		return TeamStats{}, fmt.Errorf("stats: team %q: %w", trunc(name), ErrNotFound)
	}
	members := []string{}
	for _, name2 := range slices.Sorted(maps.Keys(t.st.Operators)) {
		if t.st.Operators[name2].team() == name {
			members = append(members, name2)
		}
	}
	r := rank(t.st.Teams, name, func(a *Account) float64 { return a.Credit })
	return TeamStats{Name: name, Rank: r, Totals: t.totals(*a), Members: members}, nil
}

// Builder returns one builder key's stats (ErrNotFound when unknown).
func (t *Tracker) Builder(keyID string) (BuilderStats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.st.Keys[keyID] == nil {
		return BuilderStats{}, fmt.Errorf("stats: builder %q: %w", trunc(keyID), ErrNotFound)
	}
	return t.builder(keyID, rank(t.st.Keys, keyID, func(k *keyState) float64 { return k.Acct.Credit })), nil
}

// Build returns one build's counted verdict and what it did (ErrNotFound
// when no verdict for it is counted).
func (t *Tracker) Build(id attest.BuildID) (BuildStats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	bk := buildKey(id)
	if t.st.Builds[bk] == nil {
		return BuildStats{}, fmt.Errorf("stats: build %q: %w", trunc(id.NVR), ErrNotFound)
	}
	return t.build(bk), nil
}

// Package returns the builds of an NVR that have a counted verdict.
func (t *Tracker) Package(nvr string) ([]BuildStats, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l := t.byNVR[nvr]
	if len(l) == 0 {
		return nil, fmt.Errorf("stats: package %q: %w", trunc(nvr), ErrNotFound)
	}
	out := make([]BuildStats, 0, len(l))
	for _, bk := range l {
		out = append(out, t.build(bk))
	}
	return out, nil
}

// Health returns the network's health.
func (t *Tracker) Health() Health {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.health()
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
