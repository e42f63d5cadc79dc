package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"
)

// The configuration files of the network's processes. Each is the
// product's documented file (packaging/*.toml, docs/*.md) with the
// settings that make a whole network run on one machine in minutes:
// short intervals, plain HTTP on loopback, no idle-machine checks.

// toml writes TOML key = value lines.
type toml struct{ bytes.Buffer }

func (t *toml) comment(s string) { fmt.Fprintf(t, "# %s\n", s) }

func (t *toml) table(name string) { fmt.Fprintf(t, "\n[%s]\n", name) }

func (t *toml) array(name string) { fmt.Fprintf(t, "\n[[%s]]\n", name) }

func (t *toml) str(k, v string) { fmt.Fprintf(t, "%s = %s\n", k, quote(v)) }

func (t *toml) strs(k string, vs ...string) {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	fmt.Fprintf(t, "%s = [%s]\n", k, joinComma(q))
}

func (t *toml) dur(k string, d time.Duration) { t.str(k, d.String()) }

func (t *toml) num(k string, v any) { fmt.Fprintf(t, "%s = %v\n", k, v) }

func (t *toml) float(k string, v float64) {
	fmt.Fprintf(t, "%s = %s\n", k, strconv.FormatFloat(v, 'f', -1, 64))
}

// quote makes a TOML basic string: JSON's string escapes (\" \\ \n \t
// \uXXXX ...) are all TOML escapes.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// serveTOML is serve.toml (packaging/serve.toml.example).
func (n *Network) serveTOML(addr string) []byte {
	var t toml
	t.comment("skyline serve: the demo's log and coordinator (packaging/serve.toml.example explains every key)")
	t.str("listen", addr)
	t.str("data_dir", n.path("serve", "data"))
	t.str("origin", Origin)
	t.str("log_key", n.path("keys", keyLog+".key"))
	t.str("coordinator_key", n.path("keys", keyCoordinator+".key"))
	t.strs("admin_keys", n.path("keys", keyAdmin+".pub"))
	t.comment("short intervals: a whole network in minutes")
	t.dur("checkpoint_interval", 500*time.Millisecond)
	t.dur("tick_interval", time.Second)
	t.dur("lease_ttl", 10*time.Minute)
	t.num("default_wanted", len(n.cfg.Scenario.Builders))
	for _, w := range n.Witnesses {
		t.array("witness")
		t.str("name", w.Name)
		t.str("url", w.URL)
		t.str("verifier_key", w.CosignVKey)
	}
	return t.Bytes()
}

// witnessTOML is witness-N/witness.toml (docs/witness.md).
func (n *Network) witnessTOML(i int, addr string) []byte {
	s := n.cfg.Scenario
	var t toml
	t.comment("skyline witness (docs/witness.md)")
	t.str("state_dir", n.path(fmt.Sprintf("witness-%d", i+1), "state"))
	t.str("listen", addr)
	t.str("name", witnessName(i))
	t.str("cosign_key", n.path("keys", witnessKey(i, "cosign")+".key"))
	t.str("verdict_key", n.path("keys", witnessKey(i, "verdict")+".key"))
	t.dur("poll_interval", 500*time.Millisecond)
	t.dur("timeout", 10*time.Second)
	t.table("policy")
	t.comment("the demo's policy: the default, but max_dissent = 0 (see demo.DemoPolicy)")
	t.num("leases", s.Policy.Leases)
	t.num("quorum", s.Policy.Quorum)
	t.num("max_dissent", s.Policy.MaxDissent)
	t.num("require_official_match", s.Policy.RequireOfficialMatch)
	t.table("breaker")
	t.num("window", s.Breaker.Window)
	t.float("threshold", s.Breaker.Threshold)
	t.num("min_sample", s.Breaker.MinSample)
	t.num("mismatches", s.Breaker.Mismatches)
	t.dur("mismatch_window", s.Breaker.MismatchWindow)
	t.array("log")
	t.str("name", "demo")
	t.str("url", n.LogURL)
	t.str("log_key", n.LogVKey)
	t.str("coordinator_key", n.path("keys", keyCoordinator+".pub"))
	return t.Bytes()
}

// builderTOML is builder-NAME/builder.toml (packaging/builder.toml).
func (n *Network) builderTOML(b Builder) []byte {
	var t toml
	t.comment("skyline builder (packaging/builder.toml, docs/builder.md)")
	t.str("coordinator", n.LogURL)
	t.str("key", n.path("keys", "builder-"+b.Operator+".key"))
	t.str("log_key", n.LogVKey)
	t.str("state_dir", b.StateDir)
	t.str("work_dir", n.path("builder-"+b.Operator, "work"))
	t.str("backend", "rpmbuild")
	t.str("build_path", n.cfg.BuildPath)
	if b.Malicious {
		t.comment("MALICIOUS: a wrapper named rpmbuild comes first on the build's PATH")
		t.str("path", n.wrapperDir()+":"+childPath)
	}
	t.num("jobs", 1)
	t.comment("the demo's machine is busy with the demo itself: lease anyway")
	t.float("max_cpu_busy", 1)
	t.num("pause_on_battery", false)
	t.num("min_free_disk", 0)
	t.comment("short intervals: a whole network in minutes")
	t.dur("poll_interval", time.Second)
	t.dur("notice_interval", time.Second)
	t.dur("retry_base", 200*time.Millisecond)
	t.dur("retry_max", 2*time.Second)
	t.dur("stop_grace", 2*time.Second)
	t.dur("build_timeout", 5*time.Minute)
	return t.Bytes()
}

// policyTOML is policy.toml, the verify policy (docs/verify.md).
func (n *Network) policyTOML() []byte {
	s := n.cfg.Scenario
	var t toml
	t.comment("skyline verify policy (docs/verify.md): the log, the coordinator, k of n witnesses, the agreement rules")
	t.num("witness_quorum", s.WitnessQuorum)
	t.table("log")
	t.str("url", n.LogURL)
	t.str("vkey", n.LogVKey)
	t.table("coordinator")
	t.str("public_key_file", "keys/"+keyCoordinator+".pub")
	t.table("agreement")
	t.comment("the default policy but max_dissent = 0: one altered result makes a build disputed")
	t.num("leases", s.Policy.Leases)
	t.num("quorum", s.Policy.Quorum)
	t.num("max_dissent", s.Policy.MaxDissent)
	t.num("require_official_match", s.Policy.RequireOfficialMatch)
	for i, w := range n.Witnesses {
		t.array("witness")
		t.str("name", fmt.Sprintf("witness-%d", i+1))
		t.str("cosignature_vkey", w.CosignVKey)
		t.table("witness.verdict")
		t.str("public_key_file", "keys/"+witnessKey(i, "verdict")+".pub")
	}
	return t.Bytes()
}
