package stats

import "errors"

// Errors of Apply and Restore, checked with errors.Is. An entry refused
// with ErrEntry, ErrSigner, ErrContradicts, ErrWitness or ErrStale moves the
// tracker past it (Next grows by one) and changes no number.
var (
	// ErrOutOfOrder: the entry is not the next one; nothing changed.
	ErrOutOfOrder = errors.New("entry out of order")
	// ErrEntry: the entry does not parse (attest.Parse's error is wrapped
	// too).
	ErrEntry = errors.New("malformed entry")
	// ErrSigner: the entry's signer may not make it, or the signature
	// does not verify.
	ErrSigner = errors.New("entry not signed by a key allowed to make it")
	// ErrContradicts: the entry contradicts the log so far (a key enrolled
	// twice, a clear of no alarm...).
	ErrContradicts = errors.New("entry contradicts the log")
	// ErrWitness: a verdict signed by a witness the configuration does not
	// trust.
	ErrWitness = errors.New("verdict from an untrusted witness")
	// ErrStale: a verdict computed at a tree no larger than the verdict
	// already counted for its build.
	ErrStale = errors.New("verdict older than the one counted")
	// ErrConfig: the configuration is unusable.
	ErrConfig = errors.New("invalid stats configuration")
	// ErrState: stored state is malformed or was made with another
	// configuration.
	ErrState = errors.New("invalid stats state")
	// ErrNotFound: no such operator, team, builder or build.
	ErrNotFound = errors.New("not found")
	// ErrQuery: a bad query parameter (sort column, page, kind).
	ErrQuery = errors.New("bad query")
)
