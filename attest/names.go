package attest

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on names taken from untrusted entries.
const (
	maxNameLen = 255 // a file name component on Linux
	maxTextLen = 4096
)

// rpmNameChar reports whether c may appear in an RPM name, version, release
// or file name: the characters rpm itself allows in NEVRA parts, minus
// anything that has meaning in a path or a shell.
func rpmNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == '_' || c == '+' || c == '-' || c == '~' || c == '^'
}

func checkChars(what, s string) error {
	if s == "" {
		return fmt.Errorf("attest: empty %s: %w", what, ErrBadName)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("attest: %s of %d bytes: %w", what, len(s), ErrBadName)
	}
	for i := 0; i < len(s); i++ {
		if !rpmNameChar(s[i]) {
			return fmt.Errorf("attest: %s %q: character %q not allowed: %w", what, s, s[i], ErrBadName)
		}
	}
	if s[0] == '.' || s[0] == '-' || strings.Contains(s, "..") {
		return fmt.Errorf("attest: %s %q: leading dot or dash, or '..': %w", what, s, ErrBadName)
	}
	return nil
}

// CheckNVR checks an NVR: name-version-release where name may contain
// dashes and version and release may not (rpm's NEVRA grammar, without the
// epoch), all in rpm's file-name-safe charset.
func CheckNVR(nvr string) error {
	if err := checkChars("nvr", nvr); err != nil {
		return err
	}
	r := strings.LastIndexByte(nvr, '-')
	if r <= 0 {
		return fmt.Errorf("attest: nvr %q: no release: %w", nvr, ErrBadName)
	}
	v := strings.LastIndexByte(nvr[:r], '-')
	if v <= 0 {
		return fmt.Errorf("attest: nvr %q: no version: %w", nvr, ErrBadName)
	}
	if v+1 == r || r+1 == len(nvr) || nvr[v-1] == '-' {
		return fmt.Errorf("attest: nvr %q: empty name, version or release: %w", nvr, ErrBadName)
	}
	return nil
}

// CheckArch checks an RPM architecture name (x86_64, noarch, ...).
func CheckArch(arch string) error {
	if arch == "" || len(arch) > 32 {
		return fmt.Errorf("attest: arch %q: %w", arch, ErrBadName)
	}
	for i := 0; i < len(arch); i++ {
		c := arch[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("attest: arch %q: character %q not allowed: %w", arch, c, ErrBadName)
		}
	}
	return nil
}

// CheckRPMName checks a binary RPM file name: a plain file name (no path,
// no '..', no control characters) in rpm's charset ending in .rpm.
func CheckRPMName(name string) error {
	if err := checkChars("rpm file name", name); err != nil {
		return err
	}
	if !strings.HasSuffix(name, ".rpm") || len(name) == len(".rpm") {
		return fmt.Errorf("attest: rpm file name %q does not end in .rpm: %w", name, ErrBadName)
	}
	return nil
}

// checkBuildID checks every field of a BuildID.
func checkBuildID(b BuildID) error {
	if err := CheckNVR(b.NVR); err != nil {
		return err
	}
	if err := CheckArch(b.Arch); err != nil {
		return err
	}
	return checkHex("srpm_sha256", b.SRPMSHA256)
}

// checkHex checks a lowercase hex SHA-256 (also the form of key ids and
// result-set digests).
func checkHex(what, s string) error {
	if len(s) != 64 {
		return fmt.Errorf("attest: %s %q: want 64 lowercase hex digits: %w", what, trunc(s), ErrBadField)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("attest: %s %q: want 64 lowercase hex digits: %w", what, trunc(s), ErrBadField)
		}
	}
	return nil
}

// checkText checks a free-text field: valid UTF-8, no control characters,
// bounded; required fields must be non-empty.
func checkText(what, s string, required bool) error {
	if s == "" {
		if required {
			return fmt.Errorf("attest: empty %s: %w", what, ErrBadField)
		}
		return nil
	}
	if len(s) > maxTextLen || !utf8.ValidString(s) {
		return fmt.Errorf("attest: %s: too long or not UTF-8: %w", what, ErrBadField)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return fmt.Errorf("attest: %s %q: control character: %w", what, trunc(s), ErrBadField)
		}
	}
	return nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
