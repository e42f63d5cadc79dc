package rpm

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/fedora-skyline/skyline/attest/rpm/rpmtest"
)

// fixedTop is the one topdir path every rebuild in these tests uses, so
// that build paths recorded in binaries are the same (rpmtest locks it).
var fixedTop = filepath.Join(os.TempDir(), "skyline-attest-rpm-test-top")

const helloRPM = "hello-1.0-1.x86_64.rpm"

func rebuild(t testing.TB, spec string, defines map[string]string) string {
	t.Helper()
	return rpmtest.Rebuild(t, rpmtest.BuildSRPM(t, spec, defines), fixedTop, defines)
}

func mustDigest(t testing.TB, path string) Digest {
	t.Helper()
	d, err := DigestFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func mustCompare(t *testing.T, a, b string) Comparison {
	t.Helper()
	c, err := Compare(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRebuildsAtSameTopdirHaveEqualDigests(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	a := rpmtest.Rebuild(t, srpm, fixedTop, nil)
	b := rpmtest.Rebuild(t, srpm, fixedTop, nil)
	da, err := DigestDir(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := DigestDir(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(da) != 2 || da[0].File != helloRPM || da[1].File != "hello-doc-1.0-1.noarch.rpm" {
		t.Fatalf("DigestDir = %+v, want hello and hello-doc sorted by name", da)
	}
	for i := range da {
		if da[i].Skyline != db[i].Skyline {
			t.Errorf("%s: skyline digests differ between rebuilds: %s vs %s", da[i].File, da[i].Skyline, db[i].Skyline)
		}
		c := mustCompare(t, filepath.Join(a, da[i].File), filepath.Join(b, db[i].File))
		if !c.Same || len(c.Differences) != 0 {
			t.Errorf("%s: Compare = %+v, want Same", da[i].File, c)
		}
	}
	d := da[0]
	if d.Name != "hello" || d.Version != "1.0" || d.Release != "1" || d.Arch != "x86_64" ||
		d.Epoch != nil || d.SourceRPM != "hello-1.0-1.src.rpm" || d.IsSource {
		t.Errorf("header fields = %+v", d)
	}
	raw, err := os.ReadFile(filepath.Join(a, helloRPM))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); d.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("SHA256 = %s, want the file's sha256 %x", d.SHA256, sum)
	}
}

func TestSignedCopyHasEqualDigest(t *testing.T) {
	dir := rebuild(t, "hello.spec", nil)
	orig := filepath.Join(dir, helloRPM)
	signed := rpmtest.SignRPM(t, orig)
	a, b := mustDigest(t, orig), mustDigest(t, signed)
	if a.Skyline != b.Skyline {
		t.Errorf("signing changed the skyline digest: %s -> %s", a.Skyline, b.Skyline)
	}
	if a.SHA256 == b.SHA256 {
		t.Errorf("signed copy has the same file sha256 %s: was it signed?", a.SHA256)
	}
	f, err := os.Open(signed)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Signature.Get(268); !ok { // RPMSIGTAG_RSA
		t.Errorf("signed copy has no RSA header signature (tag 268)")
	}
}

func TestChangesThatInstallDifferentlyChangeTheDigest(t *testing.T) {
	base := filepath.Join(rebuild(t, "hello.spec", nil), helloRPM)
	tests := []struct {
		name    string
		defines map[string]string
		want    string // an entry of Comparison.Differences
	}{
		{"payload", map[string]string{"greeting": "goodbye"}, "payload"},
		{"requires", map[string]string{"requires": "bash"}, "tag REQUIRENAME"},
		{"scriptlet", map[string]string{"post_msg": "something else"}, "tag POSTIN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			other := filepath.Join(rebuild(t, "hello.spec", tt.defines), helloRPM)
			if mustDigest(t, base).Skyline == mustDigest(t, other).Skyline {
				t.Fatalf("digest unchanged by %v", tt.defines)
			}
			c := mustCompare(t, base, other)
			if c.Same || c.OnlyIgnored || !slices.Contains(c.Differences, tt.want) {
				t.Errorf("Compare = %+v, want a difference %q", c, tt.want)
			}
		})
	}
}

func TestBuildHostOnlyIsIgnored(t *testing.T) {
	a := filepath.Join(rebuild(t, "hello.spec", nil), helloRPM)
	b := filepath.Join(rebuild(t, "hello.spec", map[string]string{"_buildhost": "other"}), helloRPM)
	if da, db := mustDigest(t, a), mustDigest(t, b); da.Skyline != db.Skyline || da.SHA256 == db.SHA256 {
		t.Errorf("different BUILDHOST: skyline %s vs %s (want equal), sha256 %s vs %s (want different)", da.Skyline, db.Skyline, da.SHA256, db.SHA256)
	}
	c := mustCompare(t, a, b)
	if !c.Same || !c.OnlyIgnored || !slices.Contains(c.IgnoredTags, "BUILDHOST") || len(c.Differences) != 0 {
		t.Errorf("Compare = %+v, want Same, OnlyIgnored, BUILDHOST listed", c)
	}
}

func TestTimestampSpecIsNotReproducible(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "timestamp.spec", nil)
	a := filepath.Join(rpmtest.Rebuild(t, srpm, fixedTop, nil), "timestamp-1.0-1.noarch.rpm")
	b := filepath.Join(rpmtest.Rebuild(t, srpm, fixedTop, nil), "timestamp-1.0-1.noarch.rpm")
	c := mustCompare(t, a, b)
	if c.Same || !slices.Contains(c.Differences, "payload") {
		t.Errorf("Compare = %+v, want a payload difference", c)
	}
}

func TestDigestDirSkipsSourcePackages(t *testing.T) {
	srpm := rpmtest.BuildSRPM(t, "hello.spec", nil)
	dir := rpmtest.Rebuild(t, srpm, fixedTop, nil)
	b, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	// One named as a source RPM, one that is a source RPM only by header.
	for _, name := range []string{"hello-1.0-1.src.rpm", "aaa-disguised.rpm"} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	ds, err := DigestDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.File)
	}
	if want := []string{helloRPM, "hello-doc-1.0-1.noarch.rpm"}; !slices.Equal(names, want) {
		t.Errorf("DigestDir files = %v, want %v", names, want)
	}
	if d := mustDigest(t, srpm); !d.IsSource || d.SourceRPM != "" {
		t.Errorf("source RPM digest = %+v, want IsSource and no SourceRPM", d)
	}
}

func TestDigestDirReportsBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.rpm"), []byte("not an rpm at all, but long enough to hold a lead of ninety-six bytes..........................."), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := DigestDir(dir)
	if !errors.Is(err, ErrBadMagic) || !strings.Contains(err.Error(), "bad.rpm") {
		t.Errorf("DigestDir error = %v, want ErrBadMagic naming bad.rpm", err)
	}
}

// TestDigestEncoding recomputes the digest of a real RPM from the byte-level
// definition in docs/rpm-digest.md, independently of skylineSum.
func TestDigestEncoding(t *testing.T) {
	path := filepath.Join(rebuild(t, "hello.spec", nil), helloRPM)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := layoutOf(t, raw)
	type ent struct {
		tag, typ, count uint32
		data            []byte
	}
	var ents []ent
	idx := raw[l.main+16:]
	store := raw[l.main+16+16*l.mainIL : l.payload]
	for i := 0; i < l.mainIL; i++ {
		e := idx[16*i:]
		tag, typ, off, count := be(e), be(e[4:]), be(e[8:]), be(e[12:])
		if tag == 63 || tag == 1006 || tag == 1007 || tag == 1094 {
			continue
		}
		var n int
		switch typ {
		case 6, 8, 9:
			p := int(off)
			for range count {
				p += bytes.IndexByte(store[p:], 0) + 1
			}
			n = p - int(off)
		case 3:
			n = 2 * int(count)
		case 4:
			n = 4 * int(count)
		case 5:
			n = 8 * int(count)
		default:
			n = int(count)
		}
		ents = append(ents, ent{tag, typ, count, store[off : int(off)+n]})
	}
	slices.SortFunc(ents, func(a, b ent) int { return int(a.tag) - int(b.tag) })
	var enc bytes.Buffer
	enc.WriteString("skyline-rpm-v1\n")
	enc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(ents))))
	for _, e := range ents {
		for _, v := range []uint32{e.tag, e.typ, e.count, uint32(len(e.data))} {
			enc.Write(binary.BigEndian.AppendUint32(nil, v))
		}
		enc.Write(e.data)
	}
	payload := raw[l.payload:]
	enc.Write(binary.BigEndian.AppendUint64(nil, uint64(len(payload))))
	ps := sha256.Sum256(payload)
	enc.Write(ps[:])
	want := sha256.Sum256(enc.Bytes())
	if got := mustDigest(t, path).Skyline; got != hex.EncodeToString(want[:]) {
		t.Errorf("Skyline = %s, the documented encoding gives %x", got, want)
	}
}

func TestIgnoredTagsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/rpm-digest.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, []byte(DigestVersion)) {
		t.Errorf("docs/rpm-digest.md does not name %s", DigestVersion)
	}
	for _, tag := range IgnoredTags {
		row := "| " + strconv.Itoa(int(tag.Tag)) + " | " + tag.Name + " |"
		if !bytes.Contains(doc, []byte(row)) {
			t.Errorf("docs/rpm-digest.md has no table row starting %q", row)
		}
		if tag.Reason == "" || tagName(tag.Tag) != tag.Name {
			t.Errorf("IgnoredTags entry %+v: empty reason or wrong name", tag)
		}
	}
}

func be(b []byte) uint32 { return binary.BigEndian.Uint32(b) }
