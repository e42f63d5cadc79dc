package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// fuzzBuilder is the fixed builder key the seed corpus of FuzzSubmit is
// signed with.
func fuzzBuilder(t testing.TB) *attest.Signer {
	s, err := attest.NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzSubmit sends arbitrary bodies to POST /submit and POST /lease of a
// served log where the seed corpus's key is an enrolled builder holding a
// lease. Whatever the body: no 5xx, an error answer is JSON with a known
// code, and an answer other than 200 leaves the tree as it was.
func FuzzSubmit(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzSubmit", "*"))
	if len(seeds) < 5 {
		f.Fatalf("%d seeds in testdata/fuzz/FuzzSubmit", len(seeds))
	}
	if _, err := os.Stat(seeds[0]); err != nil {
		f.Fatal(err)
	}
	e := newEnv(f, envOptions{api: Config{KeyRate: -1, SubmitRate: -1}})
	b := fuzzBuilder(f)
	if _, err := e.svc.Enrol(context.Background(), attest.Enrolment{KeyID: b.KeyID(), PublicKey: string(b.PublicPEM()), Role: attest.RoleBuilder, Operator: "fuzz", Contact: "c"}); err != nil {
		f.Fatal(err)
	}
	e.enqueue("hello-1.0-1", 1)
	e.lease(b)
	known := map[string]bool{}
	for _, k := range errorKinds {
		known[k.code] = true
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/submit", "/lease"} {
			before, _ := e.log.Size()
			req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			e.srv.Handler().ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("%s: %d %s", path, w.Code, w.Body)
			}
			if w.Code == http.StatusOK {
				continue
			}
			var eb ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || !known[eb.Code] {
				t.Fatalf("%s: %d with body %q", path, w.Code, w.Body)
			}
			if after, _ := e.log.Size(); after != before {
				t.Fatalf("%s: refused with %s, but the tree grew from %d to %d", path, eb.Code, before, after)
			}
		}
	})
}

// FuzzCheckpointSize checks the parsers of numbers from outside (query
// parameters, a checkpoint's size line): what they accept is canonical
// decimal and prints back to the same text.
func FuzzCheckpointSize(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzCheckpointSize", "*"))
	if len(seeds) < 3 {
		f.Fatalf("%d seeds in testdata/fuzz/FuzzCheckpointSize", len(seeds))
	}
	f.Fuzz(func(t *testing.T, note []byte) {
		size, err := CheckpointSize(note)
		if err != nil {
			return
		}
		line := bytes.SplitN(note, []byte("\n"), 3)[1]
		if strconv.FormatUint(size, 10) != string(line) {
			t.Fatalf("accepted size line %q as %d", line, size)
		}
		if n, err := parseUint("n", string(line)); err != nil || n != size {
			t.Fatalf("parseUint(%q) = %d, %v", line, n, err)
		}
	})
}
