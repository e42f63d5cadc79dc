package attest

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest/rpm"
	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Identifiers in skyline statements.
const (
	StatementType      = intoto.StatementTypeUri // "https://in-toto.io/Statement/v1"
	PredicateSLSA      = "https://slsa.dev/provenance/v1"
	BuildTypeRebuild   = "https://github.com/fedora-skyline/skyline/buildtypes/rebuild/v1"
	BuildTypeOfficial  = "https://github.com/fedora-skyline/skyline/buildtypes/official/v1"
	BuilderIDPrefix    = "https://github.com/fedora-skyline/skyline/builder/"
	DigestSkyline      = "skyline-rpm-v1" // subject digest algorithm name of the RPM digest
	DigestSHA256       = "sha256"
	maxSubjectsPerPart = 100000
)

// Build describes one rebuild (or official Koji build) for NewAttestations.
type Build struct {
	ID       BuildID
	SRPMURL  string
	Backend  string // rpmbuild, mock, koji
	Chroot   string // mock chroot or build root name
	LeaseID  string // the coordinator's lease; empty for official builds
	Started  time.Time
	Finished time.Time
	Official bool // an official Koji build imported by the importer
}

// ResultSetRef is the result_set internal parameter: which part of which
// result set an attestation carries.
type ResultSetRef struct {
	Version string // ResultSetVersion
	Digest  string // digest of the whole set
	Part    int    // 1-based
	Parts   int
	Count   int // RPMs in the whole set
}

// Attestation is a parsed build attestation (one part of a result set).
type Attestation struct {
	Build     BuildID
	Official  bool
	SRPMURL   string
	Backend   string
	Chroot    string
	LeaseID   string
	BuilderID string // runDetails.builder.id: BuilderIDPrefix + signer key id
	Started   time.Time
	Finished  time.Time
	Subjects  []Subject // this part's RPMs, sorted by name
	ResultSet ResultSetRef
}

// BuilderID returns the SLSA builder id of a key id.
func BuilderID(keyID string) string { return BuilderIDPrefix + keyID }

// NewSubjectAttestations returns the signed envelopes attesting that build b
// produced the binary RPMs subjects (source RPMs are left out), split into
// as many parts as needed for each envelope to fit in MaxEntrySize bytes.
func NewSubjectAttestations(b Build, subjects []Subject, s *Signer) ([][]byte, error) {
	if err := checkBuildID(b.ID); err != nil {
		return nil, fmt.Errorf("attest: new attestation: %w", err)
	}
	var rpms []Subject
	for _, sub := range subjects {
		if isSourceName(sub.Name) {
			continue
		}
		if err := checkSubject(sub); err != nil {
			return nil, fmt.Errorf("attest: new attestation: %w", err)
		}
		rpms = append(rpms, sub)
	}
	if len(rpms) == 0 {
		return nil, fmt.Errorf("attest: new attestation: no binary RPMs: %w", ErrSubjects)
	}
	slices.SortFunc(rpms, func(a, b Subject) int { return strings.Compare(a.Name, b.Name) })
	for i := 1; i < len(rpms); i++ {
		if rpms[i-1].Name == rpms[i].Name {
			return nil, fmt.Errorf("attest: new attestation: %q twice: %w", rpms[i].Name, ErrSubjects)
		}
	}
	ref := ResultSetRef{Version: ResultSetVersion, Digest: ResultSetDigest(rpms), Count: len(rpms)}
	parts := 1
	for {
		if parts > len(rpms) {
			return nil, fmt.Errorf("attest: new attestation: one RPM does not fit in an entry: %w", ErrTooLarge)
		}
		envs, biggest, err := signParts(b, rpms, ref, parts, s)
		if err != nil {
			return nil, err
		}
		if biggest <= MaxEntrySize {
			return envs, nil
		}
		// Grow the part count in proportion to the overshoot.
		next := parts * (biggest + MaxEntrySize/10) / MaxEntrySize
		parts = max(parts+1, next)
	}
}

// signParts splits rpms into parts near-equal runs and signs each.
func signParts(b Build, rpms []Subject, ref ResultSetRef, parts int, s *Signer) ([][]byte, int, error) {
	ref.Parts = parts
	envs := make([][]byte, 0, parts)
	biggest := 0
	for i := range parts {
		lo, hi := i*len(rpms)/parts, (i+1)*len(rpms)/parts
		ref.Part = i + 1
		payload, err := statementJSON(b, rpms[lo:hi], ref, s.KeyID())
		if err != nil {
			return nil, 0, err
		}
		env, err := s.SignEnvelope(PayloadInToto, payload)
		if err != nil {
			return nil, 0, err
		}
		biggest = max(biggest, len(env))
		envs = append(envs, env)
	}
	return envs, biggest, nil
}

// statementJSON builds the in-toto Statement v1 with its SLSA Provenance v1
// predicate and serializes it with protojson (in-toto attestation spec v1,
// "Statement" and "ResourceDescriptor").
func statementJSON(b Build, rpms []Subject, ref ResultSetRef, keyID string) ([]byte, error) {
	buildType := BuildTypeRebuild
	if b.Official {
		buildType = BuildTypeOfficial
	}
	srpm := map[string]any{"digest": map[string]any{DigestSHA256: b.ID.SRPMSHA256}}
	if b.SRPMURL != "" {
		srpm["uri"] = b.SRPMURL
	}
	ext, err := structpb.NewStruct(map[string]any{"nvr": b.ID.NVR, "arch": b.ID.Arch, "srpm": srpm})
	if err != nil {
		return nil, fmt.Errorf("attest: external parameters: %w", err)
	}
	internal := map[string]any{
		"result_set": map[string]any{
			"version": ref.Version, "digest": ref.Digest,
			"part": ref.Part, "parts": ref.Parts, "count": ref.Count,
		},
	}
	for k, v := range map[string]string{"backend": b.Backend, "chroot": b.Chroot, "lease_id": b.LeaseID} {
		if v != "" {
			internal[k] = v
		}
	}
	intl, err := structpb.NewStruct(internal)
	if err != nil {
		return nil, fmt.Errorf("attest: internal parameters: %w", err)
	}
	dep := &intoto.ResourceDescriptor{Uri: b.SRPMURL, Digest: map[string]string{DigestSHA256: b.ID.SRPMSHA256}}
	meta := &provenance.BuildMetadata{}
	if !b.Started.IsZero() {
		meta.StartedOn = timestamppb.New(b.Started)
	}
	if !b.Finished.IsZero() {
		meta.FinishedOn = timestamppb.New(b.Finished)
	}
	prov := &provenance.Provenance{
		BuildDefinition: &provenance.BuildDefinition{
			BuildType:            buildType,
			ExternalParameters:   ext,
			InternalParameters:   intl,
			ResolvedDependencies: []*intoto.ResourceDescriptor{dep},
		},
		RunDetails: &provenance.RunDetails{
			Builder:  &provenance.Builder{Id: BuilderID(keyID)},
			Metadata: meta,
		},
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("attest: provenance: %w", err)
	}
	provJSON, err := protojson.Marshal(prov)
	if err != nil {
		return nil, fmt.Errorf("attest: marshal provenance: %w", err)
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(provJSON, pred); err != nil {
		return nil, fmt.Errorf("attest: provenance to struct: %w", err)
	}
	st := &intoto.Statement{Type: StatementType, PredicateType: PredicateSLSA, Predicate: pred}
	for _, r := range rpms {
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{
			Name:   r.Name,
			Digest: map[string]string{DigestSHA256: r.SHA256, DigestSkyline: r.Skyline},
		})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("attest: statement: %w", err)
	}
	out, err := protojson.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("attest: marshal statement: %w", err)
	}
	return out, nil
}

// checkSubject checks one subject's name and digests.
func checkSubject(s Subject) error {
	if err := CheckRPMName(s.Name); err != nil {
		return err
	}
	if isSourceName(s.Name) {
		return fmt.Errorf("attest: subject %q is a source RPM: %w", s.Name, ErrSubjects)
	}
	if err := checkHex("subject sha256", s.SHA256); err != nil {
		return fmt.Errorf("%w: %w", ErrSubjects, err)
	}
	if err := checkHex("subject "+DigestSkyline, s.Skyline); err != nil {
		return fmt.Errorf("%w: %w", ErrSubjects, err)
	}
	return nil
}

// The JSON shape of a skyline statement as protojson writes it; decoded
// strictly by Parse.
type (
	stmtJSON struct {
		Type          string     `json:"_type"`
		Subject       []subjJSON `json:"subject"`
		PredicateType string     `json:"predicateType"`
		Predicate     *provJSON  `json:"predicate"`
	}
	subjJSON struct {
		Name   string     `json:"name"`
		Digest digestJSON `json:"digest"`
	}
	digestJSON struct {
		SHA256  string `json:"sha256"`
		Skyline string `json:"skyline-rpm-v1"`
	}
	provJSON struct {
		BuildDefinition struct {
			BuildType          string `json:"buildType"`
			ExternalParameters struct {
				NVR  string `json:"nvr"`
				Arch string `json:"arch"`
				SRPM struct {
					URI    string `json:"uri"`
					Digest struct {
						SHA256 string `json:"sha256"`
					} `json:"digest"`
				} `json:"srpm"`
			} `json:"externalParameters"`
			InternalParameters struct {
				Backend   string `json:"backend"`
				Chroot    string `json:"chroot"`
				LeaseID   string `json:"lease_id"`
				ResultSet struct {
					Version string  `json:"version"`
					Digest  string  `json:"digest"`
					Part    float64 `json:"part"`
					Parts   float64 `json:"parts"`
					Count   float64 `json:"count"`
				} `json:"result_set"`
			} `json:"internalParameters"`
			ResolvedDependencies []struct {
				URI    string `json:"uri"`
				Digest struct {
					SHA256 string `json:"sha256"`
				} `json:"digest"`
			} `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Metadata struct {
				StartedOn  string `json:"startedOn"`
				FinishedOn string `json:"finishedOn"`
			} `json:"metadata"`
		} `json:"runDetails"`
	}
)

// parseStatement strictly decodes and checks a skyline in-toto statement
// signed by keyID.
func parseStatement(payload []byte, keyID string) (*Attestation, error) {
	var st stmtJSON
	if err := decodeStrict("statement", payload, &st); err != nil {
		return nil, err
	}
	// in-toto attestation spec v1, Statement: _type is fixed.
	if st.Type != StatementType {
		return nil, fmt.Errorf("attest: statement _type %q: %w", trunc(st.Type), ErrStatementType)
	}
	if st.PredicateType != PredicateSLSA || st.Predicate == nil {
		return nil, fmt.Errorf("attest: predicateType %q: %w", trunc(st.PredicateType), ErrPredicateType)
	}
	p := st.Predicate
	bd := &p.BuildDefinition
	a := &Attestation{
		Build: BuildID{
			NVR:        bd.ExternalParameters.NVR,
			Arch:       bd.ExternalParameters.Arch,
			SRPMSHA256: bd.ExternalParameters.SRPM.Digest.SHA256,
		},
		SRPMURL:   bd.ExternalParameters.SRPM.URI,
		Backend:   bd.InternalParameters.Backend,
		Chroot:    bd.InternalParameters.Chroot,
		LeaseID:   bd.InternalParameters.LeaseID,
		BuilderID: p.RunDetails.Builder.ID,
	}
	switch bd.BuildType {
	case BuildTypeRebuild:
	case BuildTypeOfficial:
		a.Official = true
	default:
		return nil, fmt.Errorf("attest: buildType %q: %w", trunc(bd.BuildType), ErrBuildType)
	}
	if err := checkBuildID(a.Build); err != nil {
		return nil, err
	}
	for _, f := range []struct{ what, v string }{{"srpm uri", a.SRPMURL}, {"backend", a.Backend}, {"chroot", a.Chroot}, {"lease_id", a.LeaseID}} {
		if err := checkText(f.what, f.v, false); err != nil {
			return nil, err
		}
	}
	// SLSA Provenance v1: resolvedDependencies names the SRPM built.
	if deps := bd.ResolvedDependencies; len(deps) != 1 || deps[0].Digest.SHA256 != a.Build.SRPMSHA256 || deps[0].URI != a.SRPMURL {
		return nil, fmt.Errorf("attest: resolvedDependencies must be exactly the SRPM of externalParameters: %w", ErrBadField)
	}
	if keyID != "" && a.BuilderID != BuilderID(keyID) {
		return nil, fmt.Errorf("attest: builder id %q is not the signer's %q: %w", trunc(a.BuilderID), BuilderID(keyID), ErrKeyID)
	}
	var err error
	if a.Started, err = parseTime("startedOn", p.RunDetails.Metadata.StartedOn); err != nil {
		return nil, err
	}
	if a.Finished, err = parseTime("finishedOn", p.RunDetails.Metadata.FinishedOn); err != nil {
		return nil, err
	}
	rs := bd.InternalParameters.ResultSet
	ref := ResultSetRef{Version: rs.Version, Digest: rs.Digest, Part: int(rs.Part), Parts: int(rs.Parts), Count: int(rs.Count)}
	if ref.Version != ResultSetVersion {
		return nil, fmt.Errorf("attest: result_set version %q: %w", trunc(ref.Version), ErrBadField)
	}
	if err := checkHex("result_set digest", ref.Digest); err != nil {
		return nil, err
	}
	if float64(ref.Part) != rs.Part || float64(ref.Parts) != rs.Parts || float64(ref.Count) != rs.Count ||
		ref.Parts < 1 || ref.Part < 1 || ref.Part > ref.Parts || ref.Count < ref.Parts || ref.Count > maxSubjectsPerPart*ref.Parts {
		return nil, fmt.Errorf("attest: result_set part %v of %v, count %v: %w", rs.Part, rs.Parts, rs.Count, ErrBadField)
	}
	a.ResultSet = ref
	if len(st.Subject) == 0 || len(st.Subject) > ref.Count {
		return nil, fmt.Errorf("attest: %d subjects for a result set of %d: %w", len(st.Subject), ref.Count, ErrSubjects)
	}
	a.Subjects = make([]Subject, len(st.Subject))
	for i, sj := range st.Subject {
		sub := Subject{Name: sj.Name, SHA256: sj.Digest.SHA256, Skyline: sj.Digest.Skyline}
		if err := checkSubject(sub); err != nil {
			return nil, err
		}
		if i > 0 && a.Subjects[i-1].Name >= sub.Name {
			return nil, fmt.Errorf("attest: subjects %q, %q not sorted or duplicated: %w", a.Subjects[i-1].Name, sub.Name, ErrSubjects)
		}
		a.Subjects[i] = sub
	}
	if ref.Parts == 1 {
		if len(a.Subjects) != ref.Count {
			return nil, fmt.Errorf("attest: %d subjects, result set count %d: %w", len(a.Subjects), ref.Count, ErrSubjects)
		}
		if got := ResultSetDigest(a.Subjects); got != ref.Digest {
			return nil, fmt.Errorf("attest: subjects hash to %s, result_set digest is %s: %w", got, ref.Digest, ErrSubjects)
		}
	}
	return a, nil
}

// parseTime parses an RFC 3339 protobuf Timestamp; empty means unknown.
func parseTime(what, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("attest: %s %q: %w", what, trunc(s), ErrBadField)
	}
	return t, nil
}

// NewAttestations returns the signed envelopes attesting that build b
// produced rpms (their source RPMs are left out; see
// NewSubjectAttestations).
func NewAttestations(b Build, rpms []rpm.Digest, s *Signer) ([][]byte, error) {
	subjects := make([]Subject, 0, len(rpms))
	for _, d := range rpms {
		if d.IsSource {
			continue
		}
		subjects = append(subjects, Subject{Name: d.File, SHA256: d.SHA256, Skyline: d.Skyline})
	}
	return NewSubjectAttestations(b, subjects, s)
}
