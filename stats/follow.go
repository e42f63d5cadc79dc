package stats

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedora-skyline/skyline/log"
	"github.com/fedora-skyline/skyline/witness"
)

// Source is a log's entries, as far as the reader trusts them.
type Source interface {
	// Size returns how many entries may be read now.
	Size(ctx context.Context) (uint64, error)
	// Entries calls fn with each entry of [start, end), in order.
	Entries(ctx context.Context, start, end uint64, fn func(index uint64, entry []byte) error) error
}

// FollowerSource reads a remote log through the verified follower: every
// checkpoint is checked against the log key and the last tree (RFC 6962
// consistency), every entry against the tree (C2SP tlog-tiles). This is how
// `skyline stats --log URL` works from the public tiles alone.
func FollowerSource(f *witness.Follower) Source { return followerSource{f} }

type followerSource struct{ f *witness.Follower }

func (s followerSource) Size(ctx context.Context) (uint64, error) {
	cp, err := s.f.Update(ctx)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

func (s followerSource) Entries(ctx context.Context, start, end uint64, fn func(uint64, []byte) error) error {
	return s.f.Entries(ctx, start, end, fn)
}

// LogSource reads the log `skyline serve` runs in the same process: its
// durable, integrated entries.
func LogSource(l *log.Log) Source { return logSource{l} }

type logSource struct{ l *log.Log }

func (s logSource) Size(context.Context) (uint64, error) {
	n, _ := s.l.Size()
	return n, nil
}

func (s logSource) Entries(ctx context.Context, start, end uint64, fn func(uint64, []byte) error) error {
	for i := start; i < end; i++ {
		e, err := s.l.Entry(ctx, i)
		if err != nil {
			return err
		}
		if err := fn(i, e); err != nil {
			return err
		}
	}
	return nil
}

// FollowConfig configures Tracker.Follow.
type FollowConfig struct {
	// Interval is how often the log is polled for new entries (default
	// 5s).
	Interval time.Duration
	// Batch is how many entries are read per request (default 4096).
	Batch uint64
	// StatePath, when set, is where the state is saved (SaveFile) after
	// entries were applied, at most every SaveEvery, and on return.
	StatePath string
	// SaveEvery bounds how often the state is saved (default 5 minutes:
	// a restart re-reads at most that much of the log).
	SaveEvery time.Duration
}

func (c FollowConfig) withDefaults() FollowConfig {
	if c.Interval <= 0 {
		c.Interval = 5 * time.Second
	}
	if c.Batch == 0 {
		c.Batch = 4096
	}
	if c.SaveEvery <= 0 {
		c.SaveEvery = 5 * time.Minute
	}
	return c
}

// CatchUp applies every entry src has beyond Next, batch entries a read.
// Refused entries are logged and passed; it returns how many entries it
// read, and stops at the first error of src.
func (t *Tracker) CatchUp(ctx context.Context, src Source, batch uint64) (uint64, error) {
	if batch == 0 {
		batch = 4096
	}
	size, err := src.Size(ctx)
	if err != nil {
		return 0, fmt.Errorf("stats: log size: %w", err)
	}
	start := t.Next()
	next := start
	for next < size {
		end := min(next+batch, size)
		err := src.Entries(ctx, next, end, func(i uint64, e []byte) error {
			err := t.Apply(i, e)
			if errors.Is(err, ErrOutOfOrder) {
				return err
			}
			if err != nil {
				t.cfg.Logger.Info("stats: entry does not count", "index", i, "err", err)
			}
			next = i + 1
			return nil
		})
		if err != nil {
			return next - start, fmt.Errorf("stats: read entries %d..%d: %w", next, end, err)
		}
	}
	return next - start, nil
}

// Follow keeps the tracker caught up with src until ctx is done, saving the
// state as configured. A fetch failure (witness.ErrFetch) is logged and
// retried; any other error of src (a fork, a rollback, a hidden entry: the
// log misbehaves) stops it and is returned.
func (t *Tracker) Follow(ctx context.Context, src Source, cfg FollowConfig) error {
	cfg = cfg.withDefaults()
	lg := t.cfg.Logger
	var lastSave time.Time
	dirty := false
	save := func(force bool) error {
		if cfg.StatePath == "" || !dirty || (!force && time.Since(lastSave) < cfg.SaveEvery) {
			return nil
		}
		if err := t.SaveFile(cfg.StatePath); err != nil {
			return err
		}
		lastSave, dirty = time.Now(), false
		return nil
	}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		n, err := t.CatchUp(ctx, src, cfg.Batch)
		dirty = dirty || n > 0
		if n > 0 {
			lg.Info("stats: caught up", "read", n, "next", t.Next())
		}
		if serr := save(false); serr != nil {
			lg.Error("stats: save state", "err", serr)
		}
		switch {
		case ctx.Err() != nil:
			return save(true)
		case err == nil:
		case errors.Is(err, witness.ErrFetch):
			lg.Warn("stats: log unreachable, will retry", "err", err)
		default:
			if serr := save(true); serr != nil {
				lg.Error("stats: save state", "err", serr)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return save(true)
		case <-tick.C:
		}
	}
}
