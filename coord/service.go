package coord

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
)

// Errors of the Service, checked with errors.Is, on top of the
// Coordinator's, attest's and log's.
var (
	// ErrRole: the signer is enrolled, but not with the role the entry or
	// request needs (builder for results, importer for official builds,
	// witness for verdicts and alarms, admin for alarm clearings and admin
	// requests).
	ErrRole = errors.New("key not enrolled with the role this needs")
	// ErrNotSubmittable: the entry kind is made by the coordinator itself
	// (enrolment, revocation, job, lease, lease end, job close) and cannot
	// be submitted.
	ErrNotSubmittable = errors.New("entry kind is made by the coordinator, not submitted")
)

// ServiceConfig configures a Service. Log, Signer and a Coordinator config
// with the log's history are all it needs.
type ServiceConfig struct {
	// Log is the opened log, whose Config.Indexer must be Indexer. Required.
	Log *log.Log
	// Signer is the coordinator key: it signs enrolments, revocations, jobs,
	// leases, lease ends and job closes. Required.
	Signer *attest.Signer
	// Coord configures the coordinator; its Authority is set to Signer's
	// key id. Default: the Config defaults.
	Coord Config
	// AdminKeys are the keys allowed to sign admin requests besides keys
	// enrolled with the admin role. Default none.
	AdminKeys []*attest.Verifier
	// TickInterval is how often Run expires leases and closes jobs.
	// Default 10s.
	TickInterval time.Duration
	// MaxParallel bounds the submissions checked (parsed, verified, held)
	// and applied at once; appending to the log is not bounded by it, so
	// group commit still sees every waiting entry. Bounding the CPU-bound
	// parts keeps a thousand waiting handlers from convoying on the
	// coordinator's lock. Default 4 * GOMAXPROCS.
	MaxParallel int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives operational events. Default: discard.
	Logger *slog.Logger
	// IndexCache, when set, is the cache whose Index method is the log's
	// Indexer: submissions prime it to spare the log a second parse.
	// Default nil: the log's Indexer parses every entry itself.
	IndexCache *IndexCache
}

// SubmitResult places a submitted entry in the log.
type SubmitResult struct {
	Index     uint64
	Duplicate bool // the envelope was already in the log: Index is its entry
}

// Notice is what the witnesses concluded about one of a builder's results
// (mirrors builder.Notice, which the API client converts it to).
type Notice struct {
	Index     uint64         `json:"index"` // log index of the verdict
	Kind      string         `json:"kind"`  // "outlier" or "agreed"
	Build     attest.BuildID `json:"build"`
	Verdict   string         `json:"verdict,omitempty"`
	ResultSet string         `json:"result_set,omitempty"` // the builder's
	Expected  string         `json:"expected,omitempty"`   // the agreeing group's
	At        time.Time      `json:"at"`
}

// maxNotices bounds the notices kept per key: the newest are kept.
const maxNotices = 256

// Service is the write path of `skyline serve`: it checks submitted entries
// and API decisions against the coordinator, signs the coordinator's
// decisions, appends them to the log and folds them into the coordinator
// (docs/serve.md). It is safe for concurrent use.
type Service struct {
	cfg   ServiceConfig
	log   *log.Log
	coord *Coordinator
	admin map[string]*attest.Verifier
	cpu   chan struct{} // MaxParallel tokens

	// keys holds the enrolled, unrevoked keys (key id -> *enrolled), kept
	// in step with the coordinator by apply and afterCommit, so that the
	// hot path checks a signature without taking the coordinator's lock.
	keys sync.Map

	mu      sync.Mutex
	notices map[string][]Notice // builder key id -> notices
}

// enrolled is an enrolled, unrevoked key.
type enrolled struct {
	v    *attest.Verifier
	role string
}

// Indexer is the log.Indexer of skyline entries: the deduplication key is
// SHA-256(payload) || signer key id (ARCHITECTURE.md, "a resubmitted
// envelope (same payload, same signer) returns its existing index"), and
// the entries are indexed as IndexKeys says.
func Indexer(entry []byte) ([]byte, []log.IndexKey, error) {
	e, err := attest.Parse(entry, attest.ParseOptions{})
	if err != nil {
		return nil, nil, err
	}
	return indexEntry(e)
}

// IndexCache is Indexer with a shortcut for the entries the Service has
// just parsed: Submit primes it with the parse it already did, so that the
// log's call of the indexer does not parse the envelope a second time. Use
// its Index method as the log's Indexer and pass the cache to the Service.
//
// The cache is keyed by a seeded 64-bit hash of the entry, not a SHA-256
// of it (two SHA-256 passes over every submission cost more than the
// lookup saves on a small entry); a hit counts only when the stored entry
// is the same bytes, and a collision merely costs the fallback parse.
type IndexCache struct {
	seed   maphash.Seed
	once   sync.Once
	primed sync.Map // maphash(entry) -> *primedIndex
}

type primedIndex struct {
	entry []byte
	dedup []byte
	keys  []log.IndexKey
}

func (x *IndexCache) hash(entry []byte) uint64 {
	x.once.Do(func() { x.seed = maphash.MakeSeed() })
	return maphash.Bytes(x.seed, entry)
}

// Index is a log.Indexer: it returns what prime stored for entry (once),
// or else what Indexer computes.
func (x *IndexCache) Index(entry []byte) ([]byte, []log.IndexKey, error) {
	h := x.hash(entry)
	if v, ok := x.primed.Load(h); ok {
		if p := v.(*primedIndex); bytes.Equal(p.entry, entry) && x.primed.CompareAndDelete(h, p) {
			return p.dedup, p.keys, nil
		}
	}
	return Indexer(entry)
}

// prime stores the index of a parsed entry for the log's next call; it
// returns the function that forgets it if the entry is not appended.
func (x *IndexCache) prime(entry []byte, e *attest.Entry) func() {
	dedup, keys, err := indexEntry(e)
	if err != nil {
		return func() {}
	}
	h := x.hash(entry)
	p := &primedIndex{entry: entry, dedup: dedup, keys: keys}
	x.primed.Store(h, p)
	return func() { x.primed.CompareAndDelete(h, p) }
}

// indexEntry is Indexer for a parsed entry.
func indexEntry(e *attest.Entry) ([]byte, []log.IndexKey, error) {
	kid, err := hex.DecodeString(e.KeyID)
	if err != nil {
		return nil, nil, fmt.Errorf("coord: index: key id: %w", err)
	}
	dedup := append(e.PayloadHash[:], kid...)
	return dedup, IndexKeys(e), nil
}

// Index kinds of the NVR index (GET /lookup/{nvr}).
const (
	IndexBuild    = "build"
	IndexOfficial = "official"
	IndexVerdict  = "verdict"
	IndexJob      = "job"
	IndexLease    = "lease"
	IndexJobClose = "job-close"
	// Under KeyLookup(key id) and AlarmLookup.
	IndexEnrolment  = "enrolment"
	IndexRevocation = "revocation"
	IndexAlarm      = "alarm"
	IndexAlarmClear = "alarm-clear"
)

// Lookup names of the entries that are not about one build. They are valid
// NVRs so that the one lookup route (GET /lookup/{nvr}) serves them.
const (
	// AlarmLookup indexes every alarm and alarm-clear entry.
	AlarmLookup = "skyline-alarms-0"
	// keyLookupPrefix + key id indexes a key's enrolment and revocation.
	keyLookupPrefix = "skyline-key-"
)

// KeyLookup returns the lookup name under which a key's enrolment and
// revocation are indexed.
func KeyLookup(keyID string) string { return keyLookupPrefix + keyID }

// IndexKeys returns the index keys of a parsed entry: entries about a build
// under its NVR with their kind; enrolments and revocations under
// KeyLookup(key id) and alarms and their clearings under AlarmLookup, so
// that `skyline verify` finds who signed what without reading the whole
// log. The index is a convenience, never trusted: readers check every
// entry against the signed tree, and completeness comes from the
// witnesses (ARCHITECTURE.md "Trust and failure rules").
func IndexKeys(e *attest.Entry) []log.IndexKey {
	key := func(nvr, kind string) []log.IndexKey { return []log.IndexKey{{NVR: nvr, Type: kind}} }
	switch v := e.Value.(type) {
	case *attest.Attestation:
		if v.Official {
			return key(v.Build.NVR, IndexOfficial)
		}
		return key(v.Build.NVR, IndexBuild)
	case *attest.Verdict:
		return key(v.Build.NVR, IndexVerdict)
	case *attest.Job:
		return key(v.Build.NVR, IndexJob)
	case *attest.Lease:
		return key(v.Build.NVR, IndexLease)
	case *attest.JobClose:
		return key(v.Build.NVR, IndexJobClose)
	case *attest.Enrolment:
		return key(KeyLookup(v.KeyID), IndexEnrolment)
	case *attest.Revocation:
		return key(KeyLookup(v.KeyID), IndexRevocation)
	case *attest.Alarm:
		return key(AlarmLookup, IndexAlarm)
	case *attest.AlarmClear:
		return key(AlarmLookup, IndexAlarmClear)
	}
	return nil
}

// NewService replays the log into a new Coordinator and returns the
// service. Entries that the coordinator refuses on replay are logged and
// skipped: they had no effect when they were appended either.
func NewService(ctx context.Context, cfg ServiceConfig) (*Service, error) {
	if cfg.Log == nil || cfg.Signer == nil {
		return nil, fmt.Errorf("coord: service needs a log and a coordinator key: %w", ErrInvalid)
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 4 * runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Coord.Authority = cfg.Signer.KeyID()
	s := &Service{
		cfg:     cfg,
		log:     cfg.Log,
		coord:   New(cfg.Coord),
		admin:   make(map[string]*attest.Verifier),
		cpu:     make(chan struct{}, cfg.MaxParallel),
		notices: make(map[string][]Notice),
	}
	for _, v := range cfg.AdminKeys {
		s.admin[v.KeyID()] = v
	}
	size, _ := cfg.Log.Size()
	for i := uint64(0); i < size; i++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("coord: replay: %w", err)
		}
		data, err := cfg.Log.Entry(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("coord: replay entry %d: %w", i, err)
		}
		e, err := attest.Parse(data, attest.ParseOptions{})
		if err != nil {
			return nil, fmt.Errorf("coord: replay entry %d: %w", i, err)
		}
		if err := s.apply(i, e); err != nil {
			cfg.Logger.Warn("replay: entry refused by the coordinator", "index", i, "type", e.PayloadType, "err", err)
		}
	}
	cfg.Logger.Info("coordinator state replayed", "entries", size, "jobs", len(s.coord.Jobs()), "keys", len(s.coord.Keys()))
	return s, nil
}

// Coordinator returns the coordinator state (read it; decide through the
// Service).
func (s *Service) Coordinator() *Coordinator { return s.coord }

// EventOf converts a parsed log entry into the coordinator's view of it,
// the Event that Apply (and Follow) take: a builder's attestation becomes
// a Result (its part numbered from 0), any other payload is passed as
// parsed, with the entry's signer. It returns false for an official build,
// which the coordinator does not track. The server's replay and an
// auditor's replay (witness.Audit) both convert entries with it, so they
// apply the same events.
func EventOf(e *attest.Entry) (Event, bool) {
	if a := e.Attestation(); a != nil {
		if a.Official {
			return Event{}, false
		}
		// attest numbers parts from 1, the coordinator from 0.
		return Event{Signer: e.KeyID, Payload: Result{Build: a.Build, LeaseID: a.LeaseID, ResultSet: a.ResultSet.Digest, Part: a.ResultSet.Part - 1, Parts: a.ResultSet.Parts}}, true
	}
	return Event{Signer: e.KeyID, Payload: e.Value}, true
}

// apply folds the entry at index into the coordinator and the notices.
func (s *Service) apply(index uint64, e *attest.Entry) error {
	ev, ok := EventOf(e)
	if !ok {
		return nil
	}
	if err := s.coord.Apply(index, ev); err != nil {
		return err
	}
	switch v := e.Value.(type) {
	case *attest.Verdict:
		s.noteVerdict(index, v)
	case *attest.Enrolment:
		s.noteKey(*v)
	case *attest.Revocation:
		s.keys.Delete(v.KeyID)
	}
	return nil
}

// noteKey caches the verifier of an applied enrolment.
func (s *Service) noteKey(en attest.Enrolment) {
	v, err := attest.ParsePublicPEM([]byte(en.PublicKey))
	if err != nil {
		// attest.Parse checked it; the coordinator applied it.
		s.cfg.Logger.Error("enrolled public key does not parse", "key", en.KeyID, "err", err)
		return
	}
	s.keys.Store(en.KeyID, &enrolled{v: v, role: en.Role})
}

// noteVerdict turns a verdict into notices for the builders it names: the
// outliers, and the builders of the agreeing group, found by their
// entries among the results the coordinator counted for the build.
func (s *Service) noteVerdict(index uint64, v *attest.Verdict) {
	var signer map[uint64]string // result entry index -> builder key id
	if v.ResultSet != "" {
		signer = map[uint64]string{}
		for _, j := range s.coord.JobsFor(v.Build) {
			for _, d := range j.Results {
				for _, idx := range d.Entries {
					signer[idx] = d.KeyID
				}
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	add := func(key string, n Notice) {
		ns := append(s.notices[key], n)
		if len(ns) > maxNotices {
			ns = ns[len(ns)-maxNotices:]
		}
		s.notices[key] = ns
	}
	for _, o := range v.Outliers {
		add(o.KeyID, Notice{Index: index, Kind: "outlier", Build: v.Build, Verdict: v.Verdict, ResultSet: o.ResultSet, Expected: v.ResultSet, At: v.At})
	}
	if v.ResultSet == "" {
		return
	}
	for _, g := range v.Groups {
		if g.ResultSet != v.ResultSet {
			continue
		}
		seen := map[string]bool{}
		for _, idx := range g.Entries {
			key, ok := signer[idx]
			if !ok || seen[key] {
				continue
			}
			seen[key] = true
			add(key, Notice{Index: index, Kind: "agreed", Build: v.Build, Verdict: v.Verdict, ResultSet: g.ResultSet, Expected: v.ResultSet, At: v.At})
		}
	}
}

// Notices returns the notices about keyID's results, oldest first.
func (s *Service) Notices(keyID string) []Notice {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Notice(nil), s.notices[keyID]...)
}

// verifier returns the verifier of an enrolled, unrevoked key with role.
func (s *Service) verifier(keyID, role string) (*attest.Verifier, error) {
	if role == attest.RoleAdmin {
		if v := s.admin[keyID]; v != nil {
			return v, nil
		}
	}
	if k, ok := s.keys.Load(keyID); ok {
		k := k.(*enrolled)
		if k.role != role {
			return nil, fmt.Errorf("coord: key %s has role %q, need %q: %w", keyID, k.role, role, ErrRole)
		}
		return k.v, nil
	}
	// Not cached: unknown or revoked; the coordinator says which.
	st, err := s.coord.Key(keyID)
	if err != nil {
		return nil, err
	}
	if st.Revoked {
		return nil, fmt.Errorf("coord: key %s: %w", keyID, ErrRevoked)
	}
	return nil, fmt.Errorf("coord: key %s: enrolment being logged: %w", keyID, ErrUnknownKey)
}

// RequestVerifier returns the verifier of a key that may sign API requests
// needing role (attest.RoleBuilder or attest.RoleAdmin): an enrolled,
// unrevoked key with that role, or for admin one of ServiceConfig.AdminKeys.
func (s *Service) RequestVerifier(keyID, role string) (*attest.Verifier, error) {
	return s.verifier(keyID, role)
}

// existing returns the index of the entry whose bytes are exactly env, if
// the log has it: a resubmission is answered from the log before the
// coordinator is asked, so that it is not judged (nor counted) twice.
func (s *Service) existing(ctx context.Context, env []byte) (uint64, bool) {
	size, _ := s.log.Size()
	if size == 0 {
		return 0, false
	}
	leaf := sha256.Sum256(append([]byte{0}, env...)) // RFC 6962 section 2.1: leaf hash
	idx, _, err := s.log.InclusionProofByHash(ctx, leaf[:], size)
	if err != nil {
		return 0, false
	}
	return idx, true
}

// Submit checks a submitted entry and appends it: a builder's attestation
// under its live lease, an importer's official build, a witness's verdict
// or alarm, an admin's alarm clearing. Each must be signed by an enrolled,
// unrevoked key with the role for it. An envelope already in the log gets
// its existing index and changes nothing.
func (s *Service) Submit(ctx context.Context, env []byte) (SubmitResult, error) {
	if err := s.acquire(ctx); err != nil {
		return SubmitResult{}, err
	}
	e, hold, dup, err := s.check(ctx, env)
	s.release()
	if err != nil || dup != nil {
		return *dupOrZero(dup), err
	}
	if hold != nil {
		defer hold.Release()
	}
	if s.cfg.IndexCache != nil {
		defer s.cfg.IndexCache.prime(env, e)()
	}
	// Once the log has the entry the coordinator must see it: the append
	// outlives a client that hangs up.
	res, err := s.log.Add(context.WithoutCancel(ctx), env)
	if err != nil {
		return SubmitResult{}, fmt.Errorf("coord: submit: %w", err)
	}
	out := SubmitResult{Index: res.Index, Duplicate: res.Duplicate}
	if res.Duplicate {
		return out, nil
	}
	s.cpu <- struct{}{}
	defer s.release()
	if err := s.apply(res.Index, e); err != nil {
		s.cfg.Logger.Error("logged entry refused by the coordinator", "index", res.Index, "type", e.PayloadType, "err", err)
	}
	return out, nil
}

func dupOrZero(r *SubmitResult) *SubmitResult {
	if r == nil {
		return &SubmitResult{}
	}
	return r
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.cpu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("coord: submit: %w", ctx.Err())
	}
}

func (s *Service) release() { <-s.cpu }

// check parses and checks a submitted entry. It returns the entry and, for
// a builder's result or an alarm, the hold to release once the entry is
// logged and applied; or the existing entry of a resubmitted envelope.
func (s *Service) check(ctx context.Context, env []byte) (*attest.Entry, *Reservation, *SubmitResult, error) {
	e, err := attest.Parse(env, attest.ParseOptions{})
	if err != nil {
		return nil, nil, nil, err
	}
	hold, err := s.admit(ctx, e)
	if err != nil {
		// A resubmitted envelope is refused by the checks (its lease
		// delivered, its key since revoked...): answer with its entry.
		// Looked up only here, so the common path pays no lookup; an
		// accepted resubmission is caught by the log's deduplication.
		if idx, ok := s.existing(ctx, env); ok {
			return nil, nil, &SubmitResult{Index: idx, Duplicate: true}, nil
		}
		return nil, nil, nil, err
	}
	return e, hold, nil, nil
}

// admit checks the signer's role and signature and, for a builder's result
// or an alarm, takes the coordinator's hold.
func (s *Service) admit(ctx context.Context, e *attest.Entry) (*Reservation, error) {
	var role string
	switch v := e.Value.(type) {
	case *attest.Attestation:
		role = attest.RoleBuilder
		if v.Official {
			role = attest.RoleImporter
		}
	case *attest.Verdict, *attest.Alarm:
		role = attest.RoleWitness
	case *attest.AlarmClear:
		role = attest.RoleAdmin
	default:
		return nil, fmt.Errorf("coord: submit %s: %w", e.PayloadType, ErrNotSubmittable)
	}
	v, err := s.verifier(e.KeyID, role)
	if err != nil {
		return nil, fmt.Errorf("coord: submit %s: %w", e.PayloadType, err)
	}
	if err := e.Verify(v); err != nil {
		return nil, fmt.Errorf("coord: submit %s: %w", e.PayloadType, err)
	}
	switch p := e.Value.(type) {
	case *attest.Attestation:
		if p.Official {
			return nil, nil
		}
		ev, _ := EventOf(e)
		// coordinator.md §Results: the key must hold a live lease for this
		// build; the hold keeps it live while the entry is logged.
		return s.coord.HoldResult(e.KeyID, ev.Payload.(Result), s.cfg.Now())
	case *attest.Alarm:
		return s.coord.HoldAlarm(ctx, e.KeyID, *p)
	}
	return nil, nil
}

// commit signs a decision with the coordinator key, appends it and applies
// it; it returns the entry's index.
func (s *Service) commit(r *Reservation) (uint64, error) {
	var index uint64
	err := s.coord.Commit(r, func(r *Reservation) (uint64, error) {
		env, err := attest.Sign(s.cfg.Signer, r.PayloadType(), r.Payload)
		if err != nil {
			return 0, err
		}
		res, err := s.log.Add(context.Background(), env)
		if err != nil {
			return 0, err
		}
		index = res.Index
		return res.Index, nil
	})
	if err != nil {
		return 0, err
	}
	s.afterCommit(index, r.Payload)
	return index, nil
}

// afterCommit keeps the service's own views in step with a decision.
func (s *Service) afterCommit(_ uint64, payload any) {
	switch p := payload.(type) {
	case attest.Enrolment:
		s.noteKey(p)
	case attest.Revocation:
		s.keys.Delete(p.KeyID)
	}
}

// Lease leases a job to the builder key keyID for one of arches, chosen at
// random among the eligible jobs, and returns the lease once it is durably
// in the log (ARCHITECTURE.md: the lease is logged before the builder sees
// it).
func (s *Service) Lease(ctx context.Context, keyID string, arches []string) (attest.Lease, uint64, error) {
	r, err := s.coord.NextLease(keyID, arches, s.cfg.Now())
	if err != nil {
		return attest.Lease{}, 0, err
	}
	l := r.Payload.(attest.Lease)
	idx, err := s.commit(r)
	if err != nil {
		return attest.Lease{}, 0, err
	}
	s.cfg.Logger.Debug("lease", "lease", l.LeaseID, "job", l.JobID, "nvr", l.Build.NVR, "key", keyID, "index", idx)
	return l, idx, nil
}

// EndLease logs that the holder keyID failed or abandoned leaseID.
func (s *Service) EndLease(ctx context.Context, keyID, leaseID, reason, detail string) (uint64, error) {
	r, err := s.coord.EndLease(keyID, leaseID, reason, detail, s.cfg.Now())
	if err != nil {
		return 0, err
	}
	return s.commit(r)
}

// Enqueue logs a new job for j.Build and returns it with its id and index.
func (s *Service) Enqueue(ctx context.Context, j attest.Job) (attest.Job, uint64, error) {
	r, err := s.coord.Enqueue(j, s.cfg.Now())
	if err != nil {
		return attest.Job{}, 0, err
	}
	job := r.Payload.(attest.Job)
	idx, err := s.commit(r)
	if err != nil {
		return attest.Job{}, 0, err
	}
	s.cfg.Logger.Info("job enqueued", "job", job.JobID, "nvr", job.Build.NVR, "arch", job.Build.Arch, "wanted", job.Wanted, "index", idx)
	return job, idx, nil
}

// Enrol logs the enrolment of a key for an operator.
func (s *Service) Enrol(ctx context.Context, en attest.Enrolment) (uint64, error) {
	r, err := s.coord.Enrol(en, s.cfg.Now())
	if err != nil {
		return 0, err
	}
	idx, err := s.commit(r)
	if err != nil {
		return 0, err
	}
	s.cfg.Logger.Info("key enrolled", "key", en.KeyID, "role", en.Role, "operator", en.Operator, "index", idx)
	return idx, nil
}

// Revoke logs the revocation of keyID; its live leases expire on the next
// tick.
func (s *Service) Revoke(ctx context.Context, keyID, reason string) (uint64, error) {
	r, err := s.coord.Revoke(ctx, keyID, reason, s.cfg.Now())
	if err != nil {
		return 0, err
	}
	// Stop trusting the key's signatures before the revocation is logged,
	// not after: no request of the key is accepted from here on.
	cached, _ := s.keys.LoadAndDelete(keyID)
	idx, err := s.commit(r)
	if err != nil {
		if cached != nil {
			s.keys.Store(keyID, cached)
		}
		return 0, err
	}
	s.cfg.Logger.Info("key revoked", "key", keyID, "reason", reason, "index", idx)
	return idx, nil
}

// Jobs lists every job.
func (s *Service) Jobs() []JobStatus { return s.coord.Jobs() }

// Tick expires the leases past their expiry (or whose key was revoked) and
// closes the jobs that may close, logging each decision. It returns how
// many leases it expired and jobs it closed.
func (s *Service) Tick(ctx context.Context) (expired, closed int, err error) {
	now := s.cfg.Now()
	for _, r := range s.coord.Expire(now) {
		le := r.Payload.(attest.LeaseEnd)
		if _, err := s.commit(r); err != nil {
			return expired, closed, fmt.Errorf("coord: expire lease %s: %w", le.LeaseID, err)
		}
		expired++
		s.cfg.Logger.Info("lease expired", "lease", le.LeaseID, "job", le.JobID, "key", le.KeyID, "detail", le.Detail)
	}
	for _, r := range s.coord.Closable(now) {
		jc := r.Payload.(attest.JobClose)
		if _, err := s.commit(r); err != nil {
			return expired, closed, fmt.Errorf("coord: close job %s: %w", jc.JobID, err)
		}
		closed++
		s.cfg.Logger.Info("job closed", "job", jc.JobID, "nvr", jc.Build.NVR, "arch", jc.Build.Arch, "results", jc.Results)
	}
	return expired, closed, nil
}

// Run calls Tick every TickInterval until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, _, err := s.Tick(ctx); err != nil {
				s.cfg.Logger.Error("coordinator tick", "err", err)
			}
		}
	}
}
