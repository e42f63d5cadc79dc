package attest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	env, err := SignRequest(s, "lease", testReqBody{Arches: []string{"x86_64"}, N: 3}, at)
	if err != nil {
		t.Fatal(err)
	}
	var body testReqBody
	req, keyID, err := ParseRequest(env, "lease", requestKeys(s.Verifier()), &body)
	if err != nil {
		t.Fatal(err)
	}
	if keyID != s.KeyID() || req.Action != "lease" || !req.Time.Equal(at) || len(req.Nonce) != 64 {
		t.Fatalf("request %+v by %s", req, keyID)
	}
	if body.N != 3 || len(body.Arches) != 1 || body.Arches[0] != "x86_64" {
		t.Fatalf("body %+v", body)
	}
	env2, _ := SignRequest(s, "lease", testReqBody{}, at)
	req2, _, err := ParseRequest(env2, "lease", requestKeys(s.Verifier()), &testReqBody{})
	if err != nil || req2.Nonce == req.Nonce {
		t.Fatalf("second request: nonce %q reused or %v", req2.Nonce, err)
	}
}

// TestRequestRejections checks one rejection per rule, each with its
// sentinel error, and that a rejected body is left untouched.
func TestRequestRejections(t *testing.T) {
	s := newSigner(t, KeyEd25519)
	other := newSigner(t, KeyEd25519)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).Format(time.RFC3339)
	nonce := strings.Repeat("ab", 32)
	good := `{"action":"lease","time":"` + at + `","nonce":"` + nonce + `","body":{"arches":["x86_64"]}}`
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
		{"signed by another key", rawRequest(t, other, good), ErrUnknownKey},
		{"bad signature", func() []byte {
			var w envelope
			_ = json.Unmarshal(rawRequest(t, s, good), &w)
			sig, _ := base64.StdEncoding.DecodeString(w.Signatures[0].Sig)
			sig[0] ^= 1
			w.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			b, _ := json.Marshal(w)
			return b
		}(), ErrSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := testReqBody{N: 7}
			_, _, err := ParseRequest(c.env, "lease", requestKeys(s.Verifier()), &body)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if body.N != 7 || body.Arches != nil {
				t.Fatalf("rejected request changed the body: %+v", body)
			}
		})
	}
	if _, _, err := ParseRequest(rawRequest(t, s, good), "lease", requestKeys(s.Verifier()), &testReqBody{}); err != nil {
		t.Fatalf("the good request: %v", err)
	}
}

// FuzzParseRequest checks that ParseRequest never panics, and that what it
// accepts was signed by the key and re-parses to the same request.
func FuzzParseRequest(f *testing.F) {
	// The seed corpus in testdata/fuzz/FuzzParseRequest is signed by this
	// fixed key: a valid request, and broken variants of it.
	s, err := NewSigner(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		f.Fatal(err)
	}
	seeds, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParseRequest", "*"))
	if len(seeds) < 5 {
		f.Fatalf("%d seeds in testdata/fuzz/FuzzParseRequest", len(seeds))
	}
	if _, err := os.Stat(seeds[0]); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var body testReqBody
		req, keyID, err := ParseRequest(data, "lease", requestKeys(s.Verifier()), &body)
		if err != nil {
			return
		}
		if keyID != s.KeyID() || req.Action != "lease" || len(req.Nonce) != 64 {
			t.Fatalf("accepted %+v by %s", req, keyID)
		}
		var again testReqBody
		req2, _, err := ParseRequest(data, "lease", requestKeys(s.Verifier()), &again)
		if err != nil || req2.Nonce != req.Nonce || string(req2.Body) != string(req.Body) {
			t.Fatalf("re-parse: %v", err)
		}
	})
}
