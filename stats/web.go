package stats

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

//go:embed templates/*.html
var templateFS embed.FS

// pages are the HTML pages, each the layout plus its own "content".
var pageNames = []string{"board", "operator", "team", "builder", "package", "build", "health", "error"}

// web serves a Tracker's pages and JSON.
type web struct {
	t     *Tracker
	pages map[string]*template.Template
	lg    *slog.Logger
}

// Handler returns the stats web handler: HTML pages under /stats/ and the
// same data as JSON under /api/stats/ (docs/stats.md "Pages"). Mount it at
// the root of a server, or for those two prefixes:
//
//	mux.Handle("/stats/", h)
//	mux.Handle("/api/stats/", h)
//
// Pages are server-rendered (html/template escapes every name), use inline
// SVG for charts and need no JavaScript.
func Handler(t *Tracker) http.Handler {
	w := &web{t: t, pages: map[string]*template.Template{}, lg: t.cfg.Logger}
	funcs := template.FuncMap{
		"opURL":    func(name string) string { return "/stats/operator/" + url.PathEscape(name) },
		"teamURL":  func(name string) string { return "/stats/team/" + url.PathEscape(name) },
		"keyURL":   func(id string) string { return "/stats/builder/" + url.PathEscape(id) },
		"pkgURL":   func(nvr string) string { return "/stats/package/" + url.PathEscape(nvr) },
		"buildURL": buildURL,
		"credit":   func(c float64) string { return formatCredit(c) },
		"short":    func(s string) string { return shortHex(s) },
		"when":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
		"dur":      func(d time.Duration) string { return d.Round(time.Second).String() },
		"percent":  func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) },
		"sortLink": sortLink,
		"pageLink": func(sort string, page int) string {
			return "?" + url.Values{"sort": {sort}, "page": {strconv.Itoa(page)}}.Encode()
		},
		"add":        func(a, b int) int { return a + b },
		"dailyChart": dailyChart,
		"lastDays": func(d []DayStats) []DayStats {
			if len(d) > chartDays {
				d = d[len(d)-chartDays:]
			}
			return d
		},
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	for _, name := range pageNames {
		w.pages[name] = template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats/{$}", w.board(BoardOperators))
	mux.HandleFunc("GET /stats/teams", w.board(BoardTeams))
	mux.HandleFunc("GET /stats/operator/{name}", w.operator)
	mux.HandleFunc("GET /stats/team/{name}", w.team)
	mux.HandleFunc("GET /stats/builder/{key}", w.builder)
	mux.HandleFunc("GET /stats/package/{nvr}", w.pkg)
	mux.HandleFunc("GET /stats/build/{nvr}/{arch}/{srpm}", w.build)
	mux.HandleFunc("GET /stats/health", w.health)
	mux.HandleFunc("GET /api/stats/leaderboard", w.apiBoard)
	mux.HandleFunc("GET /api/stats/operator/{name}", w.apiOperator)
	mux.HandleFunc("GET /api/stats/team/{name}", w.apiTeam)
	mux.HandleFunc("GET /api/stats/builder/{key}", w.apiBuilder)
	mux.HandleFunc("GET /api/stats/package/{nvr}", w.apiPackage)
	mux.HandleFunc("GET /api/stats/build/{nvr}/{arch}/{srpm}", w.apiBuild)
	mux.HandleFunc("GET /api/stats/health", w.apiHealth)
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		err := fmt.Errorf("stats: no page %q: %w", trunc(r.URL.Path), ErrNotFound)
		if strings.HasPrefix(r.URL.Path, "/api/") {
			w.fail(rw, r, err, true)
			return
		}
		w.fail(rw, r, err, false)
	})
	return mux
}

func buildURL(b attest.BuildID) string {
	return "/stats/build/" + url.PathEscape(b.NVR) + "/" + url.PathEscape(b.Arch) + "/" + url.PathEscape(b.SRPMSHA256)
}

func formatCredit(c float64) string {
	if math.Abs(c) < 0.05 {
		c = 0 // no "-0.0" from a withdrawal's rounding
	}
	return strconv.FormatFloat(c, 'f', 1, 64)
}

func shortHex(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

// sortLink is the query of a leaderboard sorted by column (page 1).
func sortLink(column string) string { return "?" + url.Values{"sort": {column}}.Encode() }

// statusOf is the one mapping of the tracker's errors to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrQuery):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func (w *web) fail(rw http.ResponseWriter, r *http.Request, err error, api bool) {
	status := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		w.lg.Error("stats: serving page", "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	if api {
		w.json(rw, status, map[string]string{"error": msg})
		return
	}
	w.html(rw, r, status, "error", map[string]any{"Title": http.StatusText(status), "Status": status, "Message": msg})
}

func header(rw http.ResponseWriter, contentType string) {
	h := rw.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-cache")
}

func (w *web) html(rw http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var buf bytes.Buffer
	if err := w.pages[page].ExecuteTemplate(&buf, "layout.html", data); err != nil {
		w.lg.Error("stats: rendering page", "page", page, "err", err)
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	header(rw, "text/html; charset=utf-8")
	// No script runs on these pages; names from the log cannot make one.
	rw.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; form-action 'self'")
	rw.WriteHeader(status)
	rw.Write(buf.Bytes())
}

func (w *web) json(rw http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(rw, "internal error", http.StatusInternalServerError)
		return
	}
	header(rw, "application/json; charset=utf-8")
	rw.WriteHeader(status)
	rw.Write(append(b, '\n'))
}

// leaderboard answers a board query: ?kind=operators|teams (JSON only; the
// pages fix it), ?sort=credit|rac|agreed|outliers, ?page=N.
func (w *web) leaderboard(r *http.Request, kind string) (Board, error) {
	q := r.URL.Query()
	page := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Board{}, fmt.Errorf("stats: page %q: %w", trunc(p), ErrQuery)
		}
		page = n
	}
	if k := q.Get("kind"); k != "" && strings.HasPrefix(r.URL.Path, "/api/") {
		kind = k
	}
	return w.t.Leaderboard(kind, q.Get("sort"), page)
}

func (w *web) board(kind string) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		b, err := w.leaderboard(r, kind)
		if err != nil {
			w.fail(rw, r, err, false)
			return
		}
		title := "Operators"
		if kind == BoardTeams {
			title = "Teams"
		}
		cols := []struct{ Key, Label, Title string }{
			{SortCredit, "Credit", "total credit"},
			{SortRAC, "RAC", "recent average credit: credit per day, half-life one week"},
			{SortAgreed, "Agreed", "results in a credited group"},
			{SortOutliers, "Outliers", "results a verdict named outliers"},
		}
		w.html(rw, r, http.StatusOK, "board", map[string]any{"Title": title, "Board": b, "Columns": cols, "Teams": kind == BoardTeams})
	}
}

func (w *web) apiBoard(rw http.ResponseWriter, r *http.Request) {
	b, err := w.leaderboard(r, BoardOperators)
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, b)
}

func (w *web) operator(rw http.ResponseWriter, r *http.Request) {
	o, err := w.t.Operator(r.PathValue("name"))
	if err != nil {
		w.fail(rw, r, err, false)
		return
	}
	keys := make([]BuilderStats, 0, len(o.Keys))
	for _, k := range o.Keys {
		if b, err := w.t.Builder(k); err == nil {
			keys = append(keys, b)
		}
	}
	w.html(rw, r, http.StatusOK, "operator", map[string]any{"Title": "Operator " + o.Name, "Op": o, "Keys": keys})
}

func (w *web) apiOperator(rw http.ResponseWriter, r *http.Request) {
	o, err := w.t.Operator(r.PathValue("name"))
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, o)
}

func (w *web) team(rw http.ResponseWriter, r *http.Request) {
	tm, err := w.t.Team(r.PathValue("name"))
	if err != nil {
		w.fail(rw, r, err, false)
		return
	}
	w.html(rw, r, http.StatusOK, "team", map[string]any{"Title": "Team " + tm.Name, "Team": tm})
}

func (w *web) apiTeam(rw http.ResponseWriter, r *http.Request) {
	tm, err := w.t.Team(r.PathValue("name"))
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, tm)
}

func (w *web) builder(rw http.ResponseWriter, r *http.Request) {
	b, err := w.t.Builder(r.PathValue("key"))
	if err != nil {
		w.fail(rw, r, err, false)
		return
	}
	w.html(rw, r, http.StatusOK, "builder", map[string]any{"Title": "Builder " + shortHex(b.KeyID), "B": b})
}

func (w *web) apiBuilder(rw http.ResponseWriter, r *http.Request) {
	b, err := w.t.Builder(r.PathValue("key"))
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, b)
}

func (w *web) pkg(rw http.ResponseWriter, r *http.Request) {
	nvr := r.PathValue("nvr")
	l, err := w.t.Package(nvr)
	if err != nil {
		w.fail(rw, r, err, false)
		return
	}
	w.html(rw, r, http.StatusOK, "package", map[string]any{"Title": nvr, "NVR": nvr, "Builds": l})
}

func (w *web) apiPackage(rw http.ResponseWriter, r *http.Request) {
	l, err := w.t.Package(r.PathValue("nvr"))
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, l)
}

func pathBuild(r *http.Request) attest.BuildID {
	return attest.BuildID{NVR: r.PathValue("nvr"), Arch: r.PathValue("arch"), SRPMSHA256: r.PathValue("srpm")}
}

func (w *web) build(rw http.ResponseWriter, r *http.Request) {
	b, err := w.t.Build(pathBuild(r))
	if err != nil {
		w.fail(rw, r, err, false)
		return
	}
	w.html(rw, r, http.StatusOK, "build", map[string]any{"Title": b.Build.NVR + " " + b.Build.Arch, "B": b})
}

func (w *web) apiBuild(rw http.ResponseWriter, r *http.Request) {
	b, err := w.t.Build(pathBuild(r))
	if err != nil {
		w.fail(rw, r, err, true)
		return
	}
	w.json(rw, http.StatusOK, b)
}

func (w *web) health(rw http.ResponseWriter, r *http.Request) {
	h := w.t.Health()
	w.html(rw, r, http.StatusOK, "health", map[string]any{"Title": "Network health", "H": h})
}

func (w *web) apiHealth(rw http.ResponseWriter, r *http.Request) {
	w.json(rw, http.StatusOK, w.t.Health())
}
