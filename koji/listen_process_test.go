package koji_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/demo"
	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
	"github.com/fedora-skyline/skyline/koji/rabbittest"
	"github.com/fedora-skyline/skyline/witness"
)

// lockedBuffer is a bytes.Buffer safe for a process's output and a test's reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestProcessesKojiToGreenwave is the end to end with real processes:
// `skyline serve`, two `skyline builder` daemons (rpmbuild backend) and a
// `skyline witness`, started by package demo from the skyline binary, and
// `skyline koji-listen` (with [publish] enabled) as a process of the same
// binary, connected to the real RabbitMQ with the listener's certificate.
// A build announced on the broker ends as a ResultsDB result that
// koji.CheckGate reads as passing.
func TestProcessesKojiToGreenwave(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "skyline")
	if out, err := exec.Command("go", "build", "-C", root, "-o", bin, "./cmd/skyline").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/skyline: %v\n%s", err, out)
	}

	e := newKojiEnv(t)
	// "Koji" builds hello the way the builders' rpmbuild backend does (its
	// macros, SOURCE_DATE_EPOCH from the SRPM, the fixed build path), as
	// an honest Koji would for a reproducible package; rpmsign signs it.
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	bc := builder.DefaultConfig()
	result := filepath.Join(t.TempDir(), "result")
	if err := os.Mkdir(result, 0o755); err != nil {
		t.Fatal(err)
	}
	rb := &builder.Rpmbuild{BuildPath: bc.BuildPath, UserNamespace: os.Geteuid() != 0, Child: builder.Child{Path: bc.Path}}
	if err := rb.Build(t.Context(), srpm, result); err != nil {
		t.Fatalf("official build: %v", err)
	}
	key := kojitest.SigKey(t)
	files := []kojitest.RPMFile{{Path: srpm, Signed: map[string]string{key: rpmtest.SignRPM(t, srpm)}}}
	bins, _ := filepath.Glob(filepath.Join(result, "*.rpm"))
	for _, b := range bins {
		files = append(files, kojitest.RPMFile{Path: b, Signed: map[string]string{key: rpmtest.SignRPM(t, b)}})
	}
	id := e.hub.AddBuild(t, helloSpec(), files)
	// The builder processes fetch the SRPM from the TLS kojipkgs: they
	// trust its certificate through SSL_CERT_FILE (crypto/x509 on Linux).
	ca := filepath.Join(t.TempDir(), "kojipkgs-ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.pkgs.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SSL_CERT_FILE", ca)

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	var narration lockedBuffer
	dir := t.TempDir()
	n, err := demo.Start(ctx, demo.Config{
		Skyline: bin, Root: root, Dir: dir, Out: &narration, Timeout: 3 * time.Minute,
		Scenario: demo.Scenario{
			Name: "koji", Builders: []string{"alice", "bob"}, Witnesses: 1, WitnessQuorum: 1,
			Policy:  witness.Policy{Leases: 2, Quorum: 2, MaxDissent: 0, RequireOfficialMatch: true},
			Breaker: witness.DefaultBreakerConfig(),
		},
	})
	t.Cleanup(func() {
		n.Close()
		if t.Failed() {
			t.Logf("demo narration:\n%s", narration.String())
			for _, l := range n.Logs() {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", filepath.Base(l), lastLinesOf(string(b), 30))
			}
		}
	})
	if err != nil {
		t.Fatalf("demo.Start: %v", err)
	}

	rdb := kojitest.NewFakeResultsDB(t, kojitest.FakeResultsDBConfig{Token: "s3cret"})
	cfg := fmt.Sprintf(`
[hub]
url = %q
topdir = %q

[amqp]
url = %q
ca_file = %q
cert_file = %q
key_file = %q

[poll]
interval = "1h"

[import]
state = "import-state.json"
sig_keys = [%q]
wanted = 2

[skyline]
server = %q
admin_key = %q
importer_key = %q

[publish]
enabled = true
policy = %q
resultsdb = %q
token = "s3cret"
state = "resultsdb-state.json"
interval = "200ms"
`, e.hub.URL(), e.pkgs.URL, broker.URL, broker.CAFile(), broker.CertFile(rabbittest.ListenerUser), broker.KeyFile(rabbittest.ListenerUser),
		key, n.LogURL, filepath.Join(dir, "keys", "admin.key"), filepath.Join(dir, "keys", "importer.key"), n.Policy, rdb.URL())
	kdir := t.TempDir()
	cfgPath := filepath.Join(kdir, "koji.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd := exec.Command(bin, "koji-listen", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("koji-listen:\n%s", lastLinesOf(out.String(), 60))
		}
	})
	waitUntil(t, ctx, "koji-listen subscribed", func() bool { return strings.Contains(out.String(), "subscribed to the broker") })
	e.publish(topicState, koji.SchemaBuildStateChange, mustJSON(t, stateChange(id, "hello", "1.0", "1", 1)))

	// Builders rebuild, the job closes, the witness logs its verdict and
	// koji-listen's feed publishes it.
	waitUntil(t, ctx, "the ResultsDB result", func() bool { return rdb.Count() > 0 })
	res := rdb.Results()
	if len(res) != 1 || res[0].Outcome != koji.OutcomePassed || res[0].Data["item"][0] != "hello-1.0-1" {
		t.Fatalf("ResultsDB holds %+v", res)
	}
	dec, err := koji.CheckGate(ctx, nil, rdb.URL(), koji.Testcase, "hello-1.0-1")
	if err != nil || !dec.Satisfied {
		t.Fatalf("gate: %+v %v", dec, err)
	}
	if !strings.Contains(out.String(), "koji: build enqueued") || !strings.Contains(out.String(), "verdict reached the quorum") {
		t.Fatalf("koji-listen output lacks the import or the publish line")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := <-exited; err != nil {
		t.Fatalf("koji-listen exit: %v", err)
	}
}

func waitUntil(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
