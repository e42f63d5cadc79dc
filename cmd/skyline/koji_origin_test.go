package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest"
)

// TestKojiLogOrigin checks where koji-listen takes the log its signed
// requests are for, all from its own configuration: skyline.origin, else
// the name of skyline.log_key, else the origin of publish.policy; with none
// of them, or a log_key that is no verifier key, it refuses to start.
func TestKojiLogOrigin(t *testing.T) {
	s, err := attest.GenerateKey(attest.KeyEd25519)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := attest.NoteVerifierKey("log.koji-origin.example", s.Public())
	if err != nil {
		t.Fatal(err)
	}
	policy := filepath.Join("..", "..", "testdata", "policy.example.toml") // origin log.skyline.example
	cfg := func(origin, logKey, pol string) *kojiConfig {
		var c kojiConfig
		c.Skyline.Origin, c.Skyline.LogKey, c.Publish.Policy = origin, logKey, pol
		return &c
	}
	for _, tc := range []struct {
		name string
		cfg  *kojiConfig
		want string
	}{
		{"origin over everything", cfg("log.staging.example", vkey, policy), "log.staging.example"},
		{"log_key's name over the policy", cfg("", vkey, policy), "log.koji-origin.example"},
		{"the policy's log", cfg("", "", policy), "log.skyline.example"},
	} {
		got, err := kojiLogOrigin(tc.cfg)
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := kojiLogOrigin(cfg("", "", "")); err == nil || !strings.Contains(err.Error(), "skyline.origin, skyline.log_key or publish.policy is required") {
		t.Errorf("no origin configured: %v", err)
	}
	if _, err := kojiLogOrigin(cfg("", "not a key", "")); err == nil || !strings.Contains(err.Error(), "skyline.log_key") {
		t.Errorf("log_key not a verifier key: %v", err)
	}
}
