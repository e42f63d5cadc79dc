package attest

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envJSON builds an envelope by hand, so that tests can break it anyhow.
func envJSON(payloadType string, payload []byte, sigs ...string) []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `{"payloadType":%q,"payload":%q,"signatures":[`, payloadType, base64.StdEncoding.EncodeToString(payload))
	for i, s := range sigs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(s)
	}
	sb.WriteString("]}")
	return []byte(sb.String())
}

// statementMap returns the payload of a valid attestation as a generic map.
func statementMap(t testing.TB, s *Signer, n int) map[string]any {
	t.Helper()
	envs, err := NewSubjectAttestations(testBuild(), testSubjects(n), s)
	if err != nil {
		t.Fatal(err)
	}
	e, err := Parse(envs[0], ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func signed(t testing.TB, s *Signer, payloadType string, payload []byte) []byte {
	t.Helper()
	env, err := s.SignEnvelope(payloadType, payload)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mutate applies f to a copy of a valid statement and signs the result.
func mutate(t testing.TB, s *Signer, f func(m map[string]any)) []byte {
	t.Helper()
	m := statementMap(t, s, 3)
	f(m)
	return signed(t, s, PayloadInToto, mustJSON(t, m))
}

func pred(m map[string]any, path ...string) map[string]any {
	cur := m["predicate"].(map[string]any)
	for _, p := range path {
		cur = cur[p].(map[string]any)
	}
	return cur
}

func subjects(m map[string]any) []any { return m["subject"].([]any) }

func TestParseRejects(t *testing.T) {
	s := newSigner(t, "ed25519")
	other := newSigner(t, "ed25519")
	now := time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)
	good := signed(t, s, PayloadJob, mustJSON(t, &Job{JobID: "j", Build: testBuild().ID, Wanted: 1, Enqueued: now, Deadline: now.Add(7 * 24 * time.Hour)}))
	var genv envelope
	if err := json.Unmarshal(good, &genv); err != nil {
		t.Fatal(err)
	}
	sig := fmt.Sprintf(`{"keyid":%q,"sig":%q}`, genv.Signatures[0].KeyID, genv.Signatures[0].Sig)
	jobPayload := func(extra string) []byte {
		return signed(t, s, PayloadJob, []byte(`{"job_id":"j","build":{"nvr":"a-1-1","arch":"noarch","srpm_sha256":"`+hexOf("x")+`"},"srpm_url":"","wanted":1,"enqueued":"2026-11-29T11:00:00Z","deadline":"2026-12-06T11:00:00Z"`+extra+`}`))
	}
	keys := func(string) (*Verifier, error) { return s.Verifier(), nil }

	cases := []struct {
		name string
		in   []byte
		keys func(string) (*Verifier, error)
		want error
	}{
		{"too large", append(good, make([]byte, MaxEntrySize)...), nil, ErrTooLarge},
		{"not json", []byte(`{"payloadType":`), nil, ErrSyntax},
		{"bad utf-8", []byte("{\"payloadType\":\"\xff\"}"), nil, ErrSyntax},
		{"payload not base64", []byte(`{"payloadType":"` + PayloadJob + `","payload":"!!!!","signatures":[` + sig + `]}`), nil, ErrBadBase64},
		{"payload unpadded", []byte(`{"payloadType":"` + PayloadJob + `","payload":"QQ","signatures":[` + sig + `]}`), nil, ErrBadBase64},
		{"payload non-canonical bits", []byte(`{"payloadType":"` + PayloadJob + `","payload":"QR==","signatures":[` + sig + `]}`), nil, ErrBadBase64},
		{"payload url-safe base64", []byte(`{"payloadType":"` + PayloadJob + `","payload":"_-8=","signatures":[` + sig + `]}`), nil, ErrBadBase64},
		{"signature not base64", envJSON(PayloadJob, []byte("{}"), fmt.Sprintf(`{"keyid":%q,"sig":"a b"}`, s.KeyID())), nil, ErrBadBase64},
		{"unknown payload type", envJSON("application/json", []byte("{}"), sig), nil, ErrPayloadType},
		{"no signature", envJSON(PayloadJob, []byte("{}")), nil, ErrSignatureCount},
		{"two signatures", envJSON(PayloadJob, []byte("{}"), sig, sig), nil, ErrSignatureCount},
		{"unknown envelope field", []byte(strings.Replace(string(good), `{"payloadType"`, `{"extra":1,"payloadType"`, 1)), nil, ErrUnknownField},
		{"unknown signature field", []byte(strings.Replace(string(good), `{"keyid"`, `{"cert":"x","keyid"`, 1)), nil, ErrUnknownField},
		{"unknown payload field", jobPayload(`,"priority":1`), nil, ErrUnknownField},
		{"duplicate envelope key", []byte(strings.Replace(string(good), `{"payloadType"`, `{"payloadType":"x","payloadType"`, 1)), nil, ErrDuplicateKey},
		{"duplicate payload key", jobPayload(`,"wanted":10`), nil, ErrDuplicateKey},
		{"duplicate key via escape", jobPayload(`,"w\u0061nted":10`), nil, ErrDuplicateKey},
		{"case-folded envelope key", []byte(strings.Replace(string(good), `"payloadType"`, `"PayloadType"`, 1)), nil, ErrCaseFoldedKey},
		{"case-folded payload key", jobPayload(`,"Srpm_URL":"x"`), nil, ErrCaseFoldedKey},
		{"case-folded only payload key", signed(t, s, PayloadAlarmClear, []byte(`{"alarm_index":1,"REASON":"x","at":"2026-11-29T11:00:00Z"}`)), nil, ErrCaseFoldedKey},
		{"kelvin-sign key", signed(t, s, PayloadRevocation, []byte(`{"\u212aey_id":"`+s.KeyID()+`","operator":"a","reason":"r","until":"2026-11-29T11:00:00Z"}`)), nil, ErrCaseFoldedKey},
		{"trailing data on envelope", append(append([]byte{}, good...), []byte(` {}`)...), nil, ErrTrailingData},
		{"trailing data in payload", signed(t, s, PayloadAlarmClear, []byte(`{"alarm_index":1,"reason":"x","at":"2026-11-29T11:00:00Z"} x`)), nil, ErrTrailingData},
		{"statement _type", mutate(t, s, func(m map[string]any) { m["_type"] = "https://in-toto.io/Statement/v0.1" }), nil, ErrStatementType},
		{"predicate type", mutate(t, s, func(m map[string]any) { m["predicateType"] = "https://slsa.dev/provenance/v0.2" }), nil, ErrPredicateType},
		{"build type", mutate(t, s, func(m map[string]any) { pred(m, "buildDefinition")["buildType"] = "https://example.org/evil" }), nil, ErrBuildType},
		{"subjects unsorted", mutate(t, s, func(m map[string]any) { sj := subjects(m); sj[0], sj[1] = sj[1], sj[0] }), nil, ErrSubjects},
		{"subject duplicated", mutate(t, s, func(m map[string]any) { sj := subjects(m); sj[1] = sj[0] }), nil, ErrSubjects},
		{"subject digest not in result set", mutate(t, s, func(m map[string]any) {
			subjects(m)[0].(map[string]any)["digest"].(map[string]any)["skyline-rpm-v1"] = hexOf("evil")
		}), nil, ErrSubjects},
		{"subject unknown digest algorithm", mutate(t, s, func(m map[string]any) {
			subjects(m)[0].(map[string]any)["digest"].(map[string]any)["md5"] = "00"
		}), nil, ErrUnknownField},
		{"subject source rpm", mutate(t, s, func(m map[string]any) { subjects(m)[2].(map[string]any)["name"] = "zz-1-1.src.rpm" }), nil, ErrSubjects},
		{"subject path traversal", mutate(t, s, func(m map[string]any) { subjects(m)[0].(map[string]any)["name"] = "../../etc/a.rpm" }), nil, ErrBadName},
		{"subject slash", mutate(t, s, func(m map[string]any) { subjects(m)[0].(map[string]any)["name"] = "a/b.rpm" }), nil, ErrBadName},
		{"subject NUL", mutate(t, s, func(m map[string]any) { subjects(m)[0].(map[string]any)["name"] = "a\x00.rpm" }), nil, ErrBadName},
		{"subject control char", mutate(t, s, func(m map[string]any) { subjects(m)[0].(map[string]any)["name"] = "a\n.rpm" }), nil, ErrBadName},
		{"nvr without release", mutate(t, s, func(m map[string]any) { pred(m, "buildDefinition", "externalParameters")["nvr"] = "hello-2.12" }), nil, ErrBadName},
		{"nvr dotdot", mutate(t, s, func(m map[string]any) { pred(m, "buildDefinition", "externalParameters")["nvr"] = "..-1-1" }), nil, ErrBadName},
		{"arch with slash", mutate(t, s, func(m map[string]any) { pred(m, "buildDefinition", "externalParameters")["arch"] = "x86_64/../" }), nil, ErrBadName},
		{"bad srpm digest", mutate(t, s, func(m map[string]any) {
			pred(m, "buildDefinition", "externalParameters", "srpm", "digest")["sha256"] = "ABC"
		}), nil, ErrBadField},
		{"part out of range", mutate(t, s, func(m map[string]any) {
			pred(m, "buildDefinition", "internalParameters", "result_set")["part"] = 2
		}), nil, ErrBadField},
		{"builder id of another key", mutate(t, s, func(m map[string]any) {
			pred(m, "runDetails", "builder")["id"] = BuilderID(other.KeyID())
		}), nil, ErrKeyID},
		{"bad keyid", envJSON(PayloadJob, []byte("{}"), `{"keyid":"me","sig":"AAAA"}`), nil, ErrBadField},
		{"job without a deadline", signed(t, s, PayloadJob, mustJSON(t, &Job{JobID: "j", Build: testBuild().ID, Wanted: 1, Enqueued: now})), nil, ErrBadField},
		{"job deadline at its enqueue", signed(t, s, PayloadJob, mustJSON(t, &Job{JobID: "j", Build: testBuild().ID, Wanted: 1, Enqueued: now, Deadline: now})), nil, ErrBadField},
		{"bad lease-end reason", signed(t, s, PayloadLeaseEnd, mustJSON(t, &LeaseEnd{LeaseID: "l", JobID: "j", KeyID: s.KeyID(), Reason: "bored", At: now})), nil, ErrBadField},
		{"signature does not verify", func() []byte {
			var e envelope
			_ = json.Unmarshal(good, &e)
			raw, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
			raw[0] ^= 1
			e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(raw)
			return mustJSON(t, e)
		}(), keys, ErrSignature},
		{"payload swapped under signature", func() []byte {
			var e envelope
			_ = json.Unmarshal(good, &e)
			e.Payload = base64.StdEncoding.EncodeToString(mustJSON(t, &Job{JobID: "k", Build: testBuild().ID, Wanted: 9, Enqueued: now, Deadline: now.Add(7 * 24 * time.Hour)}))
			return mustJSON(t, e)
		}(), keys, ErrSignature},
		{"signed by another key", signed(t, other, PayloadJob, mustJSON(t, &Job{JobID: "j", Build: testBuild().ID, Wanted: 1, Enqueued: now, Deadline: now.Add(7 * 24 * time.Hour)})), keys, ErrKeyID},
		{"unknown key", good, func(string) (*Verifier, error) { return nil, nil }, ErrUnknownKey},
	}
	seen := map[error]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := Parse(c.in, ParseOptions{Keys: c.keys})
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if e != nil {
				t.Fatal("an entry came back with an error")
			}
			if !strings.HasPrefix(err.Error(), "attest: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
		seen[c.want] = true
	}
	for _, e := range []error{ErrTooLarge, ErrSyntax, ErrBadBase64, ErrPayloadType, ErrSignatureCount, ErrUnknownField,
		ErrDuplicateKey, ErrCaseFoldedKey, ErrTrailingData, ErrStatementType, ErrPredicateType, ErrBuildType,
		ErrSubjects, ErrBadName, ErrBadField, ErrKeyID, ErrSignature, ErrUnknownKey} {
		if !seen[e] {
			t.Errorf("no case for %v", e)
		}
	}
	// The good envelope passes, so the cases fail for their own reason.
	if _, err := Parse(good, ParseOptions{Keys: keys}); err != nil {
		t.Fatal(err)
	}
}

func TestParseAcceptsEscapedExactKeys(t *testing.T) {
	s := newSigner(t, "ed25519")
	env := signed(t, s, PayloadAlarmClear, []byte(`{"alarm_index":1,"re\u0061son":"x","at":"2026-11-29T11:00:00Z"}`))
	e, err := Parse(env, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if e.Value.(*AlarmClear).Reason != "x" {
		t.Fatalf("%+v", e.Value)
	}
}

func TestCheckNVR(t *testing.T) {
	for _, ok := range []string{"hello-2.12.1-5.fc41", "python3-foo-bar-1.0~rc1-0.1.fc41", "gcc-c++-14.2.1-3.fc41", "a-1-1"} {
		if err := CheckNVR(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "hello", "hello-1", "-1-1", "a--1", "a-1-", "a b-1-1", "a/b-1-1", "../a-1-1", "a-1-1\x00", "a-1-1\n", strings.Repeat("a", 300) + "-1-1"} {
		if err := CheckNVR(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("%q: %v, want ErrBadName", bad, err)
		}
	}
}

// fuzzSeeds are valid envelopes of every type; testdata/fuzz/FuzzParse
// holds them and mutations of them (see TestWriteFuzzCorpus).
func fuzzSeeds(t testing.TB) [][]byte {
	s := newSigner(t, "ed25519")
	e := newSigner(t, "ecdsa")
	now := time.Date(2026, 11, 29, 11, 0, 0, 0, time.UTC)
	var seeds [][]byte
	for _, c := range validPayloads(t, s, now) {
		env, err := Sign(s, c.typ, c.v)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, env)
	}
	for _, signer := range []*Signer{s, e} {
		envs, err := NewSubjectAttestations(testBuild(), testSubjects(3), signer)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, envs...)
	}
	b := testBuild()
	b.Official = true
	envs, err := NewSubjectAttestations(b, testSubjects(1), s)
	if err != nil {
		t.Fatal(err)
	}
	return append(seeds, envs...)
}

func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Parse(data, ParseOptions{})
		if err != nil {
			if e != nil {
				t.Fatal("entry with error")
			}
			return
		}
		// Whatever parses obeys the rules the log relies on.
		if len(data) > MaxEntrySize || len(e.Signatures) != 1 || e.KeyID != e.Signatures[0].KeyID {
			t.Fatalf("accepted bad envelope: %d bytes, %d signatures", len(data), len(e.Signatures))
		}
		if a := e.Attestation(); a != nil {
			if err := CheckNVR(a.Build.NVR); err != nil {
				t.Fatal(err)
			}
			for i, sub := range a.Subjects {
				if err := CheckRPMName(sub.Name); err != nil {
					t.Fatal(err)
				}
				if i > 0 && a.Subjects[i-1].Name >= sub.Name {
					t.Fatal("unsorted subjects accepted")
				}
			}
			if a.ResultSet.Parts == 1 && ResultSetDigest(a.Subjects) != a.ResultSet.Digest {
				t.Fatal("single-part result set with a wrong digest accepted")
			}
		}
	})
}

// TestFuzzCorpus checks that the committed seed corpus holds a valid
// envelope of every payload type; with -update-corpus it rewrites it.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if *updateCorpus {
		writeCorpus(t, dir)
	}
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		in, err := readCorpusFile(data)
		if err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
		if e, err := Parse(in, ParseOptions{}); err == nil {
			types[e.PayloadType] = true
		}
	}
	if len(types) != 10 {
		t.Fatalf("corpus has valid entries of %d payload types, want 10: %v", len(types), types)
	}
}

// Parse runs concurrently in the log; the race detector checks the shared
// schema cache.
func TestParseConcurrent(t *testing.T) {
	seeds := fuzzSeeds(t)
	done := make(chan error, 8)
	for range 8 {
		go func() {
			for _, s := range seeds {
				if _, err := Parse(s, ParseOptions{}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
