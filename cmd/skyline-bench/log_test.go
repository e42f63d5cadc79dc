package main

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// TestLogBench runs the log benchmark small and checks that it prints every
// key tessera-posix prints (so side-by-side.sh can pair them) with sane values.
func TestLogBench(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"log", "-n", "600", "-size", "300", "-c", "16", "-proofs", "20", "-checkpoint-interval", "20ms", "-dir", t.TempDir()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(out.String()) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			t.Fatalf("not key=value: %q", f)
		}
		kv[k] = v
	}
	for _, k := range []string{"entries_per_s", "published_per_s", "p50_add_ms", "p99_add_ms", "p50_pub_ms", "p99_pub_ms",
		"p50_proof_ms", "p99_proof_ms", "p50_verify_ms", "replay_per_s", "cpu_s_per_1k", "bytes_on_disk"} {
		v, err := strconv.ParseFloat(kv[k], 64)
		if err != nil || v <= 0 {
			t.Errorf("%s=%q, want a positive number", k, kv[k])
		}
	}
	if kv["n"] != "600" || kv["size"] != "300" || kv["c"] != "16" || kv["dedup"] != "on" {
		t.Errorf("echoed parameters wrong: %s", out.String())
	}
	if code := run([]string{"nope"}, &out, &errb); code != 4 {
		t.Errorf("unknown benchmark: exit %d, want 4", code)
	}
	if code := run([]string{"log", "-n", "0"}, &out, &errb); code != 4 {
		t.Errorf("-n 0: exit %d, want 4", code)
	}
}
