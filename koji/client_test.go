package koji_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/koji"
	"github.com/fedora-skyline/skyline/koji/kojitest"
)

func newClient(t *testing.T, url string, mod func(*koji.Config)) *koji.Client {
	t.Helper()
	cfg := koji.Config{HubURL: url, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := koji.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// recordedHub answers each method with testdata/<file> and records the
// decoded request, so a test checks both directions of the wire format.
type recordedHub struct {
	files  map[string]string
	method string
	args   []any
	kwargs koji.Kwargs
}

func (h *recordedHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method, args, err := koji.DecodeCall(r.Body, koji.Limits{})
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.method = method
	h.args, h.kwargs = koji.SplitKwargs(args)
	b, err := os.ReadFile(filepath.Join("testdata", h.files[method]))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.Write(b)
}

func TestClientOnRecordedResponses(t *testing.T) {
	h := &recordedHub{files: map[string]string{
		"getBuild": "getBuild.xml", "listBuildRPMs": "listBuildRPMs.xml",
		"queryRPMSigs": "queryRPMSigs.xml", "getLastEvent": "getLastEvent.xml",
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()

	b, err := c.GetBuild(ctx, "hello-2.12.1-7.fc41")
	if err != nil {
		t.Fatal(err)
	}
	if b.NVR != "hello-2.12.1-7.fc41" || b.ID != 2612345 || b.Epoch != nil {
		t.Errorf("build = %+v", b)
	}
	if h.method != "getBuild" || !reflect.DeepEqual(h.args, []any{"hello-2.12.1-7.fc41"}) || h.kwargs["strict"] != true {
		t.Errorf("request = %s %v %v, want getBuild(nvr, strict=True)", h.method, h.args, h.kwargs)
	}

	rpms, err := c.ListBuildRPMs(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rpms) != 3 || !reflect.DeepEqual(h.args, []any{int64(2612345)}) {
		t.Errorf("listBuildRPMs: %d rpms, request args %v", len(rpms), h.args)
	}
	srpm, err := koji.SRPM(rpms)
	if err != nil || srpm.ID != 40123456789 {
		t.Errorf("SRPM = %+v, %v", srpm, err)
	}

	sigs, err := c.QueryRPMSigs(ctx, rpms[1].ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 2 || sigs[1].SigKey != "e99d6ad1" || h.kwargs["rpm_id"] != int64(40123456790) {
		t.Errorf("queryRPMSigs = %+v, request kwargs %v", sigs, h.kwargs)
	}

	ev, err := c.GetLastEvent(ctx)
	if err != nil || ev.ID != 108899001 {
		t.Errorf("getLastEvent = %+v, %v", ev, err)
	}

	h.files["getBuild"] = "fault_nosuchbuild.xml"
	_, err = c.GetBuild(ctx, "nosuch-1.0-1.fc41")
	var f *koji.Fault
	if !errors.Is(err, koji.ErrNoSuchBuild) || !errors.As(err, &f) || f.Code != 1000 {
		t.Errorf("unknown build: err = %v, want ErrNoSuchBuild carrying fault 1000", err)
	}
}

func TestClientMulticallRecorded(t *testing.T) {
	h := &recordedHub{files: map[string]string{"system.multicall": "multicall.xml"}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	calls := []koji.Call{
		{Method: "getLastEvent"},
		{Method: "getBuild", Args: []any{"nosuch-1.0-1.fc41", koji.Kwargs{"strict": true}}},
		{Method: "getBuild", Args: []any{"other-1-1"}},
		{Method: "echo", Args: []any{[]byte("skyline")}},
		{Method: "getLoggedInUser"},
	}
	res, err := c.Multicall(context.Background(), calls)
	if err != nil {
		t.Fatal(err)
	}
	if h.method != "system.multicall" || len(h.args) != 1 {
		t.Fatalf("request = %s %v", h.method, h.args)
	}
	sent := h.args[0].([]any)[1].(map[string]any)
	params := sent["params"].([]any)
	if sent["methodName"] != "getBuild" || params[1].(map[string]any)["__starstar"] != true {
		t.Errorf("multicall entry sent as %#v, want getBuild with __starstar kwargs", sent)
	}
	if res[0].Err != nil || res[0].Value.(map[string]any)["id"] != int64(1) {
		t.Errorf("result 0 = %+v", res[0])
	}
	if !errors.Is(res[1].Err, koji.ErrNoSuchBuild) {
		t.Errorf("result 1 err = %v, want ErrNoSuchBuild", res[1].Err)
	}
	if res[2].Err != nil || res[2].Value != nil {
		t.Errorf("result 2 = %+v, want nil value", res[2])
	}
	var f *koji.Fault
	if !errors.As(res[4].Err, &f) || f.Code != koji.FaultAuth || errors.Is(res[4].Err, koji.ErrNoSuchBuild) {
		t.Errorf("result 4 err = %v, want fault 1002 that is not ErrNoSuchBuild", res[4].Err)
	}
	// The recorded answer has 5 entries: asking for 4 calls must fail.
	if _, err := c.Multicall(context.Background(), calls[:4]); !errors.Is(err, koji.ErrBadResult) {
		t.Errorf("result count mismatch: err = %v, want ErrBadResult", err)
	}
}

func TestClientAgainstFakeHubWithRealRPMs(t *testing.T) {
	hub := kojitest.NewFakeHub(t)
	const completed = 1_764_000_000.25
	id, sigkey := hub.AddHelloBuild(t, "DEFAULT", completed)
	c := newClient(t, hub.URL(), nil)
	ctx := context.Background()

	b, err := c.GetBuild(ctx, "hello-1.0-1")
	if err != nil {
		t.Fatal(err)
	}
	if b.ID != id || b.State != koji.BuildComplete || b.CompletionTS == nil || *b.CompletionTS != completed {
		t.Errorf("build = %+v", b)
	}
	byID, err := c.GetBuildByID(ctx, id)
	if err != nil || byID.NVR != "hello-1.0-1" {
		t.Errorf("GetBuildByID = %+v, %v", byID, err)
	}
	rpms, err := c.ListBuildRPMs(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rpms {
		names[r.NVRA()] = true
		if r.ID <= math.MaxInt32 {
			t.Errorf("rpm id %d was meant to need <i8>", r.ID)
		}
	}
	for _, want := range []string{"hello-1.0-1.src", "hello-doc-1.0-1.noarch"} {
		if !names[want] {
			t.Errorf("rpms %v lack %s", names, want)
		}
	}
	if len(rpms) != 3 {
		t.Errorf("%d rpms, want src + hello + hello-doc", len(rpms))
	}

	pi := koji.PathInfo{Topdir: hub.Topdir()}
	for _, r := range rpms {
		sigs, err := c.QueryRPMSigs(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, s := range sigs {
			keys = append(keys, s.SigKey)
		}
		if !reflect.DeepEqual(keys, []string{"", sigkey}) {
			t.Errorf("%s sigkeys = %q, want unsigned and %s", r.NVRA(), keys, sigkey)
		}
		unsignedURL, err := pi.RPMURL(b, &r)
		if err != nil {
			t.Fatal(err)
		}
		signedURL, err := pi.SignedRPMURL(b, &r, sigkey)
		if err != nil {
			t.Fatal(err)
		}
		unsigned := download(t, unsignedURL)
		signed := download(t, signedURL)
		if bytes.Equal(unsigned, signed) {
			t.Errorf("%s: signed copy equals the unsigned file", r.NVRA())
		}
		// The signed copy carries the key Koji names it by.
		p := filepath.Join(t.TempDir(), r.NVRA()+".rpm")
		if err := os.WriteFile(p, signed, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("rpm", "-qp", "--qf", "%{SIGPGP:pgpsig}%{RSAHEADER:pgpsig}", p).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp %s: %v\n%s", p, err, out)
		}
		if !strings.Contains(strings.ToLower(string(out)), sigkey) {
			t.Errorf("%s signature %q does not name key %s", r.NVRA(), out, sigkey)
		}
	}

	// A poller's view: completed builds after a time, as a double and as ISO text.
	complete := koji.BuildComplete
	after, err := c.ListBuilds(ctx, koji.BuildQuery{State: &complete, CompleteAfter: time.Unix(1_763_999_999, 0)})
	if err != nil || len(after) != 1 || after[0].ID != id {
		t.Errorf("ListBuilds(after) = %+v, %v; want the hello build by build_id", after, err)
	}
	none, err := c.ListBuilds(ctx, koji.BuildQuery{State: &complete, CompleteAfterISO: "2030-01-01 00:00:00"})
	if err != nil || len(none) != 0 {
		t.Errorf("ListBuilds(2030) = %+v, %v; want none", none, err)
	}
	ev, err := c.GetLastEvent(ctx)
	if err != nil || ev.ID == 0 || ev.TS == 0 {
		t.Errorf("GetLastEvent = %+v, %v", ev, err)
	}

	_, err = c.GetBuild(ctx, "nosuch-1-1")
	if !errors.Is(err, koji.ErrNoSuchBuild) {
		t.Errorf("unknown NVR: err = %v, want ErrNoSuchBuild", err)
	}
	builds, errs, err := c.GetBuilds(ctx, []string{"hello-1.0-1", "nosuch-1-1"})
	if err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || builds[0].ID != id || !errors.Is(errs[1], koji.ErrNoSuchBuild) || builds[1] != nil {
		t.Errorf("GetBuilds = %v, %v", builds, errs)
	}
	if _, err := c.Call(ctx, "noSuchMethod"); err == nil || !strings.Contains(err.Error(), "Invalid method") {
		t.Errorf("unknown method: err = %v, want the hub's Invalid method fault", err)
	}
}

func download(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestClientVolumePath(t *testing.T) {
	hub := kojitest.NewFakeHub(t)
	hub.AddBuild(t, kojitest.BuildSpec{Name: "old", Version: "1", Release: "1.fc30", Volume: "fedora_koji_archive02", State: koji.BuildComplete}, nil)
	c := newClient(t, hub.URL(), nil)
	b, err := c.GetBuild(context.Background(), "old-1-1.fc30")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := koji.PathInfo{Topdir: hub.Topdir()}.BuildDir(b)
	if err != nil || dir != hub.Topdir()+"/vol/fedora_koji_archive02/packages/old/1/1.fc30" {
		t.Errorf("BuildDir = %q, %v", dir, err)
	}
}

func TestClientRetriesServerErrors(t *testing.T) {
	hub := kojitest.NewFakeHub(t)
	c := newClient(t, hub.URL(), func(cfg *koji.Config) { cfg.MaxAttempts = 4 })
	hub.FailNext(2, http.StatusServiceUnavailable)
	if _, err := c.GetLastEvent(context.Background()); err != nil {
		t.Fatalf("after 2 failures: %v", err)
	}
	if n := hub.Requests(); n != 3 {
		t.Errorf("%d requests, want 3 (2 failed + 1)", n)
	}

	hub.FailNext(100, http.StatusBadGateway)
	before := hub.Requests()
	_, err := c.GetLastEvent(context.Background())
	if !errors.Is(err, koji.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if n := hub.Requests() - before; n != 4 {
		t.Errorf("%d attempts, want MaxAttempts = 4", n)
	}
}

func TestClientDoesNotRetryFaultsOr4xx(t *testing.T) {
	hub := kojitest.NewFakeHub(t)
	c := newClient(t, hub.URL(), nil)
	_, err := c.GetBuild(context.Background(), "nosuch-1-1")
	if !errors.Is(err, koji.ErrNoSuchBuild) || hub.Requests() != 1 {
		t.Errorf("fault: err = %v after %d requests, want ErrNoSuchBuild after 1", err, hub.Requests())
	}
	hub.FailNext(1, http.StatusForbidden)
	_, err = c.GetLastEvent(context.Background())
	if !errors.Is(err, koji.ErrHTTPStatus) || hub.Requests() != 2 {
		t.Errorf("403: err = %v after %d requests, want ErrHTTPStatus after 2", err, hub.Requests())
	}
}

// countingTransport counts round trips that reached the network layer.
type countingTransport struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}

func TestClientUnreachableHub(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now: connections are refused
	ct := &countingTransport{next: &http.Transport{}}
	c := newClient(t, "http://"+addr+"/kojihub", func(cfg *koji.Config) {
		cfg.MaxAttempts = 3
		cfg.HTTPClient = &http.Client{Transport: ct}
	})
	_, err = c.GetLastEvent(context.Background())
	if !errors.Is(err, koji.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if n := ct.n.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestClientAttemptTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers while the client waits
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	ct := &countingTransport{next: &http.Transport{}}
	c := newClient(t, srv.URL, func(cfg *koji.Config) {
		cfg.Timeout = 50 * time.Millisecond
		cfg.MaxAttempts = 2
		cfg.HTTPClient = &http.Client{Transport: ct}
	})
	_, err := c.GetLastEvent(context.Background())
	if !errors.Is(err, koji.ErrUnavailable) || ct.n.Load() != 2 {
		t.Errorf("err = %v after %d attempts, want ErrUnavailable after 2", err, ct.n.Load())
	}
}

func TestClientStopsOnCancel(t *testing.T) {
	hub := kojitest.NewFakeHub(t)
	hub.FailNext(100, http.StatusServiceUnavailable)
	c := newClient(t, hub.URL(), func(cfg *koji.Config) {
		cfg.Backoff = time.Hour
		cfg.MaxBackoff = time.Hour
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.GetLastEvent(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded while backing off", err)
	}
	if n := hub.Requests(); n != 1 {
		t.Errorf("%d requests, want 1 before the cancelled backoff", n)
	}
}

func TestClientBadResponses(t *testing.T) {
	deep := "<?xml version='1.0'?><methodResponse><params><param>" + strings.Repeat("<value><array><data>", 50) +
		strings.Repeat("</data></array></value>", 50) + "</param></params></methodResponse>"
	huge := "<?xml version='1.0'?><methodResponse><params><param><value><string>" + strings.Repeat("x", 8192) + "</string></value></param></params></methodResponse>"
	for _, tt := range []struct {
		name, body string
		want       error
	}{
		{"html", "<html>oops</html>", koji.ErrMalformed},
		{"deep", deep, koji.ErrTooDeep},
		{"huge", huge, koji.ErrTooLarge},
		{"unknown type", "<methodResponse><params><param><value><float>1</float></value></param></params></methodResponse>", koji.ErrUnknownType},
		{"wrong shape", "<methodResponse><params><param><value><string>x</string></value></param></params></methodResponse>", koji.ErrBadResult},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, func(cfg *koji.Config) { cfg.Limits = koji.Limits{MaxSize: 4096} })
			_, err := c.GetLastEvent(context.Background())
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if n.Load() != 1 {
				t.Errorf("%d requests: a bad response must not be retried", n.Load())
			}
		})
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "koji.fedoraproject.org/kojihub", "ftp://x/kojihub"} {
		if _, err := koji.NewClient(koji.Config{HubURL: u}); err == nil {
			t.Errorf("NewClient(%q) accepted", u)
		}
	}
}
