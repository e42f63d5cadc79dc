package koji

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"
)

// PollerConfig configures a Poller. Zero fields take the defaults.
type PollerConfig struct {
	// Interval is the time between two polls. Default 5 minutes.
	Interval time.Duration
	// Overlap is how far before the checkpoint each poll lists again, for
	// builds whose completion was committed late; builds handled before
	// are skipped by build id. Default 10 minutes.
	Overlap time.Duration
	// Logger receives one line per poll that found builds or failed.
	Logger *slog.Logger
}

// Poller is the listener's safety net: it lists the builds Koji completed
// since its checkpoint (listBuilds(state=COMPLETE, completeAfter=...)) and
// imports each through the Importer, so a build whose message was lost
// (listener down, broker restarted, message dropped) is still imported.
type Poller struct {
	hub *Client
	im  *Importer
	cfg PollerConfig
}

// NewPoller returns a poller of hub feeding im.
func NewPoller(hub *Client, im *Importer, cfg PollerConfig) *Poller {
	if cfg.Interval <= 0 {
		cfg.Interval = 5 * time.Minute
	}
	if cfg.Overlap <= 0 {
		cfg.Overlap = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Poller{hub: hub, im: im, cfg: cfg}
}

// Poll runs one poll and returns how many builds it imported. The first
// poll ever only sets the checkpoint to the hub's last event (docs/fedora.md:
// skyline starts from "now", not from Koji's history). The checkpoint
// moves past a build only once the build is handled, so a transient
// failure stops the poll and the next one retries from there.
func (p *Poller) Poll(ctx context.Context) (int, error) {
	cp := p.im.Checkpoint()
	if cp.IsZero() {
		ev, err := p.hub.GetLastEvent(ctx)
		if err != nil {
			return 0, fmt.Errorf("koji: poll: %w", err)
		}
		start := tsTime(ev.TS)
		if err := p.im.SetCheckpoint(start); err != nil {
			return 0, err
		}
		p.cfg.Logger.Info("koji: poller starts at the hub's last event", "event", ev.ID, "checkpoint", start)
		return 0, nil
	}
	complete := BuildComplete
	builds, err := p.hub.ListBuilds(ctx, BuildQuery{State: &complete, CompleteAfter: cp.Add(-p.cfg.Overlap)})
	if err != nil {
		return 0, fmt.Errorf("koji: poll: %w", err)
	}
	sort.SliceStable(builds, func(i, j int) bool { return ts(builds[i]) < ts(builds[j]) })
	n := 0
	for _, b := range builds {
		if _, done := p.im.Handled(b.ID); !done {
			st, err := p.im.Import(ctx, b.ID, b.NVR, "poll")
			switch {
			case errors.Is(err, ErrTransient):
				p.cfg.Logger.Warn("koji: poll stopped on a transient failure; retried next poll", "build_id", b.ID, "nvr", b.NVR, "err", err)
				return n, err
			case err != nil:
				p.cfg.Logger.Error("koji: build not imported", "build_id", b.ID, "nvr", b.NVR, "source", "poll", "err", err)
			case st == Imported:
				n++
			}
		}
		if t := ts(b); t > 0 {
			if err := p.im.SetCheckpoint(tsTime(t)); err != nil {
				return n, err
			}
		}
	}
	if n > 0 {
		p.cfg.Logger.Info("koji: poll imported builds", "builds", n, "checkpoint", p.im.Checkpoint())
	}
	return n, nil
}

func ts(b Build) float64 {
	if b.CompletionTS == nil {
		return 0
	}
	return *b.CompletionTS
}

// Run polls at start, every Interval, and whenever trigger fires (the
// AMQP consumer fires it on every (re)connection, when messages may have
// been missed), until ctx is done.
func (p *Poller) Run(ctx context.Context, trigger <-chan struct{}) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := p.Poll(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, ErrTransient) {
			p.cfg.Logger.Warn("koji: poll failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-trigger:
		}
	}
}
