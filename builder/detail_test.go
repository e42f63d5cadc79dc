package builder

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func checkDetail(t *testing.T, in, out string) {
	t.Helper()
	if len(out) > MaxLeaseDetail || !utf8.ValidString(out) || strings.IndexFunc(out, unicode.IsControl) >= 0 {
		t.Fatalf("LeaseDetail(%q) = %q: longer than %d bytes, not UTF-8 or with control characters", in, out, MaxLeaseDetail)
	}
}

func TestLeaseDetail(t *testing.T) {
	short := "builder: rpmbuild: exit status 1: build failed\n+ gcc hello.c\nerror: Bad exit status (%build)\n"
	if got, want := LeaseDetail(short), "builder: rpmbuild: exit status 1: build failed | + gcc hello.c | error: Bad exit status (%build)"; got != want {
		t.Errorf("LeaseDetail(short) = %q; want %q", got, want)
	}
	var b strings.Builder
	b.WriteString("builder: mock: exit status 1: build failed\n")
	for i := range 500 {
		b.WriteString("compiling file number ")
		b.WriteString(strings.Repeat("é", i%7))
		b.WriteString("\t\x1b[31mred\x1b[0m\n")
	}
	b.WriteString("error: the last line matters most\n")
	long := LeaseDetail(b.String())
	checkDetail(t, "long", long)
	if !strings.HasPrefix(long, "builder: mock: exit status 1: build failed | ...") || !strings.HasSuffix(long, "error: the last line matters most") {
		t.Errorf("long detail keeps %q…%q; want the first line and the end of the log", long[:60], long[len(long)-40:])
	}
	checkDetail(t, "bad utf8", LeaseDetail("\xff\xfe head\n\x00tail"))
}

// FuzzLeaseDetail: a build log is whatever the package's build printed;
// the detail made from it must always be acceptable to the coordinator.
func FuzzLeaseDetail(f *testing.F) {
	f.Add("builder: x: failed\nline 1\nline 2\n")
	f.Add(strings.Repeat("é", 600) + "\n" + strings.Repeat("\x00\t\n", 500))
	f.Fuzz(func(t *testing.T, msg string) {
		checkDetail(t, msg, LeaseDetail(msg))
	})
}
