package log

import (
	"bytes"
	"errors"
	"testing"
)

func TestTilePathRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		p    TilePath
		want string
	}{
		{TilePath{Checkpoint: true}, "checkpoint"},
		{TilePath{Level: 0, Index: 0}, "tile/0/000"},
		{TilePath{Level: 1, Index: 1234067}, "tile/1/x001/x234/067"},
		{TilePath{Level: 63, Index: 999, Width: 255}, "tile/63/999.p/255"},
		{TilePath{Entries: true, Index: 1000, Width: 1}, "tile/entries/x001/000.p/1"},
		{TilePath{Index: 1<<64 - 1}, "tile/0/x018/x446/x744/x073/x709/x551/615"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.want)
		}
		got, err := ParseTilePath(tc.want)
		if err != nil || got != tc.p {
			t.Errorf("ParseTilePath(%q) = %+v, %v; want %+v", tc.want, got, err, tc.p)
		}
	}
	for _, bad := range []string{"tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/x1000/000", "tile/entries/000.p/1/"} {
		if _, err := ParseTilePath(bad); !errors.Is(err, ErrBadPath) {
			t.Errorf("ParseTilePath(%q) = %v, want ErrBadPath", bad, err)
		}
	}
}

func TestEntryBundle(t *testing.T) {
	var b []byte
	entries := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{7}, 65535)}
	for _, e := range entries {
		b = AppendEntryBundle(b, e)
	}
	got, err := ParseEntryBundle(b)
	if err != nil || len(got) != 3 || !bytes.Equal(got[2], entries[2]) || len(got[1]) != 0 {
		t.Fatalf("round trip: %d entries, %v", len(got), err)
	}
	for name, bad := range map[string][]byte{
		"odd length byte": {0},
		"short entry":     {0, 3, 'a', 'b'},
		"too many":        bytes.Repeat([]byte{0, 0}, 257),
	} {
		if _, err := ParseEntryBundle(bad); !errors.Is(err, ErrBadBundle) {
			t.Errorf("%s: %v, want ErrBadBundle", name, err)
		}
	}
}

// FuzzParseTilePath: any accepted path is canonical and round-trips.
func FuzzParseTilePath(f *testing.F) {
	for _, s := range []string{"checkpoint", "tile/0/000", "tile/entries/x001/234.p/5", "tile/1/x000/001", "tile/64/000", "tile/0/000.p/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseTilePath(s)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("error %v is not ErrBadPath", err)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("accepted non-canonical %q (canonical %q)", s, p.String())
		}
		if p.Width > 255 || p.Level > 63 || p.Entries && p.Level != 0 {
			t.Fatalf("out-of-range result %+v", p)
		}
	})
}

// FuzzParseEntryBundle: an accepted bundle re-encodes to the same bytes.
func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{0, 1, 'a', 0, 0})
	f.Add([]byte{0, 5, 'a'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		entries, err := ParseEntryBundle(b)
		if err != nil {
			if !errors.Is(err, ErrBadBundle) {
				t.Fatalf("error %v is not ErrBadBundle", err)
			}
			return
		}
		var again []byte
		for _, e := range entries {
			again = AppendEntryBundle(again, e)
		}
		if !bytes.Equal(again, b) || len(entries) > TileWidth {
			t.Fatalf("bundle of %d entries does not round-trip", len(entries))
		}
	})
}
