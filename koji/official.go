package koji

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-skyline/skyline/api"
	"github.com/fedora-skyline/skyline/attest"
	"github.com/fedora-skyline/skyline/attest/rpm"
	"github.com/fedora-skyline/skyline/builder"
)

// Official describes an official Koji build to import.
type Official struct {
	Build   attest.BuildID
	SRPMURL string    // where Koji's SRPM is, if known
	Dir     string    // directory holding the RPMs Koji built
	Started time.Time // build start as Koji recorded it (zero: Finished)
	// Finished is the build's completion time. Default: now.
	Finished time.Time
}

// ImportOfficial digests the RPMs of an official Koji build
// (skyline-rpm-v1, attest/rpm), makes the official attestations
// (attest.Build{Official: true}, split into parts if needed), signs them
// with the importer key s, and submits them through c. The importer key must
// be enrolled with role importer. `skyline admin import-official` and the
// Koji listener both call it.
func ImportOfficial(ctx context.Context, c *api.Client, s *attest.Signer, o Official) (*builder.Receipt, error) {
	digests, err := rpm.DigestDir(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("koji: import official %s: %w", o.Build.NVR, err)
	}
	if o.Finished.IsZero() {
		o.Finished = time.Now()
	}
	if o.Started.IsZero() {
		o.Started = o.Finished
	}
	envs, err := attest.NewAttestations(attest.Build{
		ID:       o.Build,
		SRPMURL:  o.SRPMURL,
		Backend:  "koji",
		Started:  o.Started.UTC(),
		Finished: o.Finished.UTC(),
		Official: true,
	}, digests, s)
	if err != nil {
		return nil, fmt.Errorf("koji: import official %s: %w", o.Build.NVR, err)
	}
	return c.Submit(ctx, envs)
}
