// Package api is skyline's HTTP interface: the server routes of `skyline
// serve` (gorilla/mux) and the matching Go client that builders, witnesses,
// verify, audit and the admin tool use.
//
// The read path is C2SP tlog-tiles (https://c2sp.org/tlog-tiles): the
// checkpoint (a C2SP tlog-checkpoint in a C2SP signed-note), hash tiles and
// entry bundles, served byte for byte from the log with the caching the
// spec allows, plus proofs, entries and the NVR lookup as conveniences. The
// write path takes DSSE envelopes (log entries, self-authenticating) and
// signed requests (attest.PayloadRequest, for leases and admin actions).
// docs/api.md lists every route, status and error code.
//
// There is no business logic here: the server checks transport-level rules
// (methods, content types, sizes, request signatures, freshness, replay,
// rate) and calls the Service and Log interfaces declared below.
package api
