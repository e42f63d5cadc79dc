package koji

import (
	"errors"
	"fmt"
	"strings"
)

// FedoraTopdir is the public root of Fedora's Koji file tree.
const FedoraTopdir = "https://kojipkgs.fedoraproject.org"

// ErrBadPathComponent: a name, version, release, arch, volume or signing
// key from the hub would not make a single, plain URL path segment.
var ErrBadPathComponent = errors.New("koji: bad path component")

// PathInfo builds the URLs of a build's files the way koji.PathInfo
// (koji/__init__.py) lays out the tree under its topdir:
//
//	volumedir:  topdir, or topdir/vol/<volume> unless volume is DEFAULT
//	build:      volumedir/packages/<name>/<version>/<release>
//	rpm:        <arch>/<name>-<version>-<release>.<arch>.rpm   (relative to build)
//	signed:     data/signed/<sigkey>/ + rpm                    (relative to build)
//	sighdr:     data/sigcache/<sigkey>/ + rpm + ".sig"         (relative to build)
//
// An RPM's file name uses the RPM's own name-version-release (a
// subpackage's name; the SRPM is the entry with arch "src"), the directory
// the build's. Unlike Koji, every component is checked, because the
// values come from a remote hub: see ErrBadPathComponent.
type PathInfo struct {
	// Topdir is the tree's root URL without a trailing slash; FedoraTopdir
	// for Fedora.
	Topdir string
}

// VolumeDir mirrors PathInfo.volumedir.
func (p PathInfo) VolumeDir(volume string) (string, error) {
	top := strings.TrimRight(p.Topdir, "/")
	if volume == "" || volume == "DEFAULT" {
		return top, nil
	}
	if err := checkComponent("volume", volume); err != nil {
		return "", err
	}
	return top + "/vol/" + volume, nil
}

// BuildDir mirrors PathInfo.build.
func (p PathInfo) BuildDir(b *Build) (string, error) {
	vol, err := p.VolumeDir(b.VolumeName)
	if err != nil {
		return "", err
	}
	for _, c := range [][2]string{{"name", b.Name}, {"version", b.Version}, {"release", b.Release}} {
		if err := checkComponent(c[0], c[1]); err != nil {
			return "", err
		}
	}
	return vol + "/packages/" + b.Name + "/" + b.Version + "/" + b.Release, nil
}

// RPMPath mirrors PathInfo.rpm: the path of r relative to its build dir.
func (p PathInfo) RPMPath(r *RPM) (string, error) {
	for _, c := range [][2]string{{"rpm name", r.Name}, {"rpm version", r.Version}, {"rpm release", r.Release}, {"arch", r.Arch}} {
		if err := checkComponent(c[0], c[1]); err != nil {
			return "", err
		}
	}
	return r.Arch + "/" + r.NVRA() + ".rpm", nil
}

// SignedPath mirrors PathInfo.signed: the signed copy of r, relative to
// its build dir.
func (p PathInfo) SignedPath(r *RPM, sigkey string) (string, error) {
	if err := checkSigKey(sigkey); err != nil {
		return "", err
	}
	rel, err := p.RPMPath(r)
	if err != nil {
		return "", err
	}
	return "data/signed/" + sigkey + "/" + rel, nil
}

// SigHeaderPath mirrors PathInfo.sighdr: the cached signature header.
func (p PathInfo) SigHeaderPath(r *RPM, sigkey string) (string, error) {
	if err := checkSigKey(sigkey); err != nil {
		return "", err
	}
	rel, err := p.RPMPath(r)
	if err != nil {
		return "", err
	}
	return "data/sigcache/" + sigkey + "/" + rel + ".sig", nil
}

// RPMURL is the URL of the unsigned RPM r of build b.
func (p PathInfo) RPMURL(b *Build, r *RPM) (string, error) {
	dir, err := p.BuildDir(b)
	if err != nil {
		return "", err
	}
	rel, err := p.RPMPath(r)
	if err != nil {
		return "", err
	}
	return dir + "/" + rel, nil
}

// SignedRPMURL is the URL of r signed with sigkey, as kojipkgs serves it.
func (p PathInfo) SignedRPMURL(b *Build, r *RPM, sigkey string) (string, error) {
	dir, err := p.BuildDir(b)
	if err != nil {
		return "", err
	}
	rel, err := p.SignedPath(r, sigkey)
	if err != nil {
		return "", err
	}
	return dir + "/" + rel, nil
}

// SRPM returns the source RPM (arch "src") among a build's RPMs.
func SRPM(rpms []RPM) (*RPM, error) {
	var found *RPM
	for i := range rpms {
		if rpms[i].Arch == "src" {
			if found != nil {
				return nil, fmt.Errorf("koji: %w: build lists two source RPMs", ErrBadResult)
			}
			found = &rpms[i]
		}
	}
	if found == nil {
		return nil, fmt.Errorf("koji: %w: build has no source RPM", ErrBadResult)
	}
	return found, nil
}

// checkComponent accepts the characters RPM allows in names, versions,
// releases and arches (and Koji in volume names); anything else, and the
// path segments "." and "..", is refused.
func checkComponent(what, s string) error {
	if s == "" || s == "." || s == ".." || len(s) > 255 {
		return fmt.Errorf("%w: %s %q", ErrBadPathComponent, what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '+' || c == '-' || c == '~' || c == '^'
		if !ok {
			return fmt.Errorf("%w: %s %q", ErrBadPathComponent, what, s)
		}
	}
	return nil
}

// checkSigKey accepts Koji's lower-case hex key ids (kojihub query_rpm_sigs
// lower-cases them).
func checkSigKey(s string) error {
	if s == "" || len(s) > 64 {
		return fmt.Errorf("%w: sigkey %q", ErrBadPathComponent, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("%w: sigkey %q", ErrBadPathComponent, s)
		}
	}
	return nil
}
