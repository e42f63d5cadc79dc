package koji_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
)

// helloRPMs builds hello for real and returns its SRPM, arch RPM and
// noarch RPM, each with an rpmsign-signed copy.
func helloRPMs(t *testing.T) (srpm, bin, doc kojitest.RPMFile) {
	t.Helper()
	s := rpmtest.BuildSRPM(t, "hello.spec", nil)
	result := rpmtest.Rebuild(t, s, filepath.Join(t.TempDir(), "top"), nil)
	key := kojitest.SigKey(t)
	file := func(p string) kojitest.RPMFile {
		return kojitest.RPMFile{Path: p, Signed: map[string]string{key: rpmtest.SignRPM(t, p)}}
	}
	m, _ := filepath.Glob(filepath.Join(result, "*.rpm"))
	for _, p := range m {
		if strings.Contains(filepath.Base(p), ".noarch.") {
			doc = file(p)
		} else {
			bin = file(p)
		}
	}
	if bin.Path == "" || doc.Path == "" {
		t.Fatalf("rpmbuild made %v", m)
	}
	return file(s), bin, doc
}

func helloSpec() kojitest.BuildSpec {
	return kojitest.BuildSpec{Name: "hello", Version: "1.0", Release: "1", State: koji.BuildComplete, CompletionTS: 1_763_000_000.5}
}

// TestImportNoarchOnly: a build whose binary RPMs are all noarch is one
// job on NoarchArch, its official set the noarch RPMs.
func TestImportNoarchOnly(t *testing.T) {
	e := newKojiEnv(t)
	srpm, _, doc := helloRPMs(t)
	id := e.hub.AddBuild(t, helloSpec(), []kojitest.RPMFile{srpm, doc})
	e.cfg.NoarchArch = "aarch64"
	e.reopen()
	if st, err := e.importer.Import(t.Context(), id, "hello-1.0-1", "test"); err != nil || st != koji.Imported {
		t.Fatalf("import: %v %v", st, err)
	}
	jobs, offs := e.sink.Jobs(), e.sink.Officials()
	if len(jobs) != 1 || jobs[0].Arch != "aarch64" || len(offs) != 1 || !slices.Equal(offs[0].files, []string{"hello-doc"}) {
		t.Fatalf("jobs %+v officials %+v", jobs, offs)
	}
}

// TestImportArchFilter: with Arches set, other arches get no job; a build
// with none of them is skipped and recorded.
func TestImportArchFilter(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	e.cfg.Arches = []string{"s390x"}
	e.reopen()
	st, err := e.importer.Import(t.Context(), id, "", "test")
	if err != nil || st != koji.Skipped || len(e.sink.Jobs()) != 0 {
		t.Fatalf("import: %v %v, %d jobs", st, err, len(e.sink.Jobs()))
	}
	if out, _ := e.importer.Handled(id); out != "skipped: no binary RPMs for the configured arches" {
		t.Fatalf("recorded %q", out)
	}
}

// TestImportSignedOrUnsigned: with SigKeys the signed copies are fetched
// (data/signed/<key>/...), without them the unsigned files; both give
// the same official RPMs and the same job.
func TestImportSignedOrUnsigned(t *testing.T) {
	srpm, bin, doc := helloRPMs(t)
	var got [2]recordedOfficial
	var job [2]string
	for i, signed := range []bool{true, false} {
		e := newKojiEnv(t)
		id := e.hub.AddBuild(t, helloSpec(), []kojitest.RPMFile{srpm, bin, doc})
		key := kojitest.SigKey(t)
		if !signed {
			e.cfg.SigKeys = nil
			e.reopen()
		}
		if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.Imported {
			t.Fatalf("import: %v %v", st, err)
		}
		var signedGets, binGets int
		for _, p := range e.files.requested() {
			if strings.Contains(p, "/data/signed/"+key+"/") {
				signedGets++
			}
			if !strings.HasSuffix(p, ".src.rpm") {
				binGets++
			}
		}
		if signed && signedGets != 2 || !signed && signedGets != 0 || binGets != 2 {
			t.Fatalf("signed=%v: requests %v", signed, e.files.requested())
		}
		got[i], job[i] = e.sink.Officials()[0], e.sink.Jobs()[0].SRPMSHA256
	}
	if job[0] != job[1] || len(got[0].digests) != 2 || len(got[1].digests) != 2 {
		t.Fatalf("jobs %v, officials %+v", job, got)
	}
	for i := range got[0].digests {
		a, b := got[0].digests[i], got[1].digests[i]
		// skyline-rpm-v1 ignores the signature header; the file hash does not.
		if a.Skyline != b.Skyline || a.SHA256 == b.SHA256 {
			t.Fatalf("signed %+v vs unsigned %+v", a, b)
		}
	}
}

// TestImportDownloadFailures: an SRPM over the size limit is ErrDownload;
// kojipkgs failing with 503 is ErrTransient; neither records the build or
// enqueues anything, and the import succeeds once kojipkgs is back.
func TestImportDownloadFailures(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	e.cfg.MaxSRPMSize = 1000
	e.reopen()
	_, err := e.importer.Import(t.Context(), id, "", "test")
	if !errors.Is(err, koji.ErrDownload) || errors.Is(err, koji.ErrTransient) {
		t.Fatalf("over the limit: %v", err)
	}
	e.cfg.MaxSRPMSize = 0
	e.reopen()
	e.files.fail(1)
	if _, err := e.importer.Import(t.Context(), id, "", "test"); !errors.Is(err, koji.ErrTransient) {
		t.Fatalf("503: %v", err)
	}
	if _, ok := e.importer.Handled(id); ok || len(e.sink.Jobs()) != 0 {
		t.Fatal("a failed import was recorded or enqueued")
	}
	if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.Imported || len(e.sink.Jobs()) != 1 {
		t.Fatalf("retry: %v %v", st, err)
	}
}

// TestImportRefusesTamperedRPM: a binary RPM whose bytes are not Koji's
// (payloadhash) is refused with an ALARM line; no job, no official entry.
func TestImportRefusesTamperedRPM(t *testing.T) {
	e := newKojiEnv(t)
	id, key := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	m, _ := filepath.Glob(filepath.Join(e.hub.Root(), "packages", "hello", "1.0", "1", "data", "signed", key, "noarch", "*.rpm"))
	if len(m) != 1 {
		t.Fatalf("signed noarch RPMs %v", m)
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-10] ^= 1
	if err := os.WriteFile(m[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.Refused {
		t.Fatalf("import: %v %v", st, err)
	}
	if e.logs.count("ALARM", "RPM does not match Koji's payloadhash", "hello-doc-1.0-1.noarch") != 1 || len(e.sink.Jobs()) != 0 || len(e.sink.Officials()) != 0 {
		t.Fatalf("logs:\n%s", e.logs)
	}
}

// TestImportStateCorrupt: an unreadable state file stops the importer
// from starting (it would otherwise import everything again).
func TestImportStateCorrupt(t *testing.T) {
	e := newKojiEnv(t)
	if err := os.WriteFile(e.state, []byte(`{"version": 1, "done": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := koji.NewImporter(e.cfg)
	if !errors.Is(err, koji.ErrImportState) {
		t.Fatalf("corrupt state: %v", err)
	}
}

// TestPollerCheckpoint: the poller imports builds in completion order,
// stops at a transient failure without moving its checkpoint past the
// failed build, and a later poll (after a restart) imports it; builds
// completed before the checkpoint (minus the overlap) are not listed.
func TestPollerCheckpoint(t *testing.T) {
	e := newKojiEnv(t)
	p := koji.NewPoller(e.client, e.importer, koji.PollerConfig{Logger: e.logger})
	if n, err := p.Poll(t.Context()); err != nil || n != 0 {
		t.Fatalf("first poll: %d %v", n, err)
	}
	start := e.importer.Checkpoint()
	srpm, bin, doc := helloRPMs(t)
	spec := helloSpec()
	spec.CompletionTS = float64(start.Unix()) - 3600 // long before: not ours
	old := e.hub.AddBuild(t, spec, []kojitest.RPMFile{srpm, bin, doc})
	spec.Release, spec.CompletionTS = "2", float64(start.Unix())+60
	first := e.hub.AddBuild(t, spec, []kojitest.RPMFile{srpm, bin, doc})
	spec.Release, spec.CompletionTS = "3", float64(start.Unix())+120
	second := e.hub.AddBuild(t, spec, []kojitest.RPMFile{srpm, bin, doc})
	e.sink.failNext = 1 // the first build's enqueue fails
	if _, err := p.Poll(t.Context()); !errors.Is(err, koji.ErrTransient) {
		t.Fatalf("poll: %v, want transient", err)
	}
	if !e.importer.Checkpoint().Equal(start) {
		t.Fatalf("checkpoint moved to %v past the failed build", e.importer.Checkpoint())
	}
	e.reopen()
	p = koji.NewPoller(e.client, e.importer, koji.PollerConfig{Logger: e.logger})
	if n, err := p.Poll(t.Context()); err != nil || n != 2 {
		t.Fatalf("second poll: %d %v", n, err)
	}
	for _, id := range []int64{first, second} {
		if out, ok := e.importer.Handled(id); !ok || out != "imported" {
			t.Fatalf("build %d: %q", id, out)
		}
	}
	if _, ok := e.importer.Handled(old); ok {
		t.Fatal("a build completed before the checkpoint was imported")
	}
	if got := e.importer.Checkpoint().Unix(); got != start.Unix()+120 {
		t.Fatalf("checkpoint %d, want %d", got, start.Unix()+120)
	}
	if n, err := p.Poll(t.Context()); err != nil || n != 0 || len(e.sink.Jobs()) != 2 {
		t.Fatalf("third poll: %d %v, %d jobs", n, err, len(e.sink.Jobs()))
	}
}

// draftHub is a one-method hub whose only build is a Koji 1.34 draft
// build (kojitest's fake hub makes no drafts).
func draftHub(t *testing.T, calls *[]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, _, err := koji.DecodeCall(r.Body, koji.Limits{MaxSize: 1 << 20})
		if err != nil {
			t.Errorf("draft hub: %v", err)
			return
		}
		*calls = append(*calls, method)
		out, err := koji.EncodeResponse(map[string]any{
			"id": int64(77), "name": "hello", "version": "1.0", "release": "1", "nvr": "hello-1.0-1",
			"state": int64(koji.BuildComplete), "draft": true, "epoch": nil, "creation_ts": 1.5e9, "completion_ts": 1.5e9,
		})
		if err != nil {
			t.Errorf("draft hub: %v", err)
			return
		}
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestImportSkipsDraft: a draft build is skipped without listing or
// downloading its RPMs, and recorded.
func TestImportSkipsDraft(t *testing.T) {
	var calls []string
	hub, err := koji.NewClient(koji.Config{HubURL: draftHub(t, &calls), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{}
	im, err := koji.NewImporter(koji.ImporterConfig{Hub: hub, Paths: koji.PathInfo{Topdir: "https://kojipkgs.invalid"}, Sink: sink,
		StatePath: filepath.Join(t.TempDir(), "state.json"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := im.Import(t.Context(), 77, "hello-1.0-1", "test"); err != nil || st != koji.Skipped {
		t.Fatalf("import: %v %v", st, err)
	}
	if out, _ := im.Handled(77); out != "skipped: draft build" || !slices.Equal(calls, []string{"getBuild"}) || len(sink.Jobs()) != 0 {
		t.Fatalf("recorded %q, calls %v", out, calls)
	}
}

// TestImportCancelledIsTransient: an import cut short by shutdown is a
// transient failure (the message is requeued, the poll retried), never a
// permanent one that would drop the build.
func TestImportCancelledIsTransient(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.5)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.importer.Import(ctx, id, "", "test"); !errors.Is(err, koji.ErrTransient) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled import: %v", err)
	}
	if _, ok := e.importer.Handled(id); ok || len(e.sink.Jobs()) != 0 {
		t.Fatal("a cancelled import was recorded or enqueued")
	}
}
