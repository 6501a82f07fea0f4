//go:build race

package logline

// raceEnabled: the race detector makes sync.Pool drop what it is given at
// random, so allocations are not counted under it.
const raceEnabled = true
