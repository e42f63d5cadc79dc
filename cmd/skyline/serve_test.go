package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
	"github.com/fedora-skyline/skyline/coord"
)

func writeKey(t *testing.T, dir, name string) *attest.Signer {
	t.Helper()
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attest.WriteKeyFiles(dir, name, "skyline.test", s); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "serve.toml")
	body := fmt.Sprintf("origin = \"skyline.test\"\ndata_dir = %q\nlog_key = %q\ncoordinator_key = %q\nadmin_keys = [%q]\nlisten = \"127.0.0.1:0\"\ncheckpoint_interval = \"10ms\"\n%s",
		filepath.Join(dir, "data"), filepath.Join(dir, "log.key"), filepath.Join(dir, "log.key"), filepath.Join(dir, "admin.pub"), extra)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServeConfigStrict checks that the example configuration loads, that
// unknown keys and half-set TLS are refused, and that the defaults fill in.
func TestServeConfigStrict(t *testing.T) {
	cfg, err := loadServeConfig(filepath.Join("..", "..", "packaging", "serve.toml.example"))
	if err != nil {
		t.Fatalf("example: %v", err)
	}
	if cfg.Origin == "" || cfg.Listen == "" {
		t.Fatalf("example config %+v", cfg)
	}
	dir := t.TempDir()
	for _, tc := range []struct{ name, extra string }{
		{"unknown key", "lease_tll = \"2h\"\n"},
		{"half TLS", "tls_cert = \"/x.pem\"\n"},
		{"bad duration", "lease_ttl = \"two hours\"\n"},
		{"bad log level", "log_level = \"loud\"\n"},
		{"job_ttl beyond a year", "job_ttl = \"8761h\"\n"},
		{"negative job_ttl", "job_ttl = \"-1h\"\n"},
	} {
		if _, err := loadServeConfig(writeConfig(t, dir, tc.extra)); !errors.Is(err, errConfig) {
			t.Errorf("%s: %v, want errConfig", tc.name, err)
		}
	}
	cfg, err = loadServeConfig(writeConfig(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogLevel != "info" || cfg.LeaseTTL != 0 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// TestServePlainHTTPRefused checks that serve refuses plain HTTP on a
// non-loopback address unless allow_plain_http is set.
func TestServePlainHTTPRefused(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "log")
	writeKey(t, dir, "admin")
	cfg, err := loadServeConfig(writeConfig(t, dir, ""))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "0.0.0.0:0"
	var stderr bytes.Buffer
	if err := serve(context.Background(), cfg, &stderr, nil); !errors.Is(err, api.ErrPlainHTTP) {
		t.Fatalf("serve on 0.0.0.0 without TLS: %v, want ErrPlainHTTP", err)
	}
}

// TestAdminCommands runs `skyline admin` against a served log: enroll,
// enqueue, jobs, revoke, and the refusals of a non-admin key.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, dir, "log")
	writeKey(t, dir, "admin")
	writeKey(t, dir, "builder")
	cfg, err := loadServeConfig(writeConfig(t, dir, "job_ttl = \"48h\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var serr bytes.Buffer
	go func() { done <- serve(ctx, cfg, &serr, ready) }()
	addr := <-ready
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, serr.String())
		}
	}()
	server := "http://" + addr
	admin := filepath.Join(dir, "admin.key")
	logKey := filepath.Join(dir, "log.vkey") // its name is the origin, skyline.test
	adm := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"admin"}, args...), &out, &errb)
		return code, out.String(), errb.String()
	}
	code, out, errs := adm("enroll", "--server", server, "--admin-key", admin, "--log-key", logKey, "--pub", filepath.Join(dir, "builder.pub"), "--operator", "alice", "--contact", "alice@example.org")
	if code != exitOK || !strings.Contains(out, "enrolled") {
		t.Fatalf("enroll: %d %s %s", code, out, errs)
	}
	code, out, errs = adm("enqueue", "--server", server, "--admin-key", admin, "--log-key", logKey, "--nvr", "hello-1.0-1", "--arch", "x86_64", "--srpm-url", "https://koji.example/hello.src.rpm", "--srpm-sha256", strings.Repeat("ab", 32), "--wanted", "3")
	if code != exitOK || !strings.Contains(out, "enqueued job") {
		t.Fatalf("enqueue: %d %s %s", code, out, errs)
	}
	code, out, errs = adm("jobs", "--server", server, "--admin-key", admin, "--log-key", logKey)
	if code != exitOK || !strings.Contains(out, "hello-1.0-1") || !strings.Contains(out, "0/3") {
		t.Fatalf("jobs: %d %s %s", code, out, errs)
	}
	// --json prints the server's answer.
	code, out, errs = adm("enqueue", "--json", "--server", server, "--admin-key", admin, "--origin", "skyline.test", "--nvr", "hello-1.1-1", "--arch", "x86_64", "--srpm-url", "https://koji.example/hello-1.1-1.src.rpm", "--srpm-sha256", strings.Repeat("cd", 32))
	var enq api.EnqueueResponse
	if code != exitOK || json.Unmarshal([]byte(out), &enq) != nil || enq.Job.Build.NVR != "hello-1.1-1" || enq.Job.Wanted != 10 || enq.Index == 0 {
		t.Fatalf("enqueue --json: %d %q %s", code, out, errs)
	}
	// job_ttl sets the logged deadline, which `admin jobs` shows.
	if got := enq.Job.Deadline.Sub(enq.Job.Enqueued); got != 48*time.Hour {
		t.Fatalf("job deadline %s after its enqueue, want job_ttl 48h", got)
	}
	code, out, errs = adm("jobs", "--server", server, "--admin-key", admin, "--log-key", logKey)
	if code != exitOK || !strings.Contains(out, "DEADLINE") || !strings.Contains(out, enq.Job.Deadline.UTC().Format(time.RFC3339)) {
		t.Fatalf("jobs does not show the deadline %s: %d %s %s", enq.Job.Deadline, code, out, errs)
	}
	code, out, errs = adm("jobs", "--json", "--server", server, "--admin-key", admin, "--log-key", logKey)
	var jobs []coord.JobStatus
	if code != exitOK || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 2 {
		t.Fatalf("jobs --json: %d %q %s", code, out, errs)
	}
	// The builder key is no admin.
	code, _, errs = adm("jobs", "--server", server, "--admin-key", filepath.Join(dir, "builder.key"), "--log-key", logKey)
	if code != exitFail || !strings.Contains(errs, "wrong_role") {
		t.Fatalf("jobs with a builder key: %d %s", code, errs)
	}
	b, err := attest.LoadSigner(filepath.Join(dir, "builder.key"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = adm("revoke", "--server", server, "--admin-key", admin, "--log-key", logKey, "--key-id", b.KeyID(), "--reason", "lost laptop")
	if code != exitOK || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %s %s", code, out, errs)
	}
	code, _, errs = adm("revoke", "--server", server, "--admin-key", admin, "--log-key", logKey, "--key-id", b.KeyID(), "--reason", "again")
	if code != exitFail || !strings.Contains(errs, "revoked_key") {
		t.Fatalf("second revoke: %d %s", code, errs)
	}
	if code, _, _ := adm("enroll", "--server", server); code != exitUsage {
		t.Fatalf("enroll without flags: %d", code)
	}
	// A request names the log it is for: without --log-key or --origin
	// nothing is sent; a request for another log is refused and changes
	// nothing.
	code, _, errs = adm("enqueue", "--server", server, "--admin-key", admin, "--nvr", "hello-2.0-1", "--arch", "x86_64", "--srpm-url", "https://koji.example/hello-2.0-1.src.rpm", "--srpm-sha256", strings.Repeat("ef", 32))
	if code != exitUsage || !strings.Contains(errs, "--log-key or --origin is required") {
		t.Fatalf("enqueue without the log's origin: %d %s", code, errs)
	}
	code, _, errs = adm("enqueue", "--server", server, "--admin-key", admin, "--origin", "staging.skyline.test", "--nvr", "hello-2.0-1", "--arch", "x86_64", "--srpm-url", "https://koji.example/hello-2.0-1.src.rpm", "--srpm-sha256", strings.Repeat("ef", 32))
	if code != exitFail || !strings.Contains(errs, "wrong_log") {
		t.Fatalf("enqueue for another log: %d %s", code, errs)
	}
	code, _, errs = adm("jobs", "--server", server, "--admin-key", admin, "--log-key", filepath.Join(dir, "admin.key"))
	if code != exitUsage || !strings.Contains(errs, "--log-key") {
		t.Fatalf("jobs with a --log-key that is no verifier key: %d %s", code, errs)
	}
	code, out, errs = adm("jobs", "--json", "--server", server, "--admin-key", admin, "--log-key", logKey)
	if code != exitOK || json.Unmarshal([]byte(out), &jobs) != nil || len(jobs) != 2 {
		t.Fatalf("jobs after the refused enqueues: %d %q %s", code, out, errs)
	}

	// import-official: refused for the admin key (configured, not an
	// enrolled importer), then logged under the NVR once the importer key
	// is enrolled.
	writeKey(t, dir, "importer")
	rpms := rpmtest.Rebuild(t, rpmtest.BuildSRPM(t, "hello.spec", nil), filepath.Join(t.TempDir(), "top"), nil)
	imp := func(key string) (int, string, string) {
		return adm("import-official", "--server", server, "--key", key, "--nvr", "hello-1.0-1", "--arch", "x86_64",
			"--srpm-sha256", strings.Repeat("ab", 32), rpms)
	}
	if code, _, errs := imp(admin); code != exitFail || !strings.Contains(errs, "unknown_key") {
		t.Fatalf("import-official with the admin key: %d %s", code, errs)
	}
	code, out, errs = adm("enroll", "--server", server, "--admin-key", admin, "--log-key", logKey, "--pub", filepath.Join(dir, "importer.pub"), "--operator", "koji", "--contact", "koji@example.org", "--role", attest.RoleImporter)
	if code != exitOK {
		t.Fatalf("enroll importer: %d %s %s", code, out, errs)
	}
	code, out, errs = imp(filepath.Join(dir, "importer.key"))
	if code != exitOK || !strings.Contains(out, "official hello-1.0-1.x86_64 logged at index") {
		t.Fatalf("import-official: %d %s %s", code, out, errs)
	}
	lk, err := api.NewClient(api.ClientConfig{URL: server})
	if err != nil {
		t.Fatal(err)
	}
	found, err := lk.Lookup(context.Background(), "hello-1.0-1")
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, e := range found.Entries {
		types[e.Type]++
	}
	if types[coord.IndexOfficial] != 1 {
		t.Errorf("lookup after import-official: %v, want one official entry", types)
	}
	if code, _, errs := adm("import-official", "--server", server, "--key", filepath.Join(dir, "importer.key"), "--nvr", "hello-1.0-1", "--arch", "x86_64"); code != exitUsage || !strings.Contains(errs, "RPMDIR") {
		t.Errorf("import-official without RPMDIR: %d %s", code, errs)
	}

	// Every subcommand's help names its synopsis and exit codes, exit 0.
	for name := range adminCommands {
		code, _, errs := adm(name, "--help")
		if code != exitOK || !strings.Contains(errs, "usage: skyline admin "+name+" --server URL") || !strings.Contains(errs, "Exit status:") {
			t.Errorf("admin %s --help: exit %d\n%s", name, code, errs)
		}
	}

	// The stats tracker is mounted read-only beside the log's API.
	for _, c := range []struct {
		method, path, ctype string
		status              int
	}{
		{http.MethodGet, "/stats/", "text/html", http.StatusOK},
		{http.MethodGet, "/api/stats/health", "application/json", http.StatusOK},
		{http.MethodGet, "/api/stats/operator/nobody", "application/json", http.StatusNotFound},
		{http.MethodPost, "/stats/", "application/json", http.StatusMethodNotAllowed},
	} {
		req, err := http.NewRequest(c.method, server+c.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("%s %s: %d %q, want %d %s", c.method, c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.status, c.ctype)
		}
	}
}
