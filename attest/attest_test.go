package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func newSigner(t testing.TB, kind string) *Signer {
	t.Helper()
	var priv crypto.PrivateKey
	var err error
	switch kind {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func hexOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func testBuild() Build {
	return Build{
		ID:       BuildID{NVR: "hello-2.12.1-5.fc41", Arch: "x86_64", SRPMSHA256: hexOf("srpm")},
		SRPMURL:  "https://kojipkgs.fedoraproject.org/packages/hello/2.12.1/5.fc41/src/hello-2.12.1-5.fc41.src.rpm",
		Backend:  "mock",
		Chroot:   "fedora-41-x86_64",
		LeaseID:  "lease-0001",
		Started:  time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC),
		Finished: time.Date(2026, 11, 29, 10, 5, 0, 0, time.UTC),
	}
}

func testSubjects(n int) []Subject {
	subs := make([]Subject, n)
	for i := range subs {
		name := fmt.Sprintf("texlive-package-number-%05d-2024-20.fc41.noarch.rpm", i)
		subs[i] = Subject{Name: name, SHA256: hexOf("file" + name), Skyline: hexOf("sky" + name)}
	}
	return subs
}

func TestKeyIDPinned(t *testing.T) {
	for _, kind := range []string{"ed25519", "ecdsa"} {
		s := newSigner(t, kind)
		der, err := x509.MarshalPKIXPublicKey(s.Public())
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(der)
		if want := hex.EncodeToString(sum[:]); s.KeyID() != want {
			t.Errorf("%s: KeyID %s, independent sha256(PKIX DER) %s", kind, s.KeyID(), want)
		}
		v, err := ParsePublicPEM(s.PublicPEM())
		if err != nil {
			t.Fatal(err)
		}
		if v.KeyID() != s.KeyID() {
			t.Errorf("%s: verifier key id %s != signer %s", kind, v.KeyID(), s.KeyID())
		}
	}
	// A fixed key pins the definition across versions.
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	s, err := NewSigner(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(ed25519.NewKeyFromSeed(seed).Public())
	sum := sha256.Sum256(der)
	if s.KeyID() != hex.EncodeToString(sum[:]) {
		t.Fatalf("pinned key id mismatch")
	}
}

func TestNewSignerRejectsOtherKeys(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := NewSigner(p384); !errors.Is(err, ErrKeyType) {
		t.Fatalf("P-384 key: err %v, want ErrKeyType", err)
	}
	if _, err := NewVerifier(p384.Public()); !errors.Is(err, ErrKeyType) {
		t.Fatalf("P-384 public key: err %v, want ErrKeyType", err)
	}
	if _, err := ParsePublicPEM([]byte("not pem")); !errors.Is(err, ErrKeyFormat) {
		t.Fatalf("garbage PEM: err %v, want ErrKeyFormat", err)
	}
}

func TestAttestationRoundTrip(t *testing.T) {
	for _, kind := range []string{"ed25519", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			s := newSigner(t, kind)
			b := testBuild()
			subs := testSubjects(3)
			envs, err := NewSubjectAttestations(b, append(subs, Subject{Name: "hello-2.12.1-5.fc41.src.rpm", SHA256: hexOf("x"), Skyline: hexOf("y")}), s)
			if err != nil {
				t.Fatal(err)
			}
			if len(envs) != 1 {
				t.Fatalf("%d envelopes for 3 RPMs", len(envs))
			}
			e, err := Parse(envs[0], ParseOptions{Keys: func(id string) (*Verifier, error) {
				if id != s.KeyID() {
					return nil, ErrUnknownKey
				}
				return s.Verifier(), nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !e.Verified || e.KeyID != s.KeyID() || e.PayloadType != PayloadInToto {
				t.Fatalf("entry %+v", e)
			}
			if e.PayloadHash != sha256.Sum256(e.Payload) {
				t.Fatal("PayloadHash is not sha256(payload)")
			}
			a := e.Attestation()
			if a.Build != b.ID || a.SRPMURL != b.SRPMURL || a.Backend != "mock" || a.Chroot != b.Chroot || a.LeaseID != b.LeaseID {
				t.Fatalf("attestation %+v", a)
			}
			if !a.Started.Equal(b.Started) || !a.Finished.Equal(b.Finished) || a.BuilderID != BuilderID(s.KeyID()) || a.Official {
				t.Fatalf("attestation %+v", a)
			}
			if len(a.Subjects) != 3 || a.Subjects[0] != subs[0] {
				t.Fatalf("subjects %+v (source RPM must be left out)", a.Subjects)
			}
			if a.ResultSet.Digest != ResultSetDigest(subs) || a.ResultSet.Parts != 1 || a.ResultSet.Count != 3 {
				t.Fatalf("result set %+v", a.ResultSet)
			}
			// Another key does not verify it.
			other := newSigner(t, kind)
			if err := e.Verify(other.Verifier()); !errors.Is(err, ErrKeyID) {
				t.Fatalf("other key: %v, want ErrKeyID", err)
			}
		})
	}
}

// sslVerifier adapts crypto/ed25519 and crypto/ecdsa to
// go-securesystemslib's dsse.Verifier, independent of our code path.
type sslVerifier struct {
	pub   crypto.PublicKey
	keyID string
}

func (v sslVerifier) Verify(_ context.Context, data, sig []byte) error {
	switch k := v.pub.(type) {
	case ed25519.PublicKey:
		if ed25519.Verify(k, data, sig) {
			return nil
		}
	case *ecdsa.PublicKey:
		h := sha256.Sum256(data)
		if ecdsa.VerifyASN1(k, h[:], sig) {
			return nil
		}
	}
	return errors.New("bad signature")
}
func (v sslVerifier) KeyID() (string, error)   { return v.keyID, nil }
func (v sslVerifier) Public() crypto.PublicKey { return v.pub }

func TestIndependentDSSEAndInToto(t *testing.T) {
	for _, kind := range []string{"ed25519", "ecdsa"} {
		t.Run(kind, func(t *testing.T) {
			s := newSigner(t, kind)
			envs, err := NewSubjectAttestations(testBuild(), testSubjects(4), s)
			if err != nil {
				t.Fatal(err)
			}
			var env ssldsse.Envelope
			if err := json.Unmarshal(envs[0], &env); err != nil {
				t.Fatal(err)
			}
			ev, err := ssldsse.NewEnvelopeVerifier(sslVerifier{pub: s.Public(), keyID: s.KeyID()})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := ev.Verify(context.Background(), &env)
			if err != nil {
				t.Fatalf("go-securesystemslib rejects our envelope: %v", err)
			}
			if len(keys) != 1 || keys[0].KeyID != s.KeyID() {
				t.Fatalf("accepted keys %+v", keys)
			}
			payload, err := env.DecodeB64Payload()
			if err != nil {
				t.Fatal(err)
			}
			//lint:ignore SA1019 in-toto-golang's statement type is the independent parser the acceptance names.
			var st in_toto.ProvenanceStatementSLSA1
			if err := json.Unmarshal(payload, &st); err != nil {
				t.Fatalf("in-toto-golang cannot parse the statement: %v", err)
			}
			if st.Type != StatementType || st.PredicateType != PredicateSLSA || len(st.Subject) != 4 {
				t.Fatalf("statement header %+v", st.StatementHeader)
			}
			if st.Subject[0].Digest["skyline-rpm-v1"] != testSubjects(4)[0].Skyline {
				t.Fatalf("subject digest %v", st.Subject[0].Digest)
			}
			if st.Predicate.BuildDefinition.BuildType != BuildTypeRebuild || st.Predicate.RunDetails.Builder.ID != BuilderID(s.KeyID()) {
				t.Fatalf("predicate %+v", st.Predicate)
			}
			// A flipped signature bit fails the independent verifier too.
			sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
			sig[len(sig)/2] ^= 1
			env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			if _, err := ev.Verify(context.Background(), &env); err == nil {
				t.Fatal("tampered envelope verified")
			}
		})
	}
}

func TestResultSetDigestPinned(t *testing.T) {
	subs := []Subject{{Name: "b.rpm", Skyline: "22"}, {Name: "a.rpm", Skyline: "11"}, {Name: "a.src.rpm", Skyline: "33"}}
	// Independent computation of the documented encoding.
	var buf bytes.Buffer
	lp := func(s string) {
		var n [8]byte
		for i := range 8 {
			n[7-i] = byte(len(s) >> (8 * i))
		}
		buf.Write(n[:])
		buf.WriteString(s)
	}
	lp("skyline-resultset-v1")
	buf.Write([]byte{0, 0, 0, 0, 0, 0, 0, 2})
	lp("a.rpm")
	lp("11")
	lp("b.rpm")
	lp("22")
	sum := sha256.Sum256(buf.Bytes())
	if got, want := ResultSetDigest(subs), hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("ResultSetDigest %s, want %s", got, want)
	}
	// The file sha256 does not matter (Koji signing changes it).
	subs[0].SHA256 = "ff"
	if ResultSetDigest(subs) != hex.EncodeToString(sum[:]) {
		t.Fatal("file sha256 changed the result-set digest")
	}
	// Moving bytes between name and digest changes it (unambiguous).
	if ResultSetDigest([]Subject{{Name: "a.rpm1", Skyline: "1"}, {Name: "b.rpm", Skyline: "22"}}) == hex.EncodeToString(sum[:]) {
		t.Fatal("ambiguous encoding")
	}
}

func TestSplitLargeResultSet(t *testing.T) {
	s := newSigner(t, "ed25519")
	b := testBuild()
	subs := testSubjects(6000)
	envs, err := NewSubjectAttestations(b, subs, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(envs) < 2 {
		t.Fatalf("6000 RPMs in %d envelope(s)", len(envs))
	}
	keys := ParseOptions{Keys: func(string) (*Verifier, error) { return s.Verifier(), nil }}
	var parts []*Attestation
	for i, env := range envs {
		if len(env) > MaxEntrySize {
			t.Fatalf("part %d is %d bytes", i+1, len(env))
		}
		e, err := Parse(env, keys)
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		parts = append(parts, e.Attestation())
	}
	t.Logf("6000 RPMs: %d parts", len(parts))
	// Any order works.
	rev := make([]*Attestation, len(parts))
	for i, p := range parts {
		rev[len(parts)-1-i] = p
	}
	rs, err := Reassemble(rev)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Digest != ResultSetDigest(subs) || len(rs.Subjects) != 6000 || rs.Build != b.ID {
		t.Fatalf("reassembled %s with %d subjects", rs.Digest, len(rs.Subjects))
	}

	if _, err := Reassemble(parts[1:]); !errors.Is(err, ErrParts) {
		t.Errorf("missing part: %v, want ErrParts", err)
	}
	dup := append(append([]*Attestation{}, parts[:len(parts)-1]...), parts[0])
	if _, err := Reassemble(dup); !errors.Is(err, ErrParts) {
		t.Errorf("duplicated part: %v, want ErrParts", err)
	}
	// A part of another build's result set of the same shape.
	b2 := b
	b2.ID.NVR = "hello-2.12.1-6.fc41"
	envs2, err := NewSubjectAttestations(b2, subs, s)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Parse(envs2[1], keys)
	if err != nil {
		t.Fatal(err)
	}
	foreign := append(append([]*Attestation{}, parts...), nil)[:len(parts)]
	foreign[1] = e2.Attestation()
	if _, err := Reassemble(foreign); !errors.Is(err, ErrParts) {
		t.Errorf("foreign part: %v, want ErrParts", err)
	}
	// A part whose subjects were swapped for others (same header) does not
	// hash to the digest.
	forged := *parts[0]
	forged.Subjects = append([]Subject{}, forged.Subjects...)
	forged.Subjects[0].Skyline = hexOf("evil")
	bad := append([]*Attestation{&forged}, parts[1:]...)
	if _, err := Reassemble(bad); !errors.Is(err, ErrParts) {
		t.Errorf("forged subjects: %v, want ErrParts", err)
	}
}

func TestSignJSONKinds(t *testing.T) {
	s := newSigner(t, "ed25519")
	now := time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)
	for _, c := range validPayloads(t, s, now) {
		env, err := Sign(s, c.typ, c.v)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		e, err := Parse(env, ParseOptions{})
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if err := e.Verify(s.Verifier()); err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		got, _ := json.Marshal(e.Value)
		want, _ := json.Marshal(c.v)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: round trip\n got %s\nwant %s", c.typ, got, want)
		}
	}
	if _, err := Sign(s, PayloadJob, &Lease{}); !errors.Is(err, ErrPayloadType) {
		t.Fatalf("mismatched payload type: %v", err)
	}
}

type payloadCase struct {
	typ string
	v   any
}

func validPayloads(t testing.TB, s *Signer, now time.Time) []payloadCase {
	bid := BuildID{NVR: "hello-2.12.1-5.fc41", Arch: "x86_64", SRPMSHA256: hexOf("srpm")}
	return []payloadCase{
		{PayloadEnrolment, &Enrolment{KeyID: s.KeyID(), PublicKey: string(s.PublicPEM()), Role: RoleBuilder, Operator: "alice", Contact: "alice@example.org", Since: now}},
		{PayloadRevocation, &Revocation{KeyID: s.KeyID(), Operator: "alice", Reason: "key lost", Until: now}},
		{PayloadJob, &Job{JobID: "job-1", Build: bid, SRPMURL: "https://example.org/hello.src.rpm", Wanted: 10, Enqueued: now, Deadline: now.Add(7 * 24 * time.Hour)}},
		{PayloadLease, &Lease{LeaseID: "lease-1", JobID: "job-1", Build: bid, KeyID: s.KeyID(), Operator: "alice", Slot: 3, Attempt: 1, Issued: now, Expires: now.Add(time.Hour)}},
		{PayloadLeaseEnd, &LeaseEnd{LeaseID: "lease-1", JobID: "job-1", KeyID: s.KeyID(), Reason: LeaseExpired, At: now}},
		{PayloadJobClose, &JobClose{JobID: "job-1", Build: bid, Results: 9, At: now}},
		{PayloadVerdict, &Verdict{Build: bid, Verdict: VerdictReproduced, TreeSize: 42, ResultSet: hexOf("rs"), Groups: []VerdictGroup{{ResultSet: hexOf("rs"), Operators: []string{"alice", "bob"}, Entries: []uint64{3, 4}}}, At: now}},
		{PayloadAlarm, &Alarm{Reason: "outlier rate", Rate: 0.2, Window: 100, TreeSize: 42, At: now}},
		{PayloadAlarmClear, &AlarmClear{AlarmIndex: 43, Reason: "false alarm", At: now}},
	}
}

func TestOfficialBuild(t *testing.T) {
	s := newSigner(t, "ed25519")
	b := testBuild()
	b.Official, b.LeaseID, b.Backend, b.Chroot = true, "", "koji", ""
	envs, err := NewSubjectAttestations(b, testSubjects(2), s)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(envs[0], ParseOptions{Keys: func(string) (*Verifier, error) { return s.Verifier(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	a := e.Attestation()
	if !a.Official || a.LeaseID != "" || a.Backend != "koji" {
		t.Fatalf("official attestation %+v", a)
	}
	if !bytes.Contains(e.Payload, []byte(BuildTypeOfficial)) {
		t.Fatal("payload lacks the official build type")
	}
	// Parts of an official build and of a rebuild never reassemble together.
	rb := testBuild()
	renvs, _ := NewSubjectAttestations(rb, testSubjects(2), s)
	re, _ := Parse(renvs[0], ParseOptions{})
	a2 := *a
	a2.ResultSet.Parts, a2.ResultSet.Part = 2, 1
	r2 := *re.Attestation()
	r2.ResultSet.Parts, r2.ResultSet.Part = 2, 2
	if _, err := Reassemble([]*Attestation{&a2, &r2}); !errors.Is(err, ErrParts) {
		t.Fatalf("official + rebuild parts: %v, want ErrParts", err)
	}
}
