package coord

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// TestIndexCacheMatchesIndexer checks that a primed IndexCache answers
// exactly what Indexer computes, once, and that forgetting works.
func TestIndexCacheMatchesIndexer(t *testing.T) {
	k, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	b := attest.BuildID{NVR: "hello-1.0-1", Arch: "x86_64", SRPMSHA256: fmtHex(sha256.Sum256([]byte("s")))}
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "rpmbuild", Chroot: "c", LeaseID: "l", Started: time.Unix(1, 0).UTC(), Finished: time.Unix(2, 0).UTC()},
		[]attest.Subject{{Name: "hello-1.0-1.x86_64.rpm", SHA256: fmtHex(sha256.Sum256([]byte("a"))), Skyline: fmtHex(sha256.Sum256([]byte("b")))}}, k)
	if err != nil {
		t.Fatal(err)
	}
	env := envs[0]
	e, err := attest.Parse(env, attest.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantDedup, wantKeys, err := Indexer(env)
	if err != nil {
		t.Fatal(err)
	}
	if len(wantKeys) != 1 || wantKeys[0].NVR != b.NVR || wantKeys[0].Type != IndexBuild || len(wantDedup) != 64 {
		t.Fatalf("Indexer: %x %+v", wantDedup, wantKeys)
	}
	var x IndexCache
	forget := x.prime(env, e)
	dedup, keys, err := x.Index(bytes.Clone(env))
	if err != nil || !bytes.Equal(dedup, wantDedup) || !reflect.DeepEqual(keys, wantKeys) {
		t.Fatalf("primed Index: %x %+v %v", dedup, keys, err)
	}
	if _, ok := x.primed.Load(sha256.Sum256(env)); ok {
		t.Fatal("primed entry not consumed")
	}
	forget()
	x.prime(env, e)()
	if _, ok := x.primed.Load(sha256.Sum256(env)); ok {
		t.Fatal("forget left the entry")
	}
	// Unprimed: the cache parses, and refuses what Indexer refuses.
	if _, _, err := x.Index([]byte("{}")); err == nil {
		t.Fatal("unprimed garbage accepted")
	}
}

func fmtHex(h [32]byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 64)
	for i, c := range h {
		out[2*i], out[2*i+1] = digits[c>>4], digits[c&15]
	}
	return string(out)
}
