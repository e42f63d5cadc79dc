package demo

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	btoml "github.com/BurntSushi/toml"
	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/builder"
	"github.com/fedora-skyline/skyline/witness"
)

func TestTilePath(t *testing.T) {
	// C2SP tlog-tiles "Merkle Tree" and "Log Entries": no height element,
	// x-prefixed three-digit groups, .p/W for partial tiles.
	for _, tc := range []struct {
		tile tlog.Tile
		want string
	}{
		{tlog.Tile{H: 8, L: 0, N: 0, W: 256}, "tile/0/000"},
		{tlog.Tile{H: 8, L: 1, N: 1234067, W: 256}, "tile/1/x001/x234/067"},
		{tlog.Tile{H: 8, L: 0, N: 3, W: 5}, "tile/0/003.p/5"},
		{tlog.Tile{H: 8, L: -1, N: 0, W: 256}, "tile/entries/000"},
		{tlog.Tile{H: 8, L: -1, N: 1000, W: 17}, "tile/entries/x001/000.p/17"},
	} {
		if got := tilePath(tc.tile); got != tc.want {
			t.Errorf("tilePath(%+v) = %q, want %q", tc.tile, got, tc.want)
		}
	}
}

func bundle(entries ...[]byte) []byte {
	var b []byte
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b
}

func TestParseBundle(t *testing.T) {
	ok := bundle([]byte("a"), []byte{}, []byte("ccc"))
	got, err := parseBundle(ok, 3)
	if err != nil || len(got) != 3 || string(got[0]) != "a" || len(got[1]) != 0 || string(got[2]) != "ccc" {
		t.Fatalf("parseBundle = %q, %v", got, err)
	}
	for name, tc := range map[string]struct {
		data []byte
		want int
	}{
		"too few":          {ok, 4},
		"too many":         {ok, 2},
		"truncated length": {append(bytes.Clone(ok), 0), 4},
		"truncated entry":  {ok[:len(ok)-1], 3},
		"empty, want one":  {nil, 1},
	} {
		if _, err := parseBundle(tc.data, tc.want); !errors.Is(err, ErrBundle) {
			t.Errorf("%s: err = %v, want ErrBundle", name, err)
		}
	}
}

func FuzzParseBundle(f *testing.F) {
	f.Add(bundle([]byte("a"), []byte("bc")), 2)
	f.Add([]byte{0}, 1)
	f.Add([]byte{0xff, 0xff, 1}, 1)
	f.Fuzz(func(t *testing.T, data []byte, want int) {
		got, err := parseBundle(data, want)
		if err != nil {
			if !errors.Is(err, ErrBundle) {
				t.Fatalf("error %v is not ErrBundle", err)
			}
			return
		}
		// What parsed re-encodes to the input: nothing is skipped.
		if len(got) != want || !bytes.Equal(bundle(got...), data) {
			t.Fatalf("parseBundle(%x, %d) = %q does not round-trip", data, want, got)
		}
	})
}

func TestParseLookup(t *testing.T) {
	idx, err := parseLookup([]byte(`{"nvr":"a-1-1","entries":[{"index":7,"type":"verdict"},{"index":2,"type":"build"},{"index":7,"type":"verdict"}]}`))
	if err != nil || fmt.Sprint(idx) != "[2 7]" {
		t.Fatalf("parseLookup = %v, %v; want [2 7]", idx, err)
	}
	for _, bad := range []string{
		`{"nvr":"a-1-1","entries":[{"type":"build"}]}`,
		`{"nvr":"a-1-1","entries":[],"extra":1}`,
		`{"nvr":"a-1-1","entries":[]} {}`,
		`{"nvr":"a-1-1","entries":[{"index":-1,"type":"build"}]}`,
		`[`,
	} {
		if _, err := parseLookup([]byte(bad)); !errors.Is(err, ErrLookup) {
			t.Errorf("parseLookup(%s) = %v, want ErrLookup", bad, err)
		}
	}
}

func FuzzParseLookup(f *testing.F) {
	f.Add([]byte(`{"nvr":"hello-1.0-1","entries":[{"index":3,"type":"verdict"}]}`))
	f.Add([]byte(`{"nvr":"","entries":null}`))
	f.Add([]byte(`{"entries":[{"index":18446744073709551615}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		idx, err := parseLookup(data)
		if err != nil {
			if !errors.Is(err, ErrLookup) {
				t.Fatalf("error %v is not ErrLookup", err)
			}
			return
		}
		for i := 1; i < len(idx); i++ {
			if idx[i] <= idx[i-1] {
				t.Fatalf("indices %v not strictly ascending", idx)
			}
		}
	})
}

// testLog is a small skyline-shaped log served over httptest: entries
// signed with real keys, hash tiles and entry bundles made with
// sumdb/tlog, a checkpoint signed by the log key and cosigned by one
// witness. Its fields may be tampered with before serving.
type testLog struct {
	lc       LogCheck
	logSkey  string
	wSkey    string
	entries  [][]byte
	tiles    map[string][]byte
	note     []byte
	lookup   map[string]string
	tamperFn func(path string, body []byte) []byte
}

func newTestLog(t *testing.T) *testLog {
	t.Helper()
	dir := t.TempDir()
	key := func(name string) *attest.Signer {
		s, err := attest.GenerateKey(attest.KeyEd25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.WriteKeyFiles(dir, name, name, s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	coord, importer, w, b := key("coordinator"), key("importer"), key("verdict"), key("builder")
	logSkey, logVkey, err := note.GenerateKey(rand.Reader, "log.example")
	if err != nil {
		t.Fatal(err)
	}
	wSkey, wVkey, err := note.GenerateKey(rand.Reader, "witness.example")
	if err != nil {
		t.Fatal(err)
	}
	wCosig, err := fnote.VKeyToCosignatureV1(wVkey)
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{
		logSkey: logSkey, wSkey: wSkey,
		lc: LogCheck{Origin: "log.example", LogVKey: logVkey, Coordinator: coord.Verifier(), Importer: importer.Verifier(),
			Witnesses: []CheckWitness{{Name: "w", CosignVKey: wCosig, Verdict: w.Verifier()}},
			Builders:  []CheckBuilder{{Operator: "bob", KeyID: b.KeyID(), Public: filepath.Join(dir, "builder.pub")}}},
	}
	build := attest.BuildID{NVR: "hello-1.0-1", Arch: "x86_64", SRPMSHA256: strings.Repeat("ab", 32)}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sign := func(s *attest.Signer, pt string, v any) []byte {
		e, err := attest.Sign(s, pt, v)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	tl.entries = [][]byte{
		sign(coord, attest.PayloadJob, &attest.Job{JobID: "job1", Build: build, SRPMURL: "https://example.org/hello.src.rpm", Wanted: 10, Enqueued: now, Deadline: now.Add(7 * 24 * time.Hour)}),
		sign(w, attest.PayloadVerdict, &attest.Verdict{Build: build, Verdict: "insufficient", TreeSize: 1, Groups: []attest.VerdictGroup{}, At: now}),
	}
	tl.lookup = map[string]string{"hello-1.0-1": `{"nvr":"hello-1.0-1","entries":[{"index":0,"type":"job"},{"index":1,"type":"verdict"}]}`}
	tl.seal(t)
	return tl
}

// seal computes the tiles and the checkpoint of the entries.
func (tl *testLog) seal(t *testing.T) {
	t.Helper()
	var hashes []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	for i, e := range tl.entries {
		hs, err := tlog.StoredHashes(int64(i), e, hr)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
	}
	n := int64(len(tl.entries))
	root, err := tlog.TreeHash(n, hr)
	if err != nil {
		t.Fatal(err)
	}
	tl.tiles = map[string][]byte{}
	for _, tile := range tlog.NewTiles(tileHeight, 0, n) {
		data, err := tlog.ReadTileData(tile, hr)
		if err != nil {
			t.Fatal(err)
		}
		tl.tiles[tilePath(tile)] = data
	}
	bt := tlog.Tile{H: tileHeight, L: -1, N: 0, W: int(n)}
	tl.tiles[tilePath(bt)] = bundle(tl.entries...)
	body := flog.Checkpoint{Origin: "log.example", Size: uint64(n), Hash: root[:]}.Marshal()
	ls, err := note.NewSigner(tl.logSkey)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := fnote.NewSignerForCosignatureV1(tl.wSkey)
	if err != nil {
		t.Fatal(err)
	}
	if tl.note, err = note.Sign(&note.Note{Text: string(body)}, ls, ws); err != nil {
		t.Fatal(err)
	}
}

func (tl *testLog) serve(t *testing.T) LogCheck {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.TrimPrefix(r.URL.Path, "/")
		var body []byte
		switch {
		case path == "checkpoint":
			body = tl.note
		case strings.HasPrefix(path, "lookup/"):
			l, ok := tl.lookup[strings.TrimPrefix(path, "lookup/")]
			if !ok {
				http.NotFound(w, r)
				return
			}
			body = []byte(l)
		default:
			b, ok := tl.tiles[path]
			if !ok {
				http.NotFound(w, r)
				return
			}
			body = b
		}
		if tl.tamperFn != nil {
			body = tl.tamperFn(path, body)
		}
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	lc := tl.lc
	lc.URL = srv.URL
	return lc
}

// TestCheckLog: CheckLog accepts an honest log and refuses each way a
// stub or a lying log could differ from one.
func TestCheckLog(t *testing.T) {
	tl := newTestLog(t)
	cl, err := CheckLog(t.Context(), tl.serve(t), []string{"hello-1.0-1"})
	if err != nil {
		t.Fatalf("CheckLog of an honest log: %v", err)
	}
	if cl.Size != 2 || len(cl.All) != 2 || len(cl.Cosigners) != 1 || len(cl.Entries["hello-1.0-1"]) != 2 {
		t.Fatalf("CheckLog = size %d, %d entries, cosigners %v, %d for the NVR", cl.Size, len(cl.All), cl.Cosigners, len(cl.Entries["hello-1.0-1"]))
	}
	if v := cl.VerdictsBy("hello-1.0-1")["w"]; v == nil || v.Verdict != "insufficient" {
		t.Fatalf("VerdictsBy = %v", cl.VerdictsBy("hello-1.0-1"))
	}

	for name, tc := range map[string]struct {
		tamper func(t *testing.T, tl *testLog)
		want   error
	}{
		"an entry changed in its bundle": {func(t *testing.T, tl *testLog) {
			tl.tamperFn = func(path string, b []byte) []byte {
				if strings.HasPrefix(path, "tile/entries/") {
					b = bytes.Clone(b)
					b[len(b)-3] ^= 1
				}
				return b
			}
		}, ErrInclusion},
		"a hash tile changed": {func(t *testing.T, tl *testLog) {
			tl.tamperFn = func(path string, b []byte) []byte {
				if path == "tile/0/000.p/2" {
					b = bytes.Clone(b)
					b[0] ^= 1
				}
				return b
			}
		}, ErrInclusion},
		"checkpoint signed by another key": {func(t *testing.T, tl *testLog) {
			tl.logSkey, _, _ = note.GenerateKey(rand.Reader, "log.example")
			tl.seal(t)
		}, ErrCheckpoint},
		"checkpoint for another origin": {func(t *testing.T, tl *testLog) {
			tl.lc.Origin = "other.example"
		}, ErrCheckpoint},
		"lookup hides the verdict": {func(t *testing.T, tl *testLog) {
			tl.lookup["hello-1.0-1"] = `{"nvr":"hello-1.0-1","entries":[{"index":0,"type":"job"}]}`
		}, ErrLookup},
		"verdict signed by a builder": {func(t *testing.T, tl *testLog) {
			e, err := attest.Parse(tl.entries[1], attest.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := attest.LoadSigner(strings.TrimSuffix(tl.lc.Builders[0].Public, ".pub") + ".key")
			if err != nil {
				t.Fatal(err)
			}
			if tl.entries[1], err = attest.Sign(b, attest.PayloadVerdict, e.Value); err != nil {
				t.Fatal(err)
			}
			tl.seal(t)
		}, ErrSigner},
		"entry signed by an unknown key": {func(t *testing.T, tl *testLog) {
			s, _ := attest.GenerateKey(attest.KeyEd25519)
			e, err := attest.Parse(tl.entries[0], attest.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tl.entries[0], err = attest.Sign(s, attest.PayloadJob, e.Value); err != nil {
				t.Fatal(err)
			}
			tl.seal(t)
		}, ErrSigner},
	} {
		t.Run(name, func(t *testing.T) {
			tl := newTestLog(t)
			tc.tamper(t, tl)
			if _, err := CheckLog(t.Context(), tl.serve(t), []string{"hello-1.0-1"}); !errors.Is(err, tc.want) {
				t.Errorf("CheckLog = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOpenCheckpointCosigners(t *testing.T) {
	tl := newTestLog(t)
	tree, cos, err := openCheckpoint(tl.note, tl.lc)
	if err != nil || tree.N != 2 || len(cos) != 1 || cos[0] != "w" {
		t.Fatalf("openCheckpoint = %v, %v, %v", tree, cos, err)
	}
	// Without the witness's cosignature the checkpoint still opens, with
	// no cosigner: counting cosigners is the caller's business.
	ls, _ := note.NewSigner(tl.logSkey)
	n, _ := note.Open(tl.note, note.VerifierList(mustVerifier(t, tl.lc.LogVKey)))
	bare, err := note.Sign(&note.Note{Text: n.Text}, ls)
	if err != nil {
		t.Fatal(err)
	}
	if _, cos, err := openCheckpoint(bare, tl.lc); err != nil || len(cos) != 0 {
		t.Fatalf("openCheckpoint without cosignature = %v, %v", cos, err)
	}
	// Extension lines are refused (ARCHITECTURE.md: none).
	ext, _ := note.Sign(&note.Note{Text: n.Text + "extra\n"}, ls)
	if _, _, err := openCheckpoint(ext, tl.lc); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("openCheckpoint with an extension line = %v, want ErrCheckpoint", err)
	}
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	t.Helper()
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "log.example")
	if err != nil {
		f.Fatal(err)
	}
	s, _ := note.NewSigner(skey)
	for _, text := range []string{
		"log.example\n3\n" + strings.Repeat("A", 43) + "=\n",
		"log.example\n-1\nAAAA\n",
		"log.example\n3\n",
		"other\n3\n" + strings.Repeat("A", 43) + "=\nx\n",
	} {
		signed, err := note.Sign(&note.Note{Text: text}, s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(signed)
	}
	f.Add([]byte("log.example\n3\nAAAA\n\n— log.example AAAA\n"))
	lc := LogCheck{Origin: "log.example", LogVKey: vkey}
	f.Fuzz(func(t *testing.T, data []byte) {
		tree, _, err := openCheckpoint(data, lc)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v is not ErrCheckpoint", err)
			}
			return
		}
		// Accepted: the log signed exactly this body.
		n, err := note.Open(data, note.VerifierList(mustVerifier(t, vkey)))
		if err != nil {
			t.Fatalf("accepted a note that does not open: %v", err)
		}
		want := flog.Checkpoint{Origin: "log.example", Size: uint64(tree.N), Hash: tree.Hash[:]}.Marshal()
		if n.Text != string(want) {
			t.Fatalf("accepted body %q, re-encodes as %q", n.Text, want)
		}
	})
}

// TestConfigsParse: the files the demo writes are accepted by the
// products' own strict parsers, with the demo's settings.
func TestConfigsParse(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{keyCoordinator, witnessKey(0, "verdict")} {
		s, err := attest.GenerateKey(attest.KeyEd25519)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := attest.WriteKeyFiles(filepath.Join(dir, "keys"), name, name, s); err != nil {
			t.Fatal(err)
		}
	}
	_, vkey, _ := note.GenerateKey(rand.Reader, Origin)
	_, wvkey, _ := note.GenerateKey(rand.Reader, witnessName(0))
	cos, _ := fnote.VKeyToCosignatureV1(wvkey)
	s := DemoScenario()
	s.Witnesses, s.WitnessQuorum = 1, 1
	n := &Network{cfg: Config{Dir: dir, Root: "/src", BuildPath: DefaultBuildPath, Scenario: s},
		LogURL: "http://127.0.0.1:1", LogVKey: vkey,
		Witnesses: []Witness{{Name: witnessName(0), URL: "http://127.0.0.1:2", CosignVKey: cos}}}

	bc, err := builderParse(n.builderTOML(Builder{Operator: "mallory", StateDir: dir + "/state", Malicious: true}))
	if err != nil {
		t.Fatalf("builder.toml: %v", err)
	}
	if !strings.HasPrefix(bc.Path, "/src/demo/testdata/malicious:") || bc.Backend != "rpmbuild" || bc.MaxCPUBusy != 1 || bc.NoticeInterval != time.Second {
		t.Errorf("builder config %+v", bc)
	}
	wc, err := witnessParse(n.witnessTOML(0, "127.0.0.1:2"))
	if err != nil {
		t.Fatalf("witness.toml: %v", err)
	}
	if wc.Policy != s.Policy || wc.Breaker != s.Breaker || wc.Logs[0].Origin != Origin {
		t.Errorf("witness config policy %+v breaker %+v logs %+v", wc.Policy, wc.Breaker, wc.Logs)
	}
	pol, err := policyParse(n.policyTOML(), dir)
	if err != nil {
		t.Fatalf("policy.toml: %v", err)
	}
	if *pol.Agreement != s.Policy || pol.WitnessQuorum != s.WitnessQuorum {
		t.Errorf("policy agreement %+v quorum %d", *pol.Agreement, pol.WitnessQuorum)
	}
	var sv struct {
		Listen  string `toml:"listen"`
		Origin  string `toml:"origin"`
		Wanted  int    `toml:"default_wanted"`
		Witness []struct {
			URL         string `toml:"url"`
			VerifierKey string `toml:"verifier_key"`
		} `toml:"witness"`
	}
	if _, err := btoml.Decode(string(n.serveTOML("127.0.0.1:1")), &sv); err != nil {
		t.Fatalf("serve.toml: %v", err)
	}
	if sv.Listen != "127.0.0.1:1" || sv.Origin != Origin || sv.Wanted != 10 || len(sv.Witness) != 1 || sv.Witness[0].VerifierKey != cos {
		t.Errorf("serve.toml decodes to %+v", sv)
	}
}

func TestQuote(t *testing.T) {
	for _, in := range []string{"plain", "a\"b\\c", "tab\tnew\nline", "é <&>", "\x01"} {
		var v struct{ K string }
		if _, err := btoml.Decode("K = "+quote(in), &v); err != nil || v.K != in {
			t.Errorf("quote(%q) = %s decodes to %q, %v", in, quote(in), v.K, err)
		}
	}
}

func builderParse(data []byte) (builder.Config, error) { return builder.ParseConfig(data) }

func witnessParse(data []byte) (witness.Config, error) { return witness.ParseConfig(data) }

func policyParse(data []byte, dir string) (*witness.VerifyPolicy, error) {
	return witness.ParseVerifyPolicy(data, dir)
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"keys/admin.key":      "keys/admin.key",
		"Fedora Koji":         "'Fedora Koji'",
		"it's":                `'it'\''s'`,
		"":                    "''",
		"a@example.org":       "a@example.org",
		"http://127.0.0.1:80": "http://127.0.0.1:80",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
