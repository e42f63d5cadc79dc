package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/fedora-skyline/skyline/attest"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// TestCosignatureVerifies checks cosignatures with transparency-dev/formats'
// cosignature/v1 verifier, and that a checkpoint carrying them opens with
// golang.org/x/mod/sumdb/note under the log key plus the witness key.
func TestCosignatureVerifies(t *testing.T) {
	k := newLogKey(t, testOrigin)
	l := openTestLog(t, k)
	cpNote := addEntries(t, l, "e", 3)
	cp, err := ParseCheckpoint(cpNote, testOrigin, k.verifier)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t)
	c, err := NewCosignerFromSigner("witness.example/w1", s)
	if err != nil {
		t.Fatal(err)
	}
	line, err := c.Cosign(cp)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(line, []byte("— witness.example/w1 ")) || !bytes.HasSuffix(line, []byte("\n")) || bytes.Count(line, []byte("\n")) != 1 {
		t.Fatalf("cosignature line %q", line)
	}
	cv, err := fnote.NewVerifierForCosignatureV1(c.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	cosigned := append(bytes.Clone(cpNote), line...)
	n, err := note.Open(cosigned, note.VerifierList(k.verifier, cv))
	if err != nil {
		t.Fatalf("note.Open with log and witness keys: %v", err)
	}
	if len(n.Sigs) != 2 {
		t.Fatalf("%d verified signatures, want 2", len(n.Sigs))
	}
	if ts, err := fnote.CoSigV1Timestamp(n.Sigs[1]); err != nil || ts.Unix() == 0 {
		t.Fatalf("cosignature timestamp %v %v", ts, err)
	}
	// The cosignature is over this checkpoint only.
	other := addEntries(t, l, "f", 1)
	if _, err := note.Open(append(bytes.Clone(other[:bytes.Index(other, []byte("\n\n"))+2]), line...), note.VerifierList(cv)); err == nil {
		t.Fatal("cosignature verifies on another checkpoint")
	}
	// The log key alone still opens the cosigned note (cosignatures of
	// unknown keys are ignored).
	if _, err := ParseCheckpoint(cosigned, testOrigin, k.verifier); err != nil {
		t.Fatalf("cosigned checkpoint with the log key only: %v", err)
	}
	// A plain Ed25519 verifier of the same key does not accept a
	// cosignature/v1 signature: the formats differ.
	plain, err := note.NewVerifier(mustVKey(t, "witness.example/w1", s))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(cosigned, note.VerifierList(plain)); err == nil {
		t.Fatal("plain Ed25519 verifier accepted a cosignature/v1")
	}
}

func mustVKey(t *testing.T, name string, s *attest.Signer) string {
	t.Helper()
	v, err := attest.NoteVerifierKey(name, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// witnessServer runs a witness daemon (no submission) over the log served
// at url, with its HTTP handler on loopback.
func witnessServer(t *testing.T, url string, k logKey) (*Daemon, string) {
	keys := writeWitnessKeys(t, newSigner(t))
	d := newDaemon(t, witnessConfig(t.TempDir(), keys, url, k.vkey, false), url)
	srv := httptest.NewServer(d.Handler())
	t.Cleanup(srv.Close)
	return d, srv.URL
}

func post(t *testing.T, url string, body []byte) (int, string, []byte) {
	t.Helper()
	resp, err := http.Post(url+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// TestAddCheckpointConformance checks the C2SP tlog-witness add-checkpoint
// rules over HTTP, in the spec's order.
func TestAddCheckpointConformance(t *testing.T) {
	ctx := context.Background()
	k := newLogKey(t, testOrigin)
	l := openTestLog(t, k)
	cp5 := addEntries(t, l, "a", 5)
	_, url := serveLying(t, l)
	d, wurl := witnessServer(t, url, k)
	cv, err := fnote.NewVerifierForCosignatureV1(d.Cosigner().VerifierKey())
	if err != nil {
		t.Fatal(err)
	}

	// First contact: old size 0, empty proof.
	status, _, body := post(t, wurl, addCheckpointBody(0, nil, cp5))
	if status != 200 {
		t.Fatalf("first add-checkpoint: %d %s", status, body)
	}
	if _, err := note.Open(append(bytes.Clone(cp5), body...), note.VerifierList(k.verifier, cv)); err != nil {
		t.Fatalf("returned cosignature: %v (%q)", err, body)
	}
	if cp, _ := d.Latest("test"); cp.Size != 5 {
		t.Fatalf("latest %d after add-checkpoint", cp.Size)
	}

	cp9 := addEntries(t, l, "b", 4)
	proof, err := l.ConsistencyProof(ctx, 5, 9)
	if err != nil {
		t.Fatal(err)
	}
	badProof := [][]byte{bytes.Clone(proof[0])}
	badProof[0][0] ^= 1
	otherKey := newLogKey(t, testOrigin)
	otherLog := openTestLog(t, otherKey)
	impostor := addEntries(t, otherLog, "b", 9)
	forkLog := openTestLog(t, k)
	fork5 := addEntries(t, forkLog, "z", 5)

	tests := []struct {
		name   string
		body   []byte
		status int
		want   string // body or content type check
	}{
		{"malformed: no old line", []byte("hello\n\n" + string(cp9)), 400, ""},
		{"malformed: empty body", nil, 400, ""},
		{"malformed: leading zero", []byte("old 05\n\n" + string(cp9)), 400, ""},
		{"malformed: bad proof line", []byte("old 5\n!!!\n\n" + string(cp9)), 400, ""},
		{"unknown origin", addCheckpointBody(5, proof, signNote(t, k, "other.example/log\n9\n"+base64Std(make([]byte, 32))+"\n")), 404, ""},
		{"not signed by the log key", addCheckpointBody(5, proof, impostor), 403, ""},
		{"old size above checkpoint size", addCheckpointBody(10, nil, cp9), 400, ""},
		{"stale old size", addCheckpointBody(3, proof, cp9), 409, "5\n"},
		{"bad proof", addCheckpointBody(5, badProof, cp9), 422, ""},
		{"proof from size 0", addCheckpointBody(0, proof, cp9), 409, "5\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, ct, body := post(t, wurl, tc.body)
			if status != tc.status {
				t.Fatalf("status %d (%s), want %d", status, body, tc.status)
			}
			if tc.status == 409 && (ct != "text/x.tlog.size" || string(body) != tc.want) {
				t.Fatalf("409 with %q %q", ct, body)
			}
			if cp, _ := d.Latest("test"); cp.Size != 5 {
				t.Fatalf("latest moved to %d", cp.Size)
			}
		})
	}

	// A good proof moves the witness to 9; the same request again is
	// stale (409 with 9); old 9 with the same checkpoint is cosigned again.
	status, _, body = post(t, wurl, addCheckpointBody(5, proof, cp9))
	if status != 200 {
		t.Fatalf("good proof: %d %s", status, body)
	}
	if _, err := note.Open(append(bytes.Clone(cp9), body...), note.VerifierList(cv)); err != nil {
		t.Fatalf("cosignature of 9: %v", err)
	}
	if status, ct, body := post(t, wurl, addCheckpointBody(5, proof, cp9)); status != 409 || ct != "text/x.tlog.size" || string(body) != "9\n" {
		t.Fatalf("replayed request: %d %q %q", status, ct, body)
	}
	if status, _, body := post(t, wurl, addCheckpointBody(9, nil, cp9)); status != 200 {
		t.Fatalf("same checkpoint again: %d %s", status, body)
	}
	// A rollback through add-checkpoint is a stale old size.
	if status, _, body := post(t, wurl, addCheckpointBody(5, nil, cp5)); status != 409 || string(body) != "9\n" {
		t.Fatalf("rollback: %d %q", status, body)
	}
	// Same size, another root: a fork, 409, refused from then on.
	_ = fork5
	fork9 := addEntries(t, forkLog, "y", 4)
	if status, ct, body := post(t, wurl, addCheckpointBody(9, nil, fork9)); status != 409 || ct == "text/x.tlog.size" {
		t.Fatalf("fork: %d %q %s", status, ct, body)
	}
	if ref, err := d.store.LoadRefusal("test"); err != nil || ref.Kind != RefusedFork {
		t.Fatalf("fork not on record: %+v %v", ref, err)
	}
	if status, _, body := post(t, wurl, addCheckpointBody(9, nil, cp9)); status != 409 || !strings.Contains(string(body), "refused") {
		t.Fatalf("after a fork: %d %s", status, body)
	}
}

func TestParseAddCheckpoint(t *testing.T) {
	h := base64Std(make([]byte, 32))
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{"old 0\n\ncp\n", true},
		{"old 12\n" + h + "\n" + h + "\n\ncp\n", true},
		{"old 012\n\ncp\n", false},
		{"old -1\n\ncp\n", false},
		{"old 1\n", false},
		{"old 1\n\n", false},
		{"old 1\nAAAA\n\ncp\n", false},
		{"old 18446744073709551616\n\ncp\n", false},
		{"old 1\n" + strings.Repeat(h+"\n", 64) + "\ncp\n", false},
		{"old 1\n" + strings.Repeat(h+"\n", 63) + "\ncp\n", true},
		{"new 1\n\ncp\n", false},
	} {
		_, _, cp, err := ParseAddCheckpoint([]byte(tc.body))
		if tc.ok != (err == nil) {
			t.Errorf("%q: %v", tc.body, err)
		}
		if err != nil && !errors.Is(err, ErrBadRequest) {
			t.Errorf("%q: %v is not ErrBadRequest", tc.body, err)
		}
		if err == nil && string(cp) != "cp\n" {
			t.Errorf("%q: checkpoint %q", tc.body, cp)
		}
	}
}

func FuzzParseAddCheckpoint(f *testing.F) {
	h := base64Std(make([]byte, 32))
	f.Add([]byte("old 0\n\ncp\n"))
	f.Add([]byte("old 12\n" + h + "\n\nx\n7\n" + h + "\n\n— x AAAA\n"))
	f.Add([]byte("old 012\n\ncp\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		old, proof, cp, err := ParseAddCheckpoint(body)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("error %v is not ErrBadRequest", err)
			}
			return
		}
		// What parsed must print back to the same body.
		var b bytes.Buffer
		fmt.Fprintf(&b, "old %d\n", old)
		for _, p := range proof {
			b.WriteString(base64Std(p[:]) + "\n")
		}
		b.WriteString("\n")
		b.Write(cp)
		if !bytes.Equal(b.Bytes(), body) || len(proof) > 63 || len(cp) == 0 {
			t.Fatalf("parsed %d %d %q from %q", old, len(proof), cp, body)
		}
	})
}
