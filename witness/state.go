package witness

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Store is the witness's durable state: one directory per followed log
// holding the latest cosigned checkpoint, the refusals the witness raised
// against the log, and the fold's snapshot (docs/witness.md "State"). Every
// file is replaced atomically (written to a temporary file, fsynced,
// renamed, directory fsynced), so a crash leaves the old or the new version,
// never a torn one.
type Store struct {
	dir string
}

// State file names inside a log's directory.
const (
	fileCheckpoint = "checkpoint"
	fileRefusal    = "refusal.json"
	fileFold       = "fold.json"
	maxStateFile   = 1 << 30
)

var logNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// OpenStore opens (creating it if needed) the state directory dir.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("witness: state directory not set: %w", ErrConfig)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("witness: state directory: %w", err)
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(logName, file string) (string, error) {
	if !logNameRE.MatchString(logName) {
		return "", fmt.Errorf("witness: log name %q is not [a-z0-9._-]: %w", logName, ErrConfig)
	}
	return filepath.Join(s.dir, logName, file), nil
}

// read returns the contents of a state file, or nil when it does not exist.
func (s *Store) read(logName, file string) ([]byte, error) {
	p, err := s.path(logName, file)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("witness: state: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, fmt.Errorf("witness: state %s: %w", p, err)
	}
	if len(data) > maxStateFile {
		return nil, fmt.Errorf("witness: state %s larger than %d bytes: %w", p, maxStateFile, ErrState)
	}
	return data, nil
}

// write replaces a state file atomically and durably.
func (s *Store) write(logName, file string, data []byte) error {
	p, err := s.path(logName, file)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("witness: state: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+file+".*")
	if err != nil {
		return fmt.Errorf("witness: state: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("witness: state %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("witness: state %s: fsync: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("witness: state %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("witness: state %s: %w", p, err)
	}
	ok = true
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("witness: state %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("witness: state %s: fsync directory: %w", dir, err)
	}
	return nil
}

// LoadCheckpoint returns the latest checkpoint the witness cosigned for the
// log, re-verified with the log's key, or EmptyTree(origin) if it has none.
func (s *Store) LoadCheckpoint(logName, origin string, v note.Verifier) (Checkpoint, error) {
	data, err := s.read(logName, fileCheckpoint)
	if err != nil || data == nil {
		return EmptyTree(origin), err
	}
	cp, err := ParseCheckpoint(data, origin, v)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("witness: state of log %s: %w: %w", logName, ErrState, err)
	}
	return cp, nil
}

// SaveCheckpoint durably records cp as the latest cosigned checkpoint.
func (s *Store) SaveCheckpoint(logName string, cp Checkpoint) error {
	return s.write(logName, fileCheckpoint, cp.Note)
}

// Kinds of a Refusal.
const (
	RefusedFork     = "fork"
	RefusedRollback = "rollback"
	RefusedBadProof = "bad-proof"
)

// Refusal is signed evidence that a log misbehaved: the checkpoint the
// witness trusted and the one it refused. A log with a fork or bad-proof
// refusal on record is not followed nor cosigned again until an operator
// removes the record (docs/witness.md "Refusals").
type Refusal struct {
	Kind    string    `json:"kind"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
	Trusted []byte    `json:"trusted"` // signed note
	Refused []byte    `json:"refused"` // signed note
}

// Halts reports whether the refusal stops the witness from following the
// log: a fork or a bad proof means the log signed two histories.
func (r *Refusal) Halts() bool {
	return r != nil && (r.Kind == RefusedFork || r.Kind == RefusedBadProof)
}

// Err returns the follower error of the refusal's kind.
func (r *Refusal) Err() error {
	switch r.Kind {
	case RefusedFork:
		return ErrFork
	case RefusedRollback:
		return ErrRollback
	}
	return ErrBadProof
}

// refusalKind returns the Refusal kind of a follower error, or "".
func refusalKind(err error) string {
	switch {
	case errors.Is(err, ErrFork):
		return RefusedFork
	case errors.Is(err, ErrRollback):
		return RefusedRollback
	case errors.Is(err, ErrBadProof):
		return RefusedBadProof
	}
	return ""
}

// LoadRefusal returns the refusal on record for the log, or nil.
func (s *Store) LoadRefusal(logName string) (*Refusal, error) {
	data, err := s.read(logName, fileRefusal)
	if err != nil || data == nil {
		return nil, err
	}
	var r Refusal
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("witness: refusal of log %s: %w", logName, err)
	}
	if r.Kind != RefusedFork && r.Kind != RefusedRollback && r.Kind != RefusedBadProof {
		return nil, fmt.Errorf("witness: refusal of log %s: kind %q: %w", logName, r.Kind, ErrState)
	}
	return &r, nil
}

// SaveRefusal durably records a refusal. A halting refusal on record is
// never replaced by a non-halting one.
func (s *Store) SaveRefusal(logName string, r Refusal) error {
	if old, err := s.LoadRefusal(logName); err == nil && old.Halts() && !r.Halts() {
		return nil
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("witness: refusal: %w", err)
	}
	return s.write(logName, fileRefusal, data)
}

// LoadFold returns the fold snapshot of the log, or nil if there is none.
func (s *Store) LoadFold(logName string) ([]byte, error) {
	return s.read(logName, fileFold)
}

// SaveFold durably records a fold snapshot.
func (s *Store) SaveFold(logName string, snapshot []byte) error {
	if !json.Valid(snapshot) || !bytes.HasPrefix(snapshot, []byte("{")) {
		return fmt.Errorf("witness: fold snapshot of log %s is not a JSON object: %w", logName, ErrState)
	}
	return s.write(logName, fileFold, snapshot)
}
