package witness

// Cosigning (C2SP tlog-cosignature, timestamped Ed25519 cosignature/v1) and
// the witness side of C2SP tlog-witness add-checkpoint
// (https://c2sp.org/tlog-witness).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedora-skyline/skyline/attest"
)

// Errors of add-checkpoint, on top of the follower's (ErrBadSignature 403,
// ErrBadProof 422, ErrFork 409), checked with errors.Is.
var (
	// ErrUnknownLog: the checkpoint's origin is not a log this witness
	// follows (404).
	ErrUnknownLog = errors.New("unknown log")
	// ErrBadRequest: the request body is malformed, or its old size is
	// larger than the checkpoint's (400).
	ErrBadRequest = errors.New("malformed add-checkpoint request")
	// ErrStaleSize: the request's old size is not the size of the latest
	// checkpoint the witness cosigned (409 with that size, see StaleError).
	ErrStaleSize = errors.New("old size is not the witness's latest size")
	// ErrRefused: the witness holds a fork or bad-proof refusal against the
	// log and cosigns nothing of it (409).
	ErrRefused = errors.New("log refused after misbehaving")
)

// StaleError is ErrStaleSize with the witness's latest cosigned size.
type StaleError struct{ Size uint64 }

func (e *StaleError) Error() string {
	return fmt.Sprintf("witness: old size is not the latest cosigned size %d", e.Size)
}

// Unwrap makes a StaleError match ErrStaleSize.
func (e *StaleError) Unwrap() error { return ErrStaleSize }

// maxProofLines is the C2SP tlog-witness bound on consistency proof lines.
const maxProofLines = 63

// Cosigner makes C2SP tlog-cosignature cosignature/v1 signatures with an
// Ed25519 witness key.
type Cosigner struct {
	signer *fnote.Signer
	vkey   string
}

// NewCosigner returns a cosigner named name (the witness's name, e.g.
// "witness.example.org/w1") with an Ed25519 key. A witness cosigns with
// this key and signs verdicts with another (ARCHITECTURE.md).
func NewCosigner(name string, key ed25519.PrivateKey) (*Cosigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("witness: cosigner key of %d bytes: %w", len(key), ErrConfig)
	}
	vkey, err := note.NewEd25519VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("witness: cosigner name %q: %w: %v", name, ErrConfig, err)
	}
	// C2SP signed-note private key: PRIVATE+KEY+<name>+<hash>+base64(alg || seed).
	hash := vkey[len(name)+1 : len(name)+9]
	skey := "PRIVATE+KEY+" + name + "+" + hash + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...))
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness: cosigner: %w: %v", ErrConfig, err)
	}
	cv, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		return nil, fmt.Errorf("witness: cosigner: %w: %v", ErrConfig, err)
	}
	return &Cosigner{signer: s, vkey: cv}, nil
}

// NewCosignerFromSigner returns a cosigner with the Ed25519 key of s.
func NewCosignerFromSigner(name string, s *attest.Signer) (*Cosigner, error) {
	data, err := s.PrivatePEM()
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("witness: cosigning key: %w", ErrConfig)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("witness: cosigning key: %w: %v", ErrConfig, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("witness: cosigning key must be Ed25519, not %T: %w", k, ErrConfig)
	}
	return NewCosigner(name, priv)
}

// Name returns the cosigner's key name.
func (c *Cosigner) Name() string { return c.signer.Name() }

// VerifierKey returns the C2SP signed-note verifier key of the
// cosignatures (algorithm 0x04, Ed25519 cosignature/v1), for logs and
// release gates to configure.
func (c *Cosigner) VerifierKey() string { return c.vkey }

// Cosign returns the cosignature of cp as a note signature line ("— name
// base64\n"), timestamped now (C2SP tlog-cosignature).
func (c *Cosigner) Cosign(cp Checkpoint) ([]byte, error) {
	text, err := noteText(cp.Note)
	if err != nil {
		return nil, err
	}
	signed, err := note.Sign(&note.Note{Text: text}, c.signer)
	if err != nil {
		return nil, fmt.Errorf("witness: cosign %s at %d: %w", cp.Origin, cp.Size, err)
	}
	return signed[len(text)+1:], nil
}

// noteText returns the text of a signed note: everything up to and
// including the newline before the blank line (C2SP signed-note).
func noteText(n []byte) (string, error) {
	i := bytes.Index(n, []byte("\n\n"))
	if i < 0 {
		return "", fmt.Errorf("witness: note without signatures: %w", ErrBadCheckpoint)
	}
	return string(n[:i+1]), nil
}

// logWitness is the witness's view of one log: the latest checkpoint it
// cosigned, checked, updated and persisted atomically (C2SP tlog-witness:
// "checking the old size against the latest checkpoint and persisting the
// new checkpoint must be performed atomically").
type logWitness struct {
	name     string
	follower *Follower
	store    *Store
	cosigner *Cosigner
	logger   *slog.Logger
	metrics  *metrics

	mu      sync.Mutex
	latest  Checkpoint
	refusal *Refusal
}

func newLogWitness(name string, f *Follower, st *Store, c *Cosigner, logger *slog.Logger, m *metrics) (*logWitness, error) {
	cp, err := st.LoadCheckpoint(name, f.Origin(), f.Verifier())
	if err != nil {
		return nil, err
	}
	ref, err := st.LoadRefusal(name)
	if err != nil {
		return nil, err
	}
	lw := &logWitness{name: name, follower: f, store: st, cosigner: c, logger: logger, metrics: m, latest: cp, refusal: ref}
	m.size(name, cp.Size)
	if ref.Halts() {
		m.halted(name, true)
		logger.Error("witness: log refused on record; not following it until an operator removes the refusal",
			"log", name, "kind", ref.Kind, "reason", ref.Reason, "since", ref.At)
	}
	return lw, nil
}

// Latest returns the latest cosigned checkpoint.
func (lw *logWitness) Latest() Checkpoint {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.latest
}

// halted returns the refusal error when the log is refused. Callers hold mu.
func (lw *logWitness) halted() error {
	if lw.refusal.Halts() {
		return fmt.Errorf("witness: log %s: %w since %s: %w: %s", lw.name, ErrRefused, lw.refusal.At.Format(time.RFC3339), lw.refusal.Err(), lw.refusal.Reason)
	}
	return nil
}

// refuse records a refusal (signed evidence) and raises the alarm: an
// error log line, a metric and, for a fork or bad proof, the halt. Callers
// hold mu.
func (lw *logWitness) refuse(kind string, next Checkpoint, cause error) {
	r := Refusal{Kind: kind, Reason: cause.Error(), At: time.Now().UTC(), Trusted: lw.latest.Note, Refused: next.Note}
	lw.metrics.refused(lw.name, kind)
	lw.logger.Error("witness: ALARM: log misbehaved; checkpoint refused", "log", lw.name, "kind", kind,
		"trusted_size", lw.latest.Size, "refused_size", next.Size, "err", cause)
	if err := lw.store.SaveRefusal(lw.name, r); err != nil {
		lw.logger.Error("witness: refusal not persisted", "log", lw.name, "err", err)
	}
	if r.Halts() {
		lw.refusal = &r
		lw.metrics.halted(lw.name, true)
	}
}

// accept persists next as the latest cosigned checkpoint and returns its
// cosignature. Callers hold mu and have checked next.
func (lw *logWitness) accept(next Checkpoint) ([]byte, error) {
	if next.Size != lw.latest.Size || next.Hash != lw.latest.Hash {
		// C2SP tlog-witness: the witness MUST persist the new checkpoint
		// before responding.
		if err := lw.store.SaveCheckpoint(lw.name, next); err != nil {
			return nil, err
		}
		lw.latest = next
		lw.metrics.size(lw.name, next.Size)
	}
	sig, err := lw.cosigner.Cosign(next)
	if err != nil {
		return nil, err
	}
	lw.metrics.cosigned(lw.name)
	return sig, nil
}

// Poll fetches the log's checkpoint, checks it against the latest cosigned
// one (consistency proved from tiles), and on success persists and
// cosigns it. A fork, rollback or bad proof is refused and recorded.
func (lw *logWitness) Poll(ctx context.Context) (Checkpoint, error) {
	next, err := lw.follower.FetchCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if err := lw.halted(); err != nil {
		return Checkpoint{}, err
	}
	if err := lw.follower.CheckConsistency(ctx, lw.latest, next); err != nil {
		if kind := refusalKind(err); kind != "" {
			lw.refuse(kind, next, err)
		}
		return Checkpoint{}, err
	}
	if next.Size == lw.latest.Size {
		return lw.latest, nil
	}
	if _, err := lw.accept(next); err != nil {
		return Checkpoint{}, err
	}
	return next, nil
}

// AddCheckpoint is C2SP tlog-witness add-checkpoint for this log: the
// checks of the spec in its order, then persist and cosign.
func (lw *logWitness) AddCheckpoint(oldSize uint64, proof tlog.TreeProof, noteData []byte) ([]byte, error) {
	// "The witness MUST verify the checkpoint signature against the public
	// key(s) it trusts for the checkpoint origin" (403).
	next, err := ParseCheckpoint(noteData, lw.follower.Origin(), lw.follower.Verifier())
	if err != nil {
		return nil, err
	}
	// "The old size MUST be equal to or lower than the checkpoint size" (400).
	if oldSize > next.Size {
		return nil, fmt.Errorf("witness: old size %d above checkpoint size %d: %w", oldSize, next.Size, ErrBadRequest)
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if err := lw.halted(); err != nil {
		return nil, err
	}
	// "The witness MUST check that the old size matches the size of the
	// latest checkpoint it cosigned" (409 with the size).
	if oldSize != lw.latest.Size {
		return nil, &StaleError{Size: lw.latest.Size}
	}
	// "The proof MUST be empty if the old size is zero"; it must verify
	// (422).
	switch {
	case oldSize == 0 && len(proof) > 0:
		return nil, fmt.Errorf("witness: %d proof lines from size 0: %w", len(proof), ErrBadProof)
	case oldSize == next.Size && len(proof) > 0:
		return nil, fmt.Errorf("witness: %d proof lines between equal sizes: %w", len(proof), ErrBadProof)
	case oldSize > 0 && oldSize < next.Size:
		// RFC 6962 section 2.1.2.
		if err := tlog.CheckTree(proof, int64(next.Size), next.Hash, int64(oldSize), lw.latest.Hash); err != nil {
			return nil, fmt.Errorf("witness: consistency %d..%d: %w", oldSize, next.Size, ErrBadProof)
		}
	}
	// "If the old size matches the checkpoint size, the witness MUST check
	// that the root hashes are also identical" (409). Two signed roots for
	// one size are a fork: recorded, and the log is refused from then on.
	if oldSize == next.Size && next.Hash != lw.latest.Hash {
		err := fmt.Errorf("witness: log %s: root %s at size %d, cosigned root %s: %w", lw.name, next.Hash, next.Size, lw.latest.Hash, ErrFork)
		lw.refuse(RefusedFork, next, err)
		return nil, err
	}
	return lw.accept(next)
}

// ParseAddCheckpoint parses a C2SP tlog-witness add-checkpoint request body:
// "old <size>", at most 63 base64 proof lines, an empty line, and the
// checkpoint note. Malformed bodies are ErrBadRequest.
func ParseAddCheckpoint(body []byte) (oldSize uint64, proof tlog.TreeProof, checkpoint []byte, err error) {
	bad := func(why string) (uint64, tlog.TreeProof, []byte, error) {
		return 0, nil, nil, fmt.Errorf("witness: add-checkpoint: %s: %w", why, ErrBadRequest)
	}
	r := bufio.NewReader(bytes.NewReader(body))
	line, err := r.ReadString('\n')
	if err != nil {
		return bad("no old size line")
	}
	sizeStr, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "old ")
	if !ok || sizeStr == "" || (len(sizeStr) > 1 && sizeStr[0] == '0') || strings.TrimLeft(sizeStr, "0123456789") != "" {
		return bad("old size line is not \"old <decimal>\"")
	}
	oldSize, err = strconv.ParseUint(sizeStr, 10, 64)
	if err != nil {
		return bad("old size out of range")
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return bad("no empty line before the checkpoint")
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			break
		}
		if len(proof) == maxProofLines {
			return bad("more than 63 proof lines")
		}
		h, err := base64.StdEncoding.Strict().DecodeString(line)
		if err != nil || len(h) != tlog.HashSize {
			return bad("proof line is not a base64 hash")
		}
		proof = append(proof, tlog.Hash(h))
	}
	rest := body[len(body)-r.Buffered():]
	if len(rest) == 0 {
		return bad("no checkpoint")
	}
	return oldSize, proof, bytes.Clone(rest), nil
}
