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
	if _, ok := x.primed.Load(x.hash(env)); ok {
		t.Fatal("primed entry not consumed")
	}
	forget()
	x.prime(env, e)()
	if _, ok := x.primed.Load(x.hash(env)); ok {
		t.Fatal("forget left the entry")
	}
	// A hash collision (simulated: another entry's index stored under
	// env's hash) is never answered: the cache parses env instead.
	x.primed.Store(x.hash(env), &primedIndex{entry: []byte("other"), dedup: []byte("wrong")})
	dedup, keys, err = x.Index(env)
	if err != nil || !bytes.Equal(dedup, wantDedup) || !reflect.DeepEqual(keys, wantKeys) {
		t.Fatalf("Index on a collision: %x %+v %v", dedup, keys, err)
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

// TestIndexerNonBuildEntries checks the lookups verify relies on: a key's
// enrolment and revocation under KeyLookup(key id), alarms and clearings
// under AlarmLookup, and those lookup names pass the NVR check of the
// lookup route.
func TestIndexerNonBuildEntries(t *testing.T) {
	k, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	kid := k.KeyID()
	at := time.Unix(100, 0).UTC()
	for _, c := range []struct {
		typ     string
		payload any
		nvr     string
		kind    string
	}{
		{attest.PayloadEnrolment, &attest.Enrolment{KeyID: kid, PublicKey: string(k.PublicPEM()), Role: attest.RoleBuilder, Operator: "alice", Contact: "a@example.org", Since: at}, KeyLookup(kid), IndexEnrolment},
		{attest.PayloadRevocation, &attest.Revocation{KeyID: kid, Operator: "alice", Reason: "lost", Until: at}, KeyLookup(kid), IndexRevocation},
		{attest.PayloadAlarm, &attest.Alarm{Reason: "outlier rate", Rate: 0.2, Window: 20, TreeSize: 7, At: at}, AlarmLookup, IndexAlarm},
		{attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: 7, Reason: "fixed", At: at}, AlarmLookup, IndexAlarmClear},
	} {
		env, err := attest.Sign(k, c.typ, c.payload)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		_, keys, err := Indexer(env)
		if err != nil {
			t.Fatalf("%s: %v", c.typ, err)
		}
		if len(keys) != 1 || keys[0].NVR != c.nvr || keys[0].Type != c.kind {
			t.Errorf("%s indexed as %+v, want %s/%s", c.typ, keys, c.nvr, c.kind)
		}
		if err := attest.CheckNVR(c.nvr); err != nil {
			t.Errorf("lookup name %q is not served by /lookup: %v", c.nvr, err)
		}
	}
}
