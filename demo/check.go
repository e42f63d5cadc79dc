package demo

// CheckLog checks a skyline log from the outside, as a third party would:
// through the C2SP tlog-tiles read API only, with golang.org/x/mod's
// sumdb/note and sumdb/tlog, transparency-dev's cosignature verifier and
// attest.Parse, and none of skyline's log, witness or api code. The
// end-to-end test relies on it, so that a role replaced by a stub (a log
// that does not keep a Merkle tree, a witness that does not cosign or
// sign, a builder that does not build) is caught by what the public API
// serves, not by what the stub says about itself.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fedora-skyline/skyline/attest"
)

// Errors of CheckLog.
var (
	// ErrCheckpoint: the checkpoint is not signed by the log key, is not
	// for the origin, or is malformed.
	ErrCheckpoint = errors.New("bad checkpoint")
	// ErrBundle: an entry bundle is malformed or has the wrong size.
	ErrBundle = errors.New("bad entry bundle")
	// ErrInclusion: an entry is not in the checkpoint's tree.
	ErrInclusion = errors.New("entry not proven in the tree")
	// ErrSigner: an entry is not signed by a key allowed to make it.
	ErrSigner = errors.New("entry not signed by an allowed key")
	// ErrLookup: the lookup answer is malformed.
	ErrLookup = errors.New("bad lookup answer")
)

// tileHeight is the height of C2SP tlog-tiles tiles (256 hashes wide).
const tileHeight = 8

// maxRead bounds one response of the read API: a full hash tile is 8 KiB,
// a full entry bundle at most 256 × (2 + 65535) bytes.
const maxRead = 256*(2+attest.MaxEntrySize) + 1

// LogCheck is what CheckLog trusts.
type LogCheck struct {
	URL     string // the log's base URL
	Origin  string // the checkpoint origin
	LogVKey string // the log's signed-note verifier key
	// Coordinator may sign enrolments, jobs, leases, lease ends and job
	// closes; Importer official builds; Witnesses' verdict keys verdicts
	// and alarms; Builders' keys build attestations.
	Coordinator *attest.Verifier
	Importer    *attest.Verifier
	Witnesses   []CheckWitness
	Builders    []CheckBuilder
	// Client makes the requests. Default: http.DefaultClient.
	Client *http.Client
}

// CheckWitness is a witness CheckLog trusts.
type CheckWitness struct {
	Name       string
	CosignVKey string // C2SP tlog-cosignature verifier key
	Verdict    *attest.Verifier
}

// CheckBuilder is a builder CheckLog trusts.
type CheckBuilder struct {
	Operator string
	KeyID    string
	Public   string // PKIX PEM file of its key
}

// CheckedLog is what CheckLog verified.
type CheckedLog struct {
	Size      uint64
	Root      tlog.Hash
	Cosigners []string // witnesses whose cosignature verified
	// Entries are, per NVR, the entries the lookup index names, each
	// proven in the tree and signed by a key allowed to make it, by index.
	Entries map[string][]CheckedEntry
}

// CheckedEntry is one verified entry.
type CheckedEntry struct {
	Index uint64
	// Signer names the key: "coordinator", "importer", a witness's name
	// or a builder's operator.
	Signer string
	Entry  *attest.Entry
}

// VerdictsBy returns the latest verdict of each witness on nvr, by
// witness name.
func (c *CheckedLog) VerdictsBy(nvr string) map[string]*attest.Verdict {
	out := map[string]*attest.Verdict{}
	for _, e := range c.Entries[nvr] {
		if v, ok := e.Entry.Value.(*attest.Verdict); ok {
			out[e.Signer] = v
		}
	}
	return out
}

// Attestations returns the build attestations on nvr, by builder
// operator ("importer" for the official build).
func (c *CheckedLog) Attestations(nvr string) map[string]*attest.Attestation {
	out := map[string]*attest.Attestation{}
	for _, e := range c.Entries[nvr] {
		if a := e.Entry.Attestation(); a != nil {
			out[e.Signer] = a
		}
	}
	return out
}

// CheckLog fetches the log's checkpoint and verifies the log's signature
// and the witnesses' cosignatures (C2SP tlog-checkpoint, signed-note,
// tlog-cosignature); then, for each NVR, the entries the lookup index
// names: each is read from its entry bundle (C2SP tlog-tiles), proven in
// the checkpoint's tree with sumdb/tlog over the hash tiles (RFC 6962
// leaf hash and inclusion proof), parsed with attest.Parse and its
// signature verified with the key allowed to sign that kind of entry.
func CheckLog(ctx context.Context, lc LogCheck, nvrs []string) (*CheckedLog, error) {
	if lc.Client == nil {
		lc.Client = http.DefaultClient
	}
	r := &reader{ctx: ctx, c: lc.Client, base: strings.TrimSuffix(lc.URL, "/")}
	raw, err := r.get("checkpoint")
	if err != nil {
		return nil, err
	}
	cp, cosigners, err := openCheckpoint(raw, lc)
	if err != nil {
		return nil, err
	}
	out := &CheckedLog{Size: uint64(cp.N), Root: cp.Hash, Cosigners: cosigners, Entries: map[string][]CheckedEntry{}}
	keys, err := signers(lc)
	if err != nil {
		return nil, err
	}
	hr := tlog.TileHashReader(cp, r)
	for _, nvr := range nvrs {
		body, err := r.get("lookup/" + url.PathEscape(nvr))
		if err != nil {
			return nil, err
		}
		idx, err := parseLookup(body)
		if err != nil {
			return nil, fmt.Errorf("demo: check: lookup %s: %w", nvr, err)
		}
		for _, i := range idx {
			if i >= uint64(cp.N) {
				continue // logged after the checkpoint
			}
			e, err := r.proveEntry(hr, cp, int64(i))
			if err != nil {
				return nil, err
			}
			ce, err := checkEntry(e, int64(i), keys)
			if err != nil {
				return nil, err
			}
			out.Entries[nvr] = append(out.Entries[nvr], ce)
		}
	}
	return out, nil
}

// openCheckpoint verifies a checkpoint note: the log's signature
// (C2SP signed-note), the body (C2SP tlog-checkpoint: origin, size, root,
// no extension lines) and which witnesses cosigned it (C2SP
// tlog-cosignature, cosignature/v1).
func openCheckpoint(raw []byte, lc LogCheck) (tlog.Tree, []string, error) {
	logV, err := note.NewVerifier(lc.LogVKey)
	if err != nil {
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: log key: %w: %v", ErrCheckpoint, err)
	}
	vs := []note.Verifier{logV}
	for _, w := range lc.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(w.CosignVKey)
		if err != nil {
			return tlog.Tree{}, nil, fmt.Errorf("demo: check: witness %s key: %w: %v", w.Name, ErrCheckpoint, err)
		}
		vs = append(vs, v)
	}
	n, err := note.Open(raw, note.VerifierList(vs...))
	if err != nil {
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint: %w: %v", ErrCheckpoint, err)
	}
	var cosigners []string
	logSigned := false
	for _, s := range n.Sigs {
		for i, v := range vs {
			if s.Name != v.Name() || s.Hash != v.KeyHash() {
				continue
			}
			if i == 0 {
				logSigned = true
			} else if !slices.Contains(cosigners, lc.Witnesses[i-1].Name) {
				cosigners = append(cosigners, lc.Witnesses[i-1].Name)
			}
		}
	}
	if !logSigned {
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint not signed by the log key: %w", ErrCheckpoint)
	}
	var c flog.Checkpoint
	rest, err := c.Unmarshal([]byte(n.Text))
	switch {
	case err != nil:
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint: %w: %v", ErrCheckpoint, err)
	case len(rest) > 0:
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint has extension lines: %w", ErrCheckpoint)
	case c.Origin != lc.Origin:
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint origin %q, want %q: %w", c.Origin, lc.Origin, ErrCheckpoint)
	case len(c.Hash) != tlog.HashSize || c.Size > 1<<62:
		return tlog.Tree{}, nil, fmt.Errorf("demo: check: checkpoint root of %d bytes or size %d: %w", len(c.Hash), c.Size, ErrCheckpoint)
	}
	return tlog.Tree{N: int64(c.Size), Hash: tlog.Hash(c.Hash)}, cosigners, nil
}

// reader reads the log's read API; it is the tlog.TileReader of the hash
// tiles.
type reader struct {
	ctx  context.Context
	c    *http.Client
	base string
}

func (r *reader) get(path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.base+"/"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("demo: check: %w", err)
	}
	resp, err := r.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("demo: check: GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRead))
	if err != nil {
		return nil, fmt.Errorf("demo: check: GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("demo: check: GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	if len(body) == maxRead {
		return nil, fmt.Errorf("demo: check: GET %s: more than %d bytes", path, maxRead-1)
	}
	return body, nil
}

// tilePath is the C2SP tlog-tiles path of a tile: sumdb's layout without
// the height element, and "entries" for the data tiles.
func tilePath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H))
	if t.L == -1 {
		p = "entries" + strings.TrimPrefix(p, "data")
	}
	return "tile/" + p
}

// Height implements tlog.TileReader.
func (r *reader) Height() int { return tileHeight }

// ReadTiles implements tlog.TileReader. TileHashReader authenticates what
// it returns against the tree's root.
func (r *reader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.get(tilePath(t))
		if err != nil {
			return nil, err
		}
		if len(b) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("demo: check: %s has %d bytes, want %d: %w", tilePath(t), len(b), t.W*tlog.HashSize, ErrInclusion)
		}
		out[i] = b
	}
	return out, nil
}

// SaveTiles implements tlog.TileReader: nothing is cached.
func (r *reader) SaveTiles([]tlog.Tile, [][]byte) {}

// proveEntry reads entry i from its entry bundle and proves it in the
// tree: its RFC 6962 leaf hash (section 2.1, SHA-256(0x00 || entry)), an
// inclusion proof from the authenticated hash tiles, checked against the
// root.
func (r *reader) proveEntry(hr tlog.HashReader, tree tlog.Tree, i int64) ([]byte, error) {
	bt := tlog.Tile{H: tileHeight, L: -1, N: i >> tileHeight, W: 1 << tileHeight}
	if last := tree.N >> tileHeight; bt.N == last {
		bt.W = int(tree.N - last<<tileHeight)
	}
	data, err := r.get(tilePath(bt))
	if err != nil {
		return nil, err
	}
	entries, err := parseBundle(data, bt.W)
	if err != nil {
		return nil, fmt.Errorf("demo: check: %s: %w", tilePath(bt), err)
	}
	e := entries[i-bt.N<<tileHeight]
	proof, err := tlog.ProveRecord(tree.N, i, hr)
	if err != nil {
		return nil, fmt.Errorf("demo: check: entry %d: %w: %v", i, ErrInclusion, err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, i, tlog.RecordHash(e)); err != nil {
		return nil, fmt.Errorf("demo: check: entry %d: %w: %v", i, ErrInclusion, err)
	}
	return e, nil
}

// parseBundle splits a C2SP tlog-tiles entry bundle: want entries, each a
// big-endian uint16 length and that many bytes, and nothing after them.
func parseBundle(data []byte, want int) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, fmt.Errorf("truncated length after %d entries: %w", len(out), ErrBundle)
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry %d: %d bytes, %d left: %w", len(out), n, len(data)-2, ErrBundle)
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d entries, want %d: %w", len(out), want, ErrBundle)
	}
	return out, nil
}

// parseLookup parses a lookup answer ({"nvr":..., "entries":[{"index":
// N, "type": T}]}) strictly and returns the indices, ascending.
func parseLookup(body []byte) ([]uint64, error) {
	var lr struct {
		NVR     string `json:"nvr"`
		Entries []struct {
			Index *uint64 `json:"index"`
			Type  string  `json:"type"`
		} `json:"entries"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&lr); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLookup, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data: %w", ErrLookup)
	}
	var idx []uint64
	for _, e := range lr.Entries {
		if e.Index == nil {
			return nil, fmt.Errorf("entry without index: %w", ErrLookup)
		}
		idx = append(idx, *e.Index)
	}
	slices.Sort(idx)
	return slices.Compact(idx), nil
}

// keyring maps key ids to their verifier and who they are.
type keyring map[string]struct {
	v    *attest.Verifier
	who  string
	role string // "coordinator", "importer", "witness", "builder"
}

func signers(lc LogCheck) (keyring, error) {
	k := keyring{}
	add := func(v *attest.Verifier, who, role string) {
		k[v.KeyID()] = struct {
			v    *attest.Verifier
			who  string
			role string
		}{v, who, role}
	}
	if lc.Coordinator == nil || lc.Importer == nil {
		return nil, fmt.Errorf("demo: check: coordinator and importer keys are required: %w", ErrSigner)
	}
	add(lc.Coordinator, "coordinator", "coordinator")
	add(lc.Importer, "importer", "importer")
	for _, w := range lc.Witnesses {
		add(w.Verdict, w.Name, "witness")
	}
	for _, b := range lc.Builders {
		v, err := attest.LoadVerifier(b.Public)
		if err != nil {
			return nil, fmt.Errorf("demo: check: builder %s: %w", b.Operator, err)
		}
		if v.KeyID() != b.KeyID {
			return nil, fmt.Errorf("demo: check: builder %s key id %s, file has %s: %w", b.Operator, b.KeyID, v.KeyID(), ErrSigner)
		}
		add(v, b.Operator, "builder")
	}
	return k, nil
}

// checkEntry parses an entry strictly, verifies its signature and that
// its signer may make it.
func checkEntry(data []byte, i int64, keys keyring) (CheckedEntry, error) {
	e, err := attest.Parse(data, attest.ParseOptions{Keys: func(id string) (*attest.Verifier, error) {
		k, ok := keys[id]
		if !ok {
			return nil, fmt.Errorf("unknown key: %w", ErrSigner)
		}
		return k.v, nil
	}})
	if err != nil {
		return CheckedEntry{}, fmt.Errorf("demo: check: entry %d: %w", i, err)
	}
	k := keys[e.KeyID]
	role := "coordinator"
	switch v := e.Value.(type) {
	case *attest.Verdict, *attest.Alarm:
		role = "witness"
	case *attest.Attestation:
		role = "builder"
		if v.Official {
			role = "importer"
		}
	}
	if k.role != role {
		return CheckedEntry{}, fmt.Errorf("demo: check: entry %d (%s) signed by %s, a %s key: %w", i, e.PayloadType, k.who, k.role, ErrSigner)
	}
	return CheckedEntry{Index: uint64(i), Signer: k.who, Entry: e}, nil
}
