package builder

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// Status is what `skyline builder status` shows, read from the state
// directory (the daemon need not be running).
type Status struct {
	Current  []CurrentJob `json:"current"`
	Counters Counters     `json:"counters"`
	Recent   []Done       `json:"recent"`
	Notices  []Notice     `json:"notices"`
	// Warning is set when this builder was an outlier more than once.
	Warning string    `json:"warning,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
}

// CurrentJob is a job in progress, without its envelopes.
type CurrentJob struct {
	LeaseID   string         `json:"lease_id"`
	Build     attest.BuildID `json:"build"`
	Phase     string         `json:"phase"`
	Started   time.Time      `json:"started"`
	Expires   time.Time      `json:"expires"`
	Attempts  int            `json:"submit_attempts,omitempty"`
	LastError string         `json:"last_error,omitempty"`
}

// ReadStatus reads the state directory. recent bounds how much history is
// returned.
func ReadStatus(stateDir string, recent int) (*Status, error) {
	if fi, err := os.Stat(stateDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("builder: status: state directory %s: %w (has the daemon run?)", stateDir, ErrState)
	}
	jobs, err := readJobs(filepath.Join(stateDir, "jobs"))
	if err != nil {
		return nil, err
	}
	st, err := readStats(stateDir)
	if err != nil {
		return nil, err
	}
	s := &Status{Counters: st.Counters, Notices: st.Notices, Updated: st.Updated, Current: []CurrentJob{}}
	if s.Notices == nil {
		s.Notices = []Notice{}
	}
	s.Recent = st.Recent[max(len(st.Recent)-recent, 0):]
	for _, j := range jobs {
		s.Current = append(s.Current, CurrentJob{
			LeaseID: j.Lease.LeaseID, Build: j.Lease.Build, Phase: j.Phase,
			Started: j.Started, Expires: j.Lease.Expires, Attempts: j.Attempts, LastError: j.LastError,
		})
	}
	if st.Counters.Outliers > 1 {
		s.Warning = OutlierWarning
	}
	return s, nil
}

// WriteText writes the status for a person.
func (s *Status) WriteText(w io.Writer) error {
	var b strings.Builder
	if s.Warning != "" {
		fmt.Fprintf(&b, "WARNING: %s\n\n", s.Warning)
	}
	c := s.Counters
	fmt.Fprintf(&b, "builds signed: %d  acknowledged: %d  failed: %d  handed back: %d\n", c.Built, c.Acknowledged, c.Failed, c.Abandoned)
	fmt.Fprintf(&b, "agreed: %d  outliers: %d\n", c.Agreed, c.Outliers)
	if len(s.Current) == 0 {
		fmt.Fprintf(&b, "current: none\n")
	}
	for _, j := range s.Current {
		fmt.Fprintf(&b, "current: %s %s (%s) lease %s, started %s, lease expires %s",
			j.Build.NVR, j.Build.Arch, j.Phase, j.LeaseID, j.Started.UTC().Format(time.RFC3339), j.Expires.UTC().Format(time.RFC3339))
		if j.LastError != "" {
			fmt.Fprintf(&b, ", last error: %s", j.LastError)
		}
		b.WriteByte('\n')
	}
	for _, d := range s.Recent {
		fmt.Fprintf(&b, "done: %s %s %s %s", d.Finished.UTC().Format(time.RFC3339), d.Build.NVR, d.Build.Arch, d.Outcome)
		if len(d.Acks) > 0 {
			fmt.Fprintf(&b, " at index %d", d.Acks[0].Index)
		}
		if d.Detail != "" {
			fmt.Fprintf(&b, ": %s", d.Detail)
		}
		b.WriteByte('\n')
	}
	for _, n := range s.Notices {
		fmt.Fprintf(&b, "notice: %s %s %s %s (verdict at index %d)\n", n.At.UTC().Format(time.RFC3339), n.Kind, n.Build.NVR, n.Build.Arch, n.Index)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// EnrollRequest is what an operator sends to the coordinator's admins to
// have a builder key enrolled: it becomes an attest.Enrolment entry.
type EnrollRequest struct {
	KeyID     string `json:"key_id"`
	PublicKey string `json:"public_key"` // PKIX PEM
	Role      string `json:"role"`
	Operator  string `json:"operator"`
	Contact   string `json:"contact"`
}

// NewEnrollRequest describes the public half of s for enrolment.
func NewEnrollRequest(s *attest.Signer, operator, contact string) (*EnrollRequest, error) {
	for what, v := range map[string]string{"operator": operator, "contact": contact} {
		if strings.TrimSpace(v) == "" || len(v) > 256 || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return nil, fmt.Errorf("builder: enroll request: %s %q must be 1 to 256 printable characters: %w", what, v, ErrConfig)
		}
	}
	return &EnrollRequest{
		KeyID:     s.KeyID(),
		PublicKey: string(s.PublicPEM()),
		Role:      attest.RoleBuilder,
		Operator:  operator,
		Contact:   contact,
	}, nil
}
