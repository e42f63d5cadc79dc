package witness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const examplePolicy = "../testdata/policy.example.toml"

// TestPolicyExample: the documented example loads, with its values and
// the defaults filled in.
func TestPolicyExample(t *testing.T) {
	p, err := LoadVerifyPolicy(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	if p.WitnessQuorum != 2 || len(p.Witnesses) != 3 || p.Log.Origin != "log.skyline.example" || p.Log.URL != "https://log.skyline.example" {
		t.Fatalf("policy %+v", p)
	}
	if p.MaxCosignatureAge != 24*time.Hour {
		t.Errorf("max_cosignature_age %v, want 24h", p.MaxCosignatureAge)
	}
	if *p.Agreement != DefaultPolicy() {
		t.Errorf("agreement %+v, want the defaults", *p.Agreement)
	}
	pub, err := NoteKeyPublic(p.Log.VKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(pub) != 32 || p.coordinator == nil || len(p.verdictKeys) != 3 || len(p.cosigners) != 3 {
		t.Fatalf("keys not loaded")
	}
	for i, w := range p.Witnesses {
		v, name, ok := p.verdictVerifier(p.verdicts[i].KeyID())
		if !ok || name != w.Name || v.KeyID() != p.verdicts[i].KeyID() {
			t.Errorf("witness %s: verdict key not found", w.Name)
		}
	}
}

// TestPolicyRejects: every malformed policy is refused with ErrPolicyFile
// and an error that says what is wrong.
func TestPolicyRejects(t *testing.T) {
	base, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	ex := string(base)
	firstPEM := ex[strings.Index(ex, "-----BEGIN") : strings.Index(ex, "-----END PUBLIC KEY-----")+len("-----END PUBLIC KEY-----")]
	cases := []struct{ name, policy, says string }{
		{"unknown key", "retries = 3\n" + ex, "unknown keys retries"},
		{"unknown nested key", strings.Replace(ex, "quorum = 5", "quorum = 5\nquorom = 4", 1), "agreement.quorom"},
		{"k too large", strings.Replace(ex, "witness_quorum = 2", "witness_quorum = 4", 1), "witness_quorum 4"},
		{"k negative", strings.Replace(ex, "witness_quorum = 2", "witness_quorum = -1", 1), "witness_quorum -1"},
		{"no log key", strings.Replace(ex, "vkey = ", "# vkey = ", 1), "log.vkey is required"},
		{"bad log key", strings.Replace(ex, "log.skyline.example+b7095813", "log.skyline.example+b7095814", 1), "log.vkey"},
		{"no witnesses", ex[:strings.Index(ex, "[[witness]]")], "at least one"},
		{"repeated name", strings.Replace(ex, `name = "witness-b"`, `name = "witness-a"`, 1), "name empty or repeated"},
		{"bad cosignature key", strings.Replace(ex, "witness-a.example+11ee8907", "witness-a.example+11ee8908", 1), "cosignature_vkey"},
		{"repeated verdict key", strings.Replace(ex, "MCowBQYDK2VwAyEAc5cS2XQDFtvcmGjqt9mqoJ+M52C4BmZyZEG/Q2F5HRA=", "MCowBQYDK2VwAyEAttV1V5JYIaSHGhP7wWCk+ytnEpsESRHCFa2gQKBsIfU=", 1), "verdict key repeated"},
		{"both key forms", strings.Replace(ex, "public_key = \"\"\"\n"+firstPEM, "public_key_file = \"x.pub\"\npublic_key = \"\"\"\n"+firstPEM, 1), "both public_key and public_key_file"},
		{"missing key file", strings.Replace(ex, "public_key = \"\"\"\n"+firstPEM+"\n\"\"\"", "public_key_file = \"missing.pub\"", 1), "missing.pub"},
		{"negative age", strings.Replace(ex, `max_cosignature_age = "24h"`, `max_cosignature_age = "-1h"`, 1), "negative"},
		{"bad age", strings.Replace(ex, `max_cosignature_age = "24h"`, `max_cosignature_age = "a day"`, 1), ""},
		{"bad agreement", strings.Replace(ex, "max_dissent = 1", "max_dissent = 5", 1), "max dissent 5"},
		{"not toml", "witness_quorum = = 2", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseVerifyPolicy([]byte(tc.policy), t.TempDir())
			if !errors.Is(err, ErrPolicyFile) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v, want ErrPolicyFile saying %q", err, tc.says)
			}
		})
	}
}

// TestPolicyKeyFile: key files are read relative to the policy file.
func TestPolicyKeyFile(t *testing.T) {
	ex, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	s := string(ex)
	pem := s[strings.Index(s, "-----BEGIN") : strings.Index(s, "-----END PUBLIC KEY-----")+len("-----END PUBLIC KEY-----\n")]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.pub"), []byte(pem), 0o644); err != nil {
		t.Fatal(err)
	}
	s = strings.Replace(s, "public_key = \"\"\"\n"+pem+"\"\"\"", "public_key_file = \"a.pub\"", 1)
	if err := os.WriteFile(filepath.Join(dir, "policy.toml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadVerifyPolicy(filepath.Join(dir, "policy.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := ParseVerifyPolicy(ex, ".")
	if err != nil {
		t.Fatal(err)
	}
	if p.verdicts[0].KeyID() != want.verdicts[0].KeyID() {
		t.Fatalf("key file gives %s, inline key %s", p.verdicts[0].KeyID(), want.verdicts[0].KeyID())
	}
}

// FuzzParseVerifyPolicy: any input is either refused with ErrPolicyFile or
// gives a usable policy.
func FuzzParseVerifyPolicy(f *testing.F) {
	ex, err := os.ReadFile(examplePolicy)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ex)
	f.Add([]byte("witness_quorum = 1\n[log]\nvkey = \"x+00000000+AQ==\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p, err := ParseVerifyPolicy(data, dir)
		if err != nil {
			if !errors.Is(err, ErrPolicyFile) {
				t.Fatalf("error %v is not ErrPolicyFile", err)
			}
			return
		}
		if p.WitnessQuorum < 1 || p.WitnessQuorum > len(p.Witnesses) || p.logVerifier == nil || p.coordinator == nil ||
			len(p.cosigners) != len(p.Witnesses) || len(p.verdicts) != len(p.Witnesses) || p.Agreement.Validate() != nil {
			t.Fatalf("accepted an unusable policy: %+v", p)
		}
	})
}
