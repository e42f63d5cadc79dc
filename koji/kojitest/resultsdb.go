package kojitest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FakeResultsDBConfig configures a FakeResultsDB. With Username set, POST
// needs HTTP basic auth; with Token set, "Authorization: Bearer <Token>".
type FakeResultsDBConfig struct {
	Username, Password string
	Token              string
}

// FakeResultsDB is a FAKE ResultsDB API v2.0 (resultsdb/controllers/api_v2.py):
// POST /results, GET /results and GET /results/latest, in memory.
type FakeResultsDB struct {
	srv *httptest.Server
	cfg FakeResultsDBConfig

	mu       sync.Mutex
	results  []*StoredResult
	clock    time.Time
	failNext int
	posts    int
	requests int
}

// StoredResult is a result as the fake stores it.
type StoredResult struct {
	ID         int64
	Testcase   string
	Outcome    string
	Note       string
	RefURL     string
	SubmitTime time.Time
	Keys       []string // data keys in insertion order
	Data       map[string][]string
}

// presetOutcomes are resultsdb/models/results.py PRESET_OUTCOMES.
var presetOutcomes = []string{"PASSED", "INFO", "FAILED", "NEEDS_INSPECTION"}

// NewFakeResultsDB starts a fake ResultsDB on loopback.
func NewFakeResultsDB(t testing.TB, cfg FakeResultsDBConfig) *FakeResultsDB {
	t.Helper()
	f := &FakeResultsDB{cfg: cfg, clock: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v2.0/results", f.create)
	mux.HandleFunc("GET /api/v2.0/results", f.list)
	mux.HandleFunc("GET /api/v2.0/results/latest", f.latest)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the API root, e.g. http://127.0.0.1:port/api/v2.0.
func (f *FakeResultsDB) URL() string { return f.srv.URL + "/api/v2.0" }

// FailNext makes the next n requests answer 503.
func (f *FakeResultsDB) FailNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}

// Posts counts POST /results requests that reached the handler (failed
// and rejected ones included).
func (f *FakeResultsDB) Posts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.posts
}

// Count returns how many results are stored.
func (f *FakeResultsDB) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.results)
}

// Results returns copies of the stored results, oldest first.
func (f *FakeResultsDB) Results() []StoredResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]StoredResult, len(f.results))
	for i, r := range f.results {
		out[i] = *r
	}
	return out
}

// AddResult stores a result directly, as another ResultsDB client would
// (for gate tests with results skyline did not publish).
func (f *FakeResultsDB) AddResult(testcase, outcome string, data map[string]string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &StoredResult{Testcase: testcase, Outcome: outcome, Data: map[string][]string{}}
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.Keys = append(r.Keys, k)
		r.Data[k] = []string{data[k]}
	}
	return f.store(r)
}

// store assigns an id and a strictly increasing submit time; f.mu is held.
func (f *FakeResultsDB) store(r *StoredResult) int64 {
	f.clock = f.clock.Add(time.Second)
	r.ID = int64(len(f.results) + 1)
	r.SubmitTime = f.clock
	f.results = append(f.results, r)
	return r.ID
}

// Requests counts every request to the API, failed ones included.
func (f *FakeResultsDB) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

func (f *FakeResultsDB) injected(w http.ResponseWriter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if f.failNext > 0 {
		f.failNext--
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"message": "Unable to communicate with database"})
		return true
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// validationError is flask-pydantic's 400 body for a rejected field.
func validationError(w http.ResponseWriter, loc, msg, typ string, input any) {
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"validation_error": []any{map[string]any{
			"loc": []string{loc}, "msg": msg, "type": typ, "input": input,
			"url": "https://errors.pydantic.dev/2.6/v/" + typ,
		}},
	})
}

func (f *FakeResultsDB) authorized(r *http.Request) bool {
	switch {
	case f.cfg.Token != "":
		return r.Header.Get("Authorization") == "Bearer "+f.cfg.Token
	case f.cfg.Username != "":
		u, p, ok := r.BasicAuth()
		return ok && u == f.cfg.Username && p == f.cfg.Password
	}
	return true
}

func (f *FakeResultsDB) create(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.posts++
	f.mu.Unlock()
	if f.injected(w) {
		return
	}
	if !f.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="resultsdb"`)
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Unauthorized"})
		return
	}
	var body map[string]any
	d := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := d.Decode(&body); err != nil || body == nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Failed to decode JSON object"})
		return
	}
	// CreateResultParams (resultsdb/parsers/api_v2.py), field by field.
	rawOutcome, ok := body["outcome"]
	if !ok {
		validationError(w, "outcome", "Field required", "missing", body)
		return
	}
	outcome, ok := rawOutcome.(string)
	if !ok {
		validationError(w, "outcome", "Input should be a valid string", "string_type", rawOutcome)
		return
	}
	outcome = strings.ToUpper(strings.TrimSpace(outcome))
	if outcome == "" {
		validationError(w, "outcome", "String should have at least 1 character", "string_too_short", rawOutcome)
		return
	}
	rawTC, ok := body["testcase"]
	if !ok {
		validationError(w, "testcase", "Field required", "missing", body)
		return
	}
	var testcase string
	switch tc := rawTC.(type) {
	case string:
		testcase = tc
	case map[string]any:
		testcase, _ = tc["name"].(string)
	}
	if testcase == "" {
		validationError(w, "testcase", "Value error, testcase name must be non-empty", "value_error", rawTC)
		return
	}
	if !contains(presetOutcomes, outcome) {
		validationError(w, "outcome", "Value error, must be one of: "+strings.Join(presetOutcomes, ", "), "value_error", outcome)
		return
	}
	res := &StoredResult{Testcase: testcase, Outcome: outcome, Data: map[string][]string{}}
	res.Note, _ = body["note"].(string)
	res.RefURL, _ = body["ref_url"].(string)
	if raw, ok := body["data"]; ok && raw != nil {
		data, ok := raw.(map[string]any)
		if !ok {
			validationError(w, "data", "Input should be a valid dictionary", "dict_type", raw)
			return
		}
		var bad []string
		keys := make([]string, 0, len(data))
		for k := range data {
			if strings.Contains(k, ":") {
				bad = append(bad, k)
			}
			keys = append(keys, k)
		}
		if len(bad) > 0 {
			sort.Strings(bad)
			writeJSON(w, http.StatusBadRequest, map[string]any{"message": fmt.Sprintf("Colon not allowed in key name: %s", pyList(bad))})
			return
		}
		sort.Strings(keys)
		for _, k := range keys {
			res.Keys = append(res.Keys, k)
			switch v := data[k].(type) {
			case []any:
				for _, e := range v {
					res.Data[k] = append(res.Data[k], pyStr(e))
				}
			default:
				res.Data[k] = append(res.Data[k], pyStr(v))
			}
		}
	}
	f.mu.Lock()
	f.store(res)
	out := f.serialize(res)
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

func pyList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// pyStr renders a JSON value the way ResultsDB's unicode(value) stores it.
func pyStr(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		if x {
			return "True"
		}
		return "False"
	case nil:
		return "None"
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// serialize is resultsdb/serializers/api_v2.py _serialize_Result; f.mu is held.
func (f *FakeResultsDB) serialize(r *StoredResult) map[string]any {
	data := map[string]any{}
	for k, v := range r.Data {
		data[k] = v
	}
	var note, ref any
	if r.Note != "" {
		note = r.Note
	}
	if r.RefURL != "" {
		ref = r.RefURL
	}
	return map[string]any{
		"id":     r.ID,
		"groups": []string{},
		"testcase": map[string]any{
			"name": r.Testcase, "ref_url": nil,
			"href": f.srv.URL + "/api/v2.0/testcases/" + r.Testcase,
		},
		"submit_time": r.SubmitTime.Format("2006-01-02T15:04:05.000000"),
		"outcome":     r.Outcome,
		"note":        note,
		"ref_url":     ref,
		"data":        data,
		"href":        f.srv.URL + "/api/v2.0/results/" + strconv.FormatInt(r.ID, 10),
	}
}

// query is a parsed ResultsParams plus the result-data filters: every
// query argument that is not a reserved one (api_v2.py __get_results_parse_args).
type query struct {
	testcases, testcasesLike, distinctOn, outcomes []string
	sinceStart, sinceEnd                           time.Time
	page, limit                                    int
	data                                           map[string][]string
}

var reserved = []string{"_sort", "limit", "page", "testcases", "testcases:like", "groups", "_distinct_on", "outcome", "since"}

func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, x := range strings.Split(v, ",") {
			if x = strings.TrimSpace(x); x != "" {
				out = append(out, x)
			}
		}
	}
	return out
}

// parseQuery validates the query; on error it has written the 400.
func parseQuery(w http.ResponseWriter, vals url.Values) (*query, bool) {
	q := &query{limit: 20, data: map[string][]string{}}
	for _, name := range []string{"page", "limit"} {
		if s := vals.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil {
				validationError(w, name, "Input should be a valid integer, unable to parse string as an integer", "int_parsing", s)
				return nil, false
			}
			if name == "page" {
				q.page = n
			} else {
				q.limit = n
			}
		}
	}
	q.testcases = splitList(vals["testcases"])
	q.testcasesLike = splitList(vals["testcases:like"])
	q.distinctOn = splitList(vals["_distinct_on"])
	for _, o := range splitList(vals["outcome"]) {
		o = strings.ToUpper(o)
		if !contains(presetOutcomes, o) {
			validationError(w, "outcome", "Value error, must be one of: "+strings.Join(presetOutcomes, ", "), "value_error", vals["outcome"])
			return nil, false
		}
		q.outcomes = append(q.outcomes, o)
	}
	if s := vals.Get("since"); s != "" {
		parts := strings.Split(s, ",")
		for i, p := range parts[:min(2, len(parts))] {
			t, err := parseISO(p)
			if err != nil {
				validationError(w, "since", "Value error, must be in ISO8601 format", "value_error", s)
				return nil, false
			}
			if i == 0 {
				q.sinceStart = t
			} else {
				q.sinceEnd = t
			}
		}
	}
	for k, v := range vals {
		if !contains(reserved, k) {
			q.data[k] = splitList(v)
		}
	}
	return q, true
}

func parseISO(s string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02T15:04:05.999999Z07:00", "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not ISO 8601: %q", s)
}

// matches is select_results' filter, without the testcase filter when
// withTestcase is false.
func (q *query) matches(r *StoredResult, withTestcase bool) bool {
	if !q.sinceStart.IsZero() && r.SubmitTime.Before(q.sinceStart) {
		return false
	}
	if !q.sinceEnd.IsZero() && r.SubmitTime.After(q.sinceEnd) {
		return false
	}
	if len(q.outcomes) > 0 && !contains(q.outcomes, r.Outcome) {
		return false
	}
	if withTestcase && (len(q.testcases) > 0 || len(q.testcasesLike) > 0) {
		ok := contains(q.testcases, r.Testcase)
		for _, pat := range q.testcasesLike {
			if m, _ := path.Match(pat, r.Testcase); m {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	for key, want := range q.data {
		k, like := strings.CutSuffix(key, ":like")
		ok := false
		for _, have := range r.Data[k] {
			for _, w := range want {
				if like {
					if m, _ := path.Match(w, have); m {
						ok = true
					}
				} else if have == w {
					ok = true
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// sorted returns results newest first (ResultsDB orders by submit_time desc).
func (f *FakeResultsDB) sorted() []*StoredResult {
	out := append([]*StoredResult(nil), f.results...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].SubmitTime.After(out[j].SubmitTime) })
	return out
}

func (f *FakeResultsDB) list(w http.ResponseWriter, r *http.Request) {
	if f.injected(w) {
		return
	}
	q, ok := parseQuery(w, r.URL.Query())
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []*StoredResult
	for _, res := range f.sorted() {
		if q.matches(res, true) {
			all = append(all, res)
		}
	}
	start := min(q.page*q.limit, len(all))
	end := min(start+q.limit, len(all))
	data := []any{}
	for _, res := range all[start:end] {
		data = append(data, f.serialize(res))
	}
	var prev, next any
	if q.page > 0 {
		prev = pageURL(r, q.page-1)
	}
	if end < len(all) {
		next = pageURL(r, q.page+1)
	}
	writeJSON(w, http.StatusOK, map[string]any{"prev": prev, "next": next, "data": data})
}

func pageURL(r *http.Request, page int) string {
	v := r.URL.Query()
	v.Set("page", strconv.Itoa(page))
	return "http://" + r.Host + r.URL.Path + "?" + v.Encode()
}

// latest is get_results_latest: the newest result per testcase, or with
// _distinct_on per (testcase, value of each listed data key).
func (f *FakeResultsDB) latest(w http.ResponseWriter, r *http.Request) {
	if f.injected(w) {
		return
	}
	q, ok := parseQuery(w, r.URL.Query())
	if !ok {
		return
	}
	if len(q.distinctOn) > 0 && len(q.testcases) == 0 && len(q.testcasesLike) == 0 &&
		q.sinceStart.IsZero() && q.sinceEnd.IsZero() && len(q.data) == 0 && len(r.URL.Query()["groups"]) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Please, provide at least one filter beside '_distinct_on'"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]bool{}
	data := []any{}
	for _, res := range f.sorted() {
		if !q.matches(res, true) {
			continue
		}
		for _, key := range groupKeys(res, q.distinctOn) {
			if !seen[key] {
				seen[key] = true
				data = append(data, f.serialize(res))
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}

// groupKeys lists the DISTINCT ON groups a result falls in: its testcase
// and, per key, each of its values (or none, the outer join's NULL).
func groupKeys(r *StoredResult, keys []string) []string {
	out := []string{r.Testcase}
	for _, k := range keys {
		vals := r.Data[k]
		if len(vals) == 0 {
			vals = []string{"\x00null"}
		}
		var next []string
		for _, prefix := range out {
			for _, v := range vals {
				next = append(next, prefix+"\x00"+k+"="+v)
			}
		}
		out = next
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
