package koji_test

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
	"github.com/fedora-skyline/skyline/witness"
)

type feedEnv struct {
	sky       *skyline
	rdb       *kojitest.FakeResultsDB
	cfg       koji.VerdictFeedConfig
	w1, w2, x *attest.Signer // two trusted witnesses, one untrusted
}

func newFeedEnv(t *testing.T) *feedEnv {
	t.Helper()
	sky := newSkyline(t)
	f := &feedEnv{sky: sky, rdb: kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})}
	f.w1 = sky.enrol(nil, attest.RoleWitness, "w1")
	f.w2 = sky.enrol(nil, attest.RoleWitness, "w2")
	f.x = sky.enrol(nil, attest.RoleWitness, "not-in-policy")
	dir := t.TempDir()
	pub, err := koji.NewPublisher(koji.PublisherConfig{URL: f.rdb.URL(), StatePath: filepath.Join(dir, "published.json"), MaxAttempts: 1, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	f.cfg = koji.VerdictFeedConfig{
		Log:       witness.FollowerConfig{URL: sky.url, Origin: sky.origin, Verifier: sky.noteV},
		Witnesses: []*attest.Verifier{f.w1.Verifier(), f.w2.Verifier()}, Quorum: 2,
		Publisher: pub, StatePath: filepath.Join(dir, "feed.json"), RefURL: "https://skyline.example/verdicts/%d",
	}
	return f
}

func (f *feedEnv) feed(t *testing.T) *koji.VerdictFeed {
	t.Helper()
	feed, err := koji.NewVerdictFeed(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return feed
}

func (f *feedEnv) step(t *testing.T, feed *koji.VerdictFeed, want int) {
	t.Helper()
	f.sky.waitCheckpoint()
	n, err := feed.Step(t.Context())
	if err != nil || n != want {
		t.Fatalf("step: %d results, %v; want %d", n, err, want)
	}
}

var buildB = attest.BuildID{NVR: "hello-2.12.1-5.fc41", Arch: "x86_64", SRPMSHA256: sha256hex([]byte("hello"))}

// TestVerdictFeedQuorum: a verdict is published when, and only when, the
// quorum of trusted witnesses agree on it; an untrusted witness's verdict
// counts for nothing; a changed verdict is published once its quorum is
// reached again, and Greenwave then sees the newest; insufficient is never
// published; a restarted feed publishes nothing twice.
func TestVerdictFeedQuorum(t *testing.T) {
	f := newFeedEnv(t)
	feed := f.feed(t)
	f.sky.submitVerdict(f.w1, buildB, attest.VerdictReproduced)
	f.step(t, feed, 0)
	f.sky.submitVerdict(f.x, buildB, attest.VerdictReproduced)
	f.step(t, feed, 0)
	idx := f.sky.submitVerdict(f.w2, buildB, attest.VerdictReproduced)
	f.step(t, feed, 1)
	res := f.rdb.Results()
	if len(res) != 1 || res[0].Outcome != koji.OutcomePassed || res[0].Data["log_index"][0] != strconv.FormatUint(idx, 10) ||
		res[0].RefURL != "https://skyline.example/verdicts/"+strconv.FormatUint(idx, 10) {
		t.Fatalf("results %+v, want PASSED at index %d", res, idx)
	}
	if ts, _ := strconv.ParseUint(res[0].Data["tree_size"][0], 10, 64); ts <= idx {
		t.Fatalf("tree size %d does not hold index %d", ts, idx)
	}
	dec, err := koji.CheckGate(t.Context(), nil, f.rdb.URL(), koji.Testcase, buildB.NVR)
	if err != nil || !dec.Satisfied {
		t.Fatalf("gate %+v %v", dec, err)
	}

	// The witnesses change their minds, one at a time.
	f.sky.submitVerdict(f.w1, buildB, attest.VerdictDisputed)
	f.step(t, feed, 0)
	f.sky.submitVerdict(f.w2, buildB, attest.VerdictDisputed)
	f.step(t, feed, 1)
	dec, err = koji.CheckGate(t.Context(), nil, f.rdb.URL(), koji.Testcase, buildB.NVR)
	if err != nil || dec.Satisfied || dec.Answers[0].Type != "test-result-failed" {
		t.Fatalf("gate after disputed: %+v %v", dec, err)
	}

	other := attest.BuildID{NVR: "zlib-1.3.1-1.fc41", Arch: "aarch64", SRPMSHA256: sha256hex([]byte("zlib"))}
	f.sky.submitVerdict(f.w1, other, attest.VerdictInsufficient)
	f.sky.submitVerdict(f.w2, other, attest.VerdictInsufficient)
	f.step(t, feed, 0)
	if f.rdb.Count() != 2 {
		t.Fatalf("%d results, want 2", f.rdb.Count())
	}

	again := f.feed(t)
	if again.Next() != feed.Next() {
		t.Fatalf("restarted at %d, was at %d", again.Next(), feed.Next())
	}
	f.step(t, again, 0)
	if posts := f.rdb.Posts(); posts != 2 {
		t.Fatalf("%d POSTs, want 2", posts)
	}
}

// TestVerdictFeedResultsDBDown: while ResultsDB fails, the step fails and
// the feed stays before the verdict; once it is back, the verdict is
// published, once.
func TestVerdictFeedResultsDBDown(t *testing.T) {
	f := newFeedEnv(t)
	feed := f.feed(t)
	f.sky.submitVerdict(f.w1, buildB, attest.VerdictReproduced)
	idx := f.sky.submitVerdict(f.w2, buildB, attest.VerdictReproduced)
	f.sky.waitCheckpoint()
	f.rdb.FailNext(1000)
	n, err := feed.Step(t.Context())
	if !errors.Is(err, koji.ErrResultsDBUnavailable) || n != 0 || feed.Next() != idx {
		t.Fatalf("step with ResultsDB down: %d, %v, next %d (verdict at %d)", n, err, feed.Next(), idx)
	}
	// A restart in between loses nothing either.
	feed = f.feed(t)
	if feed.Next() != idx {
		t.Fatalf("restarted at %d, want %d", feed.Next(), idx)
	}
	f.rdb.FailNext(0)
	f.step(t, feed, 1)
	if f.rdb.Count() != 1 {
		t.Fatalf("%d results", f.rdb.Count())
	}
}

// TestVerdictFeedRefusesFork: a log that signs a tree inconsistent with
// the one the feed verified (same key and origin, other entries) is
// refused; nothing is read from it or published, and the saved
// checkpoint stays the verified one.
func TestVerdictFeedRefusesFork(t *testing.T) {
	f := newFeedEnv(t)
	feed := f.feed(t)
	f.sky.submitVerdict(f.w1, buildB, attest.VerdictReproduced)
	f.sky.submitVerdict(f.w2, buildB, attest.VerdictReproduced)
	f.step(t, feed, 1)
	next := feed.Next()

	fork := newSkylineWithKeys(t, f.sky.logKey, f.sky.admin)
	w1 := fork.enrol(f.w1, attest.RoleWitness, "w1")
	w2 := fork.enrol(f.w2, attest.RoleWitness, "w2")
	for range 3 {
		fork.enrol(nil, attest.RoleBuilder, "filler")
	}
	fork.submitVerdict(w1, buildB, attest.VerdictDisputed)
	fork.submitVerdict(w2, buildB, attest.VerdictDisputed)
	fork.waitCheckpoint()
	f.cfg.Log.URL = fork.url
	forked := f.feed(t)
	_, err := forked.Step(t.Context())
	if !errors.Is(err, witness.ErrFork) && !errors.Is(err, witness.ErrRollback) && !errors.Is(err, witness.ErrBadProof) {
		t.Fatalf("step on a forked log: %v, want a fork, rollback or bad proof", err)
	}
	if forked.Next() != next || f.rdb.Count() != 1 {
		t.Fatalf("next %d (was %d), %d results", forked.Next(), next, f.rdb.Count())
	}
}

// TestAPISinkDuplicateJob: through a real coordinator, enqueueing the same
// job twice is success once and "duplicate_job" (treated as success) the
// second time; one job exists. The official build, imported twice, is
// logged once.
func TestAPISinkDuplicateJob(t *testing.T) {
	sky := newSkyline(t)
	importer := sky.enrol(nil, attest.RoleImporter, "fedora-koji")
	sink := &koji.APISink{Admin: sky.client(sky.admin), Server: sky.client(nil), ImporterKey: importer}
	e := newKojiEnv(t)
	e.cfg.Sink = sink
	e.reopen()
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	// Import twice by forgetting the first import (a lost state file).
	for range 2 {
		if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.Imported {
			t.Fatalf("import: %v %v", st, err)
		}
		if err := os.Remove(e.state); err != nil {
			t.Fatal(err)
		}
		e.reopen()
	}
	jobs, err := sky.client(sky.admin).Jobs(t.Context())
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %+v %v", jobs, err)
	}
	sky.waitCheckpoint()
	size, _ := sky.log.Size()
	officials := 0
	for i := range size {
		data, err := sky.log.Entry(t.Context(), i)
		if err != nil {
			t.Fatal(err)
		}
		e, err := attest.Parse(data, attest.ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a := e.Attestation(); a != nil && e.KeyID == importer.KeyID() {
			officials++
		}
	}
	if officials != 1 {
		t.Fatalf("%d official entries, want 1", officials)
	}
}

// TestImportUnenrolledImporterIsRetried: with an importer key the
// coordinator does not know, the import fails transiently (403 is a
// configuration problem of ours, not a reason to drop the build); once the
// key is enrolled, the same build imports.
func TestImportUnenrolledImporterIsRetried(t *testing.T) {
	sky := newSkyline(t)
	importer := genKey(t)
	e := newKojiEnv(t)
	e.cfg.Sink = &koji.APISink{Admin: sky.client(sky.admin), Server: sky.client(nil), ImporterKey: importer}
	e.reopen()
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	if _, err := e.importer.Import(t.Context(), id, "", "test"); !errors.Is(err, koji.ErrTransient) {
		t.Fatalf("import with an unknown importer key: %v, want transient", err)
	}
	if _, ok := e.importer.Handled(id); ok {
		t.Fatal("recorded")
	}
	sky.enrol(importer, attest.RoleImporter, "fedora-koji")
	if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.Imported {
		t.Fatalf("import after enrolment: %v %v", st, err)
	}
}
