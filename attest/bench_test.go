package attest

import (
	"fmt"
	"testing"
)

// benchEnvelope returns an Ed25519-signed attestation of a typical size:
// hello's RPMs give an envelope of about 2.9 KB, like the statement of
// /work/shared/bench/limits BenchmarkDSSEVerifyEd25519.
func benchEnvelope(b *testing.B) ([]byte, *Signer) {
	s := newSigner(b, "ed25519")
	var subs []Subject
	for _, n := range []string{"hello", "hello-debuginfo", "hello-debugsource", "hello-doc"} {
		name := fmt.Sprintf("%s-2.12.1-5.fc41.x86_64.rpm", n)
		subs = append(subs, Subject{Name: name, SHA256: hexOf("f" + name), Skyline: hexOf("s" + name)})
	}
	envs, err := NewSubjectAttestations(testBuild(), subs, s)
	if err != nil {
		b.Fatal(err)
	}
	return envs[0], s
}

// BenchmarkVerifyEnvelope is the log's admission cost of one attestation:
// strict parse of envelope and statement plus Ed25519 verification.
func BenchmarkVerifyEnvelope(b *testing.B) {
	env, s := benchEnvelope(b)
	v := s.Verifier()
	opts := ParseOptions{Keys: func(string) (*Verifier, error) { return v, nil }}
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(env, opts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
