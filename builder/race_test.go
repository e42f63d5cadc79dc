//go:build race

package builder

// raceEnabled: the race detector multiplies memory and CPU use, so
// overhead figures are reported but not held to the targets.
const raceEnabled = true
