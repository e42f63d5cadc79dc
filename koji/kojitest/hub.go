// Package kojitest holds FAKES of Fedora's services for skyline's tests:
// FakeHub, a fake Koji hub speaking the real XML-RPC wire format (faults
// and system.multicall included) and serving a kojipkgs-style file tree of
// real rpmbuild RPMs with rpmsign-signed copies; and FakeResultsDB, a fake
// ResultsDB API v2.0 (POST /results, GET /results and /results/latest
// with ResultsDB's filters and its 400 error shapes).
//
// They are test doubles, not servers to deploy: state lives in memory and
// only the calls skyline makes are implemented.
package kojitest

import (
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji"
)

// FakeHub is a FAKE Koji hub: XML-RPC at URL(), files at Topdir().
type FakeHub struct {
	srv  *httptest.Server
	root string // file tree served at /kojifiles

	mu        sync.Mutex
	builds    []map[string]any
	rpms      map[int64][]map[string]any // by build id
	sigs      map[int64][]map[string]any // by rpm id
	nextBuild int64
	nextRPM   int64
	event     int64
	eventTS   float64
	calls     []string
	failNext  int
	failCode  int
	requests  int
}

// NewFakeHub starts a fake hub on loopback; it stops when the test ends.
func NewFakeHub(t testing.TB) *FakeHub {
	t.Helper()
	h := &FakeHub{
		root:      t.TempDir(),
		rpms:      map[int64][]map[string]any{},
		sigs:      map[int64][]map[string]any{},
		nextBuild: 2_600_000,     // Fedora's build ids are in the millions
		nextRPM:   4_000_000_000, // beyond 32 bits: sent as <i8>
		event:     130_000_000,
		eventTS:   1_764_000_000.5,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/kojihub", h.serveXMLRPC)
	mux.Handle("/kojifiles/", http.StripPrefix("/kojifiles", http.FileServer(http.Dir(h.root))))
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	return h
}

// URL is the hub's XML-RPC endpoint (koji's "server" setting).
func (h *FakeHub) URL() string { return h.srv.URL + "/kojihub" }

// Topdir is the root URL of the file tree (koji's "topurl" setting).
func (h *FakeHub) Topdir() string { return h.srv.URL + "/kojifiles" }

// Root is the directory the file tree is served from.
func (h *FakeHub) Root() string { return h.root }

// Calls lists the methods called so far, multicall members included.
func (h *FakeHub) Calls() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

// Requests counts HTTP requests to the XML-RPC endpoint, failed ones included.
func (h *FakeHub) Requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests
}

// FailNext makes the next n XML-RPC requests answer with HTTP status code.
func (h *FakeHub) FailNext(n, code int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failNext, h.failCode = n, code
}

// BuildSpec describes a build to add to the fake hub.
type BuildSpec struct {
	Name, Version, Release string
	Volume                 string // "" or "DEFAULT" for the default volume
	State                  koji.BuildState
	CompletionTS           float64 // seconds since the epoch; 0 leaves it nil
	Owner                  string
}

// RPMFile is one RPM file of a build: the unsigned file, and signed
// copies by signing key id.
type RPMFile struct {
	Path   string
	Signed map[string]string // sigkey -> path of the signed copy
}

// AddBuild records a build with its RPM files, reads each file's header
// with rpm -qp (name, version, release, arch, SIGMD5, build time), and
// places the files where koji.PathInfo says: packages/... and
// data/signed/<sigkey>/.... It returns the build id.
func (h *FakeHub) AddBuild(t testing.TB, b BuildSpec, files []RPMFile) int64 {
	t.Helper()
	h.mu.Lock()
	h.nextBuild++
	id := h.nextBuild
	h.event++
	h.eventTS += 60
	event, eventTS := h.event, h.eventTS
	h.mu.Unlock()

	volume := b.Volume
	if volume == "" {
		volume = "DEFAULT"
	}
	owner := b.Owner
	if owner == "" {
		owner = "packager"
	}
	build := map[string]any{
		"id": id, "build_id": id, "package_id": id - 2_000_000,
		"package_name": b.Name, "name": b.Name, "version": b.Version, "release": b.Release,
		"epoch": nil, "nvr": b.Name + "-" + b.Version + "-" + b.Release,
		"state": int64(b.State), "draft": false,
		"volume_id": int64(0), "volume_name": volume,
		"task_id": id + 100_000_000, "owner_id": int64(4242), "owner_name": owner,
		"creation_event_id": event, "creation_time": isoTime(eventTS), "creation_ts": eventTS,
		"start_time": isoTime(eventTS), "start_ts": eventTS,
		"completion_time": nil, "completion_ts": nil,
		"promotion_time": nil, "promotion_ts": nil, "promoter_id": nil, "promoter_name": nil,
		"source": "git+https://src.fedoraproject.org/rpms/" + b.Name + ".git#0123456789abcdef",
		"extra":  map[string]any{"source": map[string]any{"original_url": "git+https://src.fedoraproject.org/rpms/" + b.Name + ".git#rawhide"}},
		"cg_id":  nil, "cg_name": nil,
	}
	if b.CompletionTS != 0 {
		build["completion_time"] = isoTime(b.CompletionTS)
		build["completion_ts"] = b.CompletionTS
	}
	pi := koji.PathInfo{Topdir: h.root}
	kb, err := koji.BuildFromValue(build)
	if err != nil {
		t.Fatalf("kojitest: %v", err)
	}
	dir, err := pi.BuildDir(kb)
	if err != nil {
		t.Fatalf("kojitest: %v", err)
	}
	var rpms []map[string]any
	for _, f := range files {
		hdr := queryHeader(t, f.Path)
		h.mu.Lock()
		h.nextRPM++
		rid := h.nextRPM
		h.mu.Unlock()
		st, err := os.Stat(f.Path)
		if err != nil {
			t.Fatalf("kojitest: %v", err)
		}
		r := map[string]any{
			"id": rid, "name": hdr.name, "version": hdr.version, "release": hdr.release,
			"nvr":  hdr.name + "-" + hdr.version + "-" + hdr.release,
			"arch": hdr.arch, "epoch": nil, "draft": false,
			"payloadhash": hdr.sigmd5, "size": st.Size(), "buildtime": hdr.buildtime,
			"build_id": id, "buildroot_id": int64(50_000_000), "external_repo_id": int64(0),
			"external_repo_name": "INTERNAL", "metadata_only": false, "extra": nil,
		}
		kr, err := koji.RPMFromValue(r)
		if err != nil {
			t.Fatalf("kojitest: %v", err)
		}
		rel, err := pi.RPMPath(kr)
		if err != nil {
			t.Fatalf("kojitest: %v", err)
		}
		copyFile(t, f.Path, filepath.Join(dir, rel))
		sigs := []map[string]any{{"rpm_id": rid, "sigkey": "", "sighash": sigHeaderMD5(t, f.Path)}}
		keys := make([]string, 0, len(f.Signed))
		for k := range f.Signed {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			srel, err := pi.SignedPath(kr, key)
			if err != nil {
				t.Fatalf("kojitest: %v", err)
			}
			copyFile(t, f.Signed[key], filepath.Join(dir, srel))
			sigs = append(sigs, map[string]any{"rpm_id": rid, "sigkey": key, "sighash": sigHeaderMD5(t, f.Signed[key])})
		}
		h.mu.Lock()
		h.sigs[rid] = sigs
		h.mu.Unlock()
		rpms = append(rpms, r)
	}
	h.mu.Lock()
	h.builds = append(h.builds, build)
	h.rpms[id] = rpms
	h.mu.Unlock()
	return id
}

func isoTime(ts float64) string {
	sec := int64(ts)
	t := time.Unix(sec, int64((ts-float64(sec))*1e9)).UTC()
	return t.Format("2006-01-02 15:04:05.000000-07:00")
}

type header struct {
	name, version, release, arch, sigmd5 string
	buildtime                            int64
}

func queryHeader(t testing.TB, path string) header {
	t.Helper()
	out, err := exec.Command("rpm", "-qp", "--nosignature", "--nodigest", "--qf",
		"%{NAME}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SIGMD5}\t%{BUILDTIME}\t%{SOURCERPM}\n", path).Output()
	if err != nil {
		t.Fatalf("kojitest: rpm -qp %s: %v", path, err)
	}
	f := strings.Split(strings.TrimSpace(string(out)), "\t")
	if len(f) != 7 {
		t.Fatalf("kojitest: rpm -qp %s: unexpected output %q", path, out)
	}
	bt, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		t.Fatalf("kojitest: rpm -qp %s: build time %q", path, f[5])
	}
	arch := f[3]
	if f[6] == "(none)" {
		// A source package's ARCH tag is the build host's; Koji files it as "src".
		arch = "src"
	}
	return header{name: f[0], version: f[1], release: f[2], arch: arch, sigmd5: f[4], buildtime: bt}
}

// sigHeaderMD5 is Koji's sighash: the md5 of the signature header, which
// follows the 96-byte lead (koji/__init__.py find_rpm_sighdr).
func sigHeaderMD5(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("kojitest: %v", err)
	}
	if len(b) < 96+16 {
		t.Fatalf("kojitest: %s is too short for an RPM", path)
	}
	n := int(binary.BigEndian.Uint32(b[96+8:]))
	size := int(binary.BigEndian.Uint32(b[96+12:]))
	end := 96 + 16 + 16*n + size
	if end > len(b) {
		t.Fatalf("kojitest: %s: signature header runs past the file", path)
	}
	sum := md5.Sum(b[96:end])
	return hex.EncodeToString(sum[:])
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatalf("kojitest: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatalf("kojitest: %v", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatalf("kojitest: %v", err)
	}
}

func (h *FakeHub) serveXMLRPC(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.requests++
	if h.failNext > 0 {
		h.failNext--
		code := h.failCode
		h.mu.Unlock()
		http.Error(w, "fake hub: injected failure", code)
		return
	}
	h.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "fake hub: XML-RPC needs POST", http.StatusMethodNotAllowed)
		return
	}
	method, args, err := koji.DecodeCall(r.Body, koji.Limits{MaxSize: 1 << 20})
	var out []byte
	if err != nil {
		out = koji.EncodeFault(&koji.Fault{Code: 1, String: "fake hub: bad request: " + err.Error()})
	} else {
		out = h.respond(method, args)
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Write(out)
}

func (h *FakeHub) respond(method string, args []any) []byte {
	v, fault := h.dispatch(method, args)
	if fault != nil {
		return koji.EncodeFault(fault)
	}
	out, err := koji.EncodeResponse(v)
	if err != nil {
		return koji.EncodeFault(&koji.Fault{Code: 1, String: "fake hub: " + err.Error()})
	}
	return out
}

func (h *FakeHub) dispatch(method string, args []any) (any, *koji.Fault) {
	h.mu.Lock()
	h.calls = append(h.calls, method)
	h.mu.Unlock()
	args, kw := koji.SplitKwargs(args)
	switch method {
	case "system.multicall":
		return h.multicall(args)
	case "getBuild":
		ref := arg(args, kw, 0, "buildInfo")
		strict, _ := arg(args, kw, 1, "strict").(bool)
		b := h.findBuild(ref)
		if b == nil {
			if strict {
				return nil, &koji.Fault{Code: koji.FaultGeneric, String: fmt.Sprintf("No such build: %v", ref)}
			}
			return nil, nil
		}
		return b, nil
	case "listBuildRPMs":
		b := h.findBuild(arg(args, kw, 0, "build"))
		if b == nil {
			return nil, &koji.Fault{Code: koji.FaultGeneric, String: fmt.Sprintf("No such build: %v", arg(args, kw, 0, "build"))}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		out := []any{}
		for _, r := range h.rpms[b["id"].(int64)] {
			out = append(out, r)
		}
		return out, nil
	case "listBuilds":
		return h.listBuilds(kw)
	case "getLastEvent":
		h.mu.Lock()
		defer h.mu.Unlock()
		return map[string]any{"id": h.event, "ts": h.eventTS}, nil
	case "queryRPMSigs":
		id, ok := arg(args, kw, 0, "rpm_id").(int64)
		if !ok {
			return nil, &koji.Fault{Code: koji.FaultParameter, String: "fake hub: rpm_id must be an int"}
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		out := []any{}
		for _, s := range h.sigs[id] {
			out = append(out, s)
		}
		return out, nil
	}
	return nil, &koji.Fault{Code: 1, String: fmt.Sprintf("koji.GenericError: Invalid method: %s", method)}
}

func arg(args []any, kw koji.Kwargs, i int, name string) any {
	if i < len(args) {
		return args[i]
	}
	return kw[name]
}

func (h *FakeHub) multicall(args []any) (any, *koji.Fault) {
	if len(args) != 1 {
		return nil, &koji.Fault{Code: 1, String: "fake hub: system.multicall takes one array"}
	}
	calls, ok := args[0].([]any)
	if !ok {
		return nil, &koji.Fault{Code: 1, String: "fake hub: system.multicall takes one array"}
	}
	out := []any{}
	for _, c := range calls {
		m, ok := c.(map[string]any)
		name, _ := m["methodName"].(string)
		params, pok := m["params"].([]any)
		if !ok || name == "" || !pok {
			out = append(out, map[string]any{"faultCode": int64(1), "faultString": "fake hub: bad multicall entry"})
			continue
		}
		if name == "system.multicall" {
			out = append(out, map[string]any{"faultCode": int64(1), "faultString": "fake hub: recursive multicall"})
			continue
		}
		v, fault := h.dispatch(name, params)
		if fault != nil {
			// Koji adds a traceback member to multicall faults (kojixmlrpc multiCall).
			out = append(out, map[string]any{"faultCode": int64(fault.Code), "faultString": fault.String, "traceback": []any{"Traceback (most recent call last):\n"}})
			continue
		}
		out = append(out, []any{v})
	}
	return out, nil
}

func (h *FakeHub) findBuild(ref any) map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.builds {
		switch x := ref.(type) {
		case int64:
			if b["id"].(int64) == x {
				return b
			}
		case string:
			if b["nvr"].(string) == x {
				return b
			}
		}
	}
	return nil
}

func (h *FakeHub) listBuilds(kw koji.Kwargs) (any, *koji.Fault) {
	var after *float64
	switch x := kw["completeAfter"].(type) {
	case nil:
	case float64:
		after = &x
	case int64:
		f := float64(x)
		after = &f
	case string:
		// kojihub accepts ISO text ('YYYY-MM-DD HH24:MI:SS').
		t, err := time.Parse("2006-01-02 15:04:05", x)
		if err != nil {
			return nil, &koji.Fault{Code: koji.FaultGeneric, String: fmt.Sprintf("Invalid time: %s", x)}
		}
		f := float64(t.Unix())
		after = &f
	default:
		return nil, &koji.Fault{Code: koji.FaultGeneric, String: fmt.Sprintf("Invalid type for completeAfter: %T", x)}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := []any{}
	for _, b := range h.builds {
		if st, ok := kw["state"].(int64); ok && b["state"].(int64) != st {
			continue
		}
		if after != nil {
			ts, ok := b["completion_ts"].(float64)
			if !ok || ts <= *after {
				continue
			}
		}
		// listBuilds sends build_id, not id (kojihub listBuilds).
		lb := map[string]any{}
		for k, v := range b {
			if k != "id" && k != "cg_name" {
				lb[k] = v
			}
		}
		out = append(out, lb)
	}
	return out, nil
}
