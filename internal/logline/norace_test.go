//go:build !race

package logline

const raceEnabled = false
