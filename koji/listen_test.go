package koji_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji"
)

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// srpmPath finds the hello SRPM in the fake hub's tree.
func srpmPath(t testing.TB, e *kojiEnv) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(e.hub.Root(), "packages", "hello", "1.0", "1", "src", "hello-1.0-1.src.rpm"))
	if err != nil || len(m) != 1 {
		t.Fatalf("no SRPM in the hub tree: %v %v", m, err)
	}
	return m[0]
}

// TestListenStateChangeEnqueuesOnce: a build.state.change to COMPLETE
// published on the real broker enqueues exactly one job per arch, with
// the SRPM's sha256 and Koji's URL, after logging the official build of
// the arch's RPMs (arch + noarch); a duplicate message, a tag message for
// the same build and a restart of the importer enqueue nothing more.
func TestListenStateChangeEnqueuesOnce(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	e.listen(time.Hour)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.waitFor("the job", func() bool { return len(e.sink.Jobs()) == 1 })

	j := e.sink.Jobs()[0]
	if j.NVR != "hello-1.0-1" || j.Arch == "noarch" || j.Arch == "" {
		t.Fatalf("job %+v", j)
	}
	if want := fileSHA256(t, srpmPath(t, e)); j.SRPMSHA256 != want {
		t.Fatalf("job SRPM sha256 %s, file %s", j.SRPMSHA256, want)
	}
	if !strings.HasPrefix(j.SRPMURL, e.pkgs.URL+"/packages/hello/1.0/1/src/") {
		t.Fatalf("job SRPM URL %s", j.SRPMURL)
	}
	offs := e.sink.Officials()
	if len(offs) != 1 || offs[0].o.Build.Arch != j.Arch || offs[0].o.Build.SRPMSHA256 != j.SRPMSHA256 {
		t.Fatalf("officials %+v", offs)
	}
	files := offs[0].files
	slices.Sort(files)
	if !slices.Equal(files, []string{"hello", "hello-doc"}) {
		t.Fatalf("official RPMs %v, want hello (arch) and hello-doc (noarch)", files)
	}

	before := e.deliveries()
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.publish(topicTag, koji.SchemaTag, mustJSON(t, tagBody(id, "hello", "1.0", "1")))
	e.waitFor("two more deliveries", func() bool { return e.deliveries() >= before+2 })
	if n := e.logs.count("message handled", "status=already-handled"); n != 2 {
		t.Fatalf("%d already-handled lines, want 2:\n%s", n, e.logs)
	}
	e.reopen()
	if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.AlreadyHandled {
		t.Fatalf("import after restart: %v %v", st, err)
	}
	if n := len(e.sink.Jobs()); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
}

// TestListenRedeliveryAfterTransientFailure: when the coordinator fails
// (503) the message is not acknowledged but requeued; the redelivery
// imports it, and the job is enqueued exactly once.
func TestListenRedeliveryAfterTransientFailure(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	e.sink.failNext = 2
	e.listen(time.Hour)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.waitFor("the job", func() bool { return len(e.sink.Jobs()) == 1 })
	e.waitFor("the handled line", func() bool { return e.logs.count("message handled", "redelivered=true", "status=imported") == 1 })
	if n := e.logs.count("message requeued"); n != 2 {
		t.Fatalf("%d requeue lines, want 2:\n%s", n, e.logs)
	}
	if n := len(e.sink.Jobs()); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
}

// TestPollerCatchesBuildWhileDown: a build completed and announced while
// the listener was stopped (its exclusive queue gone, the message lost) is
// imported by the poll the listener runs when it starts again.
func TestPollerCatchesBuildWhileDown(t *testing.T) {
	e := newKojiEnv(t)
	stop := e.listen(time.Hour)
	e.waitFor("the first poll", func() bool { return e.logs.count("poller starts at the hub's last event") == 1 })
	stop()
	id, _ := e.hub.AddHelloBuild(t, "", 1_764_999_000.5)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	if n := len(e.sink.Jobs()); n != 0 {
		t.Fatalf("%d jobs while down", n)
	}
	e.reopen()
	e.listen(time.Hour)
	e.waitFor("the job", func() bool { return len(e.sink.Jobs()) == 1 })
	if e.logs.count("build enqueued", "source=poll") != 1 {
		t.Fatalf("no poll import line:\n%s", e.logs)
	}
	if out, ok := e.importer.Handled(id); !ok || out != "imported" {
		t.Fatalf("handled %q %v", out, ok)
	}
	if e.importer.Checkpoint().Unix() != 1_764_999_000 {
		t.Fatalf("checkpoint %v", e.importer.Checkpoint())
	}
}

// TestListenReconnects: the broker closes every connection; the consumer
// reconnects with backoff, subscribes again (which triggers a poll) and
// keeps importing.
func TestListenReconnects(t *testing.T) {
	e := newKojiEnv(t)
	e.listen(time.Hour)
	if err := broker.CloseConnections("test: broker restart"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the reconnection", func() bool { return e.logs.count("subscribed to the broker") >= 2 })
	if e.logs.count("broker connection lost; reconnecting") < 1 {
		t.Fatalf("no reconnect line:\n%s", e.logs)
	}
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.waitFor("the job", func() bool { return len(e.sink.Jobs()) == 1 })
}

// TestListenBadInput: each kind of bad or foreign message, and each kind
// of failure of Koji, gets its own log line and enqueues nothing; a good
// message published last is still imported, once.
func TestListenBadInput(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	e.listen(time.Hour)
	good := stateChange(id, "hello", "1.0", "1", 1)
	with := func(k string, v any) []byte {
		m := stateChange(id, "hello", "1.0", "1", 1)
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return mustJSON(t, m)
	}
	cases := []struct {
		name, topic, schema string
		body                []byte
		line                []string
	}{
		{"not JSON", topicState, koji.SchemaBuildStateChange, []byte(`{"build_id": 1,`), []string{"message refused: malformed"}},
		{"duplicate key", topicState, koji.SchemaBuildStateChange, []byte(`{"build_id": 1, "build_id": 2}`), []string{"message refused: malformed", "duplicate key"}},
		{"unknown member", topicState, koji.SchemaBuildStateChange, with("Build_ID", 5), []string{"message refused: malformed", "unknown member"}},
		{"missing member", topicState, koji.SchemaBuildStateChange, with("owner", nil), []string{"message refused: malformed", "required member"}},
		{"string build id", topicState, koji.SchemaBuildStateChange, with("build_id", "1"), []string{"message refused: malformed", "build_id has type string"}},
		{"oversize", topicState, koji.SchemaBuildStateChange, []byte(`{"x":"` + strings.Repeat("a", 300<<10) + `"}`), []string{"message refused: malformed", "limit"}},
		{"other hub instance", topicState, koji.SchemaBuildStateChange, with("instance", "s390"), []string{"message ignored: another Koji instance", "s390"}},
		{"unknown schema", topicState, "koji_fedoramessaging.build.BuildStateChangeV2", mustJSON(t, good), []string{"message refused: unknown schema"}},
		{"no schema header", topicState, "", mustJSON(t, good), []string{"message refused: unknown schema"}},
		{"failed build", topicState, koji.SchemaBuildStateChange, with("new", 3), []string{"message ignored: not a completed build"}},
		{"NVR of another hub", topicState, koji.SchemaBuildStateChange, with("name", "chromium"), []string{"build not imported", "another NVR"}},
		{"unknown build id", topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(99, "hello", "1.0", "1", 1)), []string{"build not imported", "No such build"}},
	}
	for _, c := range cases {
		e.publish(c.topic, c.schema, c.body)
	}
	e.waitFor("the bad messages", func() bool { return e.deliveries() >= len(cases) })
	// Koji unreachable for the first attempts of the good message: it is
	// requeued, not lost.
	e.hub.FailNext(2, 503)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, good))
	e.waitFor("the job", func() bool { return len(e.sink.Jobs()) == 1 })
	for _, c := range cases {
		if e.logs.count(c.line...) == 0 {
			t.Errorf("%s: no log line with %q", c.name, c.line)
		}
	}
	if n := e.logs.count("message requeued", "hub unavailable"); n < 1 {
		t.Errorf("no requeue line for the unreachable hub:\n%s", e.logs)
	}
	if n := len(e.sink.Jobs()); n != 1 {
		t.Fatalf("%d jobs, want 1", n)
	}
	e.waitFor("the handled counter", func() bool { return e.metric("skyline_koji_messages_total", "outcome", "handled") == 1 })
	for outcome, want := range map[string]float64{"malformed": 6, "unknown-schema": 2, "other-instance": 1, "not-complete": 1, "not-imported": 2} {
		if got := e.metric("skyline_koji_messages_total", "outcome", outcome); got != want {
			t.Errorf("messages_total{outcome=%s} = %v, want %v", outcome, got, want)
		}
	}
	if e.metric("skyline_koji_messages_total", "outcome", "requeued") < 1 || e.metric("skyline_koji_import_failures_total", "source", "amqp", "kind", "transient") < 1 ||
		e.metric("skyline_koji_imports_total", "source", "amqp", "status", "imported") != 1 || e.metric("skyline_koji_broker_connected") != 1 {
		t.Errorf("import metrics wrong")
	}
	if t.Failed() {
		t.Logf("logs:\n%s", e.logs)
	}
}

// TestImportRefusesPayloadHashMismatch: an SRPM on kojipkgs whose bytes
// are not what Koji's payloadhash says is refused with an ALARM line; no
// job, no official entry; the refusal is recorded so it is not retried.
func TestImportRefusesPayloadHashMismatch(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	// Flip the last payload byte of every copy of the SRPM.
	m, _ := filepath.Glob(filepath.Join(e.hub.Root(), "packages", "hello", "1.0", "1", "*", "*", "*", "hello-1.0-1.src.rpm"))
	m = append(m, srpmPath(t, e))
	for _, p := range m {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)-1] ^= 0xff
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err := e.importer.Import(t.Context(), id, "hello-1.0-1", "test")
	if err != nil || st != koji.Refused {
		t.Fatalf("import: %v %v, want refused", st, err)
	}
	if e.logs.count("ALARM", "SRPM does not match Koji's payloadhash", "header and payload hash to") != 1 {
		t.Fatalf("no alarm line:\n%s", e.logs)
	}
	if len(e.sink.Jobs()) != 0 || len(e.sink.Officials()) != 0 {
		t.Fatalf("jobs %v officials %v", e.sink.Jobs(), e.sink.Officials())
	}
	e.reopen()
	if st, err := e.importer.Import(t.Context(), id, "", "test"); err != nil || st != koji.AlreadyHandled {
		t.Fatalf("second import: %v %v", st, err)
	}
}

// TestImportSkipsDraftsAndIncomplete: a build that is not COMPLETE on the
// hub (though announced) is skipped and recorded, nothing enqueued.
func TestImportSkipsIncomplete(t *testing.T) {
	e := newKojiEnv(t)
	id := e.hub.AddBuild(t, kojitestSpec("gone", koji.BuildDeleted), nil)
	st, err := e.importer.Import(t.Context(), id, "gone-1-1", "test")
	if err != nil || st != koji.Skipped {
		t.Fatalf("import: %v %v", st, err)
	}
	if out, _ := e.importer.Handled(id); out != "skipped: state DELETED" {
		t.Fatalf("recorded %q", out)
	}
	if len(e.sink.Jobs()) != 0 {
		t.Fatal("enqueued")
	}
}

// TestListenCrashWindow: the job is enqueued but the importer cannot
// record the build (its state directory is gone: a crash between the two
// would look the same). The message is not acknowledged but requeued;
// the redelivery finds the job already in the coordinator, records the
// build and acknowledges: one job, and the build is handled.
func TestListenCrashWindow(t *testing.T) {
	e := newKojiEnv(t)
	id, _ := e.hub.AddHelloBuild(t, "", 1_763_000_000.25)
	dir := filepath.Dir(e.state)
	moved := dir + ".away"
	e.sink.onEnqueue = func() {
		if err := os.Rename(dir, moved); err != nil {
			t.Errorf("move the state away: %v", err)
		}
		e.sink.onEnqueue = nil
	}
	e.listen(time.Hour)
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))
	e.waitFor("the requeue", func() bool { return e.logs.count("message requeued", "importer state") >= 1 })
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the redelivery", func() bool { return e.logs.count("message handled", "redelivered=true", "status=imported") == 1 })
	if n, calls := len(e.sink.Jobs()), e.sink.Calls(); n != 1 || calls < 2 {
		t.Fatalf("%d jobs from %d enqueue calls, want 1 from 2 or more", n, calls)
	}
	e.reopen()
	if out, ok := e.importer.Handled(id); !ok || out != "imported" {
		t.Fatalf("after restart: %q %v", out, ok)
	}
}
