package witness

// The follower: a client of a C2SP tlog-tiles log (https://c2sp.org/tlog-tiles)
// that trusts nothing the log serves until it is checked against the log's
// signed checkpoint (C2SP tlog-checkpoint in a C2SP signed-note) and, across
// checkpoints, against the last tree it verified (RFC 6962 section 2.1.2
// consistency, proved from tiles authenticated by the new checkpoint).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	fmtlog "github.com/transparency-dev/formats/log"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedora-skyline/skyline/log"
)

// Errors of the follower, one per way a log can fail to convince it,
// checked with errors.Is. ErrFork, ErrRollback and ErrBadProof are signed
// evidence of log misbehaviour; ErrBadSignature, ErrBadCheckpoint,
// ErrBadTile and ErrHiddenEntry may also come from a broken cache or a
// machine in the middle; ErrFetch is a transport failure worth retrying.
var (
	// ErrFork: the log signed two different roots for one tree size.
	ErrFork = errors.New("log forked: two roots for one tree size")
	// ErrRollback: the log signed a tree smaller than one already verified.
	ErrRollback = errors.New("log rolled back to a smaller tree")
	// ErrBadProof: a consistency proof does not connect the verified tree
	// to the new one (for a proof computed from authenticated tiles, the new
	// tree does not contain the old one: the log forked).
	ErrBadProof = errors.New("consistency proof does not verify")
	// ErrBadSignature: the checkpoint carries no valid signature of the
	// log's key.
	ErrBadSignature = errors.New("checkpoint not signed by the log key")
	// ErrBadCheckpoint: the checkpoint is malformed, too large, of another
	// origin or carries extension lines.
	ErrBadCheckpoint = errors.New("malformed checkpoint")
	// ErrBadTile: a hash tile is malformed or does not hash to the signed
	// root.
	ErrBadTile = errors.New("tile does not match the signed tree")
	// ErrHiddenEntry: an entry bundle is malformed or its entries are not
	// the leaves of the signed tree (an entry was hidden or replaced).
	ErrHiddenEntry = errors.New("entry bundle does not match the signed tree")
	// ErrFetch: the log could not be reached or answered with an error.
	ErrFetch = errors.New("fetch from log failed")
	// ErrRange: entries were asked for beyond the verified tree.
	ErrRange = errors.New("entries beyond the verified tree")
)

// Read limits (C2SP tlog-tiles: a tile holds at most 256 hashes, an entry
// bundle at most 256 entries of at most 65535 bytes).
const (
	maxCheckpointSize = 64 << 10
	maxTileSize       = log.TileWidth * tlog.HashSize
	maxBundleSize     = log.TileWidth * (2 + 65535)
	defaultTimeout    = 30 * time.Second
	maxCachedTiles    = 4096
)

// Checkpoint is a verified checkpoint: the tree it commits to and the signed
// note it came in.
type Checkpoint struct {
	Origin string
	Size   uint64
	Hash   tlog.Hash
	// Note is the signed note as received (log signature and any
	// cosignatures).
	Note []byte
}

func (c Checkpoint) tree() tlog.Tree { return tlog.Tree{N: int64(c.Size), Hash: c.Hash} }

// EmptyTree returns the checkpoint of the empty tree of origin: the state a
// follower starts from when it has verified nothing yet (RFC 6962 section
// 2.1: the hash of the empty tree is SHA-256 of the empty string).
func EmptyTree(origin string) Checkpoint {
	h, _ := tlog.TreeHash(0, nil)
	return Checkpoint{Origin: origin, Hash: h}
}

// ParseCheckpoint opens a signed checkpoint note (C2SP signed-note) with the
// log's verifier, ignoring signatures of other keys (cosignatures), and
// parses its body (C2SP tlog-checkpoint), which must name origin and carry
// no extension lines.
func ParseCheckpoint(data []byte, origin string, v note.Verifier) (Checkpoint, error) {
	if len(data) > maxCheckpointSize {
		return Checkpoint{}, fmt.Errorf("witness: checkpoint of %d bytes: %w", len(data), ErrBadCheckpoint)
	}
	n, err := note.Open(data, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified), errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("witness: checkpoint: %w: %v", ErrBadSignature, err)
		}
		return Checkpoint{}, fmt.Errorf("witness: checkpoint: %w: %v", ErrBadCheckpoint, err)
	}
	var c fmtlog.Checkpoint
	rest, err := c.Unmarshal([]byte(n.Text))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("witness: checkpoint body: %w: %v", ErrBadCheckpoint, err)
	}
	// ARCHITECTURE.md "Wire formats": no extension lines.
	if len(rest) > 0 {
		return Checkpoint{}, fmt.Errorf("witness: checkpoint has extension lines: %w", ErrBadCheckpoint)
	}
	if c.Origin != origin {
		return Checkpoint{}, fmt.Errorf("witness: checkpoint origin %q, want %q: %w", trunc(c.Origin), origin, ErrBadCheckpoint)
	}
	if len(c.Hash) != tlog.HashSize || c.Size > 1<<62 {
		return Checkpoint{}, fmt.Errorf("witness: checkpoint root of %d bytes at size %d: %w", len(c.Hash), c.Size, ErrBadCheckpoint)
	}
	cp := Checkpoint{Origin: c.Origin, Size: c.Size, Note: bytes.Clone(data)}
	copy(cp.Hash[:], c.Hash)
	return cp, nil
}

func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	// URL is the base URL of the log's tlog-tiles read API: the checkpoint
	// is at URL + "/checkpoint". Required.
	URL string
	// Origin is the origin line the log's checkpoints carry. Required.
	Origin string
	// Verifier is the log's signed-note key. Required.
	Verifier note.Verifier
	// Client makes the HTTP requests. Default: a client with a 30 s
	// timeout.
	Client *http.Client
}

// Follower follows one log: it fetches and verifies checkpoints, checks
// every new one against the last tree it verified, and reads entries, each
// checked against the verified tree. It is the library that the witness,
// `skyline verify` and `skyline audit` read logs with. Safe for concurrent
// use.
type Follower struct {
	cfg  FollowerConfig
	base *url.URL

	upd     sync.Mutex // serializes Update and Advance
	mu      sync.Mutex
	trusted Checkpoint
	cache   *tileCache
}

// NewFollower returns a follower that trusts trusted (EmptyTree(origin) when
// it has verified nothing yet).
func NewFollower(cfg FollowerConfig, trusted Checkpoint) (*Follower, error) {
	if cfg.URL == "" || cfg.Origin == "" || cfg.Verifier == nil {
		return nil, fmt.Errorf("witness: follower needs a URL, an origin and a log key: %w", ErrConfig)
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("witness: log URL %q is not an http(s) URL: %w", cfg.URL, ErrConfig)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: defaultTimeout}
	}
	if trusted.Origin != cfg.Origin {
		return nil, fmt.Errorf("witness: trusted checkpoint of origin %q, log is %q: %w", trusted.Origin, cfg.Origin, ErrConfig)
	}
	return &Follower{cfg: cfg, base: u, trusted: trusted}, nil
}

// Trusted returns the last verified checkpoint.
func (f *Follower) Trusted() Checkpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trusted
}

// Origin returns the log's origin.
func (f *Follower) Origin() string { return f.cfg.Origin }

// Verifier returns the log's key.
func (f *Follower) Verifier() note.Verifier { return f.cfg.Verifier }

// FetchCheckpoint fetches the log's latest checkpoint and checks its
// signature and format; it does not compare it with the trusted tree.
func (f *Follower) FetchCheckpoint(ctx context.Context) (Checkpoint, error) {
	data, err := f.get(ctx, "checkpoint", maxCheckpointSize, ErrBadCheckpoint)
	if err != nil {
		return Checkpoint{}, err
	}
	return ParseCheckpoint(data, f.cfg.Origin, f.cfg.Verifier)
}

// Update fetches the latest checkpoint, verifies it and its consistency
// with the trusted one, and trusts it from then on. It returns the new
// trusted checkpoint (the old one when the log has not grown). On any error
// the trusted checkpoint is unchanged.
func (f *Follower) Update(ctx context.Context) (Checkpoint, error) {
	next, err := f.FetchCheckpoint(ctx)
	if err != nil {
		return Checkpoint{}, err
	}
	if err := f.Advance(ctx, next); err != nil {
		return Checkpoint{}, err
	}
	return f.Trusted(), nil
}

// Advance makes next the trusted checkpoint after checking its consistency
// with the trusted one (for a checkpoint obtained some other way, such as a
// witness's add-checkpoint request).
func (f *Follower) Advance(ctx context.Context, next Checkpoint) error {
	f.upd.Lock()
	defer f.upd.Unlock()
	old := f.Trusted()
	if err := f.CheckConsistency(ctx, old, next); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if next.Size > f.trusted.Size {
		f.trusted = next
	}
	return nil
}

// CheckConsistency checks that next extends old: a smaller tree is
// ErrRollback, another root at the same size ErrFork, and otherwise the
// RFC 6962 consistency proof from old to next, computed from tiles that
// are first authenticated against next's root (else ErrBadTile), must
// verify (else ErrBadProof).
func (f *Follower) CheckConsistency(ctx context.Context, old, next Checkpoint) error {
	switch {
	case next.Origin != old.Origin:
		return fmt.Errorf("witness: checkpoint of origin %q after %q: %w", next.Origin, old.Origin, ErrBadCheckpoint)
	case next.Size < old.Size:
		return fmt.Errorf("witness: %s: checkpoint of size %d after verified size %d: %w", f.cfg.Origin, next.Size, old.Size, ErrRollback)
	case next.Size == old.Size:
		if next.Hash != old.Hash {
			return fmt.Errorf("witness: %s: root %s at size %d, verified root %s: %w", f.cfg.Origin, next.Hash, next.Size, old.Hash, ErrFork)
		}
		return nil
	case old.Size == 0:
		return nil // the empty tree is a prefix of every tree
	}
	thr := tlog.TileHashReader(next.tree(), f.tileReader(ctx, next))
	p, err := tlog.ProveTree(int64(next.Size), int64(old.Size), thr)
	if err != nil {
		return f.tileErr(fmt.Sprintf("consistency %d..%d", old.Size, next.Size), err)
	}
	// RFC 6962 section 2.1.2: the proof must rebuild both roots.
	if err := tlog.CheckTree(p, int64(next.Size), next.Hash, int64(old.Size), old.Hash); err != nil {
		return fmt.Errorf("witness: %s: tree %d (%s) does not contain verified tree %d (%s): %w", f.cfg.Origin, next.Size, next.Hash, old.Size, old.Hash, ErrBadProof)
	}
	return nil
}

// tileErr classifies an error of the sumdb tile hash reader: our own
// fetch and tile errors pass through; anything else it raises means the
// tiles did not authenticate.
func (f *Follower) tileErr(what string, err error) error {
	if errors.Is(err, ErrFetch) || errors.Is(err, ErrBadTile) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("witness: %s: %s: %w", f.cfg.Origin, what, err)
	}
	return fmt.Errorf("witness: %s: %s: %w: %v", f.cfg.Origin, what, ErrBadTile, err)
}

// Entries reads the entries at [start, end) of the trusted tree from entry
// bundles and calls fn with each, in order. Every entry is checked against
// the tree: its leaf hash (RFC 6962 section 2.1) must be the one in the
// hash tiles authenticated by the trusted checkpoint (else ErrHiddenEntry).
// fn's data is only valid during the call.
func (f *Follower) Entries(ctx context.Context, start, end uint64, fn func(index uint64, entry []byte) error) error {
	tr := f.Trusted()
	return f.EntriesAt(ctx, tr, start, end, fn)
}

// EntriesAt is Entries against the tree of cp, a checkpoint the caller has
// verified.
func (f *Follower) EntriesAt(ctx context.Context, cp Checkpoint, start, end uint64, fn func(index uint64, entry []byte) error) error {
	if start > end || end > cp.Size {
		return fmt.Errorf("witness: %s: entries %d..%d of a tree of %d: %w", f.cfg.Origin, start, end, cp.Size, ErrRange)
	}
	thr := tlog.TileHashReader(cp.tree(), f.tileReader(ctx, cp))
	for n := start / log.TileWidth; n*log.TileWidth < end; n++ {
		first := n * log.TileWidth
		width := min(uint64(log.TileWidth), cp.Size-first)
		p := log.TilePath{Entries: true, Index: n}
		if width < log.TileWidth {
			p.Width = uint16(width)
		}
		data, err := f.get(ctx, p.String(), maxBundleSize, ErrHiddenEntry)
		if err != nil {
			return err
		}
		entries, err := log.ParseEntryBundle(data)
		if err != nil {
			return fmt.Errorf("witness: %s: %s: %w: %v", f.cfg.Origin, p, ErrHiddenEntry, err)
		}
		if uint64(len(entries)) != width {
			return fmt.Errorf("witness: %s: %s holds %d entries, the tree %d: %w", f.cfg.Origin, p, len(entries), width, ErrHiddenEntry)
		}
		lo, hi := max(start, first), min(end, first+width)
		idx := make([]int64, 0, hi-lo)
		for i := lo; i < hi; i++ {
			idx = append(idx, tlog.StoredHashIndex(0, int64(i)))
		}
		leaves, err := thr.ReadHashes(idx)
		if err != nil {
			return f.tileErr(p.String(), err)
		}
		for i := lo; i < hi; i++ {
			e := entries[i-first]
			// RFC 6962 section 2.1: leaf hash = SHA-256(0x00 || entry).
			if tlog.RecordHash(e) != leaves[i-lo] {
				return fmt.Errorf("witness: %s: entry %d is not the leaf the signed tree holds: %w", f.cfg.Origin, i, ErrHiddenEntry)
			}
			if err := fn(i, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// get fetches path under the log URL, at most max bytes; a body over the
// limit is the error tooLarge.
func (f *Follower) get(ctx context.Context, path string, max int64, tooLarge error) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.base.String()+"/"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("witness: %s: GET %s: %w: %v", f.cfg.Origin, path, ErrFetch, err)
	}
	resp, err := f.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness: %s: GET %s: %w: %v", f.cfg.Origin, path, ErrFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("witness: %s: GET %s: %s: %w", f.cfg.Origin, path, resp.Status, ErrFetch)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("witness: %s: GET %s: %w: %v", f.cfg.Origin, path, ErrFetch, err)
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("witness: %s: GET %s: more than %d bytes: %w", f.cfg.Origin, path, max, tooLarge)
	}
	return data, nil
}

// tileCache keeps hash tiles authenticated against one tree. Tiles are
// immutable once published, but one authenticated against a tree that is
// later refused (a fork) must not serve another tree, so the cache belongs
// to one root and is dropped when the root changes.
type tileCache struct {
	tree  tlog.Tree
	tiles map[tlog.Tile][]byte
}

// tileReader returns a sumdb TileReader over the log's hash tiles for the
// tree of cp, bound to ctx.
func (f *Follower) tileReader(ctx context.Context, cp Checkpoint) *httpTiles {
	return &httpTiles{f: f, ctx: ctx, tree: cp.tree()}
}

// httpTiles implements tlog.TileReader over C2SP tlog-tiles paths (which
// leave the tile height out of the path, unlike sumdb's).
type httpTiles struct {
	f    *Follower
	ctx  context.Context
	tree tlog.Tree
}

func (h *httpTiles) Height() int { return log.TileHeight }

func (h *httpTiles) cached(t tlog.Tile) ([]byte, bool) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	c := h.f.cache
	if c == nil || c.tree != h.tree {
		return nil, false
	}
	b, ok := c.tiles[t]
	return b, ok
}

func (h *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if b, ok := h.cached(t); ok {
			out[i] = b
			continue
		}
		p := log.TilePath{Level: uint8(t.L), Index: uint64(t.N)}
		if t.W < log.TileWidth {
			p.Width = uint16(t.W)
		}
		if t.L < 0 || t.L > 63 || t.H != log.TileHeight {
			return nil, fmt.Errorf("witness: tile %v: %w", t, ErrBadTile)
		}
		b, err := h.f.get(h.ctx, p.String(), maxTileSize, ErrBadTile)
		if err != nil {
			return nil, err
		}
		// C2SP tlog-tiles: a tile of width W is exactly W hashes.
		if len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("witness: %s: %s is %d bytes, want %d: %w", h.f.cfg.Origin, p, len(b), t.W*tlog.HashSize, ErrBadTile)
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles is called by the sumdb tile hash reader with tiles it has
// authenticated against h.tree.
func (h *httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	c := h.f.cache
	if c == nil || c.tree != h.tree || len(c.tiles)+len(tiles) > maxCachedTiles {
		c = &tileCache{tree: h.tree, tiles: make(map[tlog.Tile][]byte)}
		h.f.cache = c
	}
	for i, t := range tiles {
		c.tiles[t] = data[i]
	}
}
