package attest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Origins of the logs in the request tests: the one verifying, and another
// that shares its keys (a staging log of the same deployment).
const (
	reqOrigin   = "log.skyline.example/prod"
	otherOrigin = "log.skyline.example/staging"
)

type testReqBody struct {
	Arches []string `json:"arches"`
	N      int      `json:"n,omitempty"`
}

func requestKeys(v *Verifier) func(string) (*Verifier, error) {
	return func(id string) (*Verifier, error) {
		if id != v.KeyID() {
			return nil, ErrUnknownKey
		}
		return v, nil
	}
}

// rawRequest signs a hand-written request payload.
func rawRequest(t testing.TB, s *Signer, payload string) []byte {
	t.Helper()
	env, err := s.SignEnvelope(PayloadRequest, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// TestRequestRoundTrip signs and parses a request, and checks the fields.
func TestRequestRoundTrip(t *testing.T) {
	s := newSigner(t, KeyEd25519)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	env, err := SignRequest(s, reqOrigin, "lease", testReqBody{Arches: []string{"x86_64"}, N: 3}, at)
	if err != nil {
		t.Fatal(err)
	}
	var body testReqBody
	req, keyID, err := ParseRequest(env, reqOrigin, "lease", requestKeys(s.Verifier()), &body)
	if err != nil {
		t.Fatal(err)
	}
	if keyID != s.KeyID() || req.Action != "lease" || req.Log != reqOrigin || !req.Time.Equal(at) || len(req.Nonce) != 64 {
		t.Fatalf("request %+v by %s", req, keyID)
	}
	if body.N != 3 || len(body.Arches) != 1 || body.Arches[0] != "x86_64" {
		t.Fatalf("body %+v", body)
	}
	env2, _ := SignRequest(s, reqOrigin, "lease", testReqBody{}, at)
	req2, _, err := ParseRequest(env2, reqOrigin, "lease", requestKeys(s.Verifier()), &testReqBody{})
	if err != nil || req2.Nonce == req.Nonce {
		t.Fatalf("second request: nonce %q reused or %v", req2.Nonce, err)
	}
	// The payload names the log in the clear, under "log".
	var w envelope
	if err := json.Unmarshal(env, &w); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(w.Payload)
	if !bytes.Contains(payload, []byte(`"log":"`+reqOrigin+`"`)) {
		t.Fatalf("payload does not name the log: %s", payload)
	}
}

// TestRequestRejections checks one rejection per rule, each with its
// sentinel error, and that a rejected body is left untouched.
func TestRequestRejections(t *testing.T) {
	s := newSigner(t, KeyEd25519)
	other := newSigner(t, KeyEd25519)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).Format(time.RFC3339)
	nonce := strings.Repeat("ab", 32)
	good := `{"action":"lease","log":"` + reqOrigin + `","time":"` + at + `","nonce":"` + nonce + `","body":{"arches":["x86_64"]}}`
	entry, err := Sign(s, PayloadAlarmClear, &AlarmClear{AlarmIndex: 1, Reason: "r", At: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  []byte
		want error
	}{
		{"too large", []byte(strings.Repeat(" ", MaxRequestSize+1)), ErrTooLarge},
		{"not JSON", []byte("{"), ErrSyntax},
		{"log entry as request", entry, ErrPayloadType},
		{"wrong action", rawRequest(t, s, strings.Replace(good, `"lease"`, `"enqueue"`, 1)), ErrAction},
		{"unknown field in body", rawRequest(t, s, strings.Replace(good, `"arches"`, `"arches":[],"x"`, 1)), ErrUnknownField},
		{"duplicate key in body", rawRequest(t, s, strings.Replace(good, `{"arches"`, `{"arches":[],"arches"`, 1)), ErrDuplicateKey},
		{"case-folded key", rawRequest(t, s, strings.Replace(good, `"action"`, `"Action"`, 1)), ErrCaseFoldedKey},
		{"unknown top-level field", rawRequest(t, s, strings.Replace(good, `{"action"`, `{"extra":1,"action"`, 1)), ErrUnknownField},
		{"trailing data", rawRequest(t, s, good+"{}"), ErrTrailingData},
		{"no time", rawRequest(t, s, strings.Replace(good, `"time":"`+at+`",`, ``, 1)), ErrBadField},
		{"short nonce", rawRequest(t, s, strings.Replace(good, nonce, "abcd", 1)), ErrBadField},
		{"no log", rawRequest(t, s, strings.Replace(good, `"log":"`+reqOrigin+`",`, ``, 1)), ErrBadField},
		{"empty log", rawRequest(t, s, strings.Replace(good, reqOrigin, "", 1)), ErrBadField},
		{"log with a space", rawRequest(t, s, strings.Replace(good, reqOrigin, "log example", 1)), ErrBadField},
		{"log not a string", rawRequest(t, s, strings.Replace(good, `"`+reqOrigin+`"`, `["`+reqOrigin+`"]`, 1)), ErrSyntax},
		{"duplicate log key", rawRequest(t, s, strings.Replace(good, `"log":`, `"log":"`+reqOrigin+`","log":`, 1)), ErrDuplicateKey},
		{"case-folded log key", rawRequest(t, s, strings.Replace(good, `"log":`, `"Log":`, 1)), ErrCaseFoldedKey},
		{"for another log", rawRequest(t, s, strings.Replace(good, reqOrigin, otherOrigin, 1)), ErrAudience},
		{"for another log, bad signature", flipRequestSig(t, rawRequest(t, s, strings.Replace(good, reqOrigin, otherOrigin, 1))), ErrSignature},
		{"signed by another key", rawRequest(t, other, good), ErrUnknownKey},
		{"bad signature", flipRequestSig(t, rawRequest(t, s, good)), ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := testReqBody{N: 7}
			_, _, err := ParseRequest(c.env, reqOrigin, "lease", requestKeys(s.Verifier()), &body)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if body.N != 7 || body.Arches != nil {
				t.Fatalf("rejected request changed the body: %+v", body)
			}
		})
	}
	if _, _, err := ParseRequest(rawRequest(t, s, good), reqOrigin, "lease", requestKeys(s.Verifier()), &testReqBody{}); err != nil {
		t.Fatalf("the good request: %v", err)
	}
}

// TestRequestAudience checks the binding of a request to one log: a
// request signed for one log is refused by another log that trusts the
// same key, with ErrAudience and the body untouched, and is accepted by
// the log it names; neither side accepts a missing or malformed origin.
func TestRequestAudience(t *testing.T) {
	s := newSigner(t, KeyEd25519)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	env, err := SignRequest(s, otherOrigin, "lease", testReqBody{Arches: []string{"x86_64"}}, at)
	if err != nil {
		t.Fatal(err)
	}
	body := testReqBody{N: 7}
	if _, _, err := ParseRequest(env, reqOrigin, "lease", requestKeys(s.Verifier()), &body); !errors.Is(err, ErrAudience) {
		t.Fatalf("request for %s parsed by %s: %v, want ErrAudience", otherOrigin, reqOrigin, err)
	}
	if body.N != 7 || body.Arches != nil {
		t.Fatalf("refused request changed the body: %+v", body)
	}
	if req, _, err := ParseRequest(env, otherOrigin, "lease", requestKeys(s.Verifier()), &body); err != nil || req.Log != otherOrigin {
		t.Fatalf("request parsed by the log it names: %+v, %v", req, err)
	}
	// An origin that differs only in a trailing slash or case is another log.
	for _, o := range []string{reqOrigin + "/", strings.ToUpper(reqOrigin)} {
		if _, _, err := ParseRequest(env, o, "lease", requestKeys(s.Verifier()), &testReqBody{}); !errors.Is(err, ErrAudience) {
			t.Errorf("request for %s parsed by %s: %v, want ErrAudience", otherOrigin, o, err)
		}
	}
	for _, bad := range []string{"", "log example", "log+example", "log\nexample", strings.Repeat("a", maxOriginLen+1)} {
		if _, err := SignRequest(s, bad, "lease", testReqBody{}, at); !errors.Is(err, ErrBadField) {
			t.Errorf("SignRequest for origin %q: %v, want ErrBadField", bad, err)
		}
		if _, _, err := ParseRequest(env, bad, "lease", requestKeys(s.Verifier()), &testReqBody{}); !errors.Is(err, ErrBadField) {
			t.Errorf("ParseRequest as origin %q: %v, want ErrBadField", bad, err)
		}
	}
}

// TestCheckOrigin checks the origins a request may name: C2SP
// tlog-checkpoint origins that are also note key names.
func TestCheckOrigin(t *testing.T) {
	for _, o := range []string{"log.skyline.example/prod", "example.com", "sum.golang.org", "café.example/log", strings.Repeat("a", maxOriginLen)} {
		if err := CheckOrigin(o); err != nil {
			t.Errorf("CheckOrigin(%q) = %v", o, err)
		}
	}
	// Not note key names (spaces, '+'), control characters, bad UTF-8, too long.
	for _, o := range []string{"", "a b", "rekor.sigstore.dev - 1193050959916656506", "a+b", "a\tb", "a\u00a0b", "a\u2003b", "a\x7fb", "\xff", strings.Repeat("a", maxOriginLen+1)} {
		if err := CheckOrigin(o); !errors.Is(err, ErrBadField) {
			t.Errorf("CheckOrigin(%q) = %v, want ErrBadField", o, err)
		}
	}
}

// flipRequestSig flips a bit of an envelope's signature.
func flipRequestSig(t testing.TB, env []byte) []byte {
	t.Helper()
	var w envelope
	if err := json.Unmarshal(env, &w); err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(w.Signatures[0].Sig)
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	w.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
	b, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The FuzzParseRequest corpus is signed by a fixed key for a fixed log.
const fuzzReqOrigin = "log.skyline.example/fuzz"

func fuzzReqSigner(t testing.TB) *Signer {
	t.Helper()
	s, err := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// requestSeeds are the FuzzParseRequest seeds by file name, each with the
// error ParseRequest must return for it (nil: accepted).
func requestSeeds(t testing.TB) map[string]struct {
	data []byte
	want error
} {
	s := fuzzReqSigner(t)
	good := `{"action":"lease","log":"` + fuzzReqOrigin + `","time":"2001-09-09T01:46:40Z","nonce":"` + strings.Repeat("ab", 32) + `","body":{"arches":["x86_64"]}}`
	valid := rawRequest(t, s, good)
	signed, err := SignRequest(s, fuzzReqOrigin, "lease", testReqBody{Arches: []string{"x86_64"}, N: 2}, time.Unix(1e9, 0))
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte { return rawRequest(t, s, strings.Replace(good, old, new, 1)) }
	type seed = struct {
		data []byte
		want error
	}
	return map[string]seed{
		"valid":         {valid, nil},
		"valid-signed":  {signed, nil},
		"no-body":       {edit(`,"body":{"arches":["x86_64"]}`, ``), nil},
		"truncated":     {valid[:len(valid)/2], ErrSyntax},
		"trailing":      {append(bytes.Clone(valid), '}'), ErrTrailingData},
		"casefold":      {edit(`"action"`, `"ACTION"`), ErrCaseFoldedKey},
		"dupkey":        {edit(`{"arches"`, `{"arches":[],"arches"`), ErrDuplicateKey},
		"unknown-field": {edit(`"arches":[`, `"arches":[],"x":[`), ErrUnknownField},
		"wrong-action":  {edit(`"lease"`, `"jobs"`), ErrAction},
		"wrong-log":     {edit(fuzzReqOrigin, otherOrigin), ErrAudience},
		"no-log":        {edit(`"log":"`+fuzzReqOrigin+`",`, ``), ErrBadField},
		"bad-log":       {edit(fuzzReqOrigin, "log+example"), ErrBadField},
	}
}

// TestRequestFuzzCorpus checks that every committed FuzzParseRequest seed
// still gets its outcome (so the corpus reaches the accepting path and each
// refusal); with -update-corpus it rewrites the corpus.
func TestRequestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParseRequest")
	seeds := requestSeeds(t)
	if *updateCorpus {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, sd := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(sd.data)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := fuzzReqSigner(t)
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(seeds) {
		t.Errorf("%d files in %s, want the %d seeds", len(files), dir, len(seeds))
	}
	for _, f := range files {
		sd, ok := seeds[f.Name()]
		if !ok {
			t.Errorf("%s: not a known seed", f.Name())
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := readCorpusFile(raw)
		if err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		_, _, err = ParseRequest(in, fuzzReqOrigin, "lease", requestKeys(s.Verifier()), &testReqBody{})
		if sd.want == nil && err != nil || sd.want != nil && !errors.Is(err, sd.want) {
			t.Errorf("%s: %v, want %v", f.Name(), err, sd.want)
		}
	}
}

// FuzzParseRequest checks that ParseRequest never panics, and that what it
// accepts was signed by the key and re-parses to the same request.
func FuzzParseRequest(f *testing.F) {
	// The seed corpus in testdata/fuzz/FuzzParseRequest is signed by this
	// fixed key for fuzzReqOrigin: valid requests, and broken variants of
	// them (TestRequestFuzzCorpus).
	s := fuzzReqSigner(f)
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseRequest", "*"))
	if len(seeds) < 5 {
		f.Fatalf("%d seeds in testdata/fuzz/FuzzParseRequest", len(seeds))
	}
	if _, err := os.Stat(seeds[0]); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body testReqBody
		req, keyID, err := ParseRequest(data, fuzzReqOrigin, "lease", requestKeys(s.Verifier()), &body)
		if err != nil {
			return
		}
		if keyID != s.KeyID() || req.Action != "lease" || req.Log != fuzzReqOrigin || len(req.Nonce) != 64 {
			t.Fatalf("accepted %+v by %s", req, keyID)
		}
		var again testReqBody
		req2, _, err := ParseRequest(data, fuzzReqOrigin, "lease", requestKeys(s.Verifier()), &again)
		if err != nil || req2.Nonce != req.Nonce || string(req2.Body) != string(req.Body) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
