package koji

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// ErrImportState: the importer's state file is unreadable or unwritable.
var ErrImportState = errors.New("koji: importer state")

// importState is the importer's state file: written whole to a temporary
// file, fsynced, renamed over the old one and the directory fsynced, so a
// crash leaves the old or the new state, never a mix.
type importState struct {
	Version int `json:"version"`
	// Checkpoint is the poller's cursor: completion_ts (seconds since the
	// epoch) of the newest build it has handled in order.
	Checkpoint float64 `json:"checkpoint"`
	// Done holds every build id handled, by decimal id.
	Done map[string]doneEntry `json:"done"`
}

type doneEntry struct {
	NVR     string    `json:"nvr"`
	Outcome string    `json:"outcome"`
	Jobs    []string  `json:"jobs,omitempty"` // arches enqueued
	At      time.Time `json:"at"`
}

const importStateVersion = 1

func loadImportState(path string) (*importState, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &importState{Version: importStateVersion, Done: map[string]doneEntry{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrImportState, err)
	}
	var st importState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrImportState, path, err)
	}
	if st.Version != importStateVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrImportState, path, st.Version, importStateVersion)
	}
	if st.Done == nil {
		st.Done = map[string]doneEntry{}
	}
	return &st, nil
}

func (s *importState) clone() *importState {
	c := *s
	c.Done = maps.Clone(s.Done)
	return &c
}

func (s *importState) save(path string) error {
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrImportState, err)
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("%w: %w", ErrImportState, err)
	}
	return nil
}

// writeFileAtomic replaces path with data: temporary file, fsync, rename,
// fsync of the directory.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
