package attest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// ResultSetVersion names the result-set digest algorithm.
const ResultSetVersion = "skyline-resultset-v1"

// Subject is one binary RPM of a result set.
type Subject struct {
	Name    string // RPM file name, e.g. hello-2.12.1-5.fc41.x86_64.rpm
	SHA256  string // lowercase hex SHA-256 of the whole file
	Skyline string // skyline-rpm-v1 digest (lowercase hex), signature-independent
}

// isSourceName reports whether an RPM file name is a source package.
func isSourceName(name string) bool {
	return strings.HasSuffix(name, ".src.rpm") || strings.HasSuffix(name, ".nosrc.rpm")
}

// ResultSetDigest returns the skyline-resultset-v1 digest of a build's
// binary RPMs, as lowercase hex:
//
//	SHA-256( LP("skyline-resultset-v1") || U64(n) || for each RPM: LP(name) || LP(skyline digest) )
//
// where the RPMs are the subjects minus source RPMs, sorted by file name
// (bytewise), n is their number, U64 is an 8-byte big-endian integer and
// LP(x) = U64(len(x)) || x. The file SHA-256 is left out on purpose: it
// changes when Koji signs a package, the skyline digest does not.
func ResultSetDigest(subjects []Subject) string {
	rpms := make([]Subject, 0, len(subjects))
	for _, s := range subjects {
		if !isSourceName(s.Name) {
			rpms = append(rpms, s)
		}
	}
	slices.SortStableFunc(rpms, func(a, b Subject) int { return strings.Compare(a.Name, b.Name) })
	h := sha256.New()
	var n [8]byte
	lp := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	lp(ResultSetVersion)
	binary.BigEndian.PutUint64(n[:], uint64(len(rpms)))
	h.Write(n[:])
	for _, s := range rpms {
		lp(s.Name)
		lp(s.Skyline)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ResultSet is a whole build result, reassembled from its parts.
type ResultSet struct {
	Build    BuildID
	Official bool
	Digest   string    // skyline-resultset-v1 digest
	Subjects []Subject // sorted by name
	Parts    int
}

// Reassemble checks that parts are the complete set of parts of one
// result set (same build, builder, digest and part count; every part
// present exactly once; the subjects, in part order, sorted and hashing to
// the digest) and returns the whole set. Parts may come in any order.
func Reassemble(parts []*Attestation) (*ResultSet, error) {
	if len(parts) == 0 {
		return nil, fmt.Errorf("attest: reassemble: no parts: %w", ErrParts)
	}
	first := parts[0]
	ref := first.ResultSet
	if ref.Parts != len(parts) {
		return nil, fmt.Errorf("attest: reassemble: have %d parts of %d: %w", len(parts), ref.Parts, ErrParts)
	}
	byPart := make([]*Attestation, ref.Parts)
	for _, p := range parts {
		r := p.ResultSet
		switch {
		case p.Build != first.Build:
			return nil, fmt.Errorf("attest: reassemble: part %d is for build %v, not %v: %w", r.Part, p.Build, first.Build, ErrParts)
		case p.BuilderID != first.BuilderID || p.Official != first.Official:
			return nil, fmt.Errorf("attest: reassemble: part %d is from builder %s, not %s: %w", r.Part, p.BuilderID, first.BuilderID, ErrParts)
		case r.Version != ref.Version || r.Digest != ref.Digest || r.Parts != ref.Parts || r.Count != ref.Count:
			return nil, fmt.Errorf("attest: reassemble: part %d belongs to result set %s/%d parts, not %s/%d: %w", r.Part, r.Digest, r.Parts, ref.Digest, ref.Parts, ErrParts)
		case r.Part < 1 || r.Part > ref.Parts:
			return nil, fmt.Errorf("attest: reassemble: part number %d out of 1..%d: %w", r.Part, ref.Parts, ErrParts)
		case byPart[r.Part-1] != nil:
			return nil, fmt.Errorf("attest: reassemble: part %d twice: %w", r.Part, ErrParts)
		}
		byPart[r.Part-1] = p
	}
	var all []Subject
	for _, p := range byPart {
		all = append(all, p.Subjects...)
	}
	if len(all) != ref.Count {
		return nil, fmt.Errorf("attest: reassemble: %d subjects, result set says %d: %w", len(all), ref.Count, ErrParts)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1].Name >= all[i].Name {
			return nil, fmt.Errorf("attest: reassemble: subjects %q and %q out of order across parts: %w", all[i-1].Name, all[i].Name, ErrParts)
		}
	}
	if got := ResultSetDigest(all); got != ref.Digest {
		return nil, fmt.Errorf("attest: reassemble: subjects hash to %s, parts say %s: %w", got, ref.Digest, ErrParts)
	}
	return &ResultSet{Build: first.Build, Official: first.Official, Digest: ref.Digest, Subjects: all, Parts: ref.Parts}, nil
}
