package koji

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResultListRecorded(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "results_latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := decodeJSON(bytes.NewReader(b), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	list, err := ResultListFromJSON(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != 58123456 || list[0].Outcome != "PASSED" || list[0].Testcase != Testcase ||
		list[0].Data["log_index"][0] != "1234" {
		t.Errorf("list = %+v", list)
	}
}

func TestResultJSONRejects(t *testing.T) {
	ok := `{"id":1,"testcase":{"name":"t"},"outcome":"PASSED","data":{}}`
	for _, tt := range []struct{ name, body string }{
		{"duplicate key", `{"data":[],"data":[]}`},
		{"unknown member", `{"data":[],"surprise":1}`},
		{"case-folded member", `{"Data":[]}`},
		{"unknown result member", `{"data":[{"id":1,"testcase":{"name":"t"},"outcome":"PASSED","Outcome":"FAILED"}]}`},
		{"duplicate result member", `{"data":[{"id":1,"testcase":{"name":"t"},"outcome":"PASSED","outcome":"FAILED"}]}`},
		{"trailing data", `{"data":[` + ok + `]} {}`},
		{"id not a number", `{"data":[{"id":"1","testcase":{"name":"t"},"outcome":"PASSED"}]}`},
		{"data values not lists", `{"data":[{"id":1,"testcase":{"name":"t"},"outcome":"PASSED","data":{"item":"x"}}]}`},
		{"too deep", strings.Repeat("[", 40) + strings.Repeat("]", 40)},
		{"not JSON", `<html>`},
	} {
		v, err := decodeJSON(strings.NewReader(tt.body), 1<<20)
		if err == nil {
			_, err = ResultListFromJSON(v)
		}
		if !errors.Is(err, ErrBadJSON) {
			t.Errorf("%s: err = %v, want ErrBadJSON", tt.name, err)
		}
	}
	if _, err := decodeJSON(strings.NewReader(`{"data":[]}`+strings.Repeat(" ", 100)), 50); !errors.Is(err, ErrBadJSON) {
		t.Errorf("oversized body: err = %v, want ErrBadJSON", err)
	}
}

// FuzzResultList feeds ResultsDB answers to the strict JSON reader: it
// must never panic, and what it accepts must have an id and an outcome.
func FuzzResultList(f *testing.F) {
	b, err := os.ReadFile(filepath.Join("testdata", "results_latest.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`{"data":[],"prev":null,"next":null}`))
	f.Add([]byte(`{"data":[{"id":1,"testcase":{"name":"t"},"outcome":"PASSED","data":{"a":["b"]}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		v, err := decodeJSON(bytes.NewReader(body), 1<<20)
		if err != nil {
			return
		}
		list, err := ResultListFromJSON(v, "prev", "next")
		if err != nil {
			return
		}
		for _, r := range list {
			if r.Outcome == "" && !bytes.Contains(body, []byte(`"outcome"`)) {
				t.Fatalf("accepted a result without an outcome: %s", body)
			}
		}
	})
}
