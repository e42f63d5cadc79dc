package koji

import (
	"errors"
	"testing"
)

func TestPathInfoMirrorsKoji(t *testing.T) {
	pi := PathInfo{Topdir: FedoraTopdir}
	build := &Build{Name: "hello", Version: "2.12.1", Release: "7.fc41", VolumeName: "DEFAULT"}
	archived := &Build{Name: "hello", Version: "2.10", Release: "1.fc30", VolumeName: "fedora_koji_archive02"}
	bin := &RPM{Name: "hello", Version: "2.12.1", Release: "7.fc41", Arch: "x86_64"}
	doc := &RPM{Name: "hello-doc", Version: "2.12.1", Release: "7.fc41", Arch: "noarch"}
	src := &RPM{Name: "hello", Version: "2.12.1", Release: "7.fc41", Arch: "src"}
	// A subpackage may carry its own version (Version: in %package).
	sub := &RPM{Name: "hello-data", Version: "9", Release: "3.fc41", Arch: "noarch"}
	const top = "https://kojipkgs.fedoraproject.org"
	tests := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"default volume build dir", func() (string, error) { return pi.BuildDir(build) }, top + "/packages/hello/2.12.1/7.fc41"},
		{"empty volume is the default", func() (string, error) {
			b := *build
			b.VolumeName = ""
			return pi.BuildDir(&b)
		}, top + "/packages/hello/2.12.1/7.fc41"},
		{"other volume", func() (string, error) { return pi.BuildDir(archived) }, top + "/vol/fedora_koji_archive02/packages/hello/2.10/1.fc30"},
		{"binary rpm", func() (string, error) { return pi.RPMURL(build, bin) }, top + "/packages/hello/2.12.1/7.fc41/x86_64/hello-2.12.1-7.fc41.x86_64.rpm"},
		{"subpackage uses its own name", func() (string, error) { return pi.RPMURL(build, doc) }, top + "/packages/hello/2.12.1/7.fc41/noarch/hello-doc-2.12.1-7.fc41.noarch.rpm"},
		{"subpackage uses its own version", func() (string, error) { return pi.RPMURL(build, sub) }, top + "/packages/hello/2.12.1/7.fc41/noarch/hello-data-9-3.fc41.noarch.rpm"},
		{"srpm under src", func() (string, error) { return pi.RPMURL(build, src) }, top + "/packages/hello/2.12.1/7.fc41/src/hello-2.12.1-7.fc41.src.rpm"},
		{"signed copy", func() (string, error) { return pi.SignedRPMURL(build, bin, "e99d6ad1") }, top + "/packages/hello/2.12.1/7.fc41/data/signed/e99d6ad1/x86_64/hello-2.12.1-7.fc41.x86_64.rpm"},
		{"signed on a volume", func() (string, error) {
			return pi.SignedRPMURL(archived, &RPM{Name: "hello", Version: "2.10", Release: "1.fc30", Arch: "src"}, "cfc659b9")
		}, top + "/vol/fedora_koji_archive02/packages/hello/2.10/1.fc30/data/signed/cfc659b9/src/hello-2.10-1.fc30.src.rpm"},
		{"sig header", func() (string, error) { return pi.SigHeaderPath(bin, "e99d6ad1") }, "data/sigcache/e99d6ad1/x86_64/hello-2.12.1-7.fc41.x86_64.rpm.sig"},
		{"trailing slash on topdir", func() (string, error) { return PathInfo{Topdir: top + "/"}.BuildDir(build) }, top + "/packages/hello/2.12.1/7.fc41"},
	}
	for _, tt := range tests {
		got, err := tt.got()
		if err != nil || got != tt.want {
			t.Errorf("%s: got %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestPathInfoRejectsHostileNames(t *testing.T) {
	pi := PathInfo{Topdir: FedoraTopdir}
	good := RPM{Name: "hello", Version: "1", Release: "1", Arch: "x86_64"}
	for _, tt := range []struct {
		name string
		b    Build
		r    RPM
		key  string
	}{
		{"dotdot name", Build{Name: "..", Version: "1", Release: "1"}, good, "e99d6ad1"},
		{"slash in release", Build{Name: "a", Version: "1", Release: "1/../../etc"}, good, "e99d6ad1"},
		{"empty version", Build{Name: "a", Version: "", Release: "1"}, good, "e99d6ad1"},
		{"slash in volume", Build{Name: "a", Version: "1", Release: "1", VolumeName: "x/y"}, good, "e99d6ad1"},
		{"query in arch", Build{Name: "a", Version: "1", Release: "1"}, RPM{Name: "a", Version: "1", Release: "1", Arch: "x86_64?x=1"}, "e99d6ad1"},
		{"space in rpm name", Build{Name: "a", Version: "1", Release: "1"}, RPM{Name: "a b", Version: "1", Release: "1", Arch: "noarch"}, "e99d6ad1"},
		{"upper-case sigkey", Build{Name: "a", Version: "1", Release: "1"}, good, "E99D6AD1"},
		{"sigkey path", Build{Name: "a", Version: "1", Release: "1"}, good, "../x"},
		{"empty sigkey", Build{Name: "a", Version: "1", Release: "1"}, good, ""},
	} {
		if u, err := pi.SignedRPMURL(&tt.b, &tt.r, tt.key); !errors.Is(err, ErrBadPathComponent) {
			t.Errorf("%s: got %q, %v; want ErrBadPathComponent", tt.name, u, err)
		}
	}
}

func TestSRPM(t *testing.T) {
	rpms := []RPM{{Name: "a", Arch: "x86_64"}, {Name: "a", Arch: "src"}}
	if r, err := SRPM(rpms); err != nil || r != &rpms[1] {
		t.Errorf("SRPM = %v, %v; want the src entry", r, err)
	}
	if _, err := SRPM(rpms[:1]); !errors.Is(err, ErrBadResult) {
		t.Errorf("no src: err = %v, want ErrBadResult", err)
	}
	if _, err := SRPM(append(rpms, RPM{Arch: "src"})); !errors.Is(err, ErrBadResult) {
		t.Errorf("two src: err = %v, want ErrBadResult", err)
	}
}
