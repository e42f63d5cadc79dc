package stats

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

const (
	evilOp   = `<script>alert("op")</script>`
	evilTeam = `"><img src=x onerror=alert(1)>`
	slashOp  = "ops/with slash?&#"
)

// webWorld is a small network with hostile operator and team names, an
// outlier and a failure.
func webWorld(t testing.TB) *world {
	w := newWorld(t)
	ws := w.enrol(attest.RoleWitness, "witness-1", "")
	a := w.enrol(attest.RoleBuilder, "alice", "red")
	b := w.enrol(attest.RoleBuilder, evilOp, evilTeam)
	c := w.enrol(attest.RoleBuilder, slashOp, "red")
	m := w.enrol(attest.RoleBuilder, "mallory", "")
	d := w.enrol(attest.RoleBuilder, "dave", "")
	w.round("hello-2.12-1.fc41", ws,
		vote{s: a, variant: "good", dur: 3 * time.Hour}, vote{s: b, variant: "good", dur: 2 * time.Hour},
		vote{s: c, variant: "good", dur: time.Hour}, vote{s: m, variant: "evil", dur: time.Hour}, vote{s: d, fail: true})
	w.tick(24 * time.Hour)
	w.round("bash-5.2-3.fc41", ws,
		vote{s: a, variant: "good", dur: time.Hour}, vote{s: c, variant: "good", dur: time.Hour},
		vote{s: d, variant: "good", dur: time.Hour}, vote{s: m, variant: "good", dur: time.Hour})
	return w
}

func get(t *testing.T, srv *httptest.Server, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// TestPagesEscapeNames: hostile operator and team names appear escaped on
// every page and their pages are reachable by escaped links.
func TestPagesEscapeNames(t *testing.T) {
	w := webWorld(t)
	srv := httptest.NewServer(Handler(replay(t, w.config(), w.entries)))
	defer srv.Close()
	b := buildID("hello-2.12-1.fc41")
	for _, path := range []string{
		"/stats/", "/stats/teams", "/stats/health",
		"/stats/operator/" + url.PathEscape(evilOp),
		"/stats/operator/" + url.PathEscape(slashOp),
		"/stats/team/" + url.PathEscape(evilTeam),
		buildURL(b), "/stats/package/" + b.NVR,
	} {
		code, body, h := get(t, srv, path)
		if code != http.StatusOK {
			t.Errorf("%s: status %d: %.200s", path, code, body)
			continue
		}
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
			t.Errorf("%s: unescaped markup in the page", path)
		}
		if !strings.Contains(body, `name="viewport"`) {
			t.Errorf("%s: no viewport meta", path)
		}
		if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	_, body, _ := get(t, srv, "/stats/")
	if !strings.Contains(body, "&lt;script&gt;alert(&#34;op&#34;)&lt;/script&gt;") {
		t.Errorf("leaderboard does not show the escaped name")
	}
	if !strings.Contains(body, `href="/stats/operator/ops%2Fwith%20slash%3F&amp;%23"`) {
		t.Errorf("leaderboard link to %q not path-escaped", slashOp)
	}
	_, body, _ = get(t, srv, "/stats/operator/"+url.PathEscape(slashOp))
	if !strings.Contains(body, "ops/with slash?&amp;#") {
		t.Errorf("operator page does not name the operator")
	}
}

// TestPages: the leaderboard, operator, build and health pages show what
// the log says.
func TestPages(t *testing.T) {
	w := webWorld(t)
	srv := httptest.NewServer(Handler(replay(t, w.config(), w.entries)))
	defer srv.Close()

	_, body, _ := get(t, srv, "/stats/?sort=outliers")
	if i, j := strings.Index(body, ">mallory<"), strings.Index(body, ">alice<"); i < 0 || j < 0 || i > j {
		t.Errorf("sorted by outliers, mallory (1 outlier) is not above alice")
	}
	if !strings.Contains(body, `aria-sort="descending"><a href="?sort=outliers" title="results a verdict named outliers">Outliers&nbsp;▼`) {
		t.Errorf("the outliers column is not marked as the sort")
	}
	_, body, _ = get(t, srv, buildURL(buildID("hello-2.12-1.fc41")))
	for _, want := range []string{`id="verdict">reproduced<`, `<ul id="outliers"><li class="bad"><a href="/stats/operator/mallory">mallory</a>`, "2h0m0s (median"} {
		if !strings.Contains(body, want) {
			t.Errorf("build page lacks %q", want)
		}
	}
	_, body, _ = get(t, srv, "/stats/operator/alice")
	if !strings.Contains(body, `<dd id="rank">1</dd>`) || !strings.Contains(body, `<dd id="credit">300.0</dd>`) {
		t.Errorf("alice's page: %s", body)
	}
	_, body, _ = get(t, srv, "/stats/health")
	if strings.Count(body, `<rect class="bar"`) != 2 || !strings.Contains(body, `id="breaker" class="verdict good">Closed`) || !strings.Contains(body, "<polyline") {
		t.Errorf("health page: charts or breaker missing")
	}
}

// TestAPI: the JSON API carries the pages' data and maps bad queries and
// unknown names to 400 and 404 with a JSON error.
func TestAPI(t *testing.T) {
	tr := synthetic(t, 130, 3000)
	srv := httptest.NewServer(Handler(tr))
	defer srv.Close()
	code, body, h := get(t, srv, "/api/stats/leaderboard?sort=rac&page=2")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("status %d %s", code, body)
	}
	var b Board
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatal(err)
	}
	if b.Page != 2 || b.Pages != 3 || b.Total != 130 || len(b.Rows) != PageSize {
		t.Errorf("board page %d of %d, %d rows of %d", b.Page, b.Pages, len(b.Rows), b.Total)
	}
	if !slices.IsSortedFunc(b.Rows, func(x, y Row) int { return -compareFloat(x.RAC, y.RAC) }) {
		t.Errorf("rows not sorted by RAC")
	}
	page1, _ := tr.Leaderboard(BoardOperators, SortRAC, 1)
	if last := page1.Rows[PageSize-1]; last.RAC < b.Rows[0].RAC {
		t.Errorf("page 2 starts above page 1's end")
	}
	code, body, _ = get(t, srv, "/api/stats/leaderboard?kind=teams")
	if err := json.Unmarshal([]byte(body), &b); err != nil || code != 200 || b.Kind != BoardTeams || b.Total != 7 || b.Rows[0].Rank != 1 {
		t.Errorf("teams board: %d %+v %v", code, b, err)
	}
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/api/stats/leaderboard?sort=name", 400},
		{"/api/stats/leaderboard?page=0", 400},
		{"/api/stats/leaderboard?page=x", 400},
		{"/api/stats/leaderboard?page=99", 400},
		{"/api/stats/leaderboard?kind=keys", 400},
		{"/api/stats/operator/nobody", 404},
		{"/api/stats/team/nobody", 404},
		{"/api/stats/builder/00", 404},
		{"/api/stats/build/a-1-1/x86_64/00", 404},
		{"/api/stats/nothing", 404},
		{"/stats/?sort=bogus", 400},
		{"/stats/operator/nobody", 404},
		{"/stats/nothing", 404},
	} {
		code, body, _ := get(t, srv, tc.path)
		if code != tc.code {
			t.Errorf("%s: %d, want %d", tc.path, code, tc.code)
		}
		if strings.HasPrefix(tc.path, "/api/") {
			var e map[string]string
			if err := json.Unmarshal([]byte(body), &e); err != nil || e["error"] == "" {
				t.Errorf("%s: no JSON error: %s", tc.path, body)
			}
		}
	}
	code, body, _ = get(t, srv, "/api/stats/operator/operator-00007")
	var o OperatorStats
	if err := json.Unmarshal([]byte(body), &o); err != nil || code != 200 || o.Name != "operator-00007" || o.Team != "team-000" {
		t.Errorf("operator API: %d %+v %v", code, o, err)
	}
	code, body, _ = get(t, srv, "/api/stats/health")
	var hl Health
	if err := json.Unmarshal([]byte(body), &hl); err != nil || code != 200 || hl.Network.Agreed+hl.Network.Outliers != 3000 {
		t.Errorf("health API: %d %+v %v", code, hl.Network, err)
	}
}

func compareFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestBreakerState: an alarm trips the breaker on the health page and in
// the JSON; a logged clear closes it again.
func TestBreakerState(t *testing.T) {
	w := webWorld(t)
	ws := w.enrol(attest.RoleWitness, "witness-2", "")
	admin := w.enrol(attest.RoleAdmin, "infra", "")
	alarm := w.sign(ws, attest.PayloadAlarm, &attest.Alarm{Reason: "outlier-rate", Rate: 0.125, Window: 800, TreeSize: 40, At: w.now})
	srv := httptest.NewServer(Handler(replay(t, w.config(), w.entries)))
	_, body, _ := get(t, srv, "/stats/health")
	srv.Close()
	if !strings.Contains(body, `id="breaker" class="verdict bad">Tripped`) || !strings.Contains(body, "outlier rate 12.5% over 800 results") {
		t.Errorf("tripped breaker not shown: %s", body)
	}
	w.sign(admin, attest.PayloadAlarmClear, &attest.AlarmClear{AlarmIndex: alarm, Reason: "mirror fixed", At: w.now})
	h := replay(t, w.config(), w.entries).Health()
	if h.Breaker.Tripped || h.Breaker.Clears != 1 || h.Breaker.LastClear.Reason != "mirror fixed" {
		t.Errorf("after the clear: %+v", h.Breaker)
	}
}
