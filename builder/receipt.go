package builder

import (
	"errors"
	"fmt"

	"github.com/transparency-dev/formats/log"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// Receipt errors: a receipt that fails any check is not an
// acknowledgement; the envelopes stay pending and are resubmitted later.
var (
	ErrBadReceipt    = errors.New("malformed receipt")
	ErrBadCheckpoint = errors.New("checkpoint not signed by the log key")
	ErrBadProof      = errors.New("inclusion proof does not verify")
)

// maxCheckpointSize bounds the signed note of a receipt: a checkpoint is
// three short lines plus a few signature lines.
const maxCheckpointSize = 16 << 10

// Receipt is the log's answer to a submission: for each envelope, in the
// order submitted, where it is and the proof of it.
type Receipt struct {
	Entries []ReceiptEntry `json:"entries"`
}

// ReceiptEntry places one submitted envelope in the log.
type ReceiptEntry struct {
	// Index is the envelope's position in the log. A resubmitted envelope
	// gets the index it already had.
	Index uint64 `json:"index"`
	// Proof is the RFC 6962 inclusion proof of the entry at Index in the
	// tree of Checkpoint.
	Proof [][]byte `json:"proof"`
	// Checkpoint is the C2SP signed-note checkpoint the proof is against.
	Checkpoint []byte `json:"checkpoint"`
}

// Ack is a verified ReceiptEntry: the entry is in the tree the log signed.
type Ack struct {
	Index    uint64 `json:"index"`
	TreeSize uint64 `json:"tree_size"`
	RootHash []byte `json:"root_hash"`
}

// VerifyReceipt checks that every envelope is included in a checkpoint
// signed by the log: the checkpoint's signature and origin (C2SP
// tlog-checkpoint, C2SP signed-note), then the inclusion proof of the leaf
// SHA-256(0x00 || envelope) against the checkpoint's root (RFC 6962
// section 2.1.1). The log entry is the envelope bytes exactly as submitted.
func VerifyReceipt(envelopes [][]byte, r *Receipt, logKey note.Verifier, origin string) ([]Ack, error) {
	if r == nil || len(r.Entries) != len(envelopes) {
		n := 0
		if r != nil {
			n = len(r.Entries)
		}
		return nil, fmt.Errorf("builder: receipt has %d entries for %d envelopes: %w", n, len(envelopes), ErrBadReceipt)
	}
	acks := make([]Ack, len(envelopes))
	for i, e := range r.Entries {
		cp, err := verifyCheckpoint(e.Checkpoint, logKey, origin)
		if err != nil {
			return nil, fmt.Errorf("builder: receipt entry %d: %w", i, err)
		}
		if e.Index >= cp.Size {
			return nil, fmt.Errorf("builder: receipt entry %d: index %d outside tree of size %d: %w", i, e.Index, cp.Size, ErrBadProof)
		}
		leaf := rfc6962.DefaultHasher.HashLeaf(envelopes[i])
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, e.Index, cp.Size, leaf, e.Proof, cp.Hash); err != nil {
			return nil, fmt.Errorf("builder: receipt entry %d: index %d size %d: %w: %w", i, e.Index, cp.Size, ErrBadProof, err)
		}
		acks[i] = Ack{Index: e.Index, TreeSize: cp.Size, RootHash: cp.Hash}
	}
	return acks, nil
}

// verifyCheckpoint opens a signed checkpoint with the log key.
func verifyCheckpoint(signed []byte, logKey note.Verifier, origin string) (*log.Checkpoint, error) {
	if len(signed) > maxCheckpointSize {
		return nil, fmt.Errorf("checkpoint of %d bytes: %w", len(signed), ErrBadCheckpoint)
	}
	cp, extra, _, err := log.ParseCheckpoint(signed, origin, logKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	// C2SP tlog-checkpoint allows extension lines; skyline's log writes none.
	if len(extra) > 0 {
		return nil, fmt.Errorf("checkpoint has extension lines: %w", ErrBadCheckpoint)
	}
	if len(cp.Hash) != rfc6962.DefaultHasher.Size() {
		return nil, fmt.Errorf("checkpoint root of %d bytes: %w", len(cp.Hash), ErrBadCheckpoint)
	}
	return cp, nil
}

// LogVerifier parses the log's verifier key from the configuration and
// returns it with the checkpoint origin to expect (origin, or the key's
// name when origin is empty).
func LogVerifier(vkey, origin string) (note.Verifier, string, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, "", fmt.Errorf("builder: log_key: %w: %w", ErrConfig, err)
	}
	if origin == "" {
		origin = v.Name()
	}
	return v, origin, nil
}
