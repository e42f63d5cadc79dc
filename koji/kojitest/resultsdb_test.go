package kojitest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func do(t *testing.T, method, u, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: body %q is not a JSON object", method, u, b)
	}
	return resp.StatusCode, m
}

// TestFakeResultsDBErrorShapes checks the 400 bodies against those
// ResultsDB's own functional tests expect (testing/functest_api_v20.py).
func TestFakeResultsDBErrorShapes(t *testing.T) {
	f := NewFakeResultsDB(t, FakeResultsDBConfig{})
	post := f.URL() + "/results"
	tests := []struct {
		name, method, url, body string
		loc, msg, typ           string // validation_error, or
		message                 string // {"message": ...}
	}{
		{name: "missing outcome", method: "POST", url: post, body: `{"testcase":{"name":"a"}}`, loc: "outcome", msg: "Field required", typ: "missing"},
		{name: "missing testcase", method: "POST", url: post, body: `{"outcome":"passed"}`, loc: "testcase", msg: "Field required", typ: "missing"},
		{name: "empty testcase", method: "POST", url: post, body: `{"outcome":"passed","testcase":""}`, loc: "testcase", msg: "Value error, testcase name must be non-empty", typ: "value_error"},
		{name: "empty testcase name", method: "POST", url: post, body: `{"outcome":"passed","testcase":{"name":""}}`, loc: "testcase", msg: "Value error, testcase name must be non-empty", typ: "value_error"},
		{name: "invalid outcome", method: "POST", url: post, body: `{"outcome":"FAKEOUTCOME","testcase":{"name":"a"}}`, loc: "outcome", msg: "Value error, must be one of: PASSED, INFO, FAILED, NEEDS_INSPECTION", typ: "value_error"},
		{name: "colon in data key", method: "POST", url: post, body: `{"outcome":"PASSED","testcase":"a","data":{"validkey":1,"invalid:key":2}}`, message: "Colon not allowed in key name: ['invalid:key']"},
		{name: "latest with only _distinct_on", method: "GET", url: f.URL() + "/results/latest?_distinct_on=scenario", message: "Please, provide at least one filter beside '_distinct_on'"},
		{name: "bad outcome filter", method: "GET", url: f.URL() + "/results?outcome=GREAT", loc: "outcome", msg: "Value error, must be one of: PASSED, INFO, FAILED, NEEDS_INSPECTION", typ: "value_error"},
		{name: "bad since", method: "GET", url: f.URL() + "/results?since=yesterday", loc: "since", msg: "Value error, must be in ISO8601 format", typ: "value_error"},
		{name: "bad limit", method: "GET", url: f.URL() + "/results?limit=ten", loc: "limit", msg: "Input should be a valid integer, unable to parse string as an integer", typ: "int_parsing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, tt.method, tt.url, tt.body)
			if code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (%v)", code, body)
			}
			if tt.message != "" {
				if body["message"] != tt.message {
					t.Errorf("message = %q, want %q", body["message"], tt.message)
				}
				return
			}
			errs, _ := body["validation_error"].([]any)
			if len(errs) != 1 {
				t.Fatalf("body = %v, want one validation_error", body)
			}
			e := errs[0].(map[string]any)
			if !reflect.DeepEqual(e["loc"], []any{tt.loc}) || e["msg"] != tt.msg || e["type"] != tt.typ {
				t.Errorf("validation_error = %v, want loc [%s], msg %q, type %s", e, tt.loc, tt.msg, tt.typ)
			}
		})
	}
	if f.Count() != 0 {
		t.Errorf("rejected requests stored %d results", f.Count())
	}
}

func TestFakeResultsDBLatest(t *testing.T) {
	f := NewFakeResultsDB(t, FakeResultsDBConfig{})
	add := func(tc, outcome, item, arch string) int64 {
		d := map[string]string{"type": "koji_build", "item": item}
		if arch != "" {
			d["system_architecture"] = arch
		}
		return f.AddResult(tc, outcome, d)
	}
	add("t1", "FAILED", "a-1-1", "x86_64")
	add("t1", "PASSED", "a-1-1", "aarch64")
	add("t2", "PASSED", "a-1-1", "")
	add("t1", "PASSED", "b-1-1", "x86_64")
	newest := add("t1", "INFO", "a-1-1", "aarch64")

	ids := func(q string) []float64 {
		code, body := do(t, "GET", f.URL()+"/results/latest?"+q, "")
		if code != http.StatusOK {
			t.Fatalf("%s: status %d %v", q, code, body)
		}
		var out []float64
		for _, r := range body["data"].([]any) {
			out = append(out, r.(map[string]any)["id"].(float64))
		}
		return out
	}
	q := url.Values{"type": {"koji_build"}, "item": {"a-1-1"}}
	// Without _distinct_on: newest per testcase.
	if got := ids(q.Encode()); !reflect.DeepEqual(got, []float64{float64(newest), 3}) {
		t.Errorf("latest per testcase = %v, want [%d 3]", got, newest)
	}
	// With Greenwave's _distinct_on: newest per testcase and arch.
	q.Set("_distinct_on", "scenario,system_architecture,system_variant")
	q.Set("testcases", "t1")
	if got := ids(q.Encode()); !reflect.DeepEqual(got, []float64{float64(newest), 1}) {
		t.Errorf("latest per testcase and arch = %v, want [%d 1]", got, newest)
	}
	// A comma in a data filter is OR, as Greenwave's type=koji_build,brew-build.
	if got := ids("type=brew-build,koji_build&item=b-1-1"); !reflect.DeepEqual(got, []float64{4}) {
		t.Errorf("OR filter = %v, want [4]", got)
	}
	if got := ids("item:like=b-*"); !reflect.DeepEqual(got, []float64{4}) {
		t.Errorf("like filter = %v, want [4]", got)
	}
}

func TestFakeResultsDBListPages(t *testing.T) {
	f := NewFakeResultsDB(t, FakeResultsDBConfig{})
	for i := 0; i < 3; i++ {
		f.AddResult("t", "PASSED", map[string]string{"item": "x"})
	}
	code, body := do(t, "GET", f.URL()+"/results?item=x&limit=2", "")
	if code != 200 || len(body["data"].([]any)) != 2 || body["next"] == nil || body["prev"] != nil {
		t.Errorf("page 0 = %d %v", code, body)
	}
	code, body = do(t, "GET", f.URL()+"/results?item=x&limit=2&page=1", "")
	if code != 200 || len(body["data"].([]any)) != 1 || body["next"] != nil || body["prev"] == nil {
		t.Errorf("page 1 = %d %v", code, body)
	}
}

func TestFakeResultsDBStoresLikeResultsDB(t *testing.T) {
	f := NewFakeResultsDB(t, FakeResultsDBConfig{})
	code, body := do(t, "POST", f.URL()+"/results", `{"outcome":" passed ","testcase":"t","data":{"n":1,"l":["a",2],"b":true}}`)
	if code != http.StatusCreated || body["outcome"] != "PASSED" {
		t.Fatalf("create = %d %v", code, body)
	}
	want := map[string]any{"n": []any{"1"}, "l": []any{"a", "2"}, "b": []any{"True"}}
	if !reflect.DeepEqual(body["data"], want) {
		t.Errorf("data = %v, want values stored as strings %v", body["data"], want)
	}
}

func TestFakeHubRejectsBadRequests(t *testing.T) {
	h := NewFakeHub(t)
	resp, err := http.Post(h.URL(), "text/xml", strings.NewReader("<methodCall><oops/></methodCall>"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "<fault>") || !strings.Contains(string(b), "bad request") {
		t.Errorf("malformed call answered %q, want a fault", b)
	}
	resp, err = http.Get(h.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET answered %d, want 405", resp.StatusCode)
	}
}
