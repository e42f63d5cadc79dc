package coord

import (
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/fedora-skyline/skyline/attest"
)

// Bounds on the fields the coordinator stores (coordinator.md §Validation).
const (
	maxText  = 256  // operator, contact, team, reason
	maxLong  = 1024 // lease-end detail
	maxURL   = 2048
	maxNVR   = 255
	maxArch  = 32
	maxID    = 64
	maxParts = 4096 // 64 KiB entries: far more than Fedora's largest result set needs
)

func invalid(what, format string, args ...any) error {
	return fmt.Errorf("coord: %s: %s: %w", what, fmt.Sprintf(format, args...), ErrInvalid)
}

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validID accepts the job and lease ids: 1 to 64 of [A-Za-z0-9._-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > maxID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validText accepts bounded UTF-8 text without control characters.
func validText(s string, max int, empty bool) bool {
	if len(s) > max || (!empty && strings.TrimSpace(s) == "") || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validBuild checks a BuildID: an NVR (name-version-release of RPM name
// characters), an arch, and a lowercase hex SHA-256.
func validBuild(b attest.BuildID) error {
	if len(b.NVR) == 0 || len(b.NVR) > maxNVR || strings.Count(b.NVR, "-") < 2 ||
		strings.HasPrefix(b.NVR, "-") || strings.HasSuffix(b.NVR, "-") || strings.HasPrefix(b.NVR, ".") {
		return invalid("build", "nvr %q", b.NVR)
	}
	for i := 0; i < len(b.NVR); i++ {
		c := b.NVR[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._+~^-", c) >= 0) {
			return invalid("build", "nvr %q", b.NVR)
		}
	}
	if len(b.Arch) == 0 || len(b.Arch) > maxArch {
		return invalid("build", "arch %q", b.Arch)
	}
	for i := 0; i < len(b.Arch); i++ {
		c := b.Arch[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return invalid("build", "arch %q", b.Arch)
		}
	}
	if !isHex(b.SRPMSHA256, 64) {
		return invalid("build", "srpm sha256 %q", b.SRPMSHA256)
	}
	return nil
}

// validJob checks a Job entry.
func (c *Coordinator) validJob(j attest.Job) error {
	if !validID(j.JobID) {
		return invalid("job", "job id %q", j.JobID)
	}
	if err := validBuild(j.Build); err != nil {
		return err
	}
	if len(j.SRPMURL) > maxURL {
		return invalid("job", "srpm url longer than %d bytes", maxURL)
	}
	u, err := url.Parse(j.SRPMURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return invalid("job", "srpm url %q is not an http(s) URL", j.SRPMURL)
	}
	if j.Wanted < 1 || j.Wanted > c.cfg.MaxWanted {
		return invalid("job", "wanted %d not in [1, %d]", j.Wanted, c.cfg.MaxWanted)
	}
	if j.Enqueued.IsZero() {
		return invalid("job", "no enqueue time")
	}
	// coordinator.md §Closing: the deadline is logged with the job.
	if !j.Deadline.After(j.Enqueued) || j.Deadline.Sub(j.Enqueued) > MaxJobTTL {
		return invalid("job", "deadline %s not in (%s, +%s]", j.Deadline.Format(time.RFC3339), j.Enqueued.Format(time.RFC3339), MaxJobTTL)
	}
	return nil
}

// validLeaseEntry checks the fields of a Lease entry that need no state.
func validLeaseEntry(l attest.Lease) error {
	if !validID(l.LeaseID) || !validID(l.JobID) {
		return invalid("lease", "lease id %q, job id %q", l.LeaseID, l.JobID)
	}
	if !isHex(l.KeyID, 64) {
		return invalid("lease", "key id %q", l.KeyID)
	}
	if l.Issued.IsZero() || !l.Expires.After(l.Issued) {
		return invalid("lease", "issued %s, expires %s", l.Issued, l.Expires)
	}
	if l.Slot < 0 || l.Attempt < 1 {
		return invalid("lease", "slot %d, attempt %d", l.Slot, l.Attempt)
	}
	return validBuild(l.Build)
}

// norm strips the monotonic clock and location so that decisions compare
// equal to their JSON round trip.
func norm(t time.Time) time.Time { return t.Round(0).UTC() }
