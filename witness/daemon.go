package witness

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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
)

// Submitter sends a signed entry (a verdict or an alarm) to a log's write
// API (`skyline serve` POST /submit; the api package's client implements
// it) and returns its index. Sending the same bytes again must return the
// same index (the log deduplicates).
type Submitter interface {
	SubmitEntry(ctx context.Context, envelope []byte) (uint64, error)
}

// Env is what the daemon takes from its process besides the Config.
type Env struct {
	// Logger receives operational events. Default: discard.
	Logger *slog.Logger
	// Registerer receives the witness's Prometheus metrics. Default: none.
	Registerer prometheus.Registerer
	// Client fetches from logs. Default: a client with Config.Timeout.
	Client *http.Client
	// Submitter returns the submitter of a log's verdicts and alarms.
	// Required for logs whose Submit is on.
	Submitter func(LogConfig) (Submitter, error)
}

// Daemon is `skyline witness`: it follows logs, refuses forks, rollbacks
// and bad proofs (durably), verifies and folds every entry, computes
// agreement, reputation and the circuit breaker, cosigns checkpoints
// (C2SP tlog-cosignature) for add-checkpoint callers (C2SP tlog-witness),
// and signs and submits verdicts and alarms (docs/witness.md).
type Daemon struct {
	cfg      Config
	logger   *slog.Logger
	metrics  *metrics
	store    *Store
	cosigner *Cosigner
	verdicts *attest.Signer
	logs     []*logFollower
	byOrigin map[string]*logFollower
}

// NewDaemon loads the keys and state named by cfg and returns the daemon.
func NewDaemon(cfg Config, env Env) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	if env.Client == nil {
		env.Client = &http.Client{Timeout: cfg.Timeout}
	}
	cs, err := attest.LoadSigner(cfg.CosignKey)
	if err != nil {
		return nil, fmt.Errorf("witness: cosign key: %w", err)
	}
	cosigner, err := NewCosignerFromSigner(cfg.Name, cs)
	if err != nil {
		return nil, err
	}
	vs, err := attest.LoadSigner(cfg.VerdictKey)
	if err != nil {
		return nil, fmt.Errorf("witness: verdict key: %w", err)
	}
	if vs.KeyID() == cs.KeyID() {
		return nil, fmt.Errorf("witness: the verdict key is the cosigning key: %w", ErrConfig)
	}
	st, err := OpenStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, logger: env.Logger, metrics: newMetrics(env.Registerer), store: st, cosigner: cosigner, verdicts: vs, byOrigin: map[string]*logFollower{}}
	for _, lc := range cfg.Logs {
		lf, err := d.newLogFollower(lc, env)
		if err != nil {
			return nil, err
		}
		d.logs = append(d.logs, lf)
		d.byOrigin[lc.Origin] = lf
	}
	return d, nil
}

// Cosigner returns the witness's cosigner (its VerifierKey is what logs and
// release gates configure).
func (d *Daemon) Cosigner() *Cosigner { return d.cosigner }

// VerdictKeyID returns the key id of the verdict key.
func (d *Daemon) VerdictKeyID() string { return d.verdicts.KeyID() }

// Latest returns the latest checkpoint cosigned for the log named name.
func (d *Daemon) Latest(name string) (Checkpoint, bool) {
	for _, lf := range d.logs {
		if lf.name == name {
			return lf.w.Latest(), true
		}
	}
	return Checkpoint{}, false
}

// AddCheckpoint serves one C2SP tlog-witness add-checkpoint request body and
// returns the cosignature line.
func (d *Daemon) AddCheckpoint(body []byte) ([]byte, error) {
	oldSize, proof, cp, err := ParseAddCheckpoint(body)
	if err != nil {
		return nil, err
	}
	origin, _, _ := bytes.Cut(cp, []byte("\n"))
	lf := d.byOrigin[string(origin)]
	if lf == nil {
		return nil, fmt.Errorf("witness: origin %q: %w", trunc(string(origin)), ErrUnknownLog)
	}
	return lf.w.AddCheckpoint(oldSize, proof, cp)
}

// Run polls every log each PollInterval until ctx is done: fetch and check
// the checkpoint, read, verify and fold the new entries, submit verdicts
// and alarms. It returns nil when ctx is cancelled.
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, lf := range d.logs {
		wg.Go(func() {
			t := time.NewTicker(d.cfg.PollInterval)
			defer t.Stop()
			for {
				if err := lf.step(ctx); err != nil && ctx.Err() == nil {
					d.logger.Warn("witness: round failed", "log", lf.name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// Step runs one round for every log and returns the errors joined.
func (d *Daemon) Step(ctx context.Context) error {
	var errs []error
	for _, lf := range d.logs {
		if err := lf.step(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logFollower is the daemon's work on one log.
type logFollower struct {
	d      *Daemon
	name   string
	cfg    LogConfig
	w      *logWitness
	submit Submitter
	coord  *attest.Verifier

	catchUp sync.Mutex // one catch-up at a time
	mu      sync.Mutex // guards what follows; held per batch, so notices stay served
	fold    *Fold
	rep     *Reputation
	brk     *Breaker
	aux     auxState
	// Decided in this round, signed at its end (signPending).
	toSign []attest.BuildID
	queued map[string]bool
	alarms []attest.Alarm
}

// auxState is the part of the persisted state that is the daemon's own.
type auxState struct {
	// Outbox holds signed verdicts and alarms not yet acknowledged by the
	// log; they are persisted before they are sent, so a resend after a
	// crash is the same bytes (which the log deduplicates).
	Outbox []outboxItem `json:"outbox"`
	// Signed maps a build to the verdict last signed for it, so that an
	// unchanged recomputation is not logged twice.
	Signed map[string]string `json:"signed"`
	// Withheld lists builds whose positive verdict the breaker withholds.
	Withheld map[string]attest.BuildID `json:"withheld"`
}

type outboxItem struct {
	Kind     string `json:"kind"` // verdict or alarm
	Envelope []byte `json:"envelope"`
}

// snapshot is the JSON of a log's fold file.
type snapshot struct {
	Fold       json.RawMessage `json:"fold"`
	Reputation json.RawMessage `json:"reputation"`
	Breaker    json.RawMessage `json:"breaker"`
	Aux        auxState        `json:"aux"`
}

func (d *Daemon) newLogFollower(lc LogConfig, env Env) (*logFollower, error) {
	v, err := note.NewVerifier(lc.LogKey)
	if err != nil {
		return nil, fmt.Errorf("witness: log %s: %w: %v", lc.Name, ErrConfig, err)
	}
	f, err := NewFollower(FollowerConfig{URL: lc.URL, Origin: lc.Origin, Verifier: v, Client: env.Client}, EmptyTree(lc.Origin))
	if err != nil {
		return nil, err
	}
	coord, err := attest.LoadVerifier(lc.CoordinatorKey)
	if err != nil {
		return nil, fmt.Errorf("witness: log %s: coordinator key: %w", lc.Name, err)
	}
	if lc.CoordinatorKeyID != "" && lc.CoordinatorKeyID != coord.KeyID() {
		return nil, fmt.Errorf("witness: log %s: coordinator key id is %s, configured %s: %w", lc.Name, coord.KeyID(), lc.CoordinatorKeyID, ErrConfig)
	}
	w, err := newLogWitness(lc.Name, f, d.store, d.cosigner, d.logger, d.metrics)
	if err != nil {
		return nil, err
	}
	lf := &logFollower{d: d, name: lc.Name, cfg: lc, w: w, coord: coord}
	if lc.Submits() {
		if env.Submitter == nil {
			return nil, fmt.Errorf("witness: log %s: submit is on but there is no submitter: %w", lc.Name, ErrConfig)
		}
		if lf.submit, err = env.Submitter(lc); err != nil {
			return nil, fmt.Errorf("witness: log %s: submitter: %w", lc.Name, err)
		}
	}
	if err := lf.load(); err != nil {
		return nil, err
	}
	return lf, nil
}

// load restores the fold, reputation, breaker and outbox, or starts empty.
func (lf *logFollower) load() error {
	cfg := lf.d.cfg
	lf.fold = NewFold(lf.coord)
	var err error
	if lf.rep, err = NewReputation(cfg.ReputationWindow, cfg.MaxOutliers); err != nil {
		return err
	}
	if lf.brk, err = NewBreaker(cfg.Breaker); err != nil {
		return err
	}
	lf.aux = auxState{Signed: map[string]string{}, Withheld: map[string]attest.BuildID{}}
	data, err := lf.d.store.LoadFold(lf.name)
	if err != nil || data == nil {
		return err
	}
	var s snapshot
	if err := decodeStrict(data, &s); err != nil {
		return fmt.Errorf("witness: log %s: fold state: %w", lf.name, err)
	}
	if err := lf.fold.UnmarshalJSON(s.Fold); err != nil {
		return err
	}
	if err := lf.rep.UnmarshalJSON(s.Reputation); err != nil {
		return err
	}
	if err := lf.brk.UnmarshalJSON(s.Breaker); err != nil {
		return err
	}
	if s.Aux.Signed == nil || s.Aux.Withheld == nil {
		return fmt.Errorf("witness: log %s: fold state without aux maps: %w", lf.name, ErrState)
	}
	lf.aux = s.Aux
	if _, tripped := lf.brk.Tripped(); tripped {
		lf.d.metrics.tripped(lf.name, true)
	}
	return nil
}

// save persists the fold, reputation, breaker and outbox. Callers hold mu.
func (lf *logFollower) save() error {
	return lf.saveFold(lf.fold.MarshalJSON())
}

// saveFold is save with the fold's JSON (or the error making it) made
// already. Callers hold mu.
func (lf *logFollower) saveFold(foldJSON []byte, err error) error {
	if err != nil {
		return err
	}
	rep, err := lf.rep.MarshalJSON()
	if err != nil {
		return err
	}
	brk, err := lf.brk.MarshalJSON()
	if err != nil {
		return err
	}
	aux, err := json.Marshal(lf.aux)
	if err != nil {
		return fmt.Errorf("witness: log %s: snapshot: %w", lf.name, err)
	}
	// A snapshot's JSON, joined by hand: json.Marshal of the struct would
	// validate and copy the megabytes of fold state again, for the same
	// bytes.
	data := make([]byte, 0, len(foldJSON)+len(rep)+len(brk)+len(aux)+64)
	data = append(data, `{"fold":`...)
	data = append(data, foldJSON...)
	data = append(data, `,"reputation":`...)
	data = append(data, rep...)
	data = append(data, `,"breaker":`...)
	data = append(data, brk...)
	data = append(data, `,"aux":`...)
	data = append(data, aux...)
	data = append(data, '}')
	return lf.d.store.SaveFold(lf.name, data)
}

// notices returns the reputation notices about a builder key.
func (lf *logFollower) notices(keyID string) []Notice {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	var out []Notice
	for _, n := range lf.rep.Flagged() {
		if n.Kind == SubjectKey && n.ID == keyID {
			out = append(out, n)
		}
	}
	return out
}

// step is one round: poll the checkpoint, catch up, send the outbox.
func (lf *logFollower) step(ctx context.Context) error {
	_, perr := lf.w.Poll(ctx)
	if perr != nil && (errors.Is(perr, ErrRefused) || refusalKind(perr) != "") {
		return perr // a refused log is not read further
	}
	lf.unconvincing(perr)
	if err := lf.CatchUp(ctx); err != nil {
		lf.unconvincing(err)
		return errors.Join(perr, err)
	}
	return errors.Join(perr, lf.flush(ctx))
}

// unconvincing raises an error-level event and counts it when the log
// served data that does not match its signed tree, or a checkpoint not
// signed by its key: not signed evidence against the log (a broken cache or
// a machine in the middle could do it), so nothing is persisted, but an
// operator must look.
func (lf *logFollower) unconvincing(err error) {
	for _, k := range []struct {
		err  error
		kind string
	}{{ErrBadTile, "bad-tile"}, {ErrHiddenEntry, "hidden-entry"}, {ErrBadSignature, "bad-signature"}, {ErrBadCheckpoint, "bad-checkpoint"}} {
		if errors.Is(err, k.err) {
			lf.d.metrics.refused(lf.name, k.kind)
			lf.d.logger.Error("witness: log served data that does not match its signed tree or key", "log", lf.name, "kind", k.kind, "err", err)
			return
		}
	}
}

// fetched is one batch of raw entries.
type fetched struct {
	start   uint64
	entries [][]byte
	err     error
}

// prepared is one batch of entries parsed and signature-checked.
type prepared struct {
	start uint64
	items []item
	err   error
}

// CatchUp reads, verifies and folds every entry of the latest cosigned
// checkpoint not folded yet, then persists the state. It is a pipeline:
// entry bundles are fetched up to four batches ahead; each batch is parsed
// and its signatures verified on every core while the batch before it is
// folded, in log order.
func (lf *logFollower) CatchUp(ctx context.Context) error {
	lf.catchUp.Lock()
	defer lf.catchUp.Unlock()
	cp := lf.w.Latest()
	lf.mu.Lock()
	start := lf.fold.Next()
	ring := lf.fold.keyring() // the fold changes only under catchUp, held here
	lf.mu.Unlock()
	if start >= cp.Size {
		return nil
	}
	// The stages are cancelled, then waited for, whenever CatchUp returns.
	var stages sync.WaitGroup
	defer stages.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan fetched, 4)
	stages.Go(func() {
		defer close(batches)
		for s := start; s < cp.Size; {
			end := min(cp.Size, s+uint64(lf.d.cfg.BatchSize))
			if s == start {
				// The first batch ends with its first entry bundle, so
				// that verification starts after one fetch, not several.
				end = min(end, (s/log.TileWidth+1)*log.TileWidth)
			}
			b := fetched{start: s, entries: make([][]byte, 0, end-s)}
			b.err = lf.w.follower.EntriesAt(ctx, cp, s, end, func(_ uint64, e []byte) error {
				b.entries = append(b.entries, bytes.Clone(e))
				return nil
			})
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
			s = end
		}
	})
	ready := make(chan prepared, 1)
	stages.Go(func() {
		defer close(ready)
		for b := range batches {
			p := prepared{start: b.start, err: b.err}
			if b.err == nil {
				p.items = prepare(ring, b.start, b.entries)
			}
			select {
			case ready <- p:
			case <-ctx.Done():
				return
			}
			if b.err != nil {
				return
			}
		}
	})
	var ferr error
	for p := range ready {
		if p.err != nil {
			ferr = p.err
			break
		}
		lf.mu.Lock()
		lf.apply(p.start, p.items)
		lf.mu.Unlock()
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	// The fold's JSON, most of the snapshot, is made while the verdicts
	// are signed: both only read the fold.
	var foldJSON []byte
	var merr error
	var marshal sync.WaitGroup
	marshal.Go(func() { foldJSON, merr = lf.fold.MarshalJSON() })
	lf.signPending(lf.fold.Next())
	marshal.Wait()
	if err := lf.saveFold(foldJSON, merr); err != nil {
		return errors.Join(ferr, err)
	}
	return ferr
}

// item is one entry on its way through the catch-up.
type item struct {
	e   *attest.Entry
	ver *attest.Verifier
	src int64 // enrolment index of the key, -1 for the coordinator
	err error
}

// prepare parses the entries at start.. and verifies each one's signature
// with the key ring names, in parallel. Which key must have signed an
// entry depends on the enrolments before it, including those of batches
// not folded yet: ring holds them tentatively, and apply checks its answer
// against the fold's.
func prepare(ring *Fold, start uint64, raws [][]byte) []item {
	items := make([]item, len(raws))
	fanOut(len(raws), func(i int) {
		items[i].e, items[i].err = attest.Parse(raws[i], attest.ParseOptions{})
	})
	for i := range items {
		it := &items[i]
		if it.err != nil {
			continue
		}
		if it.ver, it.src, it.err = ring.Signer(it.e, nil); it.err != nil {
			continue
		}
		if en, ok := it.e.Value.(*attest.Enrolment); ok {
			ring.enrol(start+uint64(i), en)
		}
	}
	fanOut(len(items), func(i int) {
		if it := &items[i]; it.ver != nil {
			it.err = it.e.Verify(it.ver)
		}
	})
	return items
}

// apply folds the prepared entries at start.., in order. Callers hold mu.
func (lf *logFollower) apply(start uint64, items []item) {
	for i := range items {
		index := start + uint64(i)
		it := &items[i]
		if it.e != nil {
			// The fold, as it stands at index, says who must have signed:
			// the signature was checked ahead with that key unless the
			// keyring's enrolment of it was refused (then it is checked
			// again now).
			ver, src, err := lf.fold.Signer(it.e, nil)
			switch {
			case err != nil:
				it.err = err
			case it.ver == nil || src != it.src:
				it.err = it.e.Verify(ver)
			}
		}
		if it.err != nil {
			lf.bad(index, it.err)
			if err := lf.fold.Skip(index); err != nil {
				lf.d.logger.Error("witness: fold out of step", "log", lf.name, "err", err)
			}
			continue
		}
		ch, err := lf.fold.Apply(index, it.e)
		if err != nil {
			lf.bad(index, err)
			continue
		}
		lf.react(index, ch, it.e)
	}
	lf.d.metrics.folded(lf.name, len(items))
}

// bad records an entry that has no effect.
func (lf *logFollower) bad(index uint64, err error) {
	reason := "contradicts"
	switch {
	case errors.Is(err, attest.ErrSignature), errors.Is(err, attest.ErrKeyID):
		reason = "signature"
	case errors.Is(err, ErrSigner):
		reason = "signer"
	case !errors.Is(err, ErrEntry):
		reason = "malformed"
	}
	lf.d.metrics.badEntry(lf.name, reason)
	lf.d.logger.Warn("witness: entry has no effect", "log", lf.name, "index", index, "reason", reason, "err", err)
}

// react acts on what folding an entry changed. Verdicts and alarms are
// signed at the end of the round (signPending), once every entry of the
// checkpoint is folded: a witness replaying a log it already reported on
// (its state lost) then finds its own verdicts first and does not sign
// them again.
func (lf *logFollower) react(index uint64, ch Change, e *attest.Entry) {
	switch {
	case ch.Build != nil:
		lf.observe(*ch.Build)
	case ch.Clear != nil:
		if err := lf.brk.Clear(*ch.Clear, index); err != nil {
			lf.d.logger.Warn("witness: alarm clear not applied", "log", lf.name, "index", index, "err", err)
			return
		}
		lf.d.metrics.tripped(lf.name, false)
		lf.d.logger.Info("witness: circuit breaker cleared", "log", lf.name, "index", index, "reason", ch.Clear.Reason)
		for _, k := range slices.Sorted(maps.Keys(lf.aux.Withheld)) {
			lf.queue(lf.aux.Withheld[k])
			delete(lf.aux.Withheld, k)
		}
	case ch.Verdict != nil && e.KeyID == lf.d.verdicts.KeyID():
		lf.aux.Signed[buildKey(ch.Verdict.Build)] = verdictSum(ch.Verdict)
	}
	if a, ok := e.Value.(*attest.Alarm); ok && e.KeyID == lf.d.verdicts.KeyID() {
		lf.alarms = slices.DeleteFunc(lf.alarms, func(p attest.Alarm) bool { return p == *a })
	}
}

// observe computes the final outcome of a closed build and feeds it to
// reputation and the breaker, in log order; a trip queues an alarm. The
// build's verdict is queued for signPending.
func (lf *logFollower) observe(b attest.BuildID) {
	o, _, ok := lf.outcome(b)
	if !ok {
		return
	}
	notices, err := lf.rep.Observe(o)
	if err != nil {
		lf.d.logger.Error("witness: reputation", "log", lf.name, "err", err)
	}
	for _, n := range notices {
		lf.d.logger.Warn("witness: builder flagged", "log", lf.name, "kind", n.Kind, "id", n.ID, "outliers", n.Outliers, "message", n.Message)
	}
	alarm, err := lf.brk.Observe(o)
	if err != nil {
		lf.d.logger.Error("witness: breaker", "log", lf.name, "err", err)
	}
	if alarm != nil {
		lf.d.metrics.tripped(lf.name, true)
		lf.d.logger.Error("witness: ALARM: circuit breaker tripped", "log", lf.name, "reason", alarm.Reason, "rate", alarm.Rate)
		lf.alarms = append(lf.alarms, *alarm)
	}
	lf.queue(b)
}

// outcome returns the final outcome of a closed build.
func (lf *logFollower) outcome(b attest.BuildID) (Outcome, BuildRecord, bool) {
	rec, ok := lf.fold.Record(b)
	if !ok {
		return Outcome{}, rec, false
	}
	o, err := Agree(rec, lf.d.cfg.Policy)
	if err != nil {
		lf.d.logger.Error("witness: agreement failed", "log", lf.name, "nvr", b.NVR, "arch", b.Arch, "err", err)
		return Outcome{}, rec, false
	}
	return o, rec, o.Final
}

// queue marks a build's verdict for signing at the end of the round.
func (lf *logFollower) queue(b attest.BuildID) {
	k := buildKey(b)
	if lf.queued == nil {
		lf.queued = map[string]bool{}
	}
	if !lf.queued[k] {
		lf.queued[k] = true
		lf.toSign = append(lf.toSign, b)
	}
}

// verdictSum is what tells two verdicts of a build apart for re-signing.
func verdictSum(v *attest.Verdict) string { return v.Verdict + "/" + v.ResultSet + "/" + v.Official }

// signPending signs the queued alarms and verdicts, computed over the
// first treeSize entries, into the outbox: a verdict unless the breaker
// withholds it or it is the one already signed for the build. Callers hold
// mu.
func (lf *logFollower) signPending(treeSize uint64) {
	for _, a := range lf.alarms {
		lf.enqueue("alarm", attest.PayloadAlarm, &a)
	}
	lf.alarms = nil
	toSign := lf.toSign
	lf.toSign, lf.queued = nil, nil
	type signing struct {
		b   attest.BuildID
		v   attest.Verdict
		env []byte
		err error
	}
	var verdicts []signing
	for _, b := range toSign {
		o, _, ok := lf.outcome(b)
		if !ok {
			continue
		}
		g := lf.brk.Gate(o)
		k := buildKey(b)
		if g.Verdict == VerdictWithheld {
			lf.aux.Withheld[k] = b
			lf.d.logger.Warn("witness: positive verdict withheld while the breaker is tripped", "log", lf.name, "nvr", b.NVR, "arch", b.Arch)
			continue
		}
		v := g.Payload(treeSize)
		if lf.aux.Signed[k] == verdictSum(&v) {
			continue
		}
		verdicts = append(verdicts, signing{b: b, v: v})
	}
	// A catch-up decides many builds at once: their verdicts are signed on
	// every core (toSign holds each build once, so no signature depends on
	// another), then put in the outbox in order.
	fanOut(len(verdicts), func(i int) {
		s := &verdicts[i]
		s.env, s.err = attest.Sign(lf.d.verdicts, attest.PayloadVerdict, &s.v)
	})
	for _, s := range verdicts {
		if lf.enqueueSigned("verdict", s.env, s.err) {
			lf.aux.Signed[buildKey(s.b)] = verdictSum(&s.v)
			lf.d.logger.Info("witness: verdict", "log", lf.name, "nvr", s.b.NVR, "arch", s.b.Arch, "verdict", s.v.Verdict, "tree_size", treeSize)
		}
	}
}

// enqueue signs payload with the verdict key and puts it in the outbox.
func (lf *logFollower) enqueue(kind, payloadType string, payload any) bool {
	env, err := attest.Sign(lf.d.verdicts, payloadType, payload)
	return lf.enqueueSigned(kind, env, err)
}

// enqueueSigned puts an envelope signed with the verdict key (or the error
// signing it) in the outbox.
func (lf *logFollower) enqueueSigned(kind string, env []byte, err error) bool {
	if err != nil {
		lf.d.logger.Error("witness: sign", "log", lf.name, "kind", kind, "err", err)
		return false
	}
	if lf.submit != nil {
		lf.aux.Outbox = append(lf.aux.Outbox, outboxItem{Kind: kind, Envelope: env})
	}
	return true
}

// flush submits the outbox, oldest first, stopping at the first failure.
func (lf *logFollower) flush(ctx context.Context) error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	sent := 0
	var err error
	for _, it := range lf.aux.Outbox {
		var idx uint64
		if idx, err = lf.submit.SubmitEntry(ctx, it.Envelope); err != nil {
			err = fmt.Errorf("witness: log %s: submit %s: %w", lf.name, it.Kind, err)
			break
		}
		sent++
		lf.d.metrics.submitted(lf.name, it.Kind)
		lf.d.logger.Info("witness: submitted", "log", lf.name, "kind", it.Kind, "index", idx)
	}
	if sent == 0 {
		return err
	}
	lf.aux.Outbox = lf.aux.Outbox[sent:]
	return errors.Join(err, lf.save())
}

// fanOut calls fn(0..n-1) on GOMAXPROCS goroutines, which take small runs
// of indices as they go, so that a descheduled goroutine does not hold the
// others back at the end.
func fanOut(n int, fn func(i int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	const run = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(run)) - run
				if lo >= n {
					return
				}
				for i := lo; i < min(n, lo+run); i++ {
					fn(i)
				}
			}
		})
	}
	wg.Wait()
}
