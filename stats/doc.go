// Package stats is skyline's stats tracker: a BOINC-style leaderboard
// (https://boinc.berkeley.edu/wiki/Computation_credit) derived from the log
// alone. It replays log entries in order (Tracker.Apply), takes every
// number from entries the coordinator and the witnesses signed, and serves
// the leaderboard, per-operator, per-builder, per-build and network-health
// pages as server-rendered HTML and as JSON (Handler).
//
// The rules (docs/stats.md):
//
//   - A result earns credit when a witness verdict (ARCHITECTURE.md
//     "Agreement") puts it in the group that reached reproduced, or in a
//     group whose result set equals the logged official build. Outliers
//     the verdict names earn nothing and are counted. Failed lease ends
//     are counted apart.
//   - The credit of a build is its agreed build time: the median of
//     finishedOn - startedOn (SLSA Provenance v1 runDetails.metadata) over
//     the credited results, clamped to [Config.MinBuildTime,
//     Config.MaxBuildTime], times Config.CreditPerHour.
//   - Recent average credit (RAC) decays exponentially with a half-life of
//     one week, on the log's own clock (the latest time signed by the
//     coordinator or a witness), so a replay gives the same numbers.
//   - Credit stays with the team the operator belonged to when the result
//     was logged; nothing changes for a key after its revocation.
//
// State persists (Tracker.MarshalState, Restore) so a restarted tracker
// resumes where it stopped and reaches the numbers a full replay reaches.
package stats
