// Package demo runs a whole skyline network on one machine with real
// processes, for `make demo` (cmd/skyline-demo) and the end-to-end test:
// it makes the keys (skyline keygen), SRPMs from testdata/specs served over
// loopback HTTP, official builds, the configuration files of one `skyline
// serve`, the witnesses and the builders, starts each as a process in its
// own process group, enrols, enqueues, waits for the builds, runs the
// release gate (skyline verify), reads the builders' notices (skyline
// builder status), replays the log (skyline audit), and stops everything.
//
// A Scenario says what the network is and must reach: DemoScenario (one
// malicious builder whose rpmbuild backend runs the wrapper in
// demo/testdata/malicious, one package per verdict) and BreakerScenario
// (four malicious builders trip the witnesses' circuit breaker). The demo's
// agreement policy tolerates no dissent (DemoPolicy), so that a single
// altered result shows as disputed.
//
// CheckLog checks a log from the outside with nothing of skyline's but the
// strict entry parser: the checkpoint (C2SP tlog-checkpoint in a C2SP
// signed-note, with C2SP tlog-cosignature cosignatures), every entry from
// the entry bundles and its inclusion over the hash tiles (C2SP
// tlog-tiles, RFC 6962 hashing, golang.org/x/mod/sumdb/tlog), each entry's
// DSSE signature by the key allowed to make it, and the lookup index
// against what was read.
package demo
