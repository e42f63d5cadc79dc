package stats

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/fedora-skyline/skyline/attest"
)

// Defaults of Config.
const (
	DefaultCreditPerHour = 100.0
	DefaultMinBuildTime  = time.Minute
	DefaultMaxBuildTime  = 24 * time.Hour
	DefaultHalfLife      = 7 * 24 * time.Hour // BOINC's RAC half-life
	DefaultRecent        = 20
	// PageSize is how many rows a leaderboard page holds.
	PageSize = 50
)

// Config configures a Tracker. cmd/skyline fills it; every field but
// Coordinator has a default.
type Config struct {
	// Coordinator is the key that signs enrolments, revocations, jobs,
	// leases, lease ends and job closes. Required.
	Coordinator *attest.Verifier
	// Witnesses, when not empty, are the key ids of the witnesses whose
	// verdicts count. Default: any enrolled, unrevoked witness key.
	Witnesses []string
	// CreditPerHour is the credit one hour of agreed build time earns
	// (default 100).
	CreditPerHour float64
	// MinBuildTime and MaxBuildTime clamp the agreed build time of one
	// build (defaults 1 minute and 24 hours): a build that claims to take a
	// week earns a day.
	MinBuildTime time.Duration
	MaxBuildTime time.Duration
	// HalfLife is the half-life of the recent average credit (default one
	// week).
	HalfLife time.Duration
	// Recent is how many recent events the tracker keeps per operator and
	// per builder key (default 20).
	Recent int
	// Logger receives one line per refused entry (default: discard).
	Logger *slog.Logger
	// Registerer, when set, receives the tracker's metrics (entries
	// applied and refused, next entry, breaker). Default nil: none.
	Registerer prometheus.Registerer
}

// params are the parts of a Config that change the numbers: stored with the
// state so that a restart with other settings is refused.
type params struct {
	Coordinator   string        `json:"coordinator"`
	Witnesses     []string      `json:"witnesses"`
	CreditPerHour float64       `json:"credit_per_hour"`
	MinBuildTime  time.Duration `json:"min_build_time"`
	MaxBuildTime  time.Duration `json:"max_build_time"`
	HalfLife      time.Duration `json:"half_life"`
	Recent        int           `json:"recent"`
}

func (c Config) withDefaults() (Config, error) {
	if c.Coordinator == nil {
		return c, fmt.Errorf("stats: config: no coordinator key: %w", ErrConfig)
	}
	if c.CreditPerHour == 0 {
		c.CreditPerHour = DefaultCreditPerHour
	}
	if c.MinBuildTime == 0 {
		c.MinBuildTime = DefaultMinBuildTime
	}
	if c.MaxBuildTime == 0 {
		c.MaxBuildTime = DefaultMaxBuildTime
	}
	if c.HalfLife == 0 {
		c.HalfLife = DefaultHalfLife
	}
	if c.Recent == 0 {
		c.Recent = DefaultRecent
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case !(c.CreditPerHour > 0) || c.CreditPerHour > 1e9:
		return c, fmt.Errorf("stats: config: credit per hour %v: %w", c.CreditPerHour, ErrConfig)
	case c.MinBuildTime < 0 || c.MaxBuildTime < c.MinBuildTime:
		return c, fmt.Errorf("stats: config: build time clamp [%v, %v]: %w", c.MinBuildTime, c.MaxBuildTime, ErrConfig)
	case c.HalfLife < time.Minute:
		return c, fmt.Errorf("stats: config: half-life %v under a minute: %w", c.HalfLife, ErrConfig)
	case c.Recent < 0:
		return c, fmt.Errorf("stats: config: recent %d: %w", c.Recent, ErrConfig)
	}
	c.Witnesses = slices.Sorted(slices.Values(c.Witnesses))
	c.Witnesses = slices.Compact(c.Witnesses)
	return c, nil
}

func (c Config) params() params {
	w := c.Witnesses
	if w == nil {
		w = []string{}
	}
	return params{
		Coordinator:   c.Coordinator.KeyID(),
		Witnesses:     w,
		CreditPerHour: c.CreditPerHour,
		MinBuildTime:  c.MinBuildTime,
		MaxBuildTime:  c.MaxBuildTime,
		HalfLife:      c.HalfLife,
		Recent:        c.Recent,
	}
}
