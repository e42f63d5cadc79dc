package koji_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
	"github.com/fedora-skyline/skyline/koji/rabbittest"
	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
	"golang.org/x/mod/sumdb/note"
)

type apiSubmitter struct{ c *api.Client }

func (s apiSubmitter) SubmitEntry(ctx context.Context, env []byte) (uint64, error) {
	r, err := s.c.SubmitOne(ctx, env, false)
	if err != nil {
		return 0, err
	}
	return r.Index, nil
}

func genKey(t testing.TB) *attest.Signer {
	t.Helper()
	k, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEndToEndKojiToGreenwave: a build announced on the real broker is
// imported by the listener into a real skyline (log on Pebble, coordinator,
// API over HTTP): official build logged, job enqueued. Two builders of two
// operators lease it, fetch the SRPM over HTTPS, check its sha256, rebuild
// it with rpmbuild and submit signed attestations of the skyline-rpm-v1
// digests; the job closes; a witness daemon follows the log and logs its
// verdict; the verdict feed reads it through the verified follower and
// publishes one result to ResultsDB, which koji.CheckGate (Greenwave's
// PassingTestCaseRule) reads as passing. In-process packages, not
// processes: `skyline serve`, `builder` and `witness` are wired the same
// way by cmd/skyline.
func TestEndToEndKojiToGreenwave(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	sky := newSkyline(t)
	url, origin, vkey, lg, svc, admin, logKey := sky.url, sky.origin, sky.vkey, sky.log, sky.svc, sky.admin, sky.logKey
	importer := genKey(t)
	client := sky.client
	enrol := func(k *attest.Signer, role, operator string) { sky.enrol(k, role, operator) }
	enrol(importer, attest.RoleImporter, "fedora-koji")
	builders := []*attest.Signer{genKey(t), genKey(t)}
	enrol(builders[0], attest.RoleBuilder, "alice")
	enrol(builders[1], attest.RoleBuilder, "bob")
	wdir := t.TempDir()
	cosign, verdictKey := genKey(t), genKey(t)
	cf, err := attest.WriteKeyFiles(wdir, "cosign", "witness.example/w1", cosign)
	if err != nil {
		t.Fatal(err)
	}
	vf, err := attest.WriteKeyFiles(wdir, "verdict", "verdict", verdictKey)
	if err != nil {
		t.Fatal(err)
	}
	coordPath := filepath.Join(wdir, "coordinator.pub")
	if err := os.WriteFile(coordPath, logKey.PublicPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	enrol(verdictKey, attest.RoleWitness, "witness-op")

	// Koji, and koji-listen with the real API sink.
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	im, err := koji.NewImporter(koji.ImporterConfig{
		Hub: e.client, Paths: koji.PathInfo{Topdir: e.pkgs.URL}, HTTPClient: e.pkgs.Client(),
		Sink:      &koji.APISink{Admin: client(admin), Server: client(importer), ImporterKey: importer},
		StatePath: filepath.Join(t.TempDir(), "import.json"), SigKeys: []string{kojitest.SigKey(t)}, Wanted: 2, Logger: e.logger,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.importer = im
	cons, err := koji.NewConsumer(koji.AMQPConfig{URL: broker.URL, TLS: broker.TLSConfig(rabbittest.ListenerUser), Logger: e.logger,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, im)
	if err != nil {
		t.Fatal(err)
	}
	lctx, lstop := context.WithCancel(ctx)
	ldone := make(chan error, 1)
	go func() {
		ldone <- (&koji.Listener{Consumer: cons, Poller: koji.NewPoller(e.client, im, koji.PollerConfig{Interval: time.Hour, Logger: e.logger})}).Run(lctx)
	}()
	defer func() { lstop(); <-ldone }()
	e.waitFor("subscribed", func() bool { return e.logs.count("subscribed to the broker") > 0 })
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.waitFor("the import", func() bool { out, ok := im.Handled(id); return ok && out == "imported" })
	jobs, err := client(admin).Jobs(ctx)
	if err != nil || len(jobs) != 1 || jobs[0].Job.Build.NVR != "hello-1.0-1" || jobs[0].Job.Wanted != 2 {
		t.Fatalf("jobs %+v %v", jobs, err)
	}

	// The builders: lease, download over HTTPS, check, rebuild, attest.
	for i, k := range builders {
		c := client(k)
		l, err := c.Lease(ctx)
		if err != nil {
			t.Fatalf("builder %d lease: %v", i, err)
		}
		resp, err := e.pkgs.Client().Get(l.SRPMURL)
		if err != nil {
			t.Fatal(err)
		}
		srpm, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(srpm); hex.EncodeToString(sum[:]) != l.Build.SRPMSHA256 {
			t.Fatalf("builder %d: SRPM sha256 differs from the lease", i)
		}
		p := filepath.Join(t.TempDir(), "hello-1.0-1.src.rpm")
		if err := os.WriteFile(p, srpm, 0o644); err != nil {
			t.Fatal(err)
		}
		result := rpmtest.Rebuild(t, p, filepath.Join(t.TempDir(), "top"), nil)
		digests, err := rpm.DigestDir(result)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().UTC()
		envs, err := attest.NewAttestations(attest.Build{ID: l.Build, SRPMURL: l.SRPMURL, Backend: "rpmbuild", Chroot: "test",
			LeaseID: l.LeaseID, Started: now, Finished: now}, digests, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Submit(ctx, envs); err != nil {
			t.Fatalf("builder %d submit: %v", i, err)
		}
	}
	if _, closed, err := svc.Tick(ctx); err != nil || closed != 1 {
		t.Fatalf("tick closed %d jobs: %v", closed, err)
	}
	waitCheckpoint(t, lg)

	// The witness.
	wcfg := witness.DefaultConfig()
	wcfg.StateDir, wcfg.Name = t.TempDir(), "witness.example/w1"
	wcfg.CosignKey, wcfg.VerdictKey = cf.Private, vf.Private
	wcfg.Policy = witness.Policy{Leases: 2, Quorum: 2, MaxDissent: 0, RequireOfficialMatch: true}
	submit := true
	wcfg.Logs = []witness.LogConfig{{Name: "test", URL: url, SubmitURL: url, LogKey: vkey, Origin: origin, CoordinatorKey: coordPath, Submit: &submit}}
	d, err := witness.NewDaemon(wcfg, witness.Env{Logger: e.logger, Submitter: func(lc witness.LogConfig) (witness.Submitter, error) {
		c, err := api.NewClient(api.ClientConfig{URL: lc.SubmitURL})
		return apiSubmitter{c}, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Step(ctx); err != nil {
		t.Fatalf("witness: %v", err)
	}
	waitCheckpoint(t, lg)

	// koji-publish.
	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{})
	stateDir := t.TempDir()
	pub, err := koji.NewPublisher(koji.PublisherConfig{URL: rdb.URL(), StatePath: filepath.Join(stateDir, "published.json"), Logger: e.logger})
	if err != nil {
		t.Fatal(err)
	}
	lv, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	feedCfg := koji.VerdictFeedConfig{
		Log:       witness.FollowerConfig{URL: url, Origin: origin, Verifier: lv},
		Witnesses: []*attest.Verifier{verdictKey.Verifier()}, Publisher: pub,
		StatePath: filepath.Join(stateDir, "feed.json"), Logger: e.logger,
	}
	feed, err := koji.NewVerdictFeed(feedCfg)
	if err != nil {
		t.Fatal(err)
	}
	n, err := feed.Step(ctx)
	if err != nil || n != 1 {
		t.Fatalf("feed step: %d results, %v; logs:\n%s", n, err, e.logs)
	}
	res := rdb.Results()
	if len(res) != 1 || res[0].Outcome != koji.OutcomePassed || res[0].Data["item"][0] != "hello-1.0-1" || res[0].Data["verdict"][0] != koji.VerdictReproduced {
		t.Fatalf("ResultsDB holds %+v", res)
	}
	dec, err := koji.CheckGate(ctx, nil, rdb.URL(), koji.Testcase, "hello-1.0-1")
	if err != nil || !dec.Satisfied || len(dec.Answers) != 1 || dec.Answers[0].Type != "test-result-passed" {
		t.Fatalf("gate: %+v %v", dec, err)
	}

	// Nothing is published twice: not by a second step, not after a restart.
	if n, err := feed.Step(ctx); err != nil || n != 0 {
		t.Fatalf("second step: %d %v", n, err)
	}
	feed2, err := koji.NewVerdictFeed(feedCfg)
	if err != nil {
		t.Fatal(err)
	}
	if feed2.Next() != feed.Next() {
		t.Fatalf("restarted feed at %d, was at %d", feed2.Next(), feed.Next())
	}
	if n, err := feed2.Step(ctx); err != nil || n != 0 || rdb.Count() != 1 {
		t.Fatalf("step after restart: %d %v, %d results", n, err, rdb.Count())
	}
}

func waitCheckpoint(t testing.TB, lg *log.Log) {
	t.Helper()
	size, _ := lg.Size()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lg.WaitCheckpoint(ctx, size); err != nil {
		t.Fatal(err)
	}
}
