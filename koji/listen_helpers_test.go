package koji_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
	"github.com/fedora-skyline/skyline/koji/rabbittest"
	"github.com/prometheus/client_golang/prometheus"
)

// logBuffer collects slog output for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// count counts the lines holding every one of subs.
func (b *logBuffer) count(subs ...string) int {
	n := 0
	for _, line := range strings.Split(b.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// recordingSink is a Sink that records what it is asked, checking the
// official RPMs it is given with the real skyline-rpm-v1 digest.
type recordingSink struct {
	mu        sync.Mutex
	jobs      []api.EnqueueBody
	officials []recordedOfficial
	failNext  int // Enqueue calls to fail with a 503 first
	calls     int // Enqueue calls, duplicates included
	// onEnqueue, when set, runs after each successful Enqueue.
	onEnqueue func()
}

type recordedOfficial struct {
	o       koji.Official
	files   []string     // package names
	digests []rpm.Digest // as DigestDir computed them
}

func (s *recordingSink) Enqueue(ctx context.Context, b api.EnqueueBody) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failNext > 0 {
		s.failNext--
		return fmt.Errorf("test sink: %w", &api.Error{Status: 503, Code: "unavailable", Message: "injected"})
	}
	// Like the coordinator: a job already enqueued is not enqueued again.
	for _, j := range s.jobs {
		if j.NVR == b.NVR && j.Arch == b.Arch && j.SRPMSHA256 == b.SRPMSHA256 {
			return nil
		}
	}
	s.jobs = append(s.jobs, b)
	if s.onEnqueue != nil {
		s.onEnqueue()
	}
	return nil
}

func (s *recordingSink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *recordingSink) ImportOfficial(ctx context.Context, o koji.Official) error {
	ds, err := rpm.DigestDir(o.Dir)
	if err != nil {
		return err
	}
	var files []string
	for _, d := range ds {
		files = append(files, d.Name)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.officials = append(s.officials, recordedOfficial{o: o, files: files, digests: ds})
	return nil
}

func (s *recordingSink) Jobs() []api.EnqueueBody {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.EnqueueBody(nil), s.jobs...)
}

func (s *recordingSink) Officials() []recordedOfficial {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedOfficial(nil), s.officials...)
}

// kojiEnv is a fake Koji (hub + kojipkgs over HTTPS) and a listener
// around it.
type kojiEnv struct {
	t        testing.TB
	hub      *kojitest.FakeHub
	pkgs     *httptest.Server // kojipkgs over TLS, serving the hub's tree
	files    *pkgFiles
	cfg      koji.ImporterConfig // the importer's configuration (reopen uses it)
	client   *koji.Client
	sink     *recordingSink
	logs     *logBuffer
	logger   *slog.Logger
	state    string
	importer *koji.Importer
	filter   koji.MessageFilter
	reg      *prometheus.Registry
	metrics  *koji.ListenMetrics
}

func newKojiEnv(t testing.TB) *kojiEnv {
	t.Helper()
	hub := kojitest.NewFakeHub(t)
	files := &pkgFiles{h: http.FileServer(http.Dir(hub.Root()))}
	pkgs := httptest.NewTLSServer(files)
	t.Cleanup(pkgs.Close)
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client, err := koji.NewClient(koji.Config{HubURL: hub.URL(), MaxAttempts: 1, Backoff: time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	e := &kojiEnv{t: t, hub: hub, pkgs: pkgs, files: files, client: client, sink: &recordingSink{}, logs: logs, logger: logger,
		state: filepath.Join(t.TempDir(), "import-state.json")}
	e.reg = prometheus.NewRegistry()
	if e.metrics, err = koji.NewListenMetrics(e.reg); err != nil {
		t.Fatal(err)
	}
	e.reopen()
	return e
}

// metric returns the value of a counter or gauge of e.reg with the given
// labels (name=value pairs), 0 when absent.
func (e *kojiEnv) metric(name string, labels ...string) float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// reopen makes a new Importer on the same state file (a restart).
func (e *kojiEnv) reopen() {
	e.t.Helper()
	if e.cfg.Hub == nil {
		e.cfg = koji.ImporterConfig{
			Hub: e.client, Paths: koji.PathInfo{Topdir: e.pkgs.URL}, Sink: e.sink, StatePath: e.state,
			HTTPClient: e.pkgs.Client(), SigKeys: []string{kojitest.SigKey(e.t)}, Logger: e.logger, Metrics: e.metrics,
		}
	}
	im, err := koji.NewImporter(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.importer = im
}

// listen starts a listener (consumer and poller) with the listener
// identity; it stops when the returned function is called or the test ends.
func (e *kojiEnv) listen(pollEvery time.Duration) (stop func()) {
	e.t.Helper()
	c, err := koji.NewConsumer(koji.AMQPConfig{
		URL: broker.URL, TLS: broker.TLSConfig(rabbittest.ListenerUser), Filter: e.filter,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Heartbeat: 5 * time.Second, Logger: e.logger,
		Metrics: e.metrics,
	}, e.importer)
	if err != nil {
		e.t.Fatal(err)
	}
	p := koji.NewPoller(e.client, e.importer, koji.PollerConfig{Interval: pollEvery, Logger: e.logger})
	subscribed := e.logs.count("subscribed to the broker")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&koji.Listener{Consumer: c, Poller: p}).Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("listener: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	e.waitFor("subscribed", func() bool { return e.logs.count("subscribed to the broker") > subscribed })
	return stop
}

// waitFor polls cond until it holds, failing the test after 30 s.
func (e *kojiEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s; logs:\n%s", what, e.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stateChange is a BuildStateChangeV1 body (koji-fedoramessaging-messages
// tests/test_build.py) for a build completing.
func stateChange(id int64, name, version, release string, newState int) map[string]any {
	return map[string]any{
		"build_id": id, "old": 0, "name": name, "task_id": 42561864, "task": nil, "attribute": "state",
		"request":  []any{"git+https://src.fedoraproject.org/rpms/" + name + ".git#5f8f367e482fe8e30711aea49bf2ecfd163d278f", "rawhide", map[string]any{}},
		"instance": "primary", "epoch": nil, "version": version, "owner": "packager", "new": newState, "release": release,
		"creation_time": "2026-11-29T07:16:27.818161+00:00", "completion_time": "2026-11-29T07:35:14.682273+00:00",
		"url": fmt.Sprintf("https://koji.fedoraproject.org/koji/buildinfo?buildID=%d", id),
	}
}

func tagBody(id int64, name, version, release string) map[string]any {
	return map[string]any{"build_id": id, "name": name, "tag_id": 1234, "instance": "primary", "tag": "f44-updates-candidate",
		"user": "bodhi", "version": version, "owner": "packager", "release": release}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	topicState = "org.fedoraproject.prod.buildsys.build.state.change"
	topicTag   = "org.fedoraproject.prod.buildsys.tag"
)

var msgSeq int

// publish sends one message as Koji's plugin would.
func (e *kojiEnv) publish(topic, schema string, body []byte) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgSeq++
	if err := broker.Publish(ctx, topic, schema, fmt.Sprintf("msg-%d", msgSeq), body); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// handled counts "message handled" lines (and refusals) so far: every
// delivery ends in exactly one line of these.
func (e *kojiEnv) deliveries() int {
	return e.logs.count("koji: message ") + e.logs.count("koji: build not imported", "source=amqp")
}

func fileSHA256(t testing.TB, path string) string {
	t.Helper()
	d, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256hex(d)
}

func kojitestSpec(name string, st koji.BuildState) kojitest.BuildSpec {
	return kojitest.BuildSpec{Name: name, Version: "1", Release: "1", State: st}
}

// pkgFiles serves kojipkgs: it records the paths asked for and can fail.
type pkgFiles struct {
	h        http.Handler
	mu       sync.Mutex
	paths    []string
	failNext int
}

func (p *pkgFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.paths = append(p.paths, r.URL.Path)
	fail := p.failNext > 0
	if fail {
		p.failNext--
	}
	p.mu.Unlock()
	if fail {
		http.Error(w, "injected", http.StatusServiceUnavailable)
		return
	}
	p.h.ServeHTTP(w, r)
}

func (p *pkgFiles) fail(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failNext = n
}

func (p *pkgFiles) requested() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.paths...)
}
