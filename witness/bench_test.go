package witness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/log"
)

// synthetic is a log written entry by entry as `skyline serve` would write
// it (coordinator-signed enrolments, jobs, leases and closes; builder-signed
// attestations), without the coordinator service, so that large logs are
// cheap to make.
type synthetic struct {
	key      logKey
	log      *log.Log
	url      string
	coord    *attest.Signer
	builders []*attest.Signer
	entries  uint64
	results  uint64
}

func (s *synthetic) add(t testing.TB, env []byte) {
	t.Helper()
	if _, err := s.log.Add(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	s.entries++
}

func (s *synthetic) sign(t testing.TB, k *attest.Signer, typ string, payload any) []byte {
	t.Helper()
	env, err := attest.Sign(k, typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// newSynthetic makes a log with nBuilders enrolled builders (one operator
// each) and jobs jobs of perJob results each; in every dissentEvery-th
// job (none when 0) the last builder dissents.
func newSynthetic(t testing.TB, nBuilders, jobs, perJob, dissentEvery int) *synthetic {
	t.Helper()
	s := &synthetic{key: newLogKey(t, testOrigin), coord: newSigner(t)}
	s.log = openTestLog(t, s.key)
	_, s.url = serveLying(t, s.log)
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i := range nBuilders {
		b := newSigner(t)
		s.builders = append(s.builders, b)
		s.add(t, s.sign(t, s.coord, attest.PayloadEnrolment, &attest.Enrolment{KeyID: b.KeyID(), PublicKey: string(b.PublicPEM()), Role: attest.RoleBuilder, Operator: fmt.Sprintf("op%d", i), Contact: "x@example.org", Since: t0}))
	}
	for j := range jobs {
		nvr := fmt.Sprintf("pkg%d-1.0-1.fc41", j)
		build := attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: hexSum(nvr)}
		jobID := fmt.Sprintf("job%d", j)
		s.add(t, s.sign(t, s.coord, attest.PayloadJob, &attest.Job{JobID: jobID, Build: build, Wanted: perJob, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}))
		var leases []attest.Lease
		for k := range perJob {
			b := s.builders[(j+k)%nBuilders]
			l := attest.Lease{LeaseID: fmt.Sprintf("l%d-%d", j, k), JobID: jobID, Build: build, KeyID: b.KeyID(), Operator: fmt.Sprintf("op%d", (j+k)%nBuilders), Slot: k, Issued: t0, Expires: t0.Add(time.Hour)}
			leases = append(leases, l)
			s.add(t, s.sign(t, s.coord, attest.PayloadLease, &l))
		}
		for k, l := range leases {
			result := "good"
			if dissentEvery > 0 && j%dissentEvery == 0 && k == perJob-1 {
				result = "bad"
			}
			var subs []attest.Subject
			for _, n := range []string{"", "-debuginfo", "-debugsource", "-doc"} {
				name := fmt.Sprintf("pkg%d%s-1.0-1.fc41.x86_64.rpm", j, n)
				subs = append(subs, attest.Subject{Name: name, SHA256: hexSum("f" + name + result), Skyline: hexSum("s" + name + result)})
			}
			envs, err := attest.NewSubjectAttestations(attest.Build{ID: build, Backend: "rpmbuild", Chroot: "fedora-41-x86_64", LeaseID: l.LeaseID, Started: t0, Finished: t0.Add(time.Minute)}, subs, s.builders[(j+k)%nBuilders])
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range envs {
				s.add(t, e)
				s.results++
			}
		}
		s.add(t, s.sign(t, s.coord, attest.PayloadJobClose, &attest.JobClose{JobID: jobID, Build: build, Results: perJob, At: t0.Add(time.Hour)}))
	}
	if _, err := s.log.WaitCheckpoint(context.Background(), s.entries); err != nil {
		t.Fatal(err)
	}
	return s
}

// witnessFor makes a witness daemon (no submission) over the synthetic log.
func (s *synthetic) witnessFor(t testing.TB, state string) *Daemon {
	t.Helper()
	keys := writeWitnessKeys(t, s.coord)
	cfg := witnessConfig(state, keys, s.url, s.key.vkey, false)
	d, err := NewDaemon(cfg, Env{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCatchUpFoldsEveryEntry checks what the catch-up pipeline computes
// over a synthetic log: every entry folded, every job's verdict decided,
// the dissenting builders' outliers counted.
func TestCatchUpFoldsEveryEntry(t *testing.T) {
	s := newSynthetic(t, 12, 30, 6, 1)
	d := s.witnessFor(t, t.TempDir())
	d.cfg.BatchSize = 100 // several batches, enrolments in other batches than their keys' results
	lf := d.logs[0]
	if _, err := lf.w.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := lf.CatchUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lf.fold.Next() != s.entries {
		t.Fatalf("folded %d of %d entries", lf.fold.Next(), s.entries)
	}
	if len(lf.aux.Signed) != 30 {
		t.Fatalf("%d verdicts signed, want 30", len(lf.aux.Signed))
	}
	for k, sum := range lf.aux.Signed {
		if !bytes.HasPrefix([]byte(sum), []byte(VerdictReproduced+"/")) {
			t.Fatalf("build %q verdict %s", k, sum)
		}
	}
	if rate, n := lf.brk.Rate(); n != 30*6 || rate < 0.16 || rate > 0.17 {
		t.Fatalf("breaker window %d results, rate %v; want 180 and 1/6", n, rate)
	}
}

// TestCatchUpRefusesForgedEntries: entries signed by a key without the
// right, or with a broken signature, are logged by a careless log; the
// witness folds nothing from them.
func TestCatchUpRefusesForgedEntries(t *testing.T) {
	s := newSynthetic(t, 5, 1, 5, 0)
	stranger := newSigner(t)
	t0 := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	b := attest.BuildID{NVR: "evil-1-1", Arch: "x86_64", SRPMSHA256: hexSum("evil")}
	// A job signed by a stranger, an enrolment by a builder key, and a
	// coordinator lease whose signature is broken.
	s.add(t, s.sign(t, stranger, attest.PayloadJob, &attest.Job{JobID: "evil", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}))
	s.add(t, s.sign(t, s.builders[0], attest.PayloadEnrolment, &attest.Enrolment{KeyID: stranger.KeyID(), PublicKey: string(stranger.PublicPEM()), Role: attest.RoleBuilder, Operator: "evil", Contact: "e@example.org", Since: t0}))
	lease := s.sign(t, s.coord, attest.PayloadJob, &attest.Job{JobID: "evil2", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)})
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(lease, &env); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	sig[5] ^= 1
	env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
	broken, _ := json.Marshal(env)
	s.add(t, broken)
	s.add(t, []byte("not an envelope"))
	if _, err := s.log.WaitCheckpoint(context.Background(), s.entries); err != nil {
		t.Fatal(err)
	}
	d := s.witnessFor(t, t.TempDir())
	lf := d.logs[0]
	if err := d.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	if lf.fold.Next() != s.entries {
		t.Fatalf("folded %d of %d", lf.fold.Next(), s.entries)
	}
	if _, ok := lf.fold.st.Jobs["evil"]; ok {
		t.Fatal("job signed by a stranger was folded")
	}
	if _, ok := lf.fold.st.Jobs["evil2"]; ok {
		t.Fatal("job with a broken signature was folded")
	}
	if _, ok := lf.fold.st.Keys[stranger.KeyID()]; ok {
		t.Fatal("enrolment signed by a builder was folded")
	}
	if len(lf.fold.st.Jobs) != 1 || len(lf.aux.Signed) != 1 {
		t.Fatalf("jobs %d, verdicts %d; want 1 and 1", len(lf.fold.st.Jobs), len(lf.aux.Signed))
	}
}

// BenchmarkWitnessCatchUp measures the witness's catch-up: entries/s of
// follow (checkpoint, tiles, bundles, every leaf checked) + strict parse
// and signature verification of every entry + fold and agreement, over a
// local log on real HTTP (500 jobs: 11,040 entries, 5,000 attestations). The yardstick sub-benchmark is
// /work/shared/bench/limits BenchmarkDSSEVerifyEd25519Parallel, copied
// verbatim in spirit (JSON decode, base64, PAE, Ed25519 over a ~2 KB
// statement, on every core). The catchup sub-benchmark also runs the
// yardstick's verification after every catch-up, on GOMAXPROCS goroutines,
// so that both see the same machine load; its ratio metric is catch-up
// entries/s over yardstick envelopes/s. Run with -cpu=2.
func BenchmarkWitnessCatchUp(b *testing.B) {
	b.Run("yardstick=DSSEVerifyEd25519Parallel", benchYardstick)
	b.Run("catchup", func(b *testing.B) {
		jobs := 500
		if testing.Short() {
			jobs = 20
		}
		s := newSynthetic(b, 40, jobs, 10, 10)
		dir := b.TempDir()
		// The yardstick again, interleaved with every catch-up so that
		// both see the same machine load.
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		raw := yardstickEnvelope(priv, 2048)
		var entries, yops uint64
		var elapsed, yelapsed, cpu, ycpu time.Duration
		for i := 0; b.Loop(); i++ {
			b.StopTimer()
			d := s.witnessFor(b, filepath.Join(dir, fmt.Sprint(i)))
			lf := d.logs[0]
			runtime.GC() // neither phase pays for the other's garbage
			b.StartTimer()
			start, c0 := time.Now(), cpuTime()
			if _, err := lf.w.Poll(context.Background()); err != nil {
				b.Fatal(err)
			}
			if err := lf.CatchUp(context.Background()); err != nil {
				b.Fatal(err)
			}
			elapsed += time.Since(start)
			cpu += cpuTime() - c0
			b.StopTimer()
			if lf.fold.Next() != s.entries || len(lf.aux.Signed) != jobs {
				b.Fatalf("folded %d of %d, %d verdicts", lf.fold.Next(), s.entries, len(lf.aux.Signed))
			}
			entries += s.entries
			os.RemoveAll(filepath.Join(dir, fmt.Sprint(i)))
			runtime.GC()
			start, c0 = time.Now(), cpuTime()
			n := int(s.entries)
			fanOut(n, func(int) {
				if err := yardstickVerify(pub, raw); err != nil {
					b.Error(err)
				}
			})
			yelapsed += time.Since(start)
			ycpu += cpuTime() - c0
			yops += uint64(n)
			b.StartTimer()
		}
		eps := float64(entries) / elapsed.Seconds()
		yps := float64(yops) / yelapsed.Seconds()
		b.ReportMetric(eps, "entries/s")
		b.ReportMetric(eps*float64(s.results)/float64(s.entries), "attestations/s")
		b.ReportMetric(yps, "yardstick-ops/s")
		b.ReportMetric(eps/yps, "ratio")
		// CPU time per entry (whole process: the witness and the log
		// serving it) against the yardstick's per envelope: what the
		// ratio would be on an idle machine with every core busy.
		b.ReportMetric(float64(cpu.Microseconds())/float64(entries), "cpu-µs/entry")
		b.ReportMetric(float64(ycpu.Microseconds())/float64(yops), "yardstick-cpu-µs/op")
		b.ReportMetric((float64(ycpu)/float64(yops))/(float64(cpu)/float64(entries)), "cpu-ratio")
	})
}

// benchYardstick is /work/shared/bench/limits
// BenchmarkDSSEVerifyEd25519Parallel: a ~2 KB statement's envelope
// verified on every core.
func benchYardstick(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	raw := yardstickEnvelope(priv, 2048)
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := yardstickVerify(pub, raw); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// The yardstick's envelope and verification, as in
// /work/shared/bench/limits/crypto_test.go.
type ydsseSig struct {
	KeyID string `json:"keyid"`
	Sig   string `json:"sig"`
}

type ydsseEnvelope struct {
	PayloadType string     `json:"payloadType"`
	Payload     string     `json:"payload"`
	Signatures  []ydsseSig `json:"signatures"`
}

func ypae(payloadType string, body []byte) []byte {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "DSSEv1 %d %s %d ", len(payloadType), payloadType, len(body))
	buf.Write(body)
	return buf.Bytes()
}

func ypayload(n int) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func yardstickEnvelope(priv ed25519.PrivateKey, statementSize int) []byte {
	stmt := map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"predicateType": "https://slsa.dev/provenance/v1",
		"subject": []map[string]any{{
			"name":   "hello-2.12.1-5.fc41.x86_64.rpm",
			"digest": map[string]string{"sha256": fmt.Sprintf("%x", sha256.Sum256([]byte("rpm")))},
		}},
		"predicate": map[string]any{"pad": base64.StdEncoding.EncodeToString(ypayload(statementSize * 3 / 4))},
	}
	body, _ := json.Marshal(stmt)
	pt := "application/vnd.in-toto+json"
	sig := ed25519.Sign(priv, ypae(pt, body))
	env := ydsseEnvelope{PayloadType: pt, Payload: base64.StdEncoding.EncodeToString(body),
		Signatures: []ydsseSig{{KeyID: "rebuilder-1", Sig: base64.StdEncoding.EncodeToString(sig)}}}
	out, _ := json.Marshal(env)
	return out
}

func yardstickVerify(pub ed25519.PublicKey, raw []byte) error {
	var env ydsseEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return err
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return err
	}
	sig, err := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, ypae(env.PayloadType, body), sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// TestCatchUpSnapshotIsMarshal checks that the snapshot saved after a
// catch-up, joined by hand, is the bytes json.Marshal makes of it.
func TestCatchUpSnapshotIsMarshal(t *testing.T) {
	s := newSynthetic(t, 4, 3, 3, 1)
	d := s.witnessFor(t, t.TempDir())
	lf := d.logs[0]
	if err := d.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := d.store.LoadFold(lf.name)
	if err != nil {
		t.Fatal(err)
	}
	var snap snapshot
	if snap.Fold, err = lf.fold.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	if snap.Reputation, err = lf.rep.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	if snap.Breaker, err = lf.brk.MarshalJSON(); err != nil {
		t.Fatal(err)
	}
	snap.Aux = lf.aux
	want, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("saved snapshot differs from json.Marshal's (%d and %d bytes)", len(got), len(want))
	}
}

// TestCatchUpRefusedEnrolmentThenEnrolment: a key's first enrolment has a
// broken signature, its second is sound; the key's attestation after both
// is folded whatever the batches (the keyring's first guess, the refused
// enrolment, is checked against the fold's).
func TestCatchUpRefusedEnrolmentThenEnrolment(t *testing.T) {
	for _, batch := range []int{1, 2, 100} {
		s := newSynthetic(t, 2, 1, 2, 0)
		late := newSigner(t)
		t0 := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
		en := &attest.Enrolment{KeyID: late.KeyID(), PublicKey: string(late.PublicPEM()), Role: attest.RoleBuilder, Operator: "late", Contact: "l@example.org", Since: t0}
		good := s.sign(t, s.coord, attest.PayloadEnrolment, en)
		var env map[string]any
		if err := json.Unmarshal(good, &env); err != nil {
			t.Fatal(err)
		}
		sigs := env["signatures"].([]any)
		sig, _ := base64.StdEncoding.DecodeString(sigs[0].(map[string]any)["sig"].(string))
		sig[5] ^= 1
		sigs[0].(map[string]any)["sig"] = base64.StdEncoding.EncodeToString(sig)
		broken, _ := json.Marshal(env)
		s.add(t, broken)
		first := s.entries
		s.add(t, good)
		b := attest.BuildID{NVR: "late-1-1", Arch: "x86_64", SRPMSHA256: hexSum("late")}
		s.add(t, s.sign(t, s.coord, attest.PayloadJob, &attest.Job{JobID: "late", Build: b, Wanted: 1, Enqueued: t0, Deadline: t0.Add(7 * 24 * time.Hour)}))
		l := attest.Lease{LeaseID: "late-l", JobID: "late", Build: b, KeyID: late.KeyID(), Operator: "late", Issued: t0, Expires: t0.Add(time.Hour)}
		s.add(t, s.sign(t, s.coord, attest.PayloadLease, &l))
		envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "rpmbuild", Chroot: "fedora-41-x86_64", LeaseID: l.LeaseID, Started: t0, Finished: t0.Add(time.Minute)},
			[]attest.Subject{{Name: "late-1-1.x86_64.rpm", SHA256: hexSum("f"), Skyline: hexSum("s")}}, late)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range envs {
			s.add(t, e)
		}
		if _, err := s.log.WaitCheckpoint(context.Background(), s.entries); err != nil {
			t.Fatal(err)
		}
		d := s.witnessFor(t, t.TempDir())
		d.cfg.BatchSize = batch
		lf := d.logs[0]
		if err := d.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		k, ok := lf.fold.st.Keys[late.KeyID()]
		if !ok || k.Index != first {
			t.Fatalf("batch %d: key enrolled %v at %v, want at %d", batch, ok, k, first)
		}
		rec, _ := lf.fold.Record(b)
		if len(rec.Results) != 1 {
			t.Fatalf("batch %d: %d results folded, want 1", batch, len(rec.Results))
		}
	}
}
