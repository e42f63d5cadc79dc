package witness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
)

// network is a running `skyline serve` (real log on Pebble, coordinator
// service, api server on loopback) for a witness to follow.
type network struct {
	t        testing.TB
	url      string
	log      *log.Log
	svc      *coord.Service
	coordKey *attest.Signer
	admin    *attest.Signer
	logVKey  string
	logNote  note.Verifier
}

func newSigner(t testing.TB) *attest.Signer {
	t.Helper()
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newNetwork(t testing.TB) *network { return newNetworkOrigin(t, testOrigin) }

// newNetworkOrigin starts a log, coordinator and API server whose
// checkpoints carry origin.
func newNetworkOrigin(t testing.TB, testOrigin string) *network {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	coordKey, admin := newSigner(t), newSigner(t)
	ns, err := coordKey.NoteSigner(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := attest.NoteVerifierKey(testOrigin, coordKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	nv, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := log.Open(ctx, log.Config{Dir: t.TempDir(), Origin: testOrigin, Signer: ns, Indexer: coord.Indexer, CheckpointInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := coord.NewService(ctx, coord.ServiceConfig{Log: lg, Signer: coordKey, AdminKeys: []*attest.Verifier{admin.Verifier()}})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.NewServer(api.Config{}, svc, lg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		lg.Close()
	})
	return &network{t: t, url: "http://" + ln.Addr().String(), log: lg, svc: svc, coordKey: coordKey, admin: admin, logVKey: vkey, logNote: nv}
}

func (n *network) client(s *attest.Signer) *api.Client {
	n.t.Helper()
	c, err := api.NewClient(api.ClientConfig{URL: n.url, Signer: s, Origin: n.log.Origin(), Arches: []string{"x86_64"}, PollInterval: 5 * time.Millisecond})
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

func (n *network) enrolKey(k *attest.Signer, role, operator string) {
	n.t.Helper()
	if _, err := n.client(n.admin).Enrol(context.Background(), api.EnrolBody{PublicKey: string(k.PublicPEM()), Role: role, Operator: operator, Contact: operator + "@example.org"}); err != nil {
		n.t.Fatalf("enrol %s %s: %v", role, operator, err)
	}
}

func (n *network) enrol(role, operator string) *attest.Signer {
	k := newSigner(n.t)
	n.enrolKey(k, role, operator)
	return k
}

func hexSum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// rebuild runs one job for nvr to completion: every builder leases a slot
// and submits a result (results[i] names builder i's result set), then the
// coordinator closes the job.
func (n *network) rebuild(nvr string, builders []*attest.Signer, results []string) attest.BuildID {
	n.t.Helper()
	ctx := context.Background()
	b := attest.BuildID{NVR: nvr, Arch: "x86_64", SRPMSHA256: hexSum(nvr)}
	if _, err := n.client(n.admin).Enqueue(ctx, api.EnqueueBody{NVR: b.NVR, Arch: b.Arch, SRPMURL: "https://koji.example/" + nvr + ".src.rpm", SRPMSHA256: b.SRPMSHA256, Wanted: len(builders)}); err != nil {
		n.t.Fatal(err)
	}
	for i, k := range builders {
		c := n.client(k)
		l, err := c.Lease(ctx)
		if err != nil {
			n.t.Fatalf("lease for builder %d: %v", i, err)
		}
		envs, err := attest.NewSubjectAttestations(attest.Build{
			ID: b, SRPMURL: l.SRPMURL, Backend: "rpmbuild", Chroot: "test", LeaseID: l.LeaseID,
			Started: time.Now().UTC(), Finished: time.Now().UTC(),
		}, []attest.Subject{
			{Name: nvr + ".x86_64.rpm", SHA256: hexSum("f" + results[i]), Skyline: hexSum("s" + results[i])},
			{Name: "lib" + nvr + ".x86_64.rpm", SHA256: hexSum("lf"), Skyline: hexSum("ls")},
		}, k)
		if err != nil {
			n.t.Fatal(err)
		}
		if _, err := c.Submit(ctx, envs); err != nil {
			n.t.Fatalf("submit for builder %d: %v", i, err)
		}
	}
	if _, closed, err := n.svc.Tick(ctx); err != nil || closed != 1 {
		n.t.Fatalf("tick closed %d jobs: %v", closed, err)
	}
	n.waitCheckpoint()
	return b
}

func (n *network) waitCheckpoint() {
	n.t.Helper()
	size, _ := n.log.Size()
	if _, err := n.log.WaitCheckpoint(context.Background(), size); err != nil {
		n.t.Fatal(err)
	}
}

// apiSubmitter submits through the api client.
type apiSubmitter struct{ c *api.Client }

func (s apiSubmitter) SubmitEntry(ctx context.Context, env []byte) (uint64, error) {
	r, err := s.c.SubmitOne(ctx, env, false)
	if err != nil {
		return 0, err
	}
	return r.Index, nil
}

// witnessKeys are a witness's key files.
type witnessKeys struct {
	dir             string
	cosign, verdict *attest.Signer
	cosignPath      string
	verdictPath     string
	coordPath       string
}

func writeWitnessKeys(t testing.TB, coordKey *attest.Signer) witnessKeys {
	t.Helper()
	dir := t.TempDir()
	k := witnessKeys{dir: dir, cosign: newSigner(t), verdict: newSigner(t)}
	cf, err := attest.WriteKeyFiles(dir, "cosign", "witness.example/w1", k.cosign)
	if err != nil {
		t.Fatal(err)
	}
	vf, err := attest.WriteKeyFiles(dir, "verdict", "verdict", k.verdict)
	if err != nil {
		t.Fatal(err)
	}
	k.cosignPath, k.verdictPath = cf.Private, vf.Private
	k.coordPath = filepath.Join(dir, "coordinator.pub")
	if err := os.WriteFile(k.coordPath, coordKey.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

func witnessConfig(stateDir string, k witnessKeys, url, vkey string, submit bool) Config {
	cfg := DefaultConfig()
	cfg.StateDir = stateDir
	cfg.Name = "witness.example/w1"
	cfg.CosignKey, cfg.VerdictKey = k.cosignPath, k.verdictPath
	cfg.Logs = []LogConfig{{Name: "test", URL: url, SubmitURL: url, LogKey: vkey, Origin: testOrigin, CoordinatorKey: k.coordPath, Submit: &submit}}
	return cfg
}

func newDaemon(t testing.TB, cfg Config, submitURL string) *Daemon {
	t.Helper()
	d, err := NewDaemon(cfg, Env{Submitter: func(lc LogConfig) (Submitter, error) {
		c, err := api.NewClient(api.ClientConfig{URL: lc.SubmitURL})
		return apiSubmitter{c}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestWitnessEndToEnd runs the witness over real HTTP against the real log,
// coordinator and API: enrolments, jobs, leases, attestations, job closes;
// the witness must submit a signed verdict per build that a fresh follower
// reads back from the log and verifies, cosign the checkpoint, and flag the
// builder that dissented twice.
func TestWitnessEndToEnd(t *testing.T) {
	ctx := context.Background()
	n := newNetwork(t)
	keys := writeWitnessKeys(t, n.coordKey)
	n.enrolKey(keys.verdict, attest.RoleWitness, "witness-op")
	var builders []*attest.Signer
	for i := range 6 {
		builders = append(builders, n.enrol(attest.RoleBuilder, fmt.Sprintf("op%d", i)))
	}
	results := []string{"A", "A", "A", "A", "A", "B"} // builder 5 dissents
	b1 := n.rebuild("hello-2.12.1-5.fc41", builders, results)
	b2 := n.rebuild("zlib-1.3.1-1.fc41", builders, results)

	d := newDaemon(t, witnessConfig(t.TempDir(), keys, n.url, n.logVKey, true), n.url)
	if err := d.Step(ctx); err != nil {
		t.Fatalf("witness round: %v", err)
	}
	latest, _ := d.Latest("test")
	if size, _ := n.log.Size(); latest.Size == 0 || latest.Size > size {
		t.Fatalf("witness cosigned size %d, log size %d", latest.Size, size)
	}
	n.waitCheckpoint()

	// A fresh follower reads the log back and finds the verdicts.
	f, err := NewFollower(FollowerConfig{URL: n.url, Origin: testOrigin, Verifier: n.logNote}, EmptyTree(testOrigin))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := f.Update(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]*attest.Verdict{}
	err = f.Entries(ctx, 0, cp.Size, func(i uint64, data []byte) error {
		e, err := attest.Parse(data, attest.ParseOptions{})
		if err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if v, ok := e.Value.(*attest.Verdict); ok {
			if err := e.Verify(keys.verdict.Verifier()); err != nil {
				return fmt.Errorf("verdict at %d: %w", i, err)
			}
			if _, dup := verdicts[v.Build.NVR]; dup {
				return fmt.Errorf("second verdict for %s at %d", v.Build.NVR, i)
			}
			verdicts[v.Build.NVR] = v
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []attest.BuildID{b1, b2} {
		v := verdicts[b.NVR]
		if v == nil {
			t.Fatalf("no verdict for %s in the log", b.NVR)
		}
		if v.Build != b || v.Verdict != attest.VerdictReproduced || v.TreeSize == 0 || v.TreeSize > latest.Size {
			t.Fatalf("verdict %+v", v)
		}
		if len(v.Outliers) != 1 || v.Outliers[0].KeyID != builders[5].KeyID() || v.Outliers[0].Operator != "op5" {
			t.Fatalf("outliers %+v, want builder 5", v.Outliers)
		}
	}

	// A second round changes nothing: no verdict twice.
	before, _ := n.log.Size()
	if err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := n.log.Size(); after != before {
		t.Fatalf("second round logged %d more entries", after-before)
	}

	// The builder that dissented twice is flagged; the others are not.
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	for i, want := range map[int]bool{5: true, 0: false} {
		resp, err := http.Get(srv.URL + "/notices/" + builders[i].KeyID())
		if err != nil {
			t.Fatal(err)
		}
		var nr NoticesResponse
		err = json.NewDecoder(resp.Body).Decode(&nr)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("notices: %d %v", resp.StatusCode, err)
		}
		if nr.Flagged != want || (want && (len(nr.Notices) != 1 || len(nr.Notices[0].Outliers) != 2)) {
			t.Fatalf("builder %d notices %+v, flagged want %v", i, nr, want)
		}
	}
	if resp, err := http.Get(srv.URL + "/notices/NOTHEX"); err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad key id: %v %v", resp.StatusCode, err)
	}

	// A restarted witness resumes from its state: nothing is folded or
	// submitted again.
	d2 := newDaemon(t, witnessConfig(d.cfg.StateDir, keys, n.url, n.logVKey, true), n.url)
	if d2.logs[0].fold.Next() != d.logs[0].fold.Next() {
		t.Fatalf("restarted fold at %d, was %d", d2.logs[0].fold.Next(), d.logs[0].fold.Next())
	}
	if err := d2.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := n.log.Size(); after != before {
		t.Fatalf("restarted witness logged %d more entries", after-before)
	}

	// A witness that lost its state replays the log, finds its own
	// verdicts, and signs nothing again.
	d3 := newDaemon(t, witnessConfig(t.TempDir(), keys, n.url, n.logVKey, true), n.url)
	if err := d3.Step(ctx); err != nil {
		t.Fatal(err)
	}
	if after, _ := n.log.Size(); after != before {
		t.Fatalf("witness without state logged %d more entries", after-before)
	}
	if len(d3.logs[0].aux.Signed) != 2 {
		t.Fatalf("replay recognised %d own verdicts, want 2", len(d3.logs[0].aux.Signed))
	}
}

// TestWitnessRefusesForkAcrossRestart: a log that forks is refused, the
// refusal is persisted, and a witness restarted from its state directory
// still refuses the log, even once it serves the honest history again.
func TestWitnessRefusesForkAcrossRestart(t *testing.T) {
	ctx := context.Background()
	k := newLogKey(t, testOrigin)
	honest := openTestLog(t, k)
	addEntries(t, honest, "a", 10)
	forked := openTestLog(t, k)
	forkCp := addEntries(t, forked, "x", 10)
	h, url := serveLying(t, honest)

	keys := writeWitnessKeys(t, newSigner(t))
	state := t.TempDir()
	cfg := witnessConfig(state, keys, url, k.vkey, false)
	d := newDaemon(t, cfg, url)
	if err := d.Step(ctx); err != nil {
		t.Fatalf("honest round: %v", err)
	}
	if cp, _ := d.Latest("test"); cp.Size != 10 {
		t.Fatalf("cosigned %d", cp.Size)
	}
	h.use(forked)
	h.set("checkpoint", forkCp)
	if err := d.Step(ctx); !errors.Is(err, ErrFork) {
		t.Fatalf("forked round: %v, want ErrFork", err)
	}
	ref, err := d.store.LoadRefusal("test")
	if err != nil || ref == nil || ref.Kind != RefusedFork || !bytes.Equal(ref.Refused, forkCp) {
		t.Fatalf("refusal on record: %+v %v", ref, err)
	}
	// The log serves the honest history again; a restarted witness still
	// refuses it, for polling and for add-checkpoint.
	h.use(honest)
	d2 := newDaemon(t, cfg, url)
	err = d2.Step(ctx)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrFork) {
		t.Fatalf("restarted round: %v, want ErrRefused and ErrFork", err)
	}
	addEntries(t, honest, "b", 1)
	cp, _ := honest.ReadPath(ctx, "checkpoint")
	proof, _ := honest.ConsistencyProof(ctx, 10, 11)
	if _, err := d2.AddCheckpoint(addCheckpointBody(10, proof, cp)); !errors.Is(err, ErrRefused) {
		t.Fatalf("add-checkpoint to a refused log: %v", err)
	}
	if cp, _ := d2.Latest("test"); cp.Size != 10 {
		t.Fatalf("restarted witness moved to %d", cp.Size)
	}
}

func addCheckpointBody(old uint64, proof [][]byte, cp []byte) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64Std(h) + "\n")
	}
	b.WriteString("\n")
	b.Write(cp)
	return []byte(b.String())
}

// TestWitnessAlarmAndClear: a rising outlier rate trips the breaker; the
// witness submits a signed alarm (which pauses the coordinator's leasing)
// and withholds the positive verdict; an enrolled admin's logged clearing
// releases it, and the witness then submits the verdict.
func TestWitnessAlarmAndClear(t *testing.T) {
	ctx := context.Background()
	n := newNetwork(t)
	keys := writeWitnessKeys(t, n.coordKey)
	n.enrolKey(keys.verdict, attest.RoleWitness, "witness-op")
	admin := n.enrol(attest.RoleAdmin, "admins")
	var builders []*attest.Signer
	for i := range 6 {
		builders = append(builders, n.enrol(attest.RoleBuilder, fmt.Sprintf("op%d", i)))
	}
	b := n.rebuild("hello-2.12.1-5.fc41", builders, []string{"A", "A", "A", "A", "A", "B"})

	cfg := witnessConfig(t.TempDir(), keys, n.url, n.logVKey, true)
	cfg.Breaker.Window, cfg.Breaker.MinSample, cfg.Breaker.Threshold = 6, 6, 0.1
	d := newDaemon(t, cfg, n.url)
	if err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	n.waitCheckpoint()
	kinds := func() (alarms []uint64, verdicts []*attest.Verdict) {
		size, _ := n.log.Size()
		for i := range size {
			data, err := n.log.Entry(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			e, err := attest.Parse(data, attest.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			switch v := e.Value.(type) {
			case *attest.Alarm:
				if err := e.Verify(keys.verdict.Verifier()); err != nil {
					t.Fatalf("alarm at %d: %v", i, err)
				}
				alarms = append(alarms, i)
			case *attest.Verdict:
				verdicts = append(verdicts, v)
			}
		}
		return alarms, verdicts
	}
	alarms, verdicts := kinds()
	if len(alarms) != 1 || len(verdicts) != 0 {
		t.Fatalf("after the trip: %d alarms, %d verdicts; want 1 and 0 (withheld)", len(alarms), len(verdicts))
	}
	// The coordinator saw the alarm: leasing is paused.
	if _, err := n.client(n.admin).Enqueue(ctx, api.EnqueueBody{NVR: "x-1-1", Arch: "x86_64", SRPMURL: "https://koji.example/x.src.rpm", SRPMSHA256: hexSum("x"), Wanted: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.client(builders[0]).Lease(ctx); !errors.Is(err, coord.ErrPaused) {
		t.Fatalf("lease during the alarm: %v, want ErrPaused", err)
	}
	clear, err := attest.Sign(admin, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: alarms[0], Reason: "builder op5 fixed its toolchain", At: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.client(admin).SubmitOne(ctx, clear, false); err != nil {
		t.Fatal(err)
	}
	n.waitCheckpoint()
	if err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	n.waitCheckpoint()
	_, verdicts = kinds()
	if len(verdicts) != 1 || verdicts[0].Build != b || verdicts[0].Verdict != attest.VerdictReproduced {
		t.Fatalf("after the clear: verdicts %+v", verdicts)
	}
	if _, tripped := d.logs[0].brk.Tripped(); tripped {
		t.Fatal("breaker still tripped after the clear")
	}
}

// TestWitnessRollbackAndBadProof: a rollback is recorded but does not halt
// the log (a stale cache can serve an old checkpoint); a larger tree that
// does not contain the cosigned one (bad proof) halts it.
func TestWitnessRollbackAndBadProof(t *testing.T) {
	ctx := context.Background()
	k := newLogKey(t, testOrigin)
	honest := openTestLog(t, k)
	old := addEntries(t, honest, "a", 4)
	addEntries(t, honest, "a2", 6)
	forked := openTestLog(t, k)
	forkCp := addEntries(t, forked, "x", 20)
	h, url := serveLying(t, honest)
	keys := writeWitnessKeys(t, newSigner(t))
	d := newDaemon(t, witnessConfig(t.TempDir(), keys, url, k.vkey, false), url)
	if err := d.Step(ctx); err != nil {
		t.Fatal(err)
	}
	h.set("checkpoint", old)
	if err := d.Step(ctx); !errors.Is(err, ErrRollback) {
		t.Fatalf("rollback round: %v", err)
	}
	if ref, err := d.store.LoadRefusal("test"); err != nil || ref.Kind != RefusedRollback || ref.Halts() {
		t.Fatalf("rollback on record: %+v %v", ref, err)
	}
	h.use(honest)
	addEntries(t, honest, "b", 2)
	if err := d.Step(ctx); err != nil {
		t.Fatalf("honest round after a rollback: %v", err)
	}
	if cp, _ := d.Latest("test"); cp.Size != 12 {
		t.Fatalf("cosigned %d, want 12", cp.Size)
	}
	h.use(forked)
	h.set("checkpoint", forkCp)
	if err := d.Step(ctx); !errors.Is(err, ErrBadProof) {
		t.Fatalf("bad-proof round: %v", err)
	}
	h.use(honest)
	if err := d.Step(ctx); !errors.Is(err, ErrRefused) || !errors.Is(err, ErrBadProof) {
		t.Fatalf("after a bad proof: %v, want ErrRefused and ErrBadProof", err)
	}
	if cp, _ := d.Latest("test"); cp.Size != 12 {
		t.Fatalf("cosigned %d after the bad proof", cp.Size)
	}
}

// failingSubmitter is a log that cannot be reached.
type failingSubmitter struct{}

func (failingSubmitter) SubmitEntry(context.Context, []byte) (uint64, error) {
	return 0, errors.New("connection refused")
}

// TestWitnessOutboxSurvivesRestart: a verdict signed while the log's API is
// unreachable stays in the persisted outbox; a restarted witness sends the
// same bytes, and the log holds it once.
func TestWitnessOutboxSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	n := newNetwork(t)
	keys := writeWitnessKeys(t, n.coordKey)
	n.enrolKey(keys.verdict, attest.RoleWitness, "witness-op")
	var builders []*attest.Signer
	for i := range 5 {
		builders = append(builders, n.enrol(attest.RoleBuilder, fmt.Sprintf("op%d", i)))
	}
	n.rebuild("hello-2.12.1-5.fc41", builders, []string{"A", "A", "A", "A", "A"})
	cfg := witnessConfig(t.TempDir(), keys, n.url, n.logVKey, true)
	down, err := NewDaemon(cfg, Env{Submitter: func(LogConfig) (Submitter, error) { return failingSubmitter{}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := down.Step(ctx); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("round with the API down: %v", err)
	}
	if len(down.logs[0].aux.Outbox) != 1 {
		t.Fatalf("outbox holds %d entries, want 1", len(down.logs[0].aux.Outbox))
	}
	pending := bytes.Clone(down.logs[0].aux.Outbox[0].Envelope)
	before, _ := n.log.Size()

	up := newDaemon(t, cfg, n.url)
	if got := up.logs[0].aux.Outbox; len(got) != 1 || !bytes.Equal(got[0].Envelope, pending) {
		t.Fatalf("restarted outbox %d entries", len(got))
	}
	if err := up.Step(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := n.log.Size()
	if after != before+1 || len(up.logs[0].aux.Outbox) != 0 {
		t.Fatalf("log grew by %d, outbox %d", after-before, len(up.logs[0].aux.Outbox))
	}
	last, err := n.log.Entry(ctx, after-1)
	if err != nil || !bytes.Equal(last, pending) {
		t.Fatalf("logged entry is not the persisted one: %v", err)
	}
	// Sending it again (a crash after the send, before the outbox was
	// emptied) changes nothing.
	idx, err := apiSubmitter{n.client(nil)}.SubmitEntry(ctx, pending)
	if err != nil || idx != after-1 {
		t.Fatalf("resend: index %d, %v; want %d", idx, err, after-1)
	}
	if size, _ := n.log.Size(); size != after {
		t.Fatalf("resend grew the log to %d", size)
	}
}

// TestWitnessFollowsTwoLogs: one witness configured with two logs (their
// own origins, log keys and coordinators) cosigns each log's checkpoint,
// judges each log's build from that log's entries alone and submits the
// verdict to that log only; add-checkpoint for an origin it does not
// follow is refused.
func TestWitnessFollowsTwoLogs(t *testing.T) {
	ctx := context.Background()
	n1, n2 := newNetwork(t), newNetworkOrigin(t, "log2.skyline.example/witness-test")
	keys := writeWitnessKeys(t, n1.coordKey)
	coord2 := filepath.Join(keys.dir, "coordinator2.pub")
	if err := os.WriteFile(coord2, n2.coordKey.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	builds := map[*network]attest.BuildID{}
	for i, n := range []*network{n1, n2} {
		n.enrolKey(keys.verdict, attest.RoleWitness, "witness-op")
		var builders []*attest.Signer
		for j := range 5 {
			builders = append(builders, n.enrol(attest.RoleBuilder, fmt.Sprintf("log%d-op%d", i, j)))
		}
		builds[n] = n.rebuild(fmt.Sprintf("pkg%d-1.0-1.fc41", i), builders, []string{"A", "A", "A", "A", "A"})
	}
	cfg := witnessConfig(t.TempDir(), keys, n1.url, n1.logVKey, true)
	submit := true
	cfg.Logs = append(cfg.Logs, LogConfig{Name: "second", URL: n2.url, SubmitURL: n2.url, LogKey: n2.logVKey, Origin: "log2.skyline.example/witness-test", CoordinatorKey: coord2, Submit: &submit})
	d := newDaemon(t, cfg, "")
	sizes := map[*network]uint64{}
	for _, n := range []*network{n1, n2} {
		n.waitCheckpoint()
		sizes[n], _ = n.log.Size()
	}
	if err := d.Step(ctx); err != nil {
		t.Fatalf("witness round: %v", err)
	}
	for name, n := range map[string]*network{"test": n1, "second": n2} {
		latest, ok := d.Latest(name)
		if !ok || latest.Size < sizes[n] {
			t.Fatalf("log %s: cosigned size %d (known %v), want at least %d", name, latest.Size, ok, sizes[n])
		}
		n.waitCheckpoint()
		size, _ := n.log.Size()
		var verdicts []*attest.Verdict
		for i := sizes[n]; i < size; i++ {
			data, err := n.log.Entry(ctx, i)
			if err != nil {
				t.Fatal(err)
			}
			e, err := attest.Parse(data, attest.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if v, ok := e.Value.(*attest.Verdict); ok {
				if err := e.Verify(keys.verdict.Verifier()); err != nil {
					t.Fatalf("log %s: verdict at %d: %v", name, i, err)
				}
				verdicts = append(verdicts, v)
			}
		}
		if len(verdicts) != 1 || verdicts[0].Build != builds[n] || verdicts[0].Verdict != attest.VerdictReproduced {
			t.Errorf("log %s: verdicts %+v, want one reproduced verdict for %s alone", name, verdicts, builds[n].NVR)
		}
	}
	other := fmt.Appendf(nil, "log3.example\n1\n%s\n", base64.StdEncoding.EncodeToString(make([]byte, 32)))
	if _, err := d.AddCheckpoint(append([]byte("old 0\n\n"), other...)); !errors.Is(err, ErrUnknownLog) {
		t.Errorf("add-checkpoint for an origin not followed: %v, want ErrUnknownLog", err)
	}
}
