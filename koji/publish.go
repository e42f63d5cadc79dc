package koji

// The verdict feed: `skyline koji-publish`. It follows a skyline log with
// the verified follower of package witness (C2SP tlog-tiles, every entry
// checked against a signed, consistent checkpoint), picks the verdict
// entries signed by the witnesses it trusts, and publishes a verdict to
// ResultsDB once a quorum of them agree on it (docs/fedora.md,
// "Publishing verdicts").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/witness"
)

// ErrFeedState: the verdict feed's state file is unreadable or names
// another log.
var ErrFeedState = errors.New("koji: verdict feed state")

// VerdictFeedConfig configures a VerdictFeed. Zero fields take the defaults.
type VerdictFeedConfig struct {
	// Log is the log to follow: read URL, origin and checkpoint key. Required.
	Log witness.FollowerConfig
	// Witnesses are the verdict keys of the trusted witnesses (the
	// [[witness]] verdict keys of the verify policy). At least one.
	Witnesses []*attest.Verifier
	// Quorum is how many distinct trusted witnesses must have logged the
	// same verdict for a build before it is published. Default: all.
	Quorum int
	// Publisher posts to ResultsDB. Required.
	Publisher *Publisher
	// StatePath is the feed's state (JSON, replaced atomically): the last
	// verified checkpoint, the next entry to read and the witnesses'
	// latest verdict per build. Required.
	StatePath string
	// RefURL is the ResultsDB ref_url of a verdict, with %d for its log
	// index. Default Log.URL + "/entry/%d" (the log's entry route).
	RefURL string
	// Interval is the time between two checkpoint polls. Default 1 minute.
	Interval time.Duration
	// Logger receives one line per verdict published or refused. Default slog.Default().
	Logger *slog.Logger
}

// VerdictFeed publishes the final verdicts of a log to ResultsDB.
type VerdictFeed struct {
	cfg   VerdictFeedConfig
	f     *witness.Follower
	keys  map[string]*attest.Verifier
	state feedState
}

type feedState struct {
	Version    int    `json:"version"`
	Origin     string `json:"origin"`
	Checkpoint string `json:"checkpoint"` // signed note; "" for the empty tree
	Next       uint64 `json:"next"`       // next entry index to read
	// Votes: build key -> witness verdict key id -> latest verdict.
	Votes map[string]map[string]string `json:"votes"`
	// Published: build key -> the verdict last published (or found not
	// final) for it.
	Published map[string]string `json:"published"`
}

// NewVerdictFeed checks cfg and loads the state.
func NewVerdictFeed(cfg VerdictFeedConfig) (*VerdictFeed, error) {
	if cfg.Publisher == nil || cfg.StatePath == "" || len(cfg.Witnesses) == 0 {
		return nil, fmt.Errorf("koji: verdict feed needs a publisher, a state path and at least one witness key")
	}
	if cfg.Quorum == 0 {
		cfg.Quorum = len(cfg.Witnesses)
	}
	if cfg.Quorum < 1 || cfg.Quorum > len(cfg.Witnesses) {
		return nil, fmt.Errorf("koji: verdict feed: quorum %d not in 1..%d", cfg.Quorum, len(cfg.Witnesses))
	}
	if cfg.RefURL == "" {
		cfg.RefURL = strings.TrimSuffix(cfg.Log.URL, "/") + "/entry/%d"
	}
	if strings.Count(cfg.RefURL, "%d") != 1 || strings.Count(cfg.RefURL, "%") != 1 {
		return nil, fmt.Errorf("koji: verdict feed: ref URL %q needs exactly one %%d", cfg.RefURL)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	keys := map[string]*attest.Verifier{}
	for _, k := range cfg.Witnesses {
		keys[k.KeyID()] = k
	}
	if len(keys) != len(cfg.Witnesses) {
		return nil, fmt.Errorf("koji: verdict feed: a witness key is listed twice")
	}
	st := feedState{Version: 1, Origin: cfg.Log.Origin, Votes: map[string]map[string]string{}, Published: map[string]string{}}
	trusted := witness.EmptyTree(cfg.Log.Origin)
	data, err := os.ReadFile(cfg.StatePath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrFeedState, err)
	default:
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrFeedState, cfg.StatePath, err)
		}
		if st.Version != 1 || st.Origin != cfg.Log.Origin {
			return nil, fmt.Errorf("%w: %s: version %d of log %q, want version 1 of %q", ErrFeedState, cfg.StatePath, st.Version, st.Origin, cfg.Log.Origin)
		}
		if st.Checkpoint != "" {
			if trusted, err = witness.ParseCheckpoint([]byte(st.Checkpoint), cfg.Log.Origin, cfg.Log.Verifier); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrFeedState, err)
			}
		}
		if st.Next > trusted.Size {
			return nil, fmt.Errorf("%w: next entry %d beyond the saved tree of %d", ErrFeedState, st.Next, trusted.Size)
		}
		if st.Votes == nil {
			st.Votes = map[string]map[string]string{}
		}
		if st.Published == nil {
			st.Published = map[string]string{}
		}
	}
	f, err := witness.NewFollower(cfg.Log, trusted)
	if err != nil {
		return nil, fmt.Errorf("koji: verdict feed: %w", err)
	}
	return &VerdictFeed{cfg: cfg, f: f, keys: keys, state: st}, nil
}

// Next returns the index of the next entry the feed will read.
func (p *VerdictFeed) Next() uint64 { return p.state.Next }

// Step verifies the log's latest checkpoint (consistent with the last
// one: a fork or rollback is an error and nothing is read), reads the new
// entries, and publishes every verdict that reached the quorum. It
// returns how many results it posted. On an error (ResultsDB down) the
// state stops before the entry that failed, which the next Step retries;
// the Publisher never posts one verdict twice.
func (p *VerdictFeed) Step(ctx context.Context) (int, error) {
	cp, err := p.f.Update(ctx)
	if err != nil {
		return 0, fmt.Errorf("koji: verdict feed: %w", err)
	}
	n := 0
	stepErr := p.f.EntriesAt(ctx, cp, p.state.Next, cp.Size, func(index uint64, data []byte) error {
		posted, err := p.entry(ctx, index, data, cp.Size)
		if err != nil {
			return err
		}
		if posted {
			n++
		}
		p.state.Next = index + 1
		return nil
	})
	if stepErr == nil {
		p.state.Next = cp.Size
	}
	p.state.Checkpoint = string(cp.Note)
	if err := p.save(); err != nil {
		return n, err
	}
	if stepErr != nil {
		return n, fmt.Errorf("koji: verdict feed: %w", stepErr)
	}
	return n, nil
}

// entry handles one log entry: a verdict of a trusted witness counts as
// its vote for the build; the vote that makes a quorum is published.
func (p *VerdictFeed) entry(ctx context.Context, index uint64, data []byte, size uint64) (bool, error) {
	e, err := attest.Parse(data, attest.ParseOptions{})
	if err != nil {
		// The witnesses vouch for the log's contents; an unparsable entry
		// is theirs to flag, not a verdict.
		p.cfg.Logger.Debug("koji: verdict feed: entry skipped", "index", index, "err", err)
		return false, nil
	}
	if e.PayloadType != attest.PayloadVerdict {
		return false, nil
	}
	k, ok := p.keys[e.KeyID]
	if !ok {
		return false, nil
	}
	if err := e.Verify(k); err != nil {
		p.cfg.Logger.Warn("koji: verdict feed: verdict with a bad signature ignored", "index", index, "key_id", e.KeyID, "err", err)
		return false, nil
	}
	v := e.Value.(*attest.Verdict)
	bk := v.Build.NVR + " " + v.Build.Arch + " " + v.Build.SRPMSHA256
	votes := p.state.Votes[bk]
	if votes == nil {
		votes = map[string]string{}
		p.state.Votes[bk] = votes
	}
	votes[e.KeyID] = v.Verdict
	agree := 0
	for _, got := range votes {
		if got == v.Verdict {
			agree++
		}
	}
	if agree < p.cfg.Quorum || p.state.Published[bk] == v.Verdict {
		return false, nil
	}
	// TreeSize is the verified tree that holds the verdict entry (the one
	// a ResultsDB reader can ask an inclusion proof against).
	st, err := p.cfg.Publisher.Publish(ctx, Verdict{
		NVR: v.Build.NVR, Arch: v.Build.Arch, Verdict: v.Verdict, LogIndex: index, TreeSize: size,
		URL: fmt.Sprintf(p.cfg.RefURL, index),
	})
	if errors.Is(err, ErrBadVerdict) {
		p.cfg.Logger.Error("koji: verdict feed: verdict not publishable", "index", index, "nvr", v.Build.NVR, "arch", v.Build.Arch, "err", err)
		p.state.Published[bk] = v.Verdict
		return false, nil
	}
	if err != nil {
		return false, err
	}
	p.state.Published[bk] = v.Verdict
	p.cfg.Logger.Info("koji: verdict feed: verdict reached the quorum", "index", index, "nvr", v.Build.NVR, "arch", v.Build.Arch, "verdict", v.Verdict, "witnesses", agree, "status", st.String())
	return st == Published, nil
}

func (p *VerdictFeed) save() error {
	data, err := json.Marshal(p.state)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFeedState, err)
	}
	if err := writeFileAtomic(p.cfg.StatePath, data); err != nil {
		return fmt.Errorf("%w: %w", ErrFeedState, err)
	}
	return nil
}

// Run steps every Interval until ctx is done; failures are logged and
// retried at the next step.
func (p *VerdictFeed) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if n, err := p.Step(ctx); err != nil && ctx.Err() == nil {
			p.cfg.Logger.Warn("koji: verdict feed step failed; retrying", "err", err)
		} else if n > 0 {
			p.cfg.Logger.Info("koji: verdict feed published results", "results", n, "next", p.state.Next)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
