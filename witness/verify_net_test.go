package witness

// A small skyline network for verify and audit tests: a real log (package
// log on Pebble, indexed by coord.Indexer) served over real HTTP by a read
// handler that can lie, a coordinator key, witnesses that cosign
// checkpoints (C2SP tlog-cosignature through Cosigner) and sign verdicts,
// builders, an importer and an admin.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/coord"
	"github.com/fedora-skyline/skyline/log"
	"golang.org/x/mod/sumdb/note"
)

const vnetOrigin = "log.verify.test"

// vnetWitness is a witness of the test network.
type vnetWitness struct {
	name    string
	cosign  *Cosigner
	verdict *attest.Signer
}

// vnetBuilder is an enrolled builder key.
type vnetBuilder struct {
	op  string
	key *attest.Signer
}

// vnet is the test network.
type vnet struct {
	t         testing.TB
	l         *log.Log
	coord     *attest.Signer
	vkey      string
	witnesses []vnetWitness
	builders  []vnetBuilder
	importer  *attest.Signer
	admin     *attest.Signer
	srv       *httptest.Server
	rec       *recorder // the honest fold of every entry, for the witnesses' verdicts
	now       time.Time

	mu sync.Mutex
	// Lies: what the read handler changes.
	hideLookup map[uint64]bool        // entries left out of /lookup
	override   map[string][]byte      // path -> bytes served instead
	cosigners  int                    // witnesses that cosign the served checkpoint (default all)
	cpFunc     func(cp []byte) []byte // rewrites the served checkpoint
}

func newVNet(t testing.TB, builders int) *vnet {
	t.Helper()
	return newVNetIndexed(t, builders, coord.Indexer)
}

// newVNetIndexed is newVNet with the log's indexer.
func newVNetIndexed(t testing.TB, builders int, indexer log.Indexer) *vnet {
	t.Helper()
	n := &vnet{t: t, rec: newRecorder(), now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		hideLookup: map[uint64]bool{}, override: map[string][]byte{}, cosigners: -1}
	n.coord = vnetKey(t)
	ns, err := n.coord.NoteSigner(vnetOrigin)
	if err != nil {
		t.Fatal(err)
	}
	if n.vkey, err = attest.NoteVerifierKey(vnetOrigin, n.coord.Public()); err != nil {
		t.Fatal(err)
	}
	n.l, err = log.Open(context.Background(), log.Config{
		Dir: t.TempDir(), Origin: vnetOrigin, Signer: ns, Indexer: indexer,
		CheckpointInterval: 2 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.l.Close() })
	for i := range 3 {
		key := vnetKey(t)
		c, err := NewCosignerFromSigner(fmt.Sprintf("witness%d.test", i), vnetKey(t))
		if err != nil {
			t.Fatal(err)
		}
		w := vnetWitness{name: fmt.Sprintf("w%d", i), cosign: c, verdict: key}
		n.witnesses = append(n.witnesses, w)
		n.enrol(key, attest.RoleWitness, "witness-op-"+strconv.Itoa(i))
	}
	n.importer = vnetKey(t)
	n.enrol(n.importer, attest.RoleImporter, "koji")
	n.admin = vnetKey(t)
	n.enrol(n.admin, attest.RoleAdmin, "fedora-infra")
	for i := range builders {
		b := vnetBuilder{op: fmt.Sprintf("op%02d", i), key: vnetKey(t)}
		n.enrol(b.key, attest.RoleBuilder, b.op)
		n.builders = append(n.builders, b)
	}
	n.srv = httptest.NewServer(n)
	t.Cleanup(n.srv.Close)
	return n
}

func vnetKey(t testing.TB) *attest.Signer {
	t.Helper()
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tick returns a signed time that grows with every call.
func (n *vnet) tick() time.Time {
	n.now = n.now.Add(time.Minute)
	return n.now
}

// add appends a signed envelope and folds it into the honest record.
func (n *vnet) add(env []byte) uint64 {
	n.t.Helper()
	res, err := n.l.Add(context.Background(), env)
	if err != nil {
		n.t.Fatal(err)
	}
	e, err := attest.Parse(env, attest.ParseOptions{})
	if err != nil {
		n.t.Fatal(err)
	}
	n.rec.add(res.Index, e)
	return res.Index
}

func (n *vnet) sign(s *attest.Signer, typ string, v any) uint64 {
	n.t.Helper()
	env, err := attest.Sign(s, typ, v)
	if err != nil {
		n.t.Fatal(err)
	}
	return n.add(env)
}

func (n *vnet) enrol(s *attest.Signer, role, op string) uint64 {
	return n.sign(n.coord, attest.PayloadEnrolment, &attest.Enrolment{
		KeyID: s.KeyID(), PublicKey: string(s.PublicPEM()), Role: role, Operator: op, Contact: op + "@example.org", Since: n.tick(),
	})
}

func vnetBuild(nvr, arch string) attest.BuildID {
	sum := sha256.Sum256([]byte(nvr))
	return attest.BuildID{NVR: nvr, Arch: arch, SRPMSHA256: hex.EncodeToString(sum[:])}
}

// vnetJobTTL is the deadline of the network's jobs after their enqueue.
const vnetJobTTL = 7 * 24 * time.Hour

// vnetSRPMURL is where a build's SRPM is, as its job and leases say.
func vnetSRPMURL(b attest.BuildID) string { return "https://koji.example/" + b.NVR + ".src.rpm" }

// job logs a job of 10 wanted results for b, as the coordinator enqueues
// it, and returns its id; its deadline is vnetJobTTL after now.
func (n *vnet) job(b attest.BuildID) string {
	id := fmt.Sprintf("job-%s-%s", b.NVR, b.Arch)
	at := n.tick()
	n.sign(n.coord, attest.PayloadJob, &attest.Job{JobID: id, Build: b, SRPMURL: vnetSRPMURL(b), Wanted: 10, Enqueued: at, Deadline: at.Add(vnetJobTTL)})
	return id
}

// lease logs the first lease of slot to bl, as the coordinator issues it.
func (n *vnet) lease(b attest.BuildID, job string, bl vnetBuilder, slot int) attest.Lease {
	return n.leaseAt(b, job, bl, slot, 1, n.tick())
}

// leaseAt logs lease attempt of slot to bl, issued at.
func (n *vnet) leaseAt(b attest.BuildID, job string, bl vnetBuilder, slot, attempt int, at time.Time) attest.Lease {
	n.t.Helper()
	l := attest.Lease{LeaseID: fmt.Sprintf("%s-slot%d-%d", job, slot, attempt), JobID: job, Build: b, SRPMURL: vnetSRPMURL(b), KeyID: bl.key.KeyID(), Operator: bl.op, Slot: slot, Attempt: attempt, Issued: at, Expires: at.Add(2 * time.Hour)}
	n.sign(n.coord, attest.PayloadLease, &l)
	return l
}

// end logs the end of lease l for reason, dated at.
func (n *vnet) end(l attest.Lease, reason string, at time.Time) uint64 {
	return n.sign(n.coord, attest.PayloadLeaseEnd, &attest.LeaseEnd{LeaseID: l.LeaseID, JobID: l.JobID, KeyID: l.KeyID, Reason: reason, At: at})
}

// vnetSubjects returns the RPMs of a build; variant changes one RPM.
func vnetSubjects(b attest.BuildID, variant string) []attest.Subject {
	var out []attest.Subject
	for _, name := range []string{"", "-libs"} {
		base := strings.TrimSuffix(b.NVR, "") // name-version-release
		i := strings.Index(base, "-")
		file := base[:i] + name + base[i:] + "." + b.Arch + ".rpm"
		d := sha256.Sum256([]byte(file))
		sky := sha256.Sum256([]byte("skyline " + file))
		if name == "-libs" && variant != "" {
			sky = sha256.Sum256([]byte("skyline " + file + variant))
		}
		out = append(out, attest.Subject{Name: file, SHA256: hex.EncodeToString(d[:]), Skyline: hex.EncodeToString(sky[:])})
	}
	return out
}

// result logs a builder's attestation of subjects under lease l.
func (n *vnet) result(l attest.Lease, bl vnetBuilder, subjects []attest.Subject) uint64 {
	n.t.Helper()
	at := n.tick()
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: l.Build, Backend: "rpmbuild", LeaseID: l.LeaseID, Started: at.Add(-time.Minute), Finished: at}, subjects, bl.key)
	if err != nil {
		n.t.Fatal(err)
	}
	var first uint64
	for i, env := range envs {
		idx := n.add(env)
		if i == 0 {
			first = idx
		}
	}
	return first
}

func (n *vnet) official(b attest.BuildID, subjects []attest.Subject) uint64 {
	n.t.Helper()
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "koji", Official: true, Finished: n.tick()}, subjects, n.importer)
	if err != nil {
		n.t.Fatal(err)
	}
	return n.add(envs[0])
}

func (n *vnet) close(b attest.BuildID, job string, results int) uint64 {
	return n.closeAt(b, job, results, n.tick())
}

// closeAt logs the close of job dated at.
func (n *vnet) closeAt(b attest.BuildID, job string, results int, at time.Time) uint64 {
	return n.sign(n.coord, attest.PayloadJobClose, &attest.JobClose{JobID: job, Build: b, Results: results, At: at})
}

// run logs a whole job as an honest coordinator does: a job, one lease per
// variant, each builder's result (variant "" is the common result, "skip"
// logs no result), and the close. With a "skip" or fewer than 10 variants
// the job cannot fill its slots: the skipped leases expire at their expiry
// and the job closes at its deadline (docs/coordinator.md §Closing).
func (n *vnet) run(b attest.BuildID, variants ...string) {
	n.t.Helper()
	job := n.job(b)
	enqueued := n.now
	var leases []attest.Lease
	for i := range variants {
		leases = append(leases, n.lease(b, job, n.builders[i], i))
	}
	count := 0
	for i, v := range variants {
		if v == "skip" {
			continue
		}
		n.result(leases[i], n.builders[i], vnetSubjects(b, v))
		count++
	}
	if count == 10 {
		n.close(b, job, count)
		return
	}
	for i, v := range variants {
		if v == "skip" {
			n.end(leases[i], attest.LeaseExpired, leases[i].Expires)
		}
	}
	n.now = enqueued.Add(vnetJobTTL)
	n.closeAt(b, job, count, n.now)
}

// size waits for a checkpoint covering the whole log and returns its size.
func (n *vnet) size() uint64 {
	n.t.Helper()
	size, _ := n.l.Size()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.l.WaitCheckpoint(ctx, size); err != nil {
		n.t.Fatal(err)
	}
	return size
}

// outcome is the honest outcome of b at the log's current size.
func (n *vnet) outcome(b attest.BuildID, p Policy) (Outcome, uint64) {
	n.t.Helper()
	size, _ := n.l.Size()
	rec, _ := n.rec.record(b)
	o, err := Agree(recordAt(rec, size), p)
	if err != nil {
		n.t.Fatal(err)
	}
	return o, size
}

// verdictOf is the verdict payload a witness signs for o at size.
func verdictOf(o Outcome, size uint64, rec BuildRecord) attest.Verdict {
	v := o.Payload(size)
	v.Official = ""
	if rec.Official != nil {
		v.Official = rec.Official.ResultSet
	}
	if v.At.IsZero() {
		v.At = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	}
	return v
}

// verdicts makes the first k witnesses log their verdict on b at the
// current size (honestly computed).
func (n *vnet) verdicts(b attest.BuildID, k int) {
	n.t.Helper()
	o, size := n.outcome(b, DefaultPolicy())
	rec, _ := n.rec.record(b)
	v := verdictOf(o, size, rec)
	for _, w := range n.witnesses[:k] {
		n.sign(w.verdict, attest.PayloadVerdict, &v)
	}
}

// policy returns the verify policy of the network with witness quorum k.
func (n *vnet) policy(k int) *VerifyPolicy {
	n.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "witness_quorum = %d\n[log]\nurl = %q\norigin = %q\nvkey = %q\n", k, n.srv.URL, vnetOrigin, n.vkey)
	for _, w := range n.witnesses {
		fmt.Fprintf(&b, "[[witness]]\nname = %q\ncosignature_vkey = %q\n[witness.verdict]\npublic_key = '''\n%s'''\n", w.name, w.cosign.VerifierKey(), w.verdict.PublicPEM())
	}
	p, err := ParseVerifyPolicy([]byte(b.String()), n.t.TempDir())
	if err != nil {
		n.t.Fatal(err)
	}
	return p
}

// checkpoint returns the log's checkpoint with the cosignatures of the
// first n.cosigners witnesses.
func (n *vnet) checkpoint() ([]byte, error) {
	raw := n.l.Checkpoint()
	if raw == nil {
		return nil, log.ErrNotFound
	}
	v, err := note.NewVerifier(n.vkey)
	if err != nil {
		return nil, err
	}
	cp, err := ParseCheckpoint(raw, vnetOrigin, v)
	if err != nil {
		return nil, err
	}
	k := len(n.witnesses)
	if n.cosigners >= 0 {
		k = n.cosigners
	}
	out := append([]byte(nil), raw...)
	for _, w := range n.witnesses[:k] {
		line, err := w.cosign.Cosign(cp)
		if err != nil {
			return nil, err
		}
		out = append(out, line...)
	}
	return out, nil
}

// ServeHTTP is the read handler: tlog-tiles, /lookup and /entry, with the
// lies configured.
func (n *vnet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	n.mu.Lock()
	over, lied := n.override[path]
	hide := n.hideLookup
	cpFunc := n.cpFunc
	n.mu.Unlock()
	if lied {
		w.Write(over)
		return
	}
	ctx := r.Context()
	fail := func(err error) {
		code := http.StatusInternalServerError
		if strings.Contains(err.Error(), "not found") {
			code = http.StatusNotFound
		}
		http.Error(w, err.Error(), code)
	}
	switch {
	case path == "checkpoint":
		b, err := n.checkpoint()
		if err != nil {
			fail(err)
			return
		}
		if cpFunc != nil {
			b = cpFunc(b)
		}
		w.Write(b)
	case strings.HasPrefix(path, "tile/"):
		b, err := n.l.ReadPath(ctx, path)
		if err != nil {
			fail(err)
			return
		}
		w.Write(b)
	case strings.HasPrefix(path, "lookup/"):
		nvr, _ := url.PathUnescape(strings.TrimPrefix(path, "lookup/"))
		refs, err := n.l.Lookup(ctx, nvr)
		if err != nil {
			fail(err)
			return
		}
		out := api.LookupResponse{NVR: nvr, Entries: []api.LookupEntry{}}
		for _, ref := range refs {
			if !hide[ref.Index] {
				out.Entries = append(out.Entries, api.LookupEntry{Index: ref.Index, Type: ref.Type})
			}
		}
		json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(path, "entry/"):
		i, err := strconv.ParseUint(strings.TrimPrefix(path, "entry/"), 10, 64)
		if err != nil {
			http.Error(w, "bad index", http.StatusBadRequest)
			return
		}
		b, err := n.l.Entry(ctx, i)
		if err != nil {
			fail(err)
			return
		}
		w.Write(b)
	default:
		http.NotFound(w, r)
	}
}

// lie sets the bytes served at path.
func (n *vnet) lie(path string, data []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.override[path] = data
}

// verify runs Verify against the network.
func (n *vnet) verify(p *VerifyPolicy, req VerifyRequest) (*VerifyReport, error) {
	n.size()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Verify(ctx, VerifyConfig{Policy: p}, req)
}

// buildsOnlyIndexer is coord.Indexer without the key and alarm lookups: a
// log that indexes builds only, which verify must still answer right.
func buildsOnlyIndexer(entry []byte) ([]byte, []log.IndexKey, error) {
	d, keys, err := coord.Indexer(entry)
	keys = slices.DeleteFunc(keys, func(k log.IndexKey) bool {
		return k.NVR == coord.AlarmLookup || strings.HasPrefix(k.NVR, coord.KeyLookup(""))
	})
	return d, keys, err
}
