package log

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// TileHeight is the height of every hash tile (C2SP tlog-tiles: "tiles of
// height 8"), so a full tile holds TileWidth hashes and a full entry bundle
// TileWidth entries.
const (
	TileHeight = 8
	TileWidth  = 1 << TileHeight
)

// maxTileLevel bounds the level in a tile path: 64 levels of height 8 cover
// far more than 2^64 leaves (C2SP tlog-tiles: "L ... between 0 and 63").
const maxTileLevel = 63

// TilePath names one resource of the tlog-tiles read API.
type TilePath struct {
	// Checkpoint is true for the "checkpoint" path; the other fields are zero.
	Checkpoint bool
	// Entries is true for an entry bundle (tile/entries/...); Level is 0.
	Entries bool
	// Level is the hash tile level L.
	Level uint8
	// Index is the tile index N.
	Index uint64
	// Width is the partial width W in 1..255, or 0 for a full tile.
	Width uint16
}

// String returns the canonical path (C2SP tlog-tiles "Paths").
func (p TilePath) String() string {
	if p.Checkpoint {
		return "checkpoint"
	}
	var b strings.Builder
	b.WriteString("tile/")
	if p.Entries {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(int(p.Level)))
	}
	b.WriteByte('/')
	b.WriteString(encodeTileIndex(p.Index))
	if p.Width > 0 {
		b.WriteString(".p/")
		b.WriteString(strconv.Itoa(int(p.Width)))
	}
	return b.String()
}

// encodeTileIndex writes N as 3-digit path elements, all but the last
// prefixed with "x" (C2SP tlog-tiles: "N ... encoded as zero-padded 3-digit
// path elements").
func encodeTileIndex(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	return s
}

// ParseTilePath parses a tlog-tiles path strictly: it accepts only the
// canonical spelling that String produces, and returns ErrBadPath otherwise.
func ParseTilePath(path string) (TilePath, error) {
	bad := func(why string) (TilePath, error) {
		return TilePath{}, fmt.Errorf("%w: %q: %s", ErrBadPath, truncate(path, 128), why)
	}
	if path == "checkpoint" {
		return TilePath{Checkpoint: true}, nil
	}
	if len(path) > 128 {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return bad("not a checkpoint or tile path")
	}
	var p TilePath
	first, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return bad("missing tile index")
	}
	if first == "entries" {
		p.Entries = true
	} else {
		l, err := parseDecimal(first, maxTileLevel)
		if err != nil {
			return bad("level: " + err.Error())
		}
		p.Level = uint8(l)
	}
	idx, width, partial := strings.Cut(rest, ".p/")
	if partial {
		w, err := parseDecimal(width, TileWidth-1)
		if err != nil || w == 0 {
			return bad("partial width must be 1..255")
		}
		p.Width = uint16(w)
	}
	elems := strings.Split(idx, "/")
	var n uint64
	for i, e := range elems {
		last := i == len(elems)-1
		if !last {
			d, ok := strings.CutPrefix(e, "x")
			if !ok {
				return bad("non-final index element without x prefix")
			}
			e = d
		}
		if len(e) != 3 || e[0] < '0' || e[0] > '9' || e[1] < '0' || e[1] > '9' || e[2] < '0' || e[2] > '9' {
			return bad("index element is not 3 digits")
		}
		d := uint64(e[0]-'0')*100 + uint64(e[1]-'0')*10 + uint64(e[2]-'0')
		if n > (1<<64-1-d)/1000 {
			return bad("index overflows")
		}
		n = n*1000 + d
	}
	p.Index = n
	if p.String() != path {
		return bad("not canonical")
	}
	return p, nil
}

// parseDecimal parses a decimal without sign or leading zeros, at most max.
func parseDecimal(s string, max uint64) (uint64, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("not a canonical decimal")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("not a canonical decimal")
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v > max {
		return 0, fmt.Errorf("out of range")
	}
	return v, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// AppendEntryBundle appends entry to an entry bundle: a big-endian uint16
// length, then the bytes (C2SP tlog-tiles "Log Entries").
func AppendEntryBundle(bundle, entry []byte) []byte {
	bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(entry)))
	return append(bundle, entry...)
}

// ParseEntryBundle splits an entry bundle (C2SP tlog-tiles "Log Entries")
// into its entries, which alias b. It rejects trailing bytes, truncated
// entries and more than TileWidth entries with ErrBadBundle.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	var entries [][]byte
	for off := 0; off < len(b); {
		if len(entries) == TileWidth {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadBundle, TileWidth)
		}
		if len(b)-off < 2 {
			return nil, fmt.Errorf("%w: truncated length at byte %d", ErrBadBundle, off)
		}
		n := int(binary.BigEndian.Uint16(b[off:]))
		off += 2
		if len(b)-off < n {
			return nil, fmt.Errorf("%w: entry %d: length %d exceeds remaining %d bytes", ErrBadBundle, len(entries), n, len(b)-off)
		}
		entries = append(entries, b[off:off+n:off+n])
		off += n
	}
	return entries, nil
}
