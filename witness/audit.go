package witness

// `skyline audit`: the full replay (ARCHITECTURE.md "The five roles": the
// auditor trusts only the log key). Every entry from index 0 is read from
// C2SP tlog-tiles entry bundles (each checked against the signed tree by
// the follower), the RFC 6962 root is recomputed from the leaves and
// compared with the checkpoint, every signature is verified, the fold is
// rebuilt, every verdict and the circuit breaker are recomputed with the
// one agreement engine, every witness verdict is compared with the
// recomputation, and the coordinator's own rules are replayed with
// coord.Coordinator (docs/coordinator.md §Auditing). docs/audit.md is the
// specification.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrRootMismatch: the root recomputed from every entry is not the
// checkpoint's.
var ErrRootMismatch = errors.New("recomputed root differs from the checkpoint")

// Kinds of audit discrepancies (docs/audit.md "Discrepancies").
const (
	DiscBadEntry       = "bad-entry"            // does not parse
	DiscBadSignature   = "bad-signature"        // signature does not verify
	DiscUnauthorized   = "unauthorized"         // signer may not make this entry (unenrolled, wrong role, not the coordinator)
	DiscContradicts    = "contradicts-log"      // refused by the fold (second enrolment, lease of unknown job, ...)
	DiscNotCounted     = "result-not-counted"   // a logged result that may not vote (no lease, unenrolled, revoked, late, ...)
	DiscVerdictDiffers = "verdict-differs"      // a witness verdict differs from the recomputation
	DiscVerdictEarly   = "verdict-before-close" // a final verdict computed before the job closed
	DiscVerdictFuture  = "verdict-future-size"  // a verdict claims a tree size beyond its own index
	DiscVerdictNoBuild = "verdict-unknown-build"
	DiscAlarmUnderived = "alarm-not-rederived" // an alarm logged while the recomputed breaker is not tripped
	DiscTripUnlogged   = "trip-not-logged"     // the recomputed breaker tripped and no alarm followed
	DiscIndexHides     = "index-hides-entry"   // the NVR lookup index leaves out an entry about the NVR
	DiscIndexWrong     = "index-wrong-entry"   // the NVR lookup index lists an entry about something else
	// DiscCoordinatorRule: the coordinator's replay (coord.Follow, the
	// rules coord.Apply enforces on the server's replay) finds that a
	// coordinator entry breaks a rule (a lease out of attempt order, past
	// MaxAttempts, to an operator who had the job, to a revoked key, during
	// an alarm or at or after the job's deadline; an early expiry; a close
	// of a job that may not close or with a wrong count) or does not fit
	// the coordinator's state. Results are not reported under this kind:
	// the fold judges them (DiscNotCounted).
	DiscCoordinatorRule = "coordinator-rule"
)

// Discrepancy is one thing the log says that the replay does not confirm.
type Discrepancy struct {
	Index  uint64          `json:"index"`
	Kind   string          `json:"kind"`
	Build  *attest.BuildID `json:"build,omitempty"`
	KeyID  string          `json:"key_id,omitempty"`
	Detail string          `json:"detail"`
}

// AuditConfig configures Audit.
type AuditConfig struct {
	// URL is the log's base URL. Required.
	URL string
	// Origin is the checkpoint origin. Default: the name of LogKey.
	Origin string
	// LogKey is the log's C2SP signed-note verifier key. Required.
	LogKey string
	// Coordinator signs enrolments, leases and closes. Default: the log
	// key's Ed25519 key (skyline serve signs both with one key).
	Coordinator *attest.Verifier
	// Policy is the agreement policy the witnesses apply. Default
	// DefaultPolicy().
	Policy *Policy
	// Breaker configures the recomputed circuit breaker. Default
	// DefaultBreakerConfig().
	Breaker *BreakerConfig
	// Coord is the coordinator configuration of the replay of the
	// coordinator's rules. Its policy fields are the server's
	// configuration, not in the log, so an auditor of a server with other
	// settings gives them here: MaxAttempts and MaxWanted change what the
	// replay accepts (skyline serve's max_attempts and max_wanted); the
	// zero value is coord's defaults, which are skyline serve's. LeaseTTL,
	// JobTTL and DefaultWanted shape decisions only (each lease's expiry,
	// each job's deadline and wanted count are logged and checked as
	// logged), and Rand is not used. Authority is always the Coordinator
	// key's id; Logger defaults to discard.
	Coord coord.Config
	// Client makes the HTTP requests. Default: 30 s timeout.
	Client *http.Client
	// Workers parse and verify entries in parallel. Default GOMAXPROCS.
	Workers int
	// Cosigners are witnesses' cosignature verifier keys (C2SP
	// tlog-cosignature, cosignature/v1); the report names those that
	// cosigned the checkpoint, and with CosignerQuorum > 0 fewer than that
	// many is a verification failure (ErrTooFewCosignatures). Default none.
	Cosigners      []string
	CosignerQuorum int
	// CheckIndex makes the audit also check the log's NVR lookup index
	// (GET /lookup/{nvr}) for every NVR with entries in this run: each of
	// those entries must be listed, and every listed entry of this run
	// must be about the NVR. The index is not evidence, but a log whose
	// index hides entries misleads every verify.
	CheckIndex bool
	// Progress, when set, is called after every batch with the entries
	// replayed and the checkpoint's size.
	Progress func(done, total uint64)
	// Logger receives events. Default: discard.
	Logger *slog.Logger
}

// AuditState is what a later Audit resumes from: the last verified
// checkpoint, the position, the recomputed tree's compact range, the fold
// and the breaker. It is JSON.
type AuditState struct {
	Checkpoint string          `json:"checkpoint"` // signed note
	Next       uint64          `json:"next"`
	Range      [][]byte        `json:"range"` // compact range [0, Next)
	Fold       json.RawMessage `json:"fold"`
	Breaker    json.RawMessage `json:"breaker"`
	// TripAt is the index of the outcome that tripped the recomputed
	// breaker and no alarm has been logged since; 0 when none.
	TripAt        uint64         `json:"trip_at,omitempty"`
	Tripped       bool           `json:"tripped,omitempty"`
	Discrepancies int            `json:"discrepancies"`
	Verdicts      int            `json:"verdicts"`
	Counts        map[string]int `json:"counts"`
	// Coordinator is what rebuilds the coordinator replay's state: the
	// entries it applied, in log order (coordEvent).
	Coordinator json.RawMessage `json:"coordinator,omitempty"`
}

// AuditReport is what one Audit run found.
type AuditReport struct {
	Checkpoint CheckpointRef `json:"checkpoint"`
	// Cosigners names the AuditConfig.Cosigners whose cosignature of the
	// checkpoint verifies.
	Cosigners []string `json:"cosigners,omitempty"`
	From      uint64   `json:"from"`
	To        uint64   `json:"to"`
	// Entries replayed in this run, verdicts compared, builds known.
	Entries  uint64 `json:"entries"`
	Verdicts int    `json:"verdicts_checked"`
	Builds   int    `json:"builds"`
	// Discrepancies found in this run; Total over every run of the state.
	Discrepancies []Discrepancy  `json:"discrepancies"`
	Total         int            `json:"total_discrepancies"`
	Counts        map[string]int `json:"counts"` // by kind, over every run
	// Breaker is the recomputed breaker's state at the end.
	BreakerTripped bool    `json:"breaker_tripped"`
	OutlierRate    float64 `json:"outlier_rate"`
	RootMatches    bool    `json:"root_matches"`
}

// auditor is one Audit run.
type auditor struct {
	cfg     AuditConfig
	pol     Policy
	f       *Follower
	fold    *Fold
	co      *coord.Coordinator // the coordinator's rules, replayed
	events  []coordEvent       // the entries co applied, for the state
	br      *Breaker
	rng     *compact.Range
	rep     *AuditReport
	st      *AuditState
	reports map[uint64]bool           // results already reported as not counted
	byNVR   map[string][]uint64       // entries of this run the NVR index must list
	closed  map[attest.BuildID]uint64 // job closes known
	looked  map[attest.BuildID]bool   // builds whose close was looked up in the fold
}

var rangeFactory = compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

// Audit replays the log from prev (nil: from index 0) to its latest
// checkpoint. It returns the report and the state to resume from. A
// verification failure (the checkpoint, consistency with prev, a tile or
// bundle, the recomputed root) is an error wrapping the follower's
// sentinels or ErrRootMismatch; the report and state then cover the
// entries replayed before it. Discrepancies are not errors: they are in
// the report.
func Audit(ctx context.Context, cfg AuditConfig, prev *AuditState) (*AuditReport, *AuditState, error) {
	if cfg.LogKey == "" || cfg.URL == "" {
		return nil, nil, fmt.Errorf("witness: audit needs a log URL and key: %w", ErrConfig)
	}
	lv, err := note.NewVerifier(cfg.LogKey)
	if err != nil {
		return nil, nil, fmt.Errorf("witness: audit: log key: %w: %v", ErrConfig, err)
	}
	if cfg.Origin == "" {
		cfg.Origin = lv.Name()
	}
	if cfg.Coordinator == nil {
		pub, err := NoteKeyPublic(cfg.LogKey)
		if err != nil {
			return nil, nil, fmt.Errorf("witness: audit: coordinator key: %w: %v", ErrConfig, err)
		}
		if cfg.Coordinator, err = attest.NewVerifier(pub); err != nil {
			return nil, nil, fmt.Errorf("witness: audit: coordinator key: %w: %v", ErrConfig, err)
		}
	}
	pol := DefaultPolicy()
	if cfg.Policy != nil {
		pol = *cfg.Policy
	}
	if err := pol.Validate(); err != nil {
		return nil, nil, fmt.Errorf("witness: audit: %w: %w", ErrConfig, err)
	}
	bcfg := DefaultBreakerConfig()
	if cfg.Breaker != nil {
		bcfg = *cfg.Breaker
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultTimeout}
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Coord.MaxAttempts < 0 || cfg.Coord.MaxWanted < 0 {
		return nil, nil, fmt.Errorf("witness: audit: coordinator max attempts %d, max wanted %d: %w", cfg.Coord.MaxAttempts, cfg.Coord.MaxWanted, ErrConfig)
	}
	ccfg := cfg.Coord
	ccfg.Authority = cfg.Coordinator.KeyID()
	a := &auditor{cfg: cfg, pol: pol, fold: NewFold(cfg.Coordinator), co: coord.New(ccfg), rng: rangeFactory.NewEmptyRange(0), reports: map[uint64]bool{}, byNVR: map[string][]uint64{}, closed: map[attest.BuildID]uint64{}, looked: map[attest.BuildID]bool{},
		st: &AuditState{Counts: map[string]int{}}}
	trusted := EmptyTree(cfg.Origin)
	if prev != nil {
		if err := a.restore(prev, lv, &trusted); err != nil {
			return nil, nil, err
		}
	} else if a.br, err = NewBreaker(bcfg); err != nil {
		return nil, nil, fmt.Errorf("witness: audit: %w", err)
	}
	if a.f, err = NewFollower(FollowerConfig{URL: cfg.URL, Origin: cfg.Origin, Verifier: lv, Client: cfg.Client}, trusted); err != nil {
		return nil, nil, err
	}
	cp, err := a.f.Update(ctx)
	if err != nil {
		return nil, a.st, fmt.Errorf("witness: audit: %w", err)
	}
	var cosigners []string
	if len(cfg.Cosigners) > 0 {
		pol := &VerifyPolicy{logVerifier: lv}
		for _, k := range cfg.Cosigners {
			cv, err := fnote.NewVerifierForCosignatureV1(k)
			if err != nil {
				return nil, a.st, fmt.Errorf("witness: audit: cosigner key %q: %w: %v", k, ErrConfig, err)
			}
			pol.cosigners = append(pol.cosigners, cv)
			pol.Witnesses = append(pol.Witnesses, WitnessPolicy{Name: cv.Name()})
		}
		if cosigners, _, err = Cosigners(cp, pol, time.Time{}); err != nil {
			return nil, a.st, err
		}
		if len(cosigners) < cfg.CosignerQuorum {
			return nil, a.st, fmt.Errorf("witness: audit: checkpoint %d cosigned by %v, need %d: %w", cp.Size, cosigners, cfg.CosignerQuorum, ErrTooFewCosignatures)
		}
	}
	a.st.Checkpoint = string(cp.Note)
	from := a.fold.Next()
	a.rep = &AuditReport{Checkpoint: CheckpointRef{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash.String()}, Cosigners: cosigners, From: from, To: from, Discrepancies: []Discrepancy{}}
	err = a.replay(ctx, cp)
	if err == nil && cfg.CheckIndex {
		err = a.checkIndex(ctx, from)
	}
	a.rep.To = a.fold.Next()
	a.rep.Entries = a.rep.To - from
	a.rep.Builds = a.fold.Builds()
	a.rep.BreakerTripped = a.st.Tripped
	a.rep.OutlierRate, _ = a.br.Rate()
	if serr := a.save(); serr != nil && err == nil {
		err = serr
	}
	a.rep.Total = a.st.Discrepancies
	a.rep.Counts = a.st.Counts
	if err != nil {
		return a.rep, a.st, err
	}
	// The root recomputed from every leaf must be the signed one
	// (RFC 6962 section 2.1).
	root, rerr := a.rng.GetRootHash(nil)
	if rerr != nil || !bytes.Equal(root, cp.Hash[:]) {
		return a.rep, a.st, fmt.Errorf("witness: audit: root of %d entries %x, checkpoint %s: %w", a.rng.End(), root, cp.Hash, ErrRootMismatch)
	}
	a.rep.RootMatches = true
	if a.st.Tripped && a.st.TripAt > 0 {
		a.disc(Discrepancy{Index: a.st.TripAt, Kind: DiscTripUnlogged, Detail: "the recomputed circuit breaker tripped here and no alarm is logged since (the witnesses' breaker configuration may differ)"})
		a.rep.Total = a.st.Discrepancies
		a.st.TripAt = 0 // reported once, not again by a resumed audit
	}
	return a.rep, a.st, nil
}

// restore loads prev, checking its checkpoint with the log key.
func (a *auditor) restore(prev *AuditState, lv note.Verifier, trusted *Checkpoint) error {
	bad := func(what string, err error) error {
		return fmt.Errorf("witness: audit state: %s: %w: %v", what, ErrState, err)
	}
	cp, err := ParseCheckpoint([]byte(prev.Checkpoint), a.cfg.Origin, lv)
	if err != nil {
		return bad("checkpoint", err)
	}
	if prev.Next > cp.Size {
		return bad("position", fmt.Errorf("next %d beyond checkpoint %d", prev.Next, cp.Size))
	}
	if err := a.fold.UnmarshalJSON(prev.Fold); err != nil {
		return bad("fold", err)
	}
	if a.fold.Next() != prev.Next {
		return bad("fold", fmt.Errorf("fold at %d, state at %d", a.fold.Next(), prev.Next))
	}
	a.br = &Breaker{}
	if err := a.br.UnmarshalJSON(prev.Breaker); err != nil {
		return bad("breaker", err)
	}
	if err := a.restoreCoordinator(prev); err != nil {
		return bad("coordinator", err)
	}
	if a.rng, err = rangeFactory.NewRange(0, prev.Next, prev.Range); err != nil {
		return bad("range", err)
	}
	*trusted = cp
	st := *prev
	if st.Counts == nil {
		st.Counts = map[string]int{}
	}
	a.st = &st
	return nil
}

func (a *auditor) save() error {
	// The coordinator replay's events and the fold are the large parts of
	// the state: encode them on two cores.
	var cj []byte
	var cerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		cj, cerr = json.Marshal(a.events)
	}()
	fj, ferr := a.fold.MarshalJSON()
	<-done
	if ferr != nil {
		return fmt.Errorf("witness: audit: save fold: %w", ferr)
	}
	if cerr != nil {
		return fmt.Errorf("witness: audit: save coordinator: %w", cerr)
	}
	bj, err := a.br.MarshalJSON()
	if err != nil {
		return fmt.Errorf("witness: audit: save breaker: %w", err)
	}
	a.st.Next = a.fold.Next()
	a.st.Range = a.rng.Hashes()
	a.st.Fold, a.st.Breaker, a.st.Coordinator = fj, bj, cj
	return nil
}

func (a *auditor) disc(d Discrepancy) {
	a.rep.Discrepancies = append(a.rep.Discrepancies, d)
	a.st.Discrepancies++
	a.st.Counts[d.Kind]++
	a.cfg.Logger.Warn("audit: discrepancy", "index", d.Index, "kind", d.Kind, "detail", d.Detail)
}

// auditBatch is how many entries are parsed and verified together.
const auditBatch = 1024

// pending is one entry of a batch.
type pending struct {
	index uint64
	data  []byte
	e     *attest.Entry
	err   error // parse error
	v     *attest.Verifier
	verr  error // signer error
	serr  error // signature error
}

// replay reads the entries after the fold's position in batches: parse in
// parallel, find each signer in log order (enrolments earlier in the batch
// count, Fold.Signer's tentative view), verify in parallel, then fold in
// log order. A reader goroutine fetches the next batches (bundles checked
// against the tree) while the current one is processed.
func (a *auditor) replay(ctx context.Context, cp Checkpoint) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan []pending, 2)
	var readErr error
	go func() {
		defer close(batches)
		batch := make([]pending, 0, auditBatch)
		send := func() error {
			// Parsing needs no state: it overlaps the folding of the
			// batch before.
			a.work(batch, func(p *pending) {
				p.e, p.err = attest.Parse(p.data, attest.ParseOptions{})
			})
			select {
			case batches <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]pending, 0, auditBatch)
			return nil
		}
		err := a.f.EntriesAt(ctx, cp, a.fold.Next(), cp.Size, func(i uint64, data []byte) error {
			batch = append(batch, pending{index: i, data: bytes.Clone(data)})
			if len(batch) == auditBatch {
				return send()
			}
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = send()
		}
		readErr = err
	}()
	for batch := range batches {
		if ctx.Err() != nil {
			continue // drain: the reader stops at its next send
		}
		a.process(batch)
		if a.cfg.Progress != nil {
			a.cfg.Progress(a.fold.Next(), cp.Size)
		}
	}
	// The reader has closed batches: readErr is set.
	err := readErr
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return fmt.Errorf("witness: audit: %w", err)
	}
	return nil
}

// work runs fn over the batch on the configured workers.
func (a *auditor) work(batch []pending, fn func(p *pending)) {
	var wg sync.WaitGroup
	n := min(a.cfg.Workers, len(batch))
	per := (len(batch) + n - 1) / n
	for w := 0; w < n; w++ {
		lo, hi := w*per, min((w+1)*per, len(batch))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				fn(&batch[i])
			}
		}()
	}
	wg.Wait()
}

// process verifies and folds a parsed batch.
func (a *auditor) process(batch []pending) {
	// Signers in log order: an enrolment earlier in the batch enrols its
	// key for the entries after it (Fold.Signer's tentative view).
	tentative := map[string]*foldKey{}
	view := func(id string) (*foldKey, bool) { k, ok := tentative[id]; return k, ok }
	for i := range batch {
		p := &batch[i]
		if p.err != nil {
			continue
		}
		p.v, _, p.verr = a.fold.Signer(p.e, view)
		if en, ok := p.e.Value.(*attest.Enrolment); ok && p.verr == nil {
			if _, known := tentative[en.KeyID]; !known {
				tentative[en.KeyID] = &foldKey{Enrolment: *en, Index: p.index}
			}
		}
	}
	a.work(batch, func(p *pending) {
		if p.err == nil && p.verr == nil {
			p.serr = p.e.Verify(p.v)
		}
	})
	for i := range batch {
		a.apply(&batch[i])
	}
}

// apply folds one verified entry and checks what it claims.
func (a *auditor) apply(p *pending) {
	// RFC 6962 section 2.1: the leaf hash of the entry.
	leaf := tlog.RecordHash(p.data)
	if err := a.rng.Append(leaf[:], nil); err != nil {
		a.cfg.Logger.Error("audit: append leaf", "index", p.index, "err", err)
	}
	i := p.index
	skip := func(kind, key, detail string) {
		a.disc(Discrepancy{Index: i, Kind: kind, KeyID: key, Detail: detail})
		if err := a.fold.Skip(i); err != nil {
			a.cfg.Logger.Error("audit: skip", "index", i, "err", err)
		}
	}
	switch {
	case p.err != nil:
		skip(DiscBadEntry, "", p.err.Error())
		return
	case p.serr != nil:
		skip(DiscBadSignature, p.e.KeyID, p.serr.Error())
		return
	case p.verr != nil:
		skip(DiscUnauthorized, p.e.KeyID, p.verr.Error())
		return
	}
	e := p.e
	for _, k := range coord.IndexKeys(e) {
		a.byNVR[k.NVR] = append(a.byNVR[k.NVR], i)
	}
	if al, ok := e.Value.(*attest.Alarm); ok {
		// The fold refuses alarms of keys that are not witnesses; the
		// breaker's state decides whether the replay re-derives it.
		if !a.st.Tripped {
			a.disc(Discrepancy{Index: i, Kind: DiscAlarmUnderived, KeyID: e.KeyID, Detail: fmt.Sprintf("alarm %q logged while the recomputed breaker is not tripped (the witness's breaker configuration may differ)", al.Reason)})
		}
		a.st.TripAt = 0
	}
	cerr := a.coordinate(i, e)
	ch, err := a.fold.Apply(i, e)
	if err != nil {
		// The fold's refusal is the report; the coordinator's, if any,
		// says the same (a second close, a lease of an unknown job).
		a.disc(Discrepancy{Index: i, Kind: DiscContradicts, KeyID: e.KeyID, Detail: err.Error()})
		return
	}
	if cerr != nil {
		a.disc(Discrepancy{Index: i, Kind: DiscCoordinatorRule, Build: a.coordBuild(e), KeyID: e.KeyID, Detail: cerr.Error()})
	}
	if ch.Build != nil {
		a.final(i, *ch.Build)
	}
	switch v := e.Value.(type) {
	case *attest.JobClose:
		if _, ok := a.closed[v.Build]; !ok {
			a.closed[v.Build] = i
		}
	case *attest.Attestation:
		// A result after the close changes no final outcome, so final
		// does not see it: report it here. Closes of earlier runs come
		// from the fold, once per build.
		if _, ok := a.closed[v.Build]; !ok && !a.looked[v.Build] {
			a.looked[v.Build] = true
			if rec, ok := a.fold.Record(v.Build); ok && rec.Closed {
				a.closed[v.Build] = rec.ClosedAt
			}
		}
		if at, ok := a.closed[v.Build]; ok && !v.Official && at < i && !a.reports[i] {
			a.reports[i] = true
			b := v.Build
			a.disc(Discrepancy{Index: i, Kind: DiscNotCounted, Build: &b, KeyID: e.KeyID, Detail: fmt.Sprintf("result logged after the job closed at %d: %v", at, ErrLate)})
		}
	}
	if ch.Clear != nil && a.st.Tripped {
		if err := a.br.Clear(*ch.Clear, i); err == nil {
			a.st.Tripped, a.st.TripAt = false, 0
		}
	}
	if ch.Verdict != nil {
		a.verdict(i, e.KeyID, ch.Verdict)
	}
}

// final recomputes the final outcome of a build whose record changed at
// index, feeds it to the breaker and reports the results that may not
// vote.
func (a *auditor) final(index uint64, b attest.BuildID) {
	rec, ok := a.fold.Record(b)
	if !ok {
		return
	}
	o, err := Agree(rec, a.pol)
	if err != nil {
		a.disc(Discrepancy{Index: index, Kind: DiscContradicts, Build: &b, Detail: err.Error()})
		return
	}
	for _, ig := range o.Ignored {
		if a.reports[ig.Index] {
			continue
		}
		a.reports[ig.Index] = true
		a.disc(Discrepancy{Index: ig.Index, Kind: DiscNotCounted, Build: &b, KeyID: ig.KeyID, Detail: ig.Err.Error()})
	}
	alarm, err := a.br.Observe(o)
	if err != nil {
		a.cfg.Logger.Error("audit: breaker", "index", index, "err", err)
		return
	}
	if alarm != nil {
		a.st.Tripped, a.st.TripAt = true, index
	}
}

// verdict compares a witness's verdict, logged at index, with the
// agreement recomputed on the log as it stood at the verdict's tree size.
func (a *auditor) verdict(index uint64, keyID string, v *attest.Verdict) {
	a.rep.Verdicts++
	a.st.Verdicts++
	b := v.Build
	d := Discrepancy{Index: index, Build: &b, KeyID: keyID}
	if v.TreeSize > index {
		d.Kind, d.Detail = DiscVerdictFuture, fmt.Sprintf("verdict at index %d claims tree size %d", index, v.TreeSize)
		a.disc(d)
		return
	}
	rec, ok := a.fold.Record(b)
	if !ok {
		d.Kind, d.Detail = DiscVerdictNoBuild, "no job or result of this build is logged"
		a.disc(d)
		return
	}
	at := recordAt(rec, v.TreeSize)
	o, err := Agree(at, a.pol)
	if err != nil {
		d.Kind, d.Detail = DiscContradicts, err.Error()
		a.disc(d)
		return
	}
	if !at.Closed && v.Verdict != VerdictInsufficient {
		d.Kind, d.Detail = DiscVerdictEarly, fmt.Sprintf("verdict %q at tree size %d, the job closed at %s", v.Verdict, v.TreeSize, closedAt(rec))
		a.disc(d)
		return
	}
	if diffs := compareVerdict(v, o); len(diffs) > 0 {
		d.Kind, d.Detail = DiscVerdictDiffers, fmt.Sprintf("verdict at tree size %d: %v", v.TreeSize, diffs)
		a.disc(d)
	}
}

func closedAt(rec BuildRecord) string {
	if !rec.Closed {
		return "no index yet"
	}
	return fmt.Sprintf("index %d", rec.ClosedAt)
}

// checkIndex compares the log's NVR index with the entries of this run
// (from the run's first index).
func (a *auditor) checkIndex(ctx context.Context, from uint64) error {
	client, err := api.NewClient(api.ClientConfig{URL: a.cfg.URL, HTTP: a.cfg.Client})
	if err != nil {
		return fmt.Errorf("witness: audit: %w: %w", ErrConfig, err)
	}
	to := a.fold.Next()
	for _, nvr := range slices.Sorted(maps.Keys(a.byNVR)) {
		resp, err := client.Lookup(ctx, nvr)
		if err != nil {
			return fmt.Errorf("witness: audit: lookup %s: %w: %v", nvr, ErrFetch, err)
		}
		listed := map[uint64]bool{}
		for _, e := range resp.Entries {
			listed[e.Index] = true
		}
		want := map[uint64]bool{}
		for _, i := range a.byNVR[nvr] {
			want[i] = true
			if !listed[i] {
				a.disc(Discrepancy{Index: i, Kind: DiscIndexHides, Detail: fmt.Sprintf("GET /lookup/%s does not list entry %d", nvr, i)})
			}
		}
		for _, e := range resp.Entries {
			if e.Index >= from && e.Index < to && !want[e.Index] {
				a.disc(Discrepancy{Index: e.Index, Kind: DiscIndexWrong, Detail: fmt.Sprintf("GET /lookup/%s lists entry %d, which is not about %s", nvr, e.Index, nvr)})
			}
		}
	}
	return nil
}

// AuditExit maps Audit's result to the exit code of `skyline audit`: 0
// clean, 1 discrepancies, 3 verification failure, 4 usage.
func AuditExit(rep *AuditReport, err error) int {
	switch {
	case errors.Is(err, ErrConfig), errors.Is(err, ErrState):
		return ExitUsage
	case err != nil:
		return ExitVerification
	case rep.Total > 0:
		return ExitRejected
	}
	return ExitReproduced
}
