package demo

// CheckLog is built on golang.org/x/mod's sumdb/note and sumdb/tlog,
// transparency-dev's cosignature verifier and attest.Parse, and none of
// skyline's log, witness or api code: the end-to-end test relies on it, so
// that a role replaced by a stub (a log that keeps no Merkle tree, a
// witness that does not cosign or sign, a builder that does not build) is
// caught by what the public read API serves, not by what the stub says
// about itself.

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
	"time"

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
	// ErrLookup: the lookup answer is malformed, names an entry about
	// another package, or leaves out an attestation or verdict about the
	// package.
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
	// Coordinator may sign enrolments, revocations, jobs, leases, lease
	// ends and job closes; Importer official builds; Admin alarm clears;
	// Witnesses' verdict keys verdicts and alarms; Builders' keys build
	// attestations.
	Coordinator *attest.Verifier
	Importer    *attest.Verifier
	Admin       *attest.Verifier // alarm clears; optional
	Witnesses   []CheckWitness
	Builders    []CheckBuilder
	// Client makes the requests. Default: a client with a 30 s timeout.
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
	// All is every entry of the tree, by index, each proven in it and
	// signed by a key allowed to make it.
	All []CheckedEntry
	// Entries are the entries about each NVR asked for (attestations,
	// verdicts, jobs, leases, job closes), by index; the log's lookup
	// index named each of them and nothing else.
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

// Alarms returns the alarm entries.
func (c *CheckedLog) Alarms() []CheckedEntry {
	var out []CheckedEntry
	for _, e := range c.All {
		if _, ok := e.Entry.Value.(*attest.Alarm); ok {
			out = append(out, e)
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
// tlog-cosignature). It then reads every entry of the tree from the entry
// bundles (C2SP tlog-tiles), proves each in the checkpoint's tree with
// sumdb/tlog over the hash tiles (RFC 6962 leaf hash and inclusion
// proof), parses it with attest.Parse and verifies its signature with the
// key allowed to sign that kind of entry. Last, for each NVR, it checks
// the log's lookup index against what it read: every entry the index
// names is about the NVR, and every attestation and verdict about the NVR
// is named.
func CheckLog(ctx context.Context, lc LogCheck, nvrs []string) (*CheckedLog, error) {
	if lc.Client == nil {
		lc.Client = &http.Client{Timeout: 30 * time.Second}
	}
	r := &reader{ctx: ctx, c: lc.Client, base: strings.TrimSuffix(lc.URL, "/"), cache: map[string][]byte{}}
	raw, err := r.get("checkpoint")
	if err != nil {
		return nil, err
	}
	tree, cosigners, err := openCheckpoint(raw, lc)
	if err != nil {
		return nil, err
	}
	out := &CheckedLog{Size: uint64(tree.N), Root: tree.Hash, Cosigners: cosigners, Entries: map[string][]CheckedEntry{}}
	keys, err := signers(lc)
	if err != nil {
		return nil, err
	}
	hr := tlog.TileHashReader(tree, r)
	for n := int64(0); n<<tileHeight < tree.N; n++ {
		bt := tlog.Tile{H: tileHeight, L: -1, N: n, W: int(min(tree.N-n<<tileHeight, 1<<tileHeight))}
		data, err := r.get(tilePath(bt))
		if err != nil {
			return nil, err
		}
		entries, err := parseBundle(data, bt.W)
		if err != nil {
			return nil, fmt.Errorf("demo: check: %s: %w", tilePath(bt), err)
		}
		for j, e := range entries {
			i := n<<tileHeight + int64(j)
			if err := prove(hr, tree, i, e); err != nil {
				return nil, err
			}
			ce, err := checkEntry(e, i, keys)
			if err != nil {
				return nil, err
			}
			out.All = append(out.All, ce)
		}
	}
	for _, nvr := range nvrs {
		body, err := r.get("lookup/" + url.PathEscape(nvr))
		if err != nil {
			return nil, err
		}
		idx, err := parseLookup(body)
		if err != nil {
			return nil, fmt.Errorf("demo: check: lookup %s: %w", nvr, err)
		}
		named := map[uint64]bool{}
		for _, i := range idx {
			if i >= out.Size {
				continue // logged after the checkpoint
			}
			named[i] = true
			ce := out.All[i]
			if entryNVR(ce.Entry) != nvr {
				return nil, fmt.Errorf("demo: check: lookup %s names entry %d (%s) of another package: %w", nvr, i, ce.Entry.PayloadType, ErrLookup)
			}
			out.Entries[nvr] = append(out.Entries[nvr], ce)
		}
		for _, ce := range out.All {
			switch ce.Entry.Value.(type) {
			case *attest.Attestation, *attest.Verdict:
				if entryNVR(ce.Entry) == nvr && !named[ce.Index] {
					return nil, fmt.Errorf("demo: check: lookup %s hides entry %d (%s): %w", nvr, ce.Index, ce.Entry.PayloadType, ErrLookup)
				}
			}
		}
	}
	return out, nil
}

// entryNVR is the package an entry is about, if any.
func entryNVR(e *attest.Entry) string {
	switch v := e.Value.(type) {
	case *attest.Attestation:
		return v.Build.NVR
	case *attest.Verdict:
		return v.Build.NVR
	case *attest.Job:
		return v.Build.NVR
	case *attest.Lease:
		return v.Build.NVR
	case *attest.JobClose:
		return v.Build.NVR
	}
	return ""
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
	// cache holds the tiles read (a tile path names fixed contents);
	// TileHashReader checks them against the root whenever it uses them.
	cache map[string][]byte
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
		b, ok := r.cache[tilePath(t)]
		if !ok {
			var err error
			if b, err = r.get(tilePath(t)); err != nil {
				return nil, err
			}
			r.cache[tilePath(t)] = b
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

// prove proves entry i, e, in the tree: its RFC 6962 leaf hash (section
// 2.1, SHA-256(0x00 || entry)) and an inclusion proof from the
// authenticated hash tiles, checked against the root.
func prove(hr tlog.HashReader, tree tlog.Tree, i int64, e []byte) error {
	proof, err := tlog.ProveRecord(tree.N, i, hr)
	if err != nil {
		return fmt.Errorf("demo: check: entry %d: %w: %v", i, ErrInclusion, err)
	}
	if err := tlog.CheckRecord(proof, tree.N, tree.Hash, i, tlog.RecordHash(e)); err != nil {
		return fmt.Errorf("demo: check: entry %d: %w: %v", i, ErrInclusion, err)
	}
	return nil
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
	role string // "coordinator", "importer", "admin", "witness", "builder"
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
	if lc.Admin != nil {
		add(lc.Admin, "admin", "admin")
	}
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
	case *attest.AlarmClear:
		role = "admin"
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
