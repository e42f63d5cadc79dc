package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// signReq signs a request to the test log as k at t.
func signReq(t testing.TB, k *attest.Signer, action string, body any, at time.Time) []byte {
	t.Helper()
	return signReqFor(t, k, testOrigin, action, body, at)
}

// signReqFor signs a request to the log of origin as k at t.
func signReqFor(t testing.TB, k *attest.Signer, origin, action string, body any, at time.Time) []byte {
	t.Helper()
	b, err := attest.SignRequest(k, origin, action, body, at)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// otherLog is the origin of another log that trusts the same keys (the
// staging log of the same deployment).
const otherLog = "log.skyline.example/staging"

// wireEnv is a DSSE envelope as JSON, for tests that break it.
type wireEnv struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
	Signatures  []struct {
		KeyID string `json:"keyid"`
		Sig   string `json:"sig"`
	} `json:"signatures"`
}

func mutateEnv(t testing.TB, env []byte, f func(*wireEnv)) []byte {
	t.Helper()
	var w wireEnv
	if err := json.Unmarshal(env, &w); err != nil {
		t.Fatal(err)
	}
	f(&w)
	out, err := json.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func flipSig(t testing.TB, env []byte) []byte {
	return mutateEnv(t, env, func(w *wireEnv) {
		sig, err := base64.StdEncoding.DecodeString(w.Signatures[0].Sig)
		if err != nil {
			t.Fatal(err)
		}
		sig[len(sig)/2] ^= 1
		w.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
	})
}

// state is what bad input must not change.
type state struct {
	size       uint64
	root       []byte
	checkpoint []byte
	lookup     string
	jobs       string
}

func (e *env) state(nvr string) state {
	e.t.Helper()
	ctx := context.Background()
	size, root := e.log.Size()
	// Let the checkpoint catch up with the durable tree first, so that a
	// checkpoint signed during the case is a change.
	cp, err := e.log.WaitCheckpoint(ctx, size)
	if err != nil {
		e.t.Fatal(err)
	}
	refs, err := e.log.Lookup(ctx, nvr)
	if err != nil {
		e.t.Fatal(err)
	}
	lk, _ := json.Marshal(refs)
	jobs, _ := json.Marshal(e.svc.Jobs())
	return state{size, root, cp, string(lk), string(jobs)}
}

// TestBadInput sends each kind of bad input over real HTTP and checks the
// documented status and error code, and that the tree, the checkpoint, the
// NVR index and the coordinator's jobs are unchanged afterwards.
func TestBadInput(t *testing.T) {
	e := newEnv(t, envOptions{api: Config{ReadHeaderTimeout: 300 * time.Millisecond, KeyRate: -1}})
	ctx := context.Background()
	const nvr = "hello-1.0-1"
	alice := e.enrol(attest.RoleBuilder, "alice")
	bob := e.enrol(attest.RoleBuilder, "bob")
	carol := e.enrol(attest.RoleBuilder, "carol")
	wit := e.enrol(attest.RoleWitness, "wendy")
	stranger := newKey(t)
	job := e.enqueue(nvr, 5)
	other := e.enqueue("other-2.0-1", 5)
	la := e.lease(alice)
	lb := e.lease(bob)
	lc := e.lease(carol)
	for _, l := range []*attest.Lease{la, lb, lc} {
		if l.JobID != job.JobID && l.JobID != other.JobID {
			t.Fatalf("lease on job %s", l.JobID)
		}
	}
	// Leases of alice and bob on the same job, for the wrong-holder cases.
	if la.JobID != lb.JobID {
		lb = e.lease(bob)
		if la.JobID != lb.JobID {
			t.Fatalf("bob has no lease on alice's job")
		}
	}
	if _, err := e.client(e.admin).Revoke(ctx, carol.KeyID(), "test"); err != nil {
		t.Fatal(err)
	}
	good := attestation(t, alice, la.Build, la.LeaseID, "A")
	otherBuild := other.Build
	if la.JobID == other.JobID {
		otherBuild = job.Build
	}
	withBody := func(b []byte, f func(string) string) []byte { return []byte(f(string(b))) }
	get := func(path string) func() (int, string) {
		return func() (int, string) {
			req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			return e.send(req)
		}
	}
	// getOpaque sends path exactly as written, so that the client cannot
	// clean or re-encode it.
	getOpaque := func(path string) func() (int, string) {
		return func() (int, string) {
			req, err := http.NewRequest(http.MethodGet, e.url+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = path
			req.URL.RawPath = ""
			return e.send(req)
		}
	}
	post := func(path string, body []byte) func() (int, string) {
		return func() (int, string) { return e.post(path, "application/json", body) }
	}
	now := e.clock.Now
	type tc struct {
		group, name string
		send        func() (int, string)
		status      int
		code        string
	}
	cases := []tc{
		{"oversized", "submit body over the limit", post("/submit", bytes.Repeat([]byte("a"), attest.MaxEntrySize+4096)), 413, "too_large"},
		{"oversized", "entry just over 65535 bytes", post("/submit", append(good, bytes.Repeat([]byte(" "), attest.MaxEntrySize+1-len(good))...)), 413, "too_large"},
		{"oversized", "signed request over the limit", post("/lease", bytes.Repeat([]byte("a"), attest.MaxRequestSize+1)), 413, "too_large"},
		{"malformed JSON", "truncated envelope", post("/submit", good[:len(good)/2]), 400, "malformed_json"},
		{"malformed JSON", "not JSON", post("/submit", []byte("hello")), 400, "malformed_json"},
		{"malformed JSON", "trailing data", post("/submit", append(append([]byte{}, good...), []byte("{}")...)), 400, "trailing_data"},
		{"malformed JSON", "truncated request", post("/lease", signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now())[:50]), 400, "malformed_json"},
		{"duplicate key", "envelope payload twice", post("/submit", withBody(good, func(s string) string { return strings.Replace(s, "{", `{"payload":"AAAA",`, 1) })), 400, "duplicate_key"},
		{"unknown field", "envelope extra field", post("/submit", withBody(good, func(s string) string { return strings.Replace(s, "{", `{"extra":1,`, 1) })), 400, "unknown_field"},
		{"unknown field", "case-folded key", post("/submit", withBody(good, func(s string) string { return strings.Replace(s, `"payloadType"`, `"PayloadType"`, 1) })), 400, "casefolded_key"},
		{"unknown field", "request body extra field", post("/lease", signReq(t, alice, ActionLease, map[string]any{"arches": []string{"x86_64"}, "priority": 9}, now())), 400, "unknown_field"},
		{"bad envelope", "payload not base64", post("/submit", mutateEnv(t, good, func(w *wireEnv) { w.Payload = "!!!" })), 400, "bad_base64"},
		{"bad envelope", "unknown payload type", post("/submit", mutateEnv(t, good, func(w *wireEnv) { w.PayloadType = "text/plain" })), 400, "payload_type"},
		{"bad envelope", "request envelope as entry", post("/submit", signReq(t, alice, ActionLease, LeaseBody{}, now())), 400, "payload_type"},
		{"bad envelope", "two signatures", post("/submit", mutateEnv(t, good, func(w *wireEnv) { w.Signatures = append(w.Signatures, w.Signatures[0]) })), 400, "signature_count"},
		{"bad signature", "flipped signature bit", post("/submit", flipSig(t, good)), 401, "bad_signature"},
		{"bad signature", "flipped request signature", post("/lease", flipSig(t, signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now()))), 401, "bad_signature"},
		{"unknown key", "attestation by a stranger", post("/submit", attestation(t, stranger, la.Build, la.LeaseID, "A")), 403, "unknown_key"},
		{"unknown key", "lease request by a stranger", post("/lease", signReq(t, stranger, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now())), 403, "unknown_key"},
		{"revoked key", "attestation by a revoked builder", post("/submit", attestation(t, carol, lc.Build, lc.LeaseID, "C")), 403, "revoked_key"},
		{"revoked key", "lease request by a revoked builder", post("/lease", signReq(t, carol, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now())), 403, "revoked_key"},
		{"wrong role", "verdict signed by a builder", post("/submit", mustSign(t, alice, attest.PayloadVerdict, &attest.Verdict{Build: la.Build, Verdict: attest.VerdictInsufficient, TreeSize: 1, At: now()})), 403, "wrong_role"},
		{"wrong role", "official build signed by a builder", post("/submit", official(t, alice, la.Build)), 403, "wrong_role"},
		{"wrong role", "attestation signed by a witness", post("/submit", attestation(t, wit, la.Build, la.LeaseID, "W")), 403, "wrong_role"},
		{"wrong role", "enqueue signed by a builder", post("/admin/enqueue", signReq(t, alice, ActionEnqueue, EnqueueBody{NVR: "x-1-1", Arch: "x86_64", SRPMSHA256: sha("x")}, now())), 403, "wrong_role"},
		{"not submittable", "a job entry", post("/submit", mustSign(t, alice, attest.PayloadJob, &attest.Job{JobID: "j", Build: la.Build, Wanted: 1, Enqueued: now(), Deadline: now().Add(7 * 24 * time.Hour)})), 403, "not_submittable"},
		{"no lease", "made-up lease id", post("/submit", attestation(t, alice, la.Build, strings.Repeat("ab", 16), "A")), 409, "no_lease"},
		{"someone else's lease", "bob submits under alice's lease", post("/submit", attestation(t, bob, la.Build, la.LeaseID, "B")), 403, "not_lease_holder"},
		{"someone else's lease", "bob ends alice's lease", post("/lease/"+la.LeaseID+"/end", signReq(t, bob, ActionLeaseEnd, LeaseEndBody{LeaseID: la.LeaseID, Reason: attest.LeaseAbandoned}, now())), 403, "not_lease_holder"},
		{"someone else's lease", "lease id in path and body differ", post("/lease/"+lb.LeaseID+"/end", signReq(t, alice, ActionLeaseEnd, LeaseEndBody{LeaseID: la.LeaseID, Reason: attest.LeaseAbandoned}, now())), 400, "bad_param"},
		{"build mismatch", "result for another build", post("/submit", attestation(t, alice, otherBuild, la.LeaseID, "A")), 409, "build_mismatch"},
		{"replayed request", "second use of a nonce", func() (int, string) {
			req := signReq(t, alice, ActionNotices, EmptyBody{}, now())
			if st, code := e.post("/notices", "application/json", req); st != 200 {
				t.Fatalf("first notices request: %d %s", st, code)
			}
			return e.post("/notices", "application/json", req)
		}, 409, "replayed"},
		{"stale request", "ten minutes old", post("/lease", signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now().Add(-10*time.Minute))), 401, "stale_request"},
		{"stale request", "ten minutes ahead", post("/lease", signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now().Add(10*time.Minute))), 401, "stale_request"},
		{"request signed for another log", "lease for the staging log", post("/lease", signReqFor(t, alice, otherLog, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now())), 401, "wrong_log"},
		{"request signed for another log", "admin enqueue for the staging log", post("/admin/enqueue", signReqFor(t, e.admin, otherLog, ActionEnqueue, EnqueueBody{NVR: "staged-1.0-1", Arch: "x86_64", SRPMURL: "https://koji.example/staged-1.0-1.src.rpm", SRPMSHA256: sha("staged"), Wanted: 3}, now())), 401, "wrong_log"},
		{"request signed for another log", "admin enrol for the staging log", post("/admin/enrol", signReqFor(t, e.admin, otherLog, ActionEnrol, EnrolBody{PublicKey: string(stranger.PublicPEM()), Role: attest.RoleBuilder, Operator: "mallory", Contact: "mallory@example.org"}, now())), 401, "wrong_log"},
		{"request signed for another log", "origin differing by a trailing slash", post("/admin/revoke", signReqFor(t, e.admin, testOrigin+"/", ActionRevoke, RevokeBody{KeyID: alice.KeyID(), Reason: "test"}, now())), 401, "wrong_log"},
		{"request signed for another log", "request naming no log", post("/lease", rawReq(t, alice, `{"action":"lease","time":"`+now().Format(time.RFC3339)+`","nonce":"`+strings.Repeat("cd", 32)+`","body":{"arches":["x86_64"]}}`)), 400, "bad_field"},
		{"wrong action", "notices request sent to /lease", post("/lease", signReq(t, alice, ActionNotices, EmptyBody{}, now())), 400, "wrong_action"},
		{"path tricks", "dot-dot in NVR", getOpaque("/lookup/../../etc/passwd"), 400, "bad_name"},
		{"path tricks", "encoded dot-dot", getOpaque("/lookup/%2e%2e"), 400, "bad_name"},
		{"path tricks", "encoded slash", getOpaque("/lookup/hello-1.0-1%2f..%2fx"), 400, "bad_name"},
		{"path tricks", "NUL in NVR", getOpaque("/lookup/hello%00-1.0-1"), 400, "bad_name"},
		// net/http refuses a request line with a bad escape before routing.
		{"path tricks", "bad escape", getOpaque("/lookup/hello%zz-1-1"), 400, "net/http: 400 Bad Request"},
		{"path tricks", "not an NVR", get("/lookup/hello"), 400, "bad_name"},
		{"content type", "text/plain submit", func() (int, string) { return e.post("/submit", "text/plain", good) }, 415, "content_type"},
		{"content type", "no content type", func() (int, string) { return e.post("/submit", "", good) }, 415, "content_type"},
		{"content type", "form lease", func() (int, string) {
			return e.post("/lease", "application/x-www-form-urlencoded", signReq(t, alice, ActionLease, LeaseBody{Arches: []string{"x86_64"}}, now()))
		}, 415, "content_type"},
		{"method", "GET /submit", get("/submit"), 405, "method_not_allowed"},
		{"method", "POST /checkpoint", post("/checkpoint", []byte("{}")), 405, "method_not_allowed"},
		{"method", "DELETE /tile/0/000", func() (int, string) {
			req, _ := http.NewRequest(http.MethodDelete, e.url+"/tile/0/000", nil)
			return e.send(req)
		}, 405, "method_not_allowed"},
		{"proof params", "non-numeric index", get("/proof/inclusion?index=abc&size=1"), 400, "bad_param"},
		{"proof params", "leading zero", get("/proof/inclusion?index=01&size=2"), 400, "bad_param"},
		{"proof params", "missing size", get("/proof/inclusion?index=1"), 400, "bad_param"},
		{"proof params", "repeated parameter", get("/proof/inclusion?index=1&size=2&size=3"), 400, "bad_param"},
		{"proof params", "extra parameter", get("/proof/inclusion?index=1&size=2&x=1"), 400, "bad_param"},
		{"proof params", "negative", get("/proof/consistency?from=-1&to=2"), 400, "bad_param"},
		{"proof params", "size beyond the tree", get("/proof/inclusion?index=0&size=999999"), 400, "beyond_tree"},
		{"proof params", "index not below size", get("/proof/inclusion?index=3&size=3"), 400, "beyond_tree"},
		{"proof params", "consistency backwards", get("/proof/consistency?from=3&to=2"), 400, "beyond_tree"},
		{"proof params", "uint64 overflow", get("/proof/inclusion?index=18446744073709551616&size=1"), 400, "bad_param"},
		{"tile paths", "non-canonical index", get("/tile/0/0"), 400, "bad_path"},
		{"tile paths", "x prefix on last element", get("/tile/0/x000"), 400, "bad_path"},
		{"tile paths", "partial width 0", get("/tile/0/000.p/0"), 400, "bad_path"},
		{"tile paths", "partial width 256", get("/tile/0/000.p/256"), 400, "bad_path"},
		{"tile paths", "level out of range", get("/tile/64/000"), 400, "bad_path"},
		{"tile paths", "dot-dot", getOpaque("/tile/0/../checkpoint"), 400, "bad_path"},
		{"tile paths", "checkpoint under tile", get("/tile/checkpoint"), 400, "bad_path"},
		{"tile paths", "full tile beyond the tree", get("/tile/0/000"), 404, "not_found"},
		{"tile paths", "bundle beyond the tree", get("/tile/entries/x001/000"), 404, "not_found"},
		{"entries", "non-numeric index", get("/entry/abc"), 400, "bad_param"},
		{"entries", "beyond the tree", get("/entry/123456"), 404, "not_found"},
		{"routes", "unknown route", get("/admin"), 404, "no_route"},
		{"routes", "bad submit query", post("/submit?wait=2", good), 400, "bad_param"},
		// Last: moving the clock expires every lease.
		{"expired lease", "result after the lease expired", func() (int, string) {
			e.clock.Advance(3 * time.Hour)
			return e.post("/submit", "application/json", attestation(t, alice, la.Build, la.LeaseID, "A2"))
		}, 409, "lease_expired"},
	}
	groups := map[string]bool{}
	for _, c := range cases {
		groups[c.group] = true
		t.Run(c.group+"/"+c.name, func(t *testing.T) {
			before := e.state(nvr)
			status, code := c.send()
			if status != c.status || code != c.code {
				t.Errorf("got %d %q, want %d %q", status, code, c.status, c.code)
			}
			if after := e.state(nvr); after.size != before.size || !bytes.Equal(after.root, before.root) ||
				!bytes.Equal(after.checkpoint, before.checkpoint) || after.lookup != before.lookup || after.jobs != before.jobs {
				t.Errorf("state changed: size %d -> %d, lookup %s -> %s", before.size, after.size, before.lookup, after.lookup)
			}
		})
	}
	t.Run("slow-loris/headers sent slowly", func(t *testing.T) {
		before := e.state(nvr)
		slowLoris(t, strings.TrimPrefix(e.url, "http://"), 300*time.Millisecond)
		groups["slow-loris"] = true
		if after := e.state(nvr); after.size != before.size || !bytes.Equal(after.checkpoint, before.checkpoint) {
			t.Errorf("state changed")
		}
	})
	if len(groups) < 20 {
		t.Errorf("%d groups of bad input, want at least 20", len(groups))
	}
	// The good envelope still goes in: the checks above refused the bad
	// ones for what they were, not because the setup was broken.
	e.clock.Advance(-3 * time.Hour)
	if st, code := e.post("/submit", "application/json", good); st != 200 {
		t.Fatalf("good envelope: %d %s", st, code)
	}
}

// slowLoris opens a connection and sends request headers one byte every
// 50ms; the server must close it once headerTimeout has passed, long
// before the headers end.
func slowLoris(t *testing.T, addr string, headerTimeout time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, bufio.NewReader(conn))
		closed <- err
	}()
	header := []byte("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Padding: " + strings.Repeat("a", 200) + "\r\n")
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			if d := time.Since(start); d < headerTimeout {
				t.Fatalf("closed after %s, before the header timeout %s", d, headerTimeout)
			}
			return
		case <-tick.C:
			if i >= len(header) {
				t.Fatalf("server read all %d header bytes over %s without closing", len(header), time.Since(start))
			}
			if _, err := conn.Write(header[i : i+1]); err != nil {
				if d := time.Since(start); d < headerTimeout {
					t.Fatalf("write failed after %s, before the header timeout: %v", d, err)
				}
				return
			}
		}
	}
}

// rawReq signs a hand-written request payload as k.
func rawReq(t testing.TB, k *attest.Signer, payload string) []byte {
	t.Helper()
	b, err := k.SignEnvelope(attest.PayloadRequest, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustSign(t testing.TB, k *attest.Signer, payloadType string, v any) []byte {
	t.Helper()
	b, err := attest.Sign(k, payloadType, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func official(t testing.TB, k *attest.Signer, b attest.BuildID) []byte {
	t.Helper()
	envs, err := attest.NewSubjectAttestations(attest.Build{ID: b, Backend: "koji", Official: true, Started: time.Unix(1, 0).UTC(), Finished: time.Unix(2, 0).UTC()},
		[]attest.Subject{{Name: b.NVR + "." + b.Arch + ".rpm", SHA256: sha("o"), Skyline: sha("os")}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return envs[0]
}
