// Package rpm reads RPM package files strictly and computes their
// skyline-rpm-v1 digest, a SHA-256 that is independent of the package's
// signatures and of a short list of volatile header tags.
//
// The file layout follows the RPM package file format (rpm.org,
// docs/manual/format.md and tags.md): a 96-byte lead, the signature header,
// padding to 8 bytes, the main header and the payload up to the end of the
// file. The digest is defined in docs/rpm-digest.md.
//
// Every size and offset is checked before it is used, so that hostile input
// gets a distinct error (ErrTruncated, ErrBadMagic, ErrHeaderTooLarge,
// ErrMalformed, ...) and never a panic or an unbounded allocation. The
// payload is streamed, never held in memory.
package rpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
)

// Errors returned for bad input. They are wrapped with context; check them
// with errors.Is.
var (
	// ErrTruncated: the input ended before a structure it announced.
	ErrTruncated = errors.New("truncated")
	// ErrBadMagic: the lead or a header does not start with its magic.
	ErrBadMagic = errors.New("bad magic")
	// ErrHeaderTooLarge: a header's index count or data size is above the
	// hard limits (MaxIndexEntries, MaxSignatureSize, MaxHeaderSize).
	ErrHeaderTooLarge = errors.New("header too large")
	// ErrMalformed: a header is structurally invalid: bad entry type,
	// offset outside the data store, misaligned or overlapping data,
	// unterminated string, duplicate tag, bad region, missing required tag.
	ErrMalformed = errors.New("malformed header")
	// ErrUnsupported: a valid but unsupported feature (lead version,
	// signature type, payload digest algorithm).
	ErrUnsupported = errors.New("unsupported")
	// ErrSizeMismatch: the file is longer than its signature header says.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrPayloadDigestMismatch: the payload bytes do not hash to the main
	// header's PAYLOADDIGEST.
	ErrPayloadDigestMismatch = errors.New("payload digest mismatch")
)

// Hard limits on headers. rpm itself accepts at most 0xffff index entries
// and 256 MiB of data; real packages stay far below these limits.
const (
	LeadSize         = 96
	MaxIndexEntries  = 0xffff   // per header
	MaxSignatureSize = 32 << 20 // index + data of the signature header
	MaxHeaderSize    = 64 << 20 // index + data of the main header
)

var (
	leadMagic   = []byte{0xed, 0xab, 0xee, 0xdb}
	headerMagic = []byte{0x8e, 0xad, 0xe8, 0x01}
)

// Entry types (format.md, "Index Entry").
const (
	TypeNull        = 0
	TypeChar        = 1
	TypeInt8        = 2
	TypeInt16       = 3
	TypeInt32       = 4
	TypeInt64       = 5
	TypeString      = 6
	TypeBin         = 7
	TypeStringArray = 8
	TypeI18NString  = 9
)

// Tags the reader itself interprets.
const (
	tagHeaderImage      = 61
	tagHeaderSignatures = 62
	tagHeaderImmutable  = 63
	tagHeaderRegions    = 64

	sigTagLongSize = 270
	sigTagSize     = 1000

	TagName              = 1000
	TagVersion           = 1001
	TagRelease           = 1002
	TagEpoch             = 1003
	TagArch              = 1022
	TagSourceRPM         = 1044
	TagPayloadDigest     = 5092
	TagPayloadDigestAlgo = 5093
)

// Entry is one header tag with its raw, big-endian data exactly as stored
// (for string types: every string with its terminating NUL).
type Entry struct {
	Tag   uint32
	Type  uint32
	Count uint32
	Data  []byte
}

// Header is a parsed header: its entries sorted by tag (region entries
// included) and the number of bytes it occupied in the file.
type Header struct {
	Entries []Entry
	Size    int64 // 16-byte intro + index + data store
}

// Get returns the entry for tag.
func (h *Header) Get(tag uint32) (Entry, bool) {
	i := sort.Search(len(h.Entries), func(i int) bool { return h.Entries[i].Tag >= tag })
	if i < len(h.Entries) && h.Entries[i].Tag == tag {
		return h.Entries[i], true
	}
	return Entry{}, false
}

// String returns the value of a STRING entry.
func (h *Header) String(tag uint32) (string, bool, error) {
	e, ok := h.Get(tag)
	if !ok {
		return "", false, nil
	}
	if e.Type != TypeString && e.Type != TypeI18NString {
		return "", false, fmt.Errorf("%w: tag %s has type %d, want string", ErrMalformed, tagName(e.Tag), e.Type)
	}
	s, _, _ := bytes.Cut(e.Data, []byte{0})
	return string(s), true, nil
}

// Uint32 returns the first value of an INT32 entry.
func (h *Header) Uint32(tag uint32) (uint32, bool, error) {
	e, ok := h.Get(tag)
	if !ok {
		return 0, false, nil
	}
	if e.Type != TypeInt32 {
		return 0, false, fmt.Errorf("%w: tag %s has type %d, want int32", ErrMalformed, tagName(e.Tag), e.Type)
	}
	return binary.BigEndian.Uint32(e.Data), true, nil
}

// Lead is the 96-byte lead (format.md, "Lead"); only what is checked.
type Lead struct {
	Major, Minor uint8
	Type         uint16 // 0 binary, 1 source
}

// Package is an RPM whose lead and headers have been read; Payload reads
// the rest of the file.
type Package struct {
	Lead      Lead
	Signature *Header
	Header    *Header
	// Payload reads the payload. When the signature header records the
	// size of header + payload, Payload returns ErrTruncated (instead of
	// io.EOF) if the file ends early and ErrSizeMismatch if it goes on.
	Payload io.Reader
	// PayloadSize is the payload size the signature header announces, or
	// -1 when it has neither SIZE nor LONGSIZE.
	PayloadSize int64
}

// Read reads the lead, the signature header and the main header from r and
// leaves r positioned at the start of the payload.
func Read(r io.Reader) (*Package, error) {
	p, err := read(r)
	if err != nil {
		return nil, fmt.Errorf("rpm: %w", err)
	}
	return p, nil
}

func read(r io.Reader) (*Package, error) {
	var lead [LeadSize]byte
	if err := readFull(r, lead[:], "lead"); err != nil {
		return nil, err
	}
	// format.md "Lead": magic, major version 3 or 4, signature type 5.
	if !bytes.Equal(lead[:4], leadMagic) {
		return nil, fmt.Errorf("%w: lead magic %x", ErrBadMagic, lead[:4])
	}
	l := Lead{Major: lead[4], Minor: lead[5], Type: binary.BigEndian.Uint16(lead[6:])}
	if l.Major != 3 && l.Major != 4 {
		return nil, fmt.Errorf("%w: lead version %d.%d", ErrUnsupported, l.Major, l.Minor)
	}
	if l.Type > 1 {
		return nil, fmt.Errorf("%w: lead type %d", ErrMalformed, l.Type)
	}
	if st := binary.BigEndian.Uint16(lead[78:]); st != 5 {
		return nil, fmt.Errorf("%w: signature type %d", ErrUnsupported, st)
	}
	sig, err := readHeader(r, "signature header", tagHeaderSignatures, MaxSignatureSize)
	if err != nil {
		return nil, err
	}
	// format.md "Signature": the signature header is padded to 8 bytes.
	if pad := (8 - sig.Size%8) % 8; pad > 0 {
		var p [8]byte
		if err := readFull(r, p[:pad], "signature header padding"); err != nil {
			return nil, err
		}
		if !bytes.Equal(p[:pad], make([]byte, pad)) {
			return nil, fmt.Errorf("%w: non-zero signature header padding", ErrMalformed)
		}
	}
	h, err := readHeader(r, "main header", tagHeaderImmutable, MaxHeaderSize)
	if err != nil {
		return nil, err
	}
	for _, tag := range []uint32{TagName, TagVersion, TagRelease} {
		s, ok, err := h.String(tag)
		if err != nil {
			return nil, fmt.Errorf("main header: %w", err)
		}
		if !ok || s == "" {
			return nil, fmt.Errorf("%w: main header: missing %s", ErrMalformed, tagName(tag))
		}
	}
	// format.md "Signature": SIZE / LONGSIZE is the size of main header +
	// payload.
	size := int64(-1)
	if e, ok := sig.Get(sigTagLongSize); ok {
		if e.Type != TypeInt64 {
			return nil, fmt.Errorf("%w: signature header: LONGSIZE has type %d", ErrMalformed, e.Type)
		}
		u := binary.BigEndian.Uint64(e.Data)
		if u > math.MaxInt64 {
			return nil, fmt.Errorf("%w: signature header: LONGSIZE %d", ErrMalformed, u)
		}
		size = int64(u)
	} else if e, ok := sig.Get(sigTagSize); ok {
		if e.Type != TypeInt32 {
			return nil, fmt.Errorf("%w: signature header: SIZE has type %d", ErrMalformed, e.Type)
		}
		size = int64(binary.BigEndian.Uint32(e.Data))
	}
	p := &Package{Lead: l, Signature: sig, Header: h, PayloadSize: -1}
	if size >= 0 {
		if size < h.Size {
			return nil, fmt.Errorf("%w: signature header size %d is smaller than the main header (%d)", ErrMalformed, size, h.Size)
		}
		p.PayloadSize = size - h.Size
		p.Payload = &exactReader{r: r, left: p.PayloadSize}
	} else {
		p.Payload = r
	}
	return p, nil
}

// exactReader reads exactly left bytes from r, then checks r is at EOF.
type exactReader struct {
	r    io.Reader
	left int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		var b [1]byte
		n, err := io.ReadFull(e.r, b[:])
		if n > 0 {
			return 0, fmt.Errorf("%w: data after the payload size the signature header announces", ErrSizeMismatch)
		}
		if err == io.EOF {
			return 0, io.EOF
		}
		return 0, fmt.Errorf("read payload: %w", err)
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF {
		if e.left > 0 {
			return n, fmt.Errorf("%w: payload: %d bytes missing", ErrTruncated, e.left)
		}
		err = nil
	}
	if err != nil {
		return n, fmt.Errorf("read payload: %w", err)
	}
	return n, nil
}

func readFull(r io.Reader, b []byte, what string) error {
	n, err := io.ReadFull(r, b)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: %s: got %d of %d bytes", ErrTruncated, what, n, len(b))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

// typeSize is the size of one value of a fixed-size type, and its alignment.
var typeSize = [...]int64{TypeNull: 0, TypeChar: 1, TypeInt8: 1, TypeInt16: 2, TypeInt32: 4, TypeInt64: 8, TypeString: 0, TypeBin: 1, TypeStringArray: 0, TypeI18NString: 0}

// readHeader reads one header structure (format.md "Header"): intro with
// magic, index entry count and data size, the index, the data store.
func readHeader(r io.Reader, what string, regionTag uint32, maxSize int64) (*Header, error) {
	var intro [16]byte
	if err := readFull(r, intro[:], what+" intro"); err != nil {
		return nil, err
	}
	if !bytes.Equal(intro[:4], headerMagic) {
		return nil, fmt.Errorf("%w: %s magic %x", ErrBadMagic, what, intro[:4])
	}
	il := int64(binary.BigEndian.Uint32(intro[8:]))
	dl := int64(binary.BigEndian.Uint32(intro[12:]))
	if il == 0 {
		return nil, fmt.Errorf("%w: %s has no index entries", ErrMalformed, what)
	}
	if il > MaxIndexEntries {
		return nil, fmt.Errorf("%w: %s: %d index entries (limit %d)", ErrHeaderTooLarge, what, il, MaxIndexEntries)
	}
	if il*16+dl > maxSize {
		return nil, fmt.Errorf("%w: %s: %d index entries and %d data bytes (limit %d)", ErrHeaderTooLarge, what, il, dl, maxSize)
	}
	// Grow the buffer as bytes arrive rather than trusting the announced
	// size, so a short file cannot make us allocate the limit.
	var b bytes.Buffer
	if n, err := io.CopyN(&b, r, il*16+dl); err == io.EOF {
		return nil, fmt.Errorf("%w: %s: got %d of %d bytes", ErrTruncated, what, n, il*16+dl)
	} else if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	buf := b.Bytes()
	h, err := parseHeader(buf[:il*16], buf[il*16:], regionTag)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	h.Size = 16 + il*16 + dl
	return h, nil
}

type extent struct{ start, end int64 }

func parseHeader(index, data []byte, regionTag uint32) (*Header, error) {
	il := len(index) / 16
	dl := int64(len(data))
	h := &Header{Entries: make([]Entry, 0, il)}
	extents := make([]extent, 0, il)
	var covered int64
	for i := 0; i < il; i++ {
		b := index[i*16:]
		tag := binary.BigEndian.Uint32(b)
		typ := binary.BigEndian.Uint32(b[4:])
		off := int64(int32(binary.BigEndian.Uint32(b[8:])))
		count := int64(binary.BigEndian.Uint32(b[12:]))
		name := "tag " + strconv.FormatUint(uint64(tag), 10)
		if regionTag == tagHeaderImmutable {
			name = tagName(tag) // main-header names; signature tags reuse numbers
		}
		if typ == TypeNull || typ > TypeI18NString {
			return nil, fmt.Errorf("%w: entry %d (%s): type %d", ErrMalformed, i, name, typ)
		}
		if off < 0 || off >= dl {
			return nil, fmt.Errorf("%w: entry %d (%s): offset %d outside data store of %d bytes", ErrMalformed, i, name, off, dl)
		}
		if count == 0 || count > dl {
			return nil, fmt.Errorf("%w: entry %d (%s): count %d", ErrMalformed, i, name, count)
		}
		var n int64
		switch typ {
		case TypeString:
			if count != 1 {
				return nil, fmt.Errorf("%w: entry %d (%s): string with count %d", ErrMalformed, i, name, count)
			}
			fallthrough
		case TypeStringArray, TypeI18NString:
			// Each string must be NUL-terminated inside the data store.
			p := off
			for range count {
				j := bytes.IndexByte(data[p:], 0)
				if j < 0 {
					return nil, fmt.Errorf("%w: entry %d (%s): unterminated string", ErrMalformed, i, name)
				}
				p += int64(j) + 1
			}
			n = p - off
		default:
			size := typeSize[typ]
			if off%size != 0 {
				return nil, fmt.Errorf("%w: entry %d (%s): offset %d not aligned to %d", ErrMalformed, i, name, off, size)
			}
			if count > (dl-off)/size {
				return nil, fmt.Errorf("%w: entry %d (%s): %d values of %d bytes at offset %d overrun data store of %d bytes", ErrMalformed, i, name, count, size, off, dl)
			}
			n = count * size
		}
		// Entries may not share bytes, so their data adds up to at most
		// the store; checking as we go keeps string scanning linear.
		if covered += n; covered > dl {
			return nil, fmt.Errorf("%w: entry %d (%s): entries' data exceeds the data store", ErrMalformed, i, name)
		}
		isRegion := tag >= tagHeaderImage && tag <= tagHeaderRegions
		if isRegion {
			// format.md "Header": the region tag, if any, is the first entry
			// and points to a 16-byte trailer whose negative offset covers
			// the region's index entries.
			if i != 0 || tag != regionTag || typ != TypeBin || count != 16 {
				return nil, fmt.Errorf("%w: entry %d: unexpected region tag %d", ErrMalformed, i, tag)
			}
			t := data[off:]
			ril := -int64(int32(binary.BigEndian.Uint32(t[8:]))) / 16
			if binary.BigEndian.Uint32(t) != regionTag || binary.BigEndian.Uint32(t[4:]) != TypeBin ||
				binary.BigEndian.Uint32(t[12:]) != 16 || ril < 1 || ril > int64(il) {
				return nil, fmt.Errorf("%w: bad region trailer", ErrMalformed)
			}
		}
		extents = append(extents, extent{off, off + n})
		h.Entries = append(h.Entries, Entry{Tag: tag, Type: typ, Count: uint32(count), Data: data[off : off+n : off+n]})
	}
	// No two entries may share data bytes, and the store holds nothing
	// but entry data and at most 7 zero bytes of alignment between them.
	sort.Slice(extents, func(i, j int) bool { return extents[i].start < extents[j].start })
	var end int64
	for _, e := range extents {
		if e.start < end {
			return nil, fmt.Errorf("%w: overlapping entry data at offset %d", ErrMalformed, e.start)
		}
		if gap := data[end:e.start]; len(gap) > 7 || !allZero(gap) {
			return nil, fmt.Errorf("%w: %d unused bytes before offset %d", ErrMalformed, len(gap), e.start)
		}
		end = e.end
	}
	if end != dl {
		return nil, fmt.Errorf("%w: %d unused bytes at the end of the data store", ErrMalformed, dl-end)
	}
	sort.Slice(h.Entries, func(i, j int) bool { return h.Entries[i].Tag < h.Entries[j].Tag })
	for i := 1; i < len(h.Entries); i++ {
		if h.Entries[i].Tag == h.Entries[i-1].Tag {
			return nil, fmt.Errorf("%w: duplicate tag %s", ErrMalformed, tagName(h.Entries[i].Tag))
		}
	}
	return h, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
