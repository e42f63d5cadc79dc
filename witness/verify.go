package witness

// `skyline verify <nvr>`, the release gate (ARCHITECTURE.md "Data flow":
// checkpoint with k-of-n witness cosignatures, entries for the NVR with
// inclusion proofs, agreement recomputed locally, witness verdicts checked).
// docs/verify.md is the specification.

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/coord"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors of Verify, checked with errors.Is. Each is a verification
// failure (exit 3) except ErrUsage (exit 4); the follower's errors (ErrFork,
// ErrRollback, ErrBadSignature, ErrBadCheckpoint, ErrBadTile,
// ErrHiddenEntry, ErrFetch) pass through.
var (
	// ErrUsage: the NVR, arch or RPM directory is malformed.
	ErrUsage = errors.New("bad verify request")
	// ErrTooFewCosignatures: fewer than k policy witnesses cosigned the
	// checkpoint.
	ErrTooFewCosignatures = errors.New("too few witness cosignatures")
	// ErrTooFewVerdicts: fewer than k policy witnesses signed a verdict
	// covering every entry seen for the build.
	ErrTooFewVerdicts = errors.New("too few witness verdicts cover the build")
	// ErrWitnessDisagrees: a policy witness's verdict, made at a tree size
	// covering every entry seen, differs from the local recomputation:
	// the log hid entries from the lookup, or the witness is wrong.
	ErrWitnessDisagrees = errors.New("witness verdict differs from the recomputed agreement")
	// ErrBadEntry: an entry does not parse, its signature does not verify,
	// or it is signed by a key that may not make it.
	ErrBadEntry = errors.New("bad log entry")
	// ErrAlarmActive: a circuit-breaker alarm is logged and not cleared.
	ErrAlarmActive = errors.New("circuit breaker alarm active")
)

// Overall statuses of a VerifyReport besides the verdicts.
const (
	StatusVerificationFailed = "verification-failed"
	StatusRPMMismatch        = "rpm-mismatch"
)

// maxParallel bounds the concurrent requests of one verify.
const maxParallel = 16

// VerifyConfig configures Verify.
type VerifyConfig struct {
	// Policy is the loaded policy. Required.
	Policy *VerifyPolicy
	// LogURL overrides Policy.Log.URL.
	LogURL string
	// Client makes the HTTP requests. Default: 30 s timeout.
	Client *http.Client
	// Previous, when set, is a checkpoint verified by an earlier run: the
	// new one must be consistent with it (fork and rollback detection).
	Previous *Checkpoint
	// Now is the clock cosignature ages are measured with. Default
	// time.Now.
	Now func() time.Time
	// Logger receives what verify decided. Default: discard.
	Logger *slog.Logger
}

// VerifyRequest names what to verify.
type VerifyRequest struct {
	NVR  string
	Arch string // empty: every arch of the NVR
	// RPMDir, when set, holds the RPMs about to be released; they must be
	// exactly the agreed result set of the (single) build verified.
	RPMDir string
}

// VerifyReport is what Verify found. It is filled as far as Verify got,
// also when it returns an error.
type VerifyReport struct {
	NVR        string         `json:"nvr"`
	Arch       string         `json:"arch,omitempty"`
	Status     string         `json:"status"`
	Checkpoint *CheckpointRef `json:"checkpoint,omitempty"`
	// CheckpointNote is the verified checkpoint note, to be kept as the
	// Previous of a later run.
	CheckpointNote []byte `json:"-"`
	// Cosigners are the policy witnesses whose cosignature verified.
	Cosigners []string      `json:"cosigners"`
	Builds    []BuildReport `json:"builds"`
	// Alarms are the logged circuit-breaker alarms not cleared.
	Alarms []AlarmRef `json:"alarms,omitempty"`
	RPMs   *RPMCheck  `json:"rpms,omitempty"`
	// Problems explain a verification failure.
	Problems []string `json:"problems,omitempty"`
}

// CheckpointRef is the verified checkpoint a report is against.
type CheckpointRef struct {
	Origin string `json:"origin"`
	Size   uint64 `json:"size"`
	Root   string `json:"root"`
}

// AlarmRef is a logged alarm.
type AlarmRef struct {
	Index  uint64 `json:"index"`
	KeyID  string `json:"key_id"`
	Reason string `json:"reason"`
}

// BuildReport is the verdict on one build.
type BuildReport struct {
	Build        attest.BuildID `json:"build"`
	Verdict      string         `json:"verdict"`
	Final        bool           `json:"final"`
	ResultSet    string         `json:"result_set,omitempty"`
	Groups       []Group        `json:"groups"`
	Outliers     []Outlier      `json:"outliers,omitempty"`
	Split        []string       `json:"split,omitempty"`
	Official     string         `json:"official,omitempty"`
	OfficialDiff []RPMDiff      `json:"official_diff,omitempty"`
	Ignored      []IgnoredRef   `json:"ignored,omitempty"`
	Entries      int            `json:"entries"`
	Witnesses    []WitnessCheck `json:"witnesses"`
	// Subjects are the agreed RPMs (file name -> skyline digest).
	Subjects map[string]string `json:"-"`
}

// IgnoredRef is a result that did not vote, and why.
type IgnoredRef struct {
	Index  uint64 `json:"index"`
	KeyID  string `json:"key_id"`
	Reason string `json:"reason"`
}

// WitnessCheck is what one policy witness's latest verdict on the build
// says, checked against the recomputation.
type WitnessCheck struct {
	Witness  string   `json:"witness"`
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	Verdict  string   `json:"verdict"`
	Covers   bool     `json:"covers"` // computed at a tree size covering every entry seen
	Agrees   bool     `json:"agrees"`
	Diffs    []string `json:"diffs,omitempty"`
}

// RPMCheck compares the RPMs to release with the agreed result set.
type RPMCheck struct {
	Dir       string    `json:"dir"`
	Match     bool      `json:"match"`
	ResultSet string    `json:"result_set"`
	Diffs     []RPMDiff `json:"diffs,omitempty"`
	// Unreadable lists the files that are not valid RPMs, with the error.
	Unreadable []string     `json:"unreadable,omitempty"`
	Files      []rpm.Digest `json:"files"`
}

// verifier is one run of Verify.
type verifier struct {
	cfg    VerifyConfig
	pol    *VerifyPolicy
	f      *Follower
	client *api.Client
	cp     Checkpoint
	rep    *VerifyReport
	logger *slog.Logger
}

// Verify runs the release gate for req under cfg.Policy. It returns the
// report and, on a verification failure, an error wrapping one of the
// Err* sentinels (the report's Problems say why). Without an error the
// report's Status is the verdict (or StatusRPMMismatch).
func Verify(ctx context.Context, cfg VerifyConfig, req VerifyRequest) (*VerifyReport, error) {
	rep := &VerifyReport{NVR: req.NVR, Arch: req.Arch, Cosigners: []string{}, Builds: []BuildReport{}}
	fail := func(err error) (*VerifyReport, error) {
		rep.Status = StatusVerificationFailed
		rep.Problems = append(rep.Problems, err.Error())
		return rep, err
	}
	if err := attest.CheckNVR(req.NVR); err != nil {
		return fail(fmt.Errorf("witness: verify: %w: %w", ErrUsage, err))
	}
	if req.Arch != "" {
		if err := attest.CheckArch(req.Arch); err != nil {
			return fail(fmt.Errorf("witness: verify: %w: %w", ErrUsage, err))
		}
	}
	if cfg.Policy == nil {
		return fail(fmt.Errorf("witness: verify: no policy: %w", ErrPolicyFile))
	}
	pol := cfg.Policy
	url := cmp.Or(cfg.LogURL, pol.Log.URL)
	if url == "" {
		return fail(fmt.Errorf("witness: verify: no log URL in the policy or the request: %w", ErrPolicyFile))
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	trusted := EmptyTree(pol.Log.Origin)
	if cfg.Previous != nil {
		trusted = *cfg.Previous
	}
	f, err := NewFollower(FollowerConfig{URL: url, Origin: pol.Log.Origin, Verifier: pol.logVerifier, Client: cfg.Client}, trusted)
	if err != nil {
		return fail(fmt.Errorf("witness: verify: %w: %w", ErrPolicyFile, err))
	}
	client, err := api.NewClient(api.ClientConfig{URL: url, HTTP: cfg.Client})
	if err != nil {
		return fail(fmt.Errorf("witness: verify: %w: %w", ErrPolicyFile, err))
	}
	v := &verifier{cfg: cfg, pol: pol, f: f, client: client, rep: rep, logger: cfg.Logger}
	if err := v.run(ctx, req); err != nil {
		cfg.Logger.Warn("verify: verification failed", "nvr", req.NVR, "arch", req.Arch, "err", err)
		return fail(err)
	}
	cfg.Logger.Info("verify: decided", "nvr", req.NVR, "arch", req.Arch, "status", rep.Status, "tree_size", v.cp.Size, "cosigners", len(rep.Cosigners))
	return rep, nil
}

func (v *verifier) run(ctx context.Context, req VerifyRequest) error {
	if err := v.checkpoint(ctx); err != nil {
		return err
	}
	entries, err := v.gather(ctx, req.NVR)
	if err != nil {
		return err
	}
	fd, err := v.fold(entries)
	if err != nil {
		return err
	}
	if err := v.alarms(fd.alarms); err != nil {
		return err
	}
	var builds []attest.BuildID
	for b, bs := range fd.builds {
		if bs.entries == 0 && len(bs.verdicts) == 0 {
			continue
		}
		// A build the lookup shows only verdicts of is still checked: the
		// verdicts then name what the lookup hid.
		if b.NVR == req.NVR && (req.Arch == "" || b.Arch == req.Arch) {
			builds = append(builds, b)
		}
	}
	if len(builds) == 0 {
		// Nothing to vouch for: as undecided as too few results.
		v.rep.Status = VerdictInsufficient
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("the log returned no build of %s %s", req.NVR, req.Arch))
		return nil
	}
	slices.SortFunc(builds, func(a, b attest.BuildID) int {
		return cmp.Or(cmp.Compare(a.Arch, b.Arch), cmp.Compare(a.SRPMSHA256, b.SRPMSHA256))
	})
	var errs []error
	for _, b := range builds {
		br, err := v.build(fd, b)
		v.rep.Builds = append(v.rep.Builds, br)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.rep.Status = worstVerdict(v.rep.Builds)
	if req.RPMDir != "" {
		if len(v.rep.Builds) != 1 {
			return fmt.Errorf("witness: verify %s: --rpm-dir needs exactly one build, the log has %d (choose one with --arch): %w", req.NVR, len(v.rep.Builds), ErrUsage)
		}
		chk, err := CheckRPMs(req.RPMDir, v.rep.Builds[0])
		if err != nil {
			return err
		}
		v.rep.RPMs = chk
		if !chk.Match && v.rep.Status == VerdictReproduced {
			v.rep.Status = StatusRPMMismatch
		}
	}
	return nil
}

// checkpoint fetches the checkpoint, checks it against the previous one
// and counts the policy witnesses' cosignatures (C2SP tlog-cosignature).
func (v *verifier) checkpoint(ctx context.Context) error {
	// The follower's errors name the log and what failed.
	cp, err := v.f.FetchCheckpoint(ctx)
	if err != nil {
		return err
	}
	if err := v.f.CheckConsistency(ctx, v.f.Trusted(), cp); err != nil {
		return err
	}
	v.cp = cp
	v.rep.CheckpointNote = cp.Note
	v.rep.Checkpoint = &CheckpointRef{Origin: cp.Origin, Size: cp.Size, Root: cp.Hash.String()}
	names, stale, err := Cosigners(cp, v.pol, v.cfg.Now())
	if err != nil {
		return err
	}
	v.rep.Cosigners = names
	for _, s := range stale {
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("cosignature of %s older than %v: not counted", s, v.pol.MaxCosignatureAge))
	}
	if len(names) < v.pol.WitnessQuorum {
		return fmt.Errorf("witness: verify: checkpoint %d cosigned by %d policy witnesses %v (%d more too old), need %d: %w", cp.Size, len(names), names, len(stale), v.pol.WitnessQuorum, ErrTooFewCosignatures)
	}
	return nil
}

// Cosigners returns the names of the policy witnesses whose cosignature of
// cp verifies (C2SP tlog-cosignature, cosignature/v1), and of those whose
// cosignature verifies but is older than the policy's MaxCosignatureAge at
// now.
func Cosigners(cp Checkpoint, pol *VerifyPolicy, now time.Time) (names, stale []string, err error) {
	vs := append([]note.Verifier{pol.logVerifier}, pol.cosigners...)
	n, err := note.Open(cp.Note, note.VerifierList(vs...))
	if err != nil {
		return nil, nil, fmt.Errorf("witness: verify: cosignatures: %w: %v", ErrBadCheckpoint, err)
	}
	names = []string{}
	for i, cv := range pol.cosigners {
		for _, s := range n.Sigs {
			if s.Name != cv.Name() || s.Hash != cv.KeyHash() {
				continue
			}
			if pol.MaxCosignatureAge > 0 {
				// C2SP tlog-cosignature: the signed timestamp is when the
				// witness last verified the tree.
				ts, err := fnote.CoSigV1Timestamp(s)
				if err != nil || now.Sub(ts) > pol.MaxCosignatureAge {
					stale = append(stale, pol.Witnesses[i].Name)
					break
				}
			}
			names = append(names, pol.Witnesses[i].Name)
			break
		}
	}
	return names, stale, nil
}

// indexed is a verified entry at its index.
type indexed struct {
	index uint64
	e     *attest.Entry
}

// gather returns every entry verify uses, verified against the checkpoint
// and checked for its signer, in log order.
func (v *verifier) gather(ctx context.Context, nvr string) ([]indexed, error) {
	idx, err := v.lookup(ctx, nvr, coord.AlarmLookup)
	if err != nil {
		return nil, err
	}
	got, err := v.fetch(ctx, idx)
	if err != nil {
		return nil, err
	}
	// The keys that signed results, official builds, alarms and clears:
	// their enrolments say who they are.
	need := map[string]bool{}
	for _, ie := range got {
		switch ie.e.Value.(type) {
		case *attest.Attestation, *attest.Alarm, *attest.AlarmClear:
			if ie.e.KeyID != v.pol.coordinator.KeyID() {
				need[ie.e.KeyID] = true
			}
		}
	}
	// The policy witnesses' verdict keys are enrolled too: their
	// enrolments show whether the log indexes keys at all.
	for _, w := range v.pol.verdicts {
		need[w.KeyID()] = true
	}
	var names []string
	for k := range need {
		names = append(names, coord.KeyLookup(k))
	}
	kidx, err := v.lookup(ctx, names...)
	if err != nil {
		return nil, err
	}
	more, err := v.fetch(ctx, kidx)
	if err != nil {
		return nil, err
	}
	got = append(got, more...)
	if !slices.ContainsFunc(more, func(ie indexed) bool { return ie.e.PayloadType == attest.PayloadEnrolment }) {
		// A log that does not run Indexer indexes no key and no alarm:
		// find them by reading every entry (slow, but as sure).
		scanned, err := v.scan(ctx)
		if err != nil {
			return nil, err
		}
		v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("the log indexes no keys (not run with coord.Indexer): read all %d entries to find enrolments and alarms", v.cp.Size))
		got = append(got, scanned...)
	}
	slices.SortFunc(got, func(a, b indexed) int { return cmp.Compare(a.index, b.index) })
	got = slices.CompactFunc(got, func(a, b indexed) bool { return a.index == b.index })
	return got, nil
}

// scanKinds are the payload types scan collects.
var scanKinds = [][]byte{
	[]byte(`"` + attest.PayloadEnrolment + `"`), []byte(`"` + attest.PayloadRevocation + `"`),
	[]byte(`"` + attest.PayloadAlarm + `"`), []byte(`"` + attest.PayloadAlarmClear + `"`),
}

// scan reads every entry of the checkpoint's tree from the entry bundles
// (each checked against the tree by the follower) and returns the
// enrolments, revocations, alarms and alarm clearings.
func (v *verifier) scan(ctx context.Context) ([]indexed, error) {
	var out []indexed
	err := v.f.EntriesAt(ctx, v.cp, 0, v.cp.Size, func(i uint64, data []byte) error {
		// Cheap filter before the strict parse: the payload type appears
		// verbatim in the envelope.
		if !slices.ContainsFunc(scanKinds, func(k []byte) bool { return bytes.Contains(data, k) }) {
			return nil
		}
		e, err := attest.Parse(data, attest.ParseOptions{})
		if err != nil {
			return nil // not an entry verify uses
		}
		switch e.Value.(type) {
		case *attest.Enrolment, *attest.Revocation, *attest.Alarm, *attest.AlarmClear:
			out = append(out, indexed{index: i, e: e})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("witness: verify: scan: %w", err)
	}
	return out, nil
}

// lookup asks the log's index for the entries under names, keeping those
// inside the verified tree.
func (v *verifier) lookup(ctx context.Context, names ...string) ([]uint64, error) {
	out := make([][]uint64, len(names))
	errs := make([]error, len(names))
	parallel(len(names), func(i int) {
		resp, err := v.client.Lookup(ctx, names[i])
		if err != nil {
			var ae *api.Error
			if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
				return
			}
			errs[i] = fmt.Errorf("witness: verify: lookup %s: %w: %v", names[i], ErrFetch, err)
			return
		}
		for _, e := range resp.Entries {
			if e.Index < v.cp.Size {
				out[i] = append(out[i], e.Index)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []uint64
	for _, o := range out {
		all = append(all, o...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// fetch reads the entries at idx and proves each in the checkpoint's tree:
// its leaf hash (RFC 6962 section 2.1) must be the one the hash tiles,
// authenticated against the signed root, hold.
func (v *verifier) fetch(ctx context.Context, idx []uint64) ([]indexed, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	data := make([][]byte, len(idx))
	errs := make([]error, len(idx))
	parallel(len(idx), func(i int) {
		b, err := v.client.Entry(ctx, idx[i])
		if err != nil {
			errs[i] = fmt.Errorf("witness: verify: entry %d: %w: %v", idx[i], ErrFetch, err)
		}
		data[i] = b
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	stored := make([]int64, len(idx))
	for i, x := range idx {
		stored[i] = tlog.StoredHashIndex(0, int64(x))
	}
	thr := tlog.TileHashReader(v.cp.tree(), &parallelTiles{httpTiles: v.f.tileReader(ctx, v.cp)})
	leaves, err := thr.ReadHashes(stored)
	if err != nil {
		return nil, v.f.tileErr("inclusion of looked-up entries", err)
	}
	out := make([]indexed, 0, len(idx))
	for i, x := range idx {
		// RFC 6962 section 2.1: leaf hash = SHA-256(0x00 || entry).
		if tlog.RecordHash(data[i]) != leaves[i] {
			return nil, fmt.Errorf("witness: verify: entry %d is not the leaf the signed tree holds: %w", x, ErrHiddenEntry)
		}
		e, err := attest.Parse(data[i], attest.ParseOptions{})
		if err != nil {
			return nil, fmt.Errorf("witness: verify: entry %d: %w: %w", x, ErrBadEntry, err)
		}
		out = append(out, indexed{index: x, e: e})
	}
	return out, nil
}

// folded is what verify folded: the witness's Fold over the entries it
// read (the others skipped), and per build the entries seen and the
// policy witnesses' verdicts.
type folded struct {
	fold   *Fold
	builds map[attest.BuildID]*buildSeen
	// alarms are the alarm and alarm-clear entries whose signers may make
	// them.
	alarms []indexed
}

type buildSeen struct {
	entries  int
	last     uint64 // the largest index of an entry about the build
	verdicts []verdictAt
}

// verdictAt is a verdict entry of a policy witness.
type verdictAt struct {
	Index   uint64
	KeyID   string
	Verdict *attest.Verdict
}

// fold checks every entry's signature and signer and folds it, in log
// order, with the witness's own Fold (the entries verify did not read are
// skipped), so that verify builds the records the witnesses build. The
// signer of an entry is the one Fold.Signer names: the coordinator for
// coordinator entries (any other signer fails), an enrolled key of the
// entry's role otherwise (entries of other signers are not counted, and
// reported). A bad signature fails.
func (v *verifier) fold(in []indexed) (*folded, error) {
	f := &folded{fold: NewFold(v.pol.coordinator), builds: map[attest.BuildID]*buildSeen{}}
	// The report names the RPMs that differ.
	f.fold.KeepSubjects = true
	fd := f.fold
	seen := func(b attest.BuildID, i uint64) {
		bs := f.builds[b]
		if bs == nil {
			bs = &buildSeen{}
			f.builds[b] = bs
		}
		bs.entries++
		bs.last = max(bs.last, i)
	}
	leaseBuild := map[string]attest.BuildID{}
	for _, ie := range in {
		e, i := ie.e, ie.index
		for fd.Next() < i {
			if err := fd.Skip(fd.Next()); err != nil {
				return nil, fmt.Errorf("witness: verify: %w", err)
			}
		}
		ver, _, err := fd.Signer(e, nil)
		if err != nil {
			if coordinatorKind(e.PayloadType) {
				return nil, fmt.Errorf("witness: verify: entry %d: %w: %w", i, ErrBadEntry, err)
			}
			v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("entry %d not counted: %v", i, err))
			if err := fd.Skip(i); err != nil {
				return nil, fmt.Errorf("witness: verify: %w", err)
			}
			continue
		}
		if err := e.Verify(ver); err != nil {
			return nil, fmt.Errorf("witness: verify: entry %d: %w: %w", i, ErrBadEntry, err)
		}
		ch, err := fd.Apply(i, e)
		if err != nil {
			v.rep.Problems = append(v.rep.Problems, fmt.Sprintf("entry %d not folded: %v", i, err))
			continue
		}
		switch val := e.Value.(type) {
		case *attest.Job:
			seen(val.Build, i)
		case *attest.Lease:
			seen(val.Build, i)
			leaseBuild[val.LeaseID] = val.Build
		case *attest.LeaseEnd:
			if b, ok := leaseBuild[val.LeaseID]; ok {
				seen(b, i)
			}
		case *attest.JobClose:
			seen(val.Build, i)
		case *attest.Attestation:
			seen(val.Build, i)
		case *attest.Alarm, *attest.AlarmClear:
			f.alarms = append(f.alarms, ie)
		}
		if ch.Verdict != nil {
			if _, _, ok := v.pol.verdictVerifier(e.KeyID); ok {
				if f.builds[ch.Verdict.Build] == nil {
					f.builds[ch.Verdict.Build] = &buildSeen{}
				}
				bs := f.builds[ch.Verdict.Build]
				bs.verdicts = append(bs.verdicts, verdictAt{Index: i, KeyID: e.KeyID, Verdict: ch.Verdict})
			}
		}
	}
	return f, nil
}

// alarms fails closed while an alarm is logged and no later clearing
// names it (ARCHITECTURE.md "Agreement": the circuit breaker).
func (v *verifier) alarms(entries []indexed) error {
	alarms := map[uint64]indexed{}
	for _, ie := range entries {
		switch val := ie.e.Value.(type) {
		case *attest.Alarm:
			alarms[ie.index] = ie
		case *attest.AlarmClear:
			if _, ok := alarms[val.AlarmIndex]; ok && val.AlarmIndex < ie.index {
				delete(alarms, val.AlarmIndex)
			}
		}
	}
	if len(alarms) == 0 {
		return nil
	}
	for _, i := range slices.Sorted(mapsKeys(alarms)) {
		a := alarms[i].e.Value.(*attest.Alarm)
		v.rep.Alarms = append(v.rep.Alarms, AlarmRef{Index: i, KeyID: alarms[i].e.KeyID, Reason: a.Reason})
	}
	return fmt.Errorf("witness: verify: %d alarm(s) logged and not cleared, first at %d (%s): %w", len(alarms), v.rep.Alarms[0].Index, v.rep.Alarms[0].Reason, ErrAlarmActive)
}

// build recomputes one build's agreement and checks it against the policy
// witnesses' verdicts.
func (v *verifier) build(fd *folded, b attest.BuildID) (BuildReport, error) {
	r, _ := fd.fold.Record(b)
	r.Build = b
	o, err := Agree(r, *v.pol.Agreement)
	if err != nil {
		return BuildReport{Build: b, Verdict: StatusVerificationFailed}, fmt.Errorf("witness: verify %v: %w: %w", b, ErrBadEntry, err)
	}
	br := reportOf(o)
	acc := fd.builds[b]
	br.Entries = acc.entries
	last := acc.last
	// The latest verdict of each policy witness.
	latest := map[string]verdictAt{}
	for _, va := range acc.verdicts {
		_, name, ok := v.pol.verdictVerifier(va.KeyID)
		if !ok {
			continue
		}
		if cur, ok := latest[name]; !ok || va.Verdict.TreeSize > cur.Verdict.TreeSize || va.Verdict.TreeSize == cur.Verdict.TreeSize && va.Index > cur.Index {
			latest[name] = va
		}
	}
	vouch := 0
	var disagree []string
	for _, w := range v.pol.Witnesses {
		va, ok := latest[w.Name]
		if !ok {
			continue
		}
		wc := WitnessCheck{Witness: w.Name, Index: va.Index, TreeSize: va.Verdict.TreeSize, Verdict: va.Verdict.Verdict}
		// The witness vouches for every entry below its tree size: it must
		// cover every entry seen here (docs/verify.md "Completeness").
		wc.Covers = va.Verdict.TreeSize > last
		if va.Verdict.TreeSize > va.Index {
			// A verdict is computed on a tree that does not hold it yet.
			wc.Covers = false
			wc.Diffs = []string{fmt.Sprintf("claims tree size %d at index %d", va.Verdict.TreeSize, va.Index)}
			disagree = append(disagree, fmt.Sprintf("%s (verdict %d): %v", w.Name, va.Index, wc.Diffs))
		}
		if wc.Covers {
			at, err := Agree(recordAt(r, va.Verdict.TreeSize), *v.pol.Agreement)
			if err != nil {
				return br, fmt.Errorf("witness: verify %v: %w: %w", b, ErrBadEntry, err)
			}
			wc.Diffs = compareVerdict(va.Verdict, at)
			wc.Agrees = len(wc.Diffs) == 0
			if wc.Agrees {
				vouch++
			} else {
				disagree = append(disagree, fmt.Sprintf("%s (verdict %d at tree size %d): %v", w.Name, va.Index, va.Verdict.TreeSize, wc.Diffs))
			}
		}
		br.Witnesses = append(br.Witnesses, wc)
	}
	br.Subjects = subjectsOf(r, o)
	if len(disagree) > 0 {
		return br, fmt.Errorf("witness: verify %s.%s: %w: %v", b.NVR, b.Arch, ErrWitnessDisagrees, disagree)
	}
	if !o.Final && vouch == 0 {
		// Nothing is decided and no witness says otherwise: insufficient.
		return br, nil
	}
	if vouch < v.pol.WitnessQuorum {
		return br, fmt.Errorf("witness: verify %s.%s: %d policy witnesses vouch for the verdict at a tree size covering entry %d, need %d: %w", b.NVR, b.Arch, vouch, last, v.pol.WitnessQuorum, ErrTooFewVerdicts)
	}
	return br, nil
}

func reportOf(o Outcome) BuildReport {
	br := BuildReport{
		Build: o.Build, Verdict: o.Verdict, Final: o.Final, ResultSet: o.ResultSet,
		Groups: o.Groups, Outliers: o.Outliers, Split: o.Split, Official: o.Official, OfficialDiff: o.OfficialDiff,
		Witnesses: []WitnessCheck{},
	}
	if br.Groups == nil {
		br.Groups = []Group{}
	}
	for _, x := range o.Ignored {
		br.Ignored = append(br.Ignored, IgnoredRef{Index: x.Index, KeyID: x.KeyID, Reason: x.Err.Error()})
	}
	return br
}

// subjectsOf returns the agreed group's RPMs.
func subjectsOf(r BuildRecord, o Outcome) map[string]string {
	if o.ResultSet == "" {
		return nil
	}
	for _, res := range r.Results {
		if res.ResultSet == o.ResultSet {
			return res.Subjects
		}
	}
	return nil
}

// worstVerdict is the status of several builds: the one with the largest
// exit code, reproduced only if all are.
func worstVerdict(bs []BuildReport) string {
	worst := VerdictReproduced
	for _, b := range bs {
		if VerdictExit(b.Verdict) > VerdictExit(worst) {
			worst = b.Verdict
		}
	}
	return worst
}

// Exit codes of `skyline verify` (docs/verify.md "Exit codes").
const (
	ExitReproduced   = 0
	ExitRejected     = 1 // disputed, official-mismatch, RPMs differ
	ExitUndecided    = 2 // insufficient, unreproducible
	ExitVerification = 3
	ExitUsage        = 4
)

// VerdictExit maps a report status to its exit code.
func VerdictExit(status string) int {
	switch status {
	case VerdictReproduced:
		return ExitReproduced
	case VerdictDisputed, VerdictOfficialMismatch, StatusRPMMismatch:
		return ExitRejected
	case VerdictInsufficient, VerdictUnreproducible:
		return ExitUndecided
	}
	return ExitVerification
}

// VerifyExit maps Verify's result to its exit code.
func VerifyExit(rep *VerifyReport, err error) int {
	switch {
	case errors.Is(err, ErrUsage), errors.Is(err, ErrPolicyFile):
		return ExitUsage
	case err != nil:
		return ExitVerification
	}
	return VerdictExit(rep.Status)
}

// CheckRPMs digests the RPMs in dir (attest/rpm: the skyline-rpm-v1
// digest leaves the signature out, so signed copies match) and compares
// them with the build's agreed result set: the same file names with the
// same digests, nothing more, nothing missing. Source RPMs are left out,
// as they are of result sets.
func CheckRPMs(dir string, b BuildReport) (*RPMCheck, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.rpm"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("witness: verify: --rpm-dir %s holds no RPMs: %w", dir, ErrUsage)
	}
	slices.Sort(files)
	chk := &RPMCheck{Dir: dir, ResultSet: b.ResultSet}
	got := map[string]string{}
	var subjects []attest.Subject
	for _, path := range files {
		d, err := rpm.DigestFile(path)
		if err != nil {
			chk.Unreadable = append(chk.Unreadable, fmt.Sprintf("%s: %v", filepath.Base(path), err))
			continue
		}
		if d.IsSource {
			continue
		}
		chk.Files = append(chk.Files, d)
		got[d.File] = d.Skyline
		subjects = append(subjects, attest.Subject{Name: d.File, SHA256: d.SHA256, Skyline: d.Skyline})
	}
	chk.Diffs = diffRPMs(b.Subjects, got)
	chk.Match = b.ResultSet != "" && len(chk.Unreadable) == 0 && len(chk.Diffs) == 0 &&
		attest.ResultSetDigest(subjects) == b.ResultSet
	return chk, nil
}

// parallel runs fn(0..n-1) on at most maxParallel goroutines and waits.
func parallel(n int, fn func(i int)) {
	sem := make(chan struct{}, maxParallel)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// parallelTiles fetches the tiles of one ReadTiles call concurrently.
type parallelTiles struct{ *httpTiles }

func (p *parallelTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	parallel(len(tiles), func(i int) {
		b, err := p.httpTiles.ReadTiles(tiles[i : i+1])
		if err != nil {
			errs[i] = err
			return
		}
		out[i] = b[0]
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func mapsKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
