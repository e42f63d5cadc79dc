package log

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
)

// Indexer extracts from an entry what the log indexes: the deduplication key
// (for skyline: sha256(payload) || signer key id) and the NVR index keys.
// An empty dedup key means the entry is never deduplicated. An error rejects
// the entry: Add returns it wrapped in ErrInvalidEntry and stores nothing.
// It is called concurrently and must be deterministic: RebuildIndex and
// recovery call it again on stored entries.
type Indexer func(entry []byte) (dedup []byte, keys []IndexKey, err error)

// IndexKey is one entry of the per-NVR index.
type IndexKey struct {
	NVR, Type string
}

// IndexRef is one result of Lookup: an entry of the given type at Index.
type IndexRef struct {
	Index uint64
	Type  string
}

// AddResult is the outcome of Add.
type AddResult struct {
	// Index is the entry's position in the log.
	Index uint64
	// Duplicate is true when an entry with the same deduplication key was
	// already in the log: Index is then that entry's index and nothing was
	// written.
	Duplicate bool
}

// Config configures a Log. Only Origin and Signer are required.
type Config struct {
	// Dir is the directory of the Pebble database. Required unless Storage
	// is set.
	Dir string
	// Storage overrides Dir with another Storage (tests use a
	// fault-injecting one). The Log closes it on Close. Default: nil.
	Storage Storage
	// Origin is the checkpoint origin line (C2SP tlog-checkpoint), e.g.
	// "log.skyline.example". Required.
	Origin string
	// Signer signs checkpoints; an Ed25519 note key whose name is usually
	// Origin. Required.
	Signer note.Signer
	// Indexer extracts the dedup key and NVR index keys of an entry.
	// Default nil: entries are deduplicated on their exact bytes (leaf hash)
	// and nothing is indexed by NVR.
	Indexer Indexer
	// CheckpointInterval is how often a checkpoint is signed when the tree
	// grew. Default 1s.
	CheckpointInterval time.Duration
	// MaxEntrySize is the largest entry accepted, at most 65535 (the
	// tlog-tiles entry bundle limit). Default 65535.
	MaxEntrySize int
	// MaxBatchEntries caps the entries committed with one fsync. Default 4096.
	MaxBatchEntries int
	// MaxBatchBytes caps the entry bytes committed with one fsync.
	// Default 16 MiB.
	MaxBatchBytes int
	// MaxPending caps the Adds queued for the sequencer; further Adds wait
	// (respecting their context). Default 65536.
	MaxPending int
	// Logger receives operational events. Default: discard.
	Logger *slog.Logger
	// Registerer, when set, receives the log's Prometheus metrics.
	// Default nil: no metrics.
	Registerer prometheus.Registerer
}

// Defaults for the zero values of Config.
const (
	DefaultCheckpointInterval = time.Second
	DefaultMaxEntrySize       = 65535
	DefaultMaxBatchEntries    = 4096
	DefaultMaxBatchBytes      = 16 << 20
	DefaultMaxPending         = 65536
)

// Errors of the log package, checked with errors.Is.
var (
	// ErrNotFound: the path, entry, leaf hash or key is absent.
	ErrNotFound = errors.New("log: not found")
	// ErrBadPath: a read path is not a canonical tlog-tiles path.
	ErrBadPath = errors.New("log: bad path")
	// ErrBadBundle: an entry bundle is malformed.
	ErrBadBundle = errors.New("log: bad entry bundle")
	// ErrInvalidEntry: an entry is empty, too large or rejected by the Indexer.
	ErrInvalidEntry = errors.New("log: invalid entry")
	// ErrBeyondTree: a proof or read asks for a size the tree has not reached.
	ErrBeyondTree = errors.New("log: beyond tree size")
	// ErrClosed: the Log is closed.
	ErrClosed = errors.New("log: closed")
	// ErrFailed: a storage write failed; the Log accepts nothing more and
	// must be reopened (recovery then restores the last durable state).
	ErrFailed = errors.New("log: storage failed")
	// ErrCorrupt: stored data disagrees with itself or with the last signed
	// checkpoint.
	ErrCorrupt = errors.New("log: stored tree corrupt")
	// ErrConfig: the Config is invalid.
	ErrConfig = errors.New("log: bad config")
)
