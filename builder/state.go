package builder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedora-skyline/skyline/attest"
)

// ErrState is returned for a state directory that cannot be read or
// written, or whose files do not parse.
var ErrState = errors.New("builder state")

// Phases of a JobRecord.
const (
	// PhaseLeased: the lease is held; the SRPM may be downloading or
	// building. After a restart the job is built again if the lease is
	// still valid, else handed back.
	PhaseLeased = "leased"
	// PhaseSigned: the envelopes are signed and kept here, byte for byte,
	// until the log acknowledges them; a restart resubmits the same bytes.
	PhaseSigned = "signed"
)

// JobRecord is the durable record of one job in progress.
type JobRecord struct {
	Lease    attest.Lease `json:"lease"`
	Phase    string       `json:"phase"`
	Started  time.Time    `json:"started"`
	Built    time.Time    `json:"built,omitzero"`
	Backend  string       `json:"backend"`
	RPMs     int          `json:"rpms,omitempty"`
	Attempts int          `json:"submit_attempts,omitempty"`
	// Envelopes are the signed DSSE envelopes exactly as first submitted.
	Envelopes [][]byte `json:"envelopes,omitempty"`
	LastError string   `json:"last_error,omitempty"`
}

// Done is a finished job as kept in the recent history.
type Done struct {
	LeaseID  string         `json:"lease_id"`
	Build    attest.BuildID `json:"build"`
	Outcome  string         `json:"outcome"` // acknowledged|failed|abandoned
	Detail   string         `json:"detail,omitempty"`
	Acks     []Ack          `json:"acks,omitempty"`
	Started  time.Time      `json:"started"`
	Finished time.Time      `json:"finished"`
	// BuildSeconds and AckSeconds are the build time and the time from the
	// end of the build to the verified acknowledgement.
	BuildSeconds float64 `json:"build_seconds,omitempty"`
	AckSeconds   float64 `json:"ack_seconds,omitempty"`
}

// Outcomes of a Done.
const (
	OutcomeAcknowledged = "acknowledged"
	OutcomeFailed       = "failed"
	OutcomeAbandoned    = "abandoned"
)

// Counters are the daemon's totals since it was installed.
type Counters struct {
	Built        int `json:"built"`        // results signed
	Acknowledged int `json:"acknowledged"` // results proven in the log
	Failed       int `json:"failed"`       // builds that failed (reported as failed)
	Abandoned    int `json:"abandoned"`    // leases handed back without a result
	Agreed       int `json:"agreed"`       // results the witnesses found in the agreeing group
	Outliers     int `json:"outliers"`     // results the witnesses found to disagree
}

// Stats is the content of stats.json.
type Stats struct {
	Counters Counters `json:"counters"`
	Recent   []Done   `json:"recent"` // newest last, at most maxRecent
	// Notices are the notices received about this builder, deduplicated by
	// their log index.
	Notices []Notice  `json:"notices"`
	Updated time.Time `json:"updated"`
}

const maxRecent = 100

// State is the durable state directory:
//
//	jobs/<hash of lease id>.json   one JobRecord per job in progress
//	stats.json                     counters, recent history, notices
//
// Every file is written to a temporary name, fsynced, renamed into place
// and the directory fsynced, so a crash leaves the old or the new file,
// never a torn one.
type State struct {
	dir string
	mu  sync.Mutex // serialises read-modify-write of stats.json
}

// OpenState opens (creating) the state directory.
func OpenState(dir string) (*State, error) {
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	return &State{dir: dir}, nil
}

// jobFile names a job's record by a hash of the lease id, which comes from
// the coordinator and is not trusted to be a safe file name.
func (s *State) jobFile(leaseID string) string {
	h := sha256.Sum256([]byte(leaseID))
	return filepath.Join(s.dir, "jobs", hex.EncodeToString(h[:16])+".json")
}

// PutJob durably writes a job's record.
func (s *State) PutJob(r *JobRecord) error {
	return writeJSONAtomic(s.jobFile(r.Lease.LeaseID), r)
}

// DeleteJob removes a job's record.
func (s *State) DeleteJob(leaseID string) error {
	if err := os.Remove(s.jobFile(leaseID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	return syncDir(filepath.Join(s.dir, "jobs"))
}

// Jobs returns the records of the jobs in progress, oldest first.
func (s *State) Jobs() ([]*JobRecord, error) {
	return readJobs(filepath.Join(s.dir, "jobs"))
}

func readJobs(dir string) ([]*JobRecord, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	var out []*JobRecord
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var r JobRecord
		if err := readJSON(filepath.Join(dir, e.Name()), &r); err != nil {
			return nil, err
		}
		out = append(out, &r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// Stats returns the content of stats.json (zero when absent).
func (s *State) Stats() (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return readStats(s.dir)
}

func readStats(dir string) (Stats, error) {
	var st Stats
	err := readJSON(filepath.Join(dir, "stats.json"), &st)
	if errors.Is(err, fs.ErrNotExist) {
		return Stats{}, nil
	}
	return st, err
}

// UpdateStats applies f to stats.json durably.
func (s *State) UpdateStats(now time.Time, f func(*Stats)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := readStats(s.dir)
	if err != nil {
		return err
	}
	f(&st)
	if len(st.Recent) > maxRecent {
		st.Recent = append([]Done(nil), st.Recent[len(st.Recent)-maxRecent:]...)
	}
	st.Updated = now
	return writeJSONAtomic(filepath.Join(s.dir, "stats.json"), &st)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("builder: state: %s: %w: %w", path, ErrState, err)
	}
	return nil
}

// writeJSONAtomic writes v to path: temp file, fsync, rename, fsync dir.
func writeJSONAtomic(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("builder: state: %w: %w", ErrState, err)
	}
	return nil
}
