package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
)

// ErrSetup: the machine or the configuration cannot run the demo.
var ErrSetup = errors.New("cannot set up the demo network")

// DefaultBuildPath is the one fixed path every rebuild happens at (the
// rpmbuild backend's default build_path).
const DefaultBuildPath = "/var/tmp/skyline-build"

// Origin is the demo log's checkpoint origin and note key name.
const Origin = "log.skyline-demo.localhost"

// Config configures a demo network.
type Config struct {
	// Skyline is the path of the skyline binary. Required.
	Skyline string
	// Root is the repository root: testdata/specs and
	// demo/testdata/malicious are read from it. Required.
	Root string
	// Dir is an empty directory for keys, configurations, state and
	// process logs. Required.
	Dir string
	// Scenario is what the network runs. Required.
	Scenario Scenario
	// Out receives the narration: what is done, the commands run and
	// their output. Default: discard.
	Out io.Writer
	// Progress is called every second while builds run. Default: a line
	// to Out whenever the counts change.
	Progress func(Progress)
	// BuildPath is the fixed build path. Default DefaultBuildPath.
	BuildPath string
	// Timeout bounds each wait of the scenario (jobs closing, verdicts
	// being logged, the notice arriving). Default 3 minutes.
	Timeout time.Duration
}

// Progress is the state of the jobs of a stage while builds run.
type Progress struct {
	Stage   int
	Jobs    int // jobs of the stage
	Closed  int // of them closed
	Results int // results counted
	Wanted  int // results wanted
	Live    int // leases being built now
	Elapsed time.Duration
}

// Builder is one volunteer of the network.
type Builder struct {
	Operator  string
	KeyID     string
	Config    string // its builder.toml
	StateDir  string
	Malicious bool
}

// Witness is one witness of the network.
type Witness struct {
	Name       string // its note key name, for cosignatures
	URL        string
	Config     string
	CosignVKey string // C2SP cosignature/v1 verifier key
	VerdictPub string // PEM file of the verdict key
	VerdictKey *attest.Verifier
}

// SRPM is a package's source RPM as served to the builders.
type SRPM struct {
	Package
	Path   string
	SHA256 string
	URL    string
}

// Network is a running demo network: one `skyline serve`, the witnesses
// and the builders of a Scenario, each a real process, plus an HTTP server
// of the SRPMs in this process.
type Network struct {
	cfg     Config
	procs   *procs
	out     io.Writer
	started time.Time

	// LogURL is the base URL of `skyline serve`.
	LogURL string
	// StatsURL is the base URL of `skyline stats` (pages under /stats/).
	StatsURL string
	// LogVKey is the log's signed-note verifier key.
	LogVKey string
	// Coordinator is the coordinator's public key (it signs enrolments,
	// jobs, leases and closes).
	Coordinator *attest.Verifier
	// Policy is the verify policy file.
	Policy    string
	Witnesses []Witness
	Builders  []Builder
	SRPMs     []SRPM
	// Importer is the Koji importer's public key, Admin the admin's.
	Importer *attest.Verifier
	Admin    *attest.Verifier

	admin   *api.Client
	srpmSrv *http.Server
	srvDone chan struct{}
	closeMu sync.Mutex
	closed  bool
}

// keyNames of the network's non-builder keys.
const (
	keyLog         = "log"
	keyCoordinator = "coordinator"
	keyAdmin       = "admin"
	keyImporter    = "importer"
)

// Start sets up the network of cfg in cfg.Dir and starts it: keys (skyline
// keygen), SRPMs (rpmbuild) served over loopback HTTP, the official
// builds, `skyline serve`, the enrolments (skyline admin enroll), the
// witnesses, the official imports (skyline admin import-official) and the
// builders. Close stops it; Close is also what to call when Start fails
// half-way.
func Start(ctx context.Context, cfg Config) (*Network, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.BuildPath == "" {
		cfg.BuildPath = DefaultBuildPath
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Minute
	}
	n := &Network{cfg: cfg, out: cfg.Out, started: time.Now(), procs: &procs{dir: filepath.Join(cfg.Dir, "logs")}}
	if err := n.check(); err != nil {
		return n, err
	}
	for _, d := range []string{"keys", "logs", "srpms", "official", "work"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return n, fmt.Errorf("demo: %w", err)
		}
	}
	steps := []func(context.Context) error{n.makeKeys, n.makeSRPMs, n.makeOfficial, n.startServe, n.enrol, n.startWitnesses, n.startStats, n.importOfficial, n.startBuilders}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return n, err
		}
		if err := n.procs.dead(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// check makes sure the tools the network needs are there.
func (n *Network) check() error {
	c := n.cfg
	if c.Skyline == "" || c.Root == "" || c.Dir == "" || len(c.Scenario.Builders) == 0 || c.Scenario.Witnesses < 1 {
		return fmt.Errorf("demo: Skyline, Root, Dir, builders and witnesses are required: %w", ErrSetup)
	}
	for _, p := range []string{c.Skyline, c.Root, c.Dir} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("demo: %s is not an absolute path: %w", p, ErrSetup)
		}
	}
	if fi, err := os.Stat(c.Skyline); err != nil || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("demo: %s is not an executable (make build): %w", c.Skyline, ErrSetup)
	}
	for _, tool := range []string{"rpmbuild", "rpm", "unshare", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("demo: %s is not installed (make deps): %w", tool, ErrSetup)
		}
	}
	if fi, err := os.Stat(n.wrapperDir() + "/rpmbuild"); len(c.Scenario.Malicious) > 0 && (err != nil || fi.Mode()&0o111 == 0) {
		return fmt.Errorf("demo: %s/rpmbuild is missing or not executable: %w", n.wrapperDir(), ErrSetup)
	}
	for _, m := range c.Scenario.Malicious {
		if !slices.Contains(c.Scenario.Builders, m) {
			return fmt.Errorf("demo: malicious builder %q is not a builder: %w", m, ErrSetup)
		}
	}
	return nil
}

// wrapperDir holds the malicious builder's rpmbuild.
func (n *Network) wrapperDir() string {
	return filepath.Join(n.cfg.Root, "demo", "testdata", "malicious")
}

func (n *Network) path(rel ...string) string {
	return filepath.Join(append([]string{n.cfg.Dir}, rel...)...)
}

// skyline runs a short skyline command in the demo directory.
func (n *Network) skyline(ctx context.Context, args ...string) (cmdResult, error) {
	return execIn(ctx, n.cfg.Dir, append([]string{n.cfg.Skyline}, args...)...)
}

// must runs a skyline command that has to succeed.
func (n *Network) must(ctx context.Context, show bool, args ...string) (cmdResult, error) {
	r, err := n.skyline(ctx, args...)
	if err != nil {
		return r, err
	}
	if show {
		n.showCmd(r)
	}
	if r.Exit != 0 {
		return r, fmt.Errorf("demo: skyline %s: exit %d: %s", strings.Join(args, " "), r.Exit, lastLines(r.Stderr, 10))
	}
	return r, nil
}

func (n *Network) say(format string, a ...any) {
	fmt.Fprintf(n.out, "\n== "+format+"\n", a...)
}

func (n *Network) note(format string, a ...any) {
	fmt.Fprintf(n.out, "   "+format+"\n", a...)
}

// showCmd prints a command as it can be typed in the demo directory, and
// its output.
func (n *Network) showCmd(r cmdResult) {
	args := []string{"skyline"}
	for _, a := range r.Args[1:] {
		args = append(args, shellQuote(a))
	}
	fmt.Fprintf(n.out, "   $ %s\n", strings.Join(args, " "))
	for _, l := range strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(n.out, "     %s\n", l)
		}
	}
}

// shellQuote quotes a word for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@+,", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (n *Network) makeKeys(ctx context.Context) error {
	s := n.cfg.Scenario
	n.say("keys (skyline keygen): the log, the coordinator, an admin, the Koji importer, %d witnesses x 2, %d builders", s.Witnesses, len(s.Builders))
	type gen struct{ name, note string }
	gens := []gen{{keyLog, Origin}, {keyCoordinator, ""}, {keyAdmin, ""}, {keyImporter, ""}}
	for i := range s.Witnesses {
		gens = append(gens, gen{witnessKey(i, "cosign"), witnessName(i)}, gen{witnessKey(i, "verdict"), ""})
	}
	for _, b := range s.Builders {
		gens = append(gens, gen{"builder-" + b, ""})
	}
	errs := make([]error, len(gens))
	var wg sync.WaitGroup
	for i, g := range gens {
		wg.Go(func() {
			args := []string{"keygen", "--name", g.name, "--dir", "keys"}
			if g.note != "" {
				args = append(args, "--note-name", g.note)
			}
			_, errs[i] = n.must(ctx, false, args...)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	vkey, err := os.ReadFile(n.path("keys", keyLog+".vkey"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n.LogVKey = strings.TrimSpace(string(vkey))
	if n.Coordinator, err = attest.LoadVerifier(n.path("keys", keyCoordinator+".pub")); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if n.Importer, err = attest.LoadVerifier(n.path("keys", keyImporter+".pub")); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if n.Admin, err = attest.LoadVerifier(n.path("keys", keyAdmin+".pub")); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n.note("%d key pairs in %s; the log's verifier key: %s", len(gens), n.path("keys"), n.LogVKey)
	return nil
}

func witnessName(i int) string { return fmt.Sprintf("witness-%d.skyline-demo.localhost", i+1) }

func witnessKey(i int, kind string) string { return fmt.Sprintf("witness-%d-%s", i+1, kind) }

func (n *Network) makeSRPMs(ctx context.Context) error {
	n.say("source RPMs (rpmbuild -bs), served over HTTP on loopback")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	base := "http://" + ln.Addr().String()
	n.srpmSrv = &http.Server{Handler: http.FileServer(http.Dir(n.path("srpms"))), ReadHeaderTimeout: 10 * time.Second}
	n.srvDone = make(chan struct{})
	go func() {
		defer close(n.srvDone)
		_ = n.srpmSrv.Serve(ln)
	}()
	for _, p := range n.cfg.Scenario.Packages {
		srpm, err := buildSRPM(ctx, n.cfg.Root, n.path("work", "srpm"), n.path("srpms"), p)
		if err != nil {
			return err
		}
		sum, err := fileSHA256(srpm)
		if err != nil {
			return err
		}
		s := SRPM{Package: p, Path: srpm, SHA256: sum, URL: base + "/" + filepath.Base(srpm)}
		n.SRPMs = append(n.SRPMs, s)
		n.note("%-32s sha256 %s", filepath.Base(srpm), sum)
	}
	return nil
}

func (n *Network) makeOfficial(ctx context.Context) error {
	for _, s := range n.SRPMs {
		if s.Official == OfficialNone {
			continue
		}
		knobs := map[string]string{}
		what := "as the builders build it"
		if s.Official == OfficialTampered {
			knobs = s.Tamper
			var kv []string
			for _, k := range sortedKeys(knobs) {
				kv = append(kv, fmt.Sprintf("--define '%s %s'", k, knobs[k]))
			}
			what = "TAMPERED: " + strings.Join(kv, " ")
		}
		n.say("the \"official\" Koji build of %s, %s", s.NVR, what)
		out := n.path("official", s.NVR)
		if err := rebuild(ctx, s.Path, n.cfg.BuildPath, n.path("work", "official-"+s.NVR), out, knobs); err != nil {
			return err
		}
		if _, err := n.must(ctx, true, append([]string{"digest"}, globRPMs(out, n.cfg.Dir)...)...); err != nil {
			return err
		}
	}
	return nil
}

// globRPMs lists the RPMs in dir, relative to base.
func globRPMs(dir, base string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*.rpm"))
	for i := range m {
		if rel, err := filepath.Rel(base, m[i]); err == nil {
			m[i] = rel
		}
	}
	slices.Sort(m)
	return m
}

// waitHTTP polls url until it answers 200 or p exits.
func waitHTTP(ctx context.Context, url string, p *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		if ok, err := p.exited(); ok {
			return fmt.Errorf("demo: %s exited (%v): %w\n%s", p.name, err, ErrProcess, tail(p.log, 15))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: %s does not answer %s after %v: %w\n%s", p.name, url, timeout, ErrProcess, tail(p.log, 15))
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *Network) startServe(ctx context.Context) error {
	s := n.cfg.Scenario
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	n.LogURL = "http://" + addr
	// The witnesses' addresses are chosen now: the log asks them to
	// cosign (C2SP tlog-witness add-checkpoint).
	for i := range s.Witnesses {
		waddr, err := freeAddr()
		if err != nil {
			return err
		}
		w := Witness{Name: witnessName(i), URL: "http://" + waddr, Config: n.path("witness-"+fmt.Sprint(i+1), "witness.toml"),
			VerdictPub: n.path("keys", witnessKey(i, "verdict")+".pub")}
		if w.VerdictKey, err = attest.LoadVerifier(w.VerdictPub); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(w.Config), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(w.Config, n.witnessTOML(i, waddr), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		r, err := n.must(ctx, false, "witness", "--config", w.Config, "--show-keys")
		if err != nil {
			return err
		}
		w.CosignVKey = field(r.Stdout, "cosignature key:")
		if w.CosignVKey == "" {
			return fmt.Errorf("demo: skyline witness --show-keys printed no cosignature key: %q: %w", r.Stdout, ErrSetup)
		}
		n.Witnesses = append(n.Witnesses, w)
	}
	cfgPath := n.path("serve.toml")
	if err := os.WriteFile(cfgPath, n.serveTOML(addr), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n.say("the log and coordinator: skyline serve --config serve.toml (Pebble in serve/data, %s)", n.LogURL)
	p, err := n.procs.start("serve", n.cfg.Skyline, "serve", "--config", cfgPath)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, n.LogURL+"/healthz", p, 30*time.Second); err != nil {
		return err
	}
	admin, err := attest.LoadSigner(n.path("keys", keyAdmin+".key"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if n.admin, err = api.NewClient(api.ClientConfig{URL: n.LogURL, Signer: admin, Origin: Origin}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// field returns the rest of the line of out that starts with prefix.
func field(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

func (n *Network) enrol(ctx context.Context) error {
	n.say("enrolment (skyline admin enroll): the importer, the witnesses' verdict keys, one key per builder operator")
	admin := []string{"--server", n.LogURL, "--admin-key", "keys/" + keyAdmin + ".key", "--log-key", "keys/" + keyLog + ".vkey"}
	enrol := func(show bool, pub, role, operator string) error {
		args := append([]string{"admin", "enroll"}, admin...)
		contact := strings.ToLower(strings.Fields(operator)[0]) + "@example.org"
		args = append(args, "--pub", pub, "--role", role, "--operator", operator, "--contact", contact)
		_, err := n.must(ctx, show, args...)
		return err
	}
	if err := enrol(true, "keys/"+keyImporter+".pub", attest.RoleImporter, "Fedora Koji"); err != nil {
		return err
	}
	for i := range n.Witnesses {
		if err := enrol(i == 0, "keys/"+witnessKey(i, "verdict")+".pub", attest.RoleWitness, fmt.Sprintf("witness-%d", i+1)); err != nil {
			return err
		}
	}
	for i, op := range n.cfg.Scenario.Builders {
		if err := enrol(i == 0, "keys/builder-"+op+".pub", attest.RoleBuilder, op); err != nil {
			return err
		}
	}
	n.note("(and likewise for the other witnesses and builders: %d enrolments in all)", 1+len(n.Witnesses)+len(n.cfg.Scenario.Builders))
	return nil
}

func (n *Network) startWitnesses(ctx context.Context) error {
	pol := n.cfg.Scenario.Policy
	n.say("%d witnesses: skyline witness --config witness-N/witness.toml (agreement policy: quorum %d, max dissent %d)", len(n.Witnesses), pol.Quorum, pol.MaxDissent)
	var ps []*proc
	for i, w := range n.Witnesses {
		p, err := n.procs.start(fmt.Sprintf("witness-%d", i+1), n.cfg.Skyline, "witness", "--config", w.Config)
		if err != nil {
			return err
		}
		ps = append(ps, p)
	}
	for i, w := range n.Witnesses {
		if err := waitHTTP(ctx, w.URL+"/metrics", ps[i], 30*time.Second); err != nil {
			return err
		}
		n.note("%s at %s, cosignature key %s", w.Name, w.URL, w.CosignVKey)
	}
	if err := os.WriteFile(n.path("policy.toml"), n.policyTOML(), 0o644); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	n.Policy = n.path("policy.toml")
	return nil
}

func (n *Network) startStats(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	n.StatsURL = "http://" + addr
	n.say("the stats tracker: skyline stats follows the log's public tiles and serves a leaderboard at %s/stats/", n.StatsURL)
	p, err := n.procs.start("stats", n.cfg.Skyline, "stats", "--log", n.LogURL, "--pub", n.LogVKey,
		"--coordinator", n.path("keys", keyCoordinator+".pub"), "--listen", addr, "--interval", "1s")
	if err != nil {
		return err
	}
	return waitHTTP(ctx, n.StatsURL+"/api/stats/health", p, 30*time.Second)
}

func (n *Network) importOfficial(ctx context.Context) error {
	for _, s := range n.SRPMs {
		if s.Official == OfficialNone {
			continue
		}
		n.say("Koji's build of %s is imported into the log (skyline admin import-official)", s.NVR)
		rel, _ := filepath.Rel(n.cfg.Dir, n.path("official", s.NVR))
		if _, err := n.must(ctx, true, "admin", "import-official", "--server", n.LogURL, "--key", "keys/"+keyImporter+".key",
			"--nvr", s.NVR, "--arch", builder.HostArch(), "--srpm-url", s.URL, "--srpm-sha256", s.SHA256, rel); err != nil {
			return err
		}
	}
	return nil
}

func (n *Network) startBuilders(ctx context.Context) error {
	s := n.cfg.Scenario
	n.say("%d builders: skyline builder run --config builder-NAME/builder.toml (rpmbuild backend, build path %s)", len(s.Builders), n.cfg.BuildPath)
	for _, op := range s.Builders {
		b := Builder{Operator: op, Config: n.path("builder-"+op, "builder.toml"), StateDir: n.path("builder-"+op, "state"),
			Malicious: slices.Contains(s.Malicious, op)}
		sig, err := attest.LoadSigner(n.path("keys", "builder-"+op+".key"))
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		b.KeyID = sig.KeyID()
		if err := os.MkdirAll(filepath.Dir(b.Config), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(b.Config, n.builderTOML(b), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if _, err := n.procs.start("builder-"+op, n.cfg.Skyline, "builder", "run", "--config", b.Config); err != nil {
			return err
		}
		n.Builders = append(n.Builders, b)
		if b.Malicious {
			n.note("%-8s key %.16s...  MALICIOUS: its builder.toml says path = \"%s:...\",", op, b.KeyID, n.wrapperDir())
			n.note("%-8s                      so its rpmbuild backend runs a wrapper that alters hello-1.1-1 and hello-1.3-1", "")
		} else {
			n.note("%-8s key %.16s...", op, b.KeyID)
		}
	}
	return nil
}

// Close stops every process (builders first, the log last) and the SRPM
// server. The directory is left for the caller.
func (n *Network) Close() error {
	n.closeMu.Lock()
	defer n.closeMu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	n.procs.stopAll(10 * time.Second)
	if n.srpmSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.srpmSrv.Shutdown(ctx)
		<-n.srvDone
	}
	return nil
}

// Logs returns the process log files, for a report after a failure.
func (n *Network) Logs() []string {
	m, _ := filepath.Glob(n.path("logs", "*.log"))
	return m
}

// Elapsed is the time since Start.
func (n *Network) Elapsed() time.Duration { return time.Since(n.started) }
