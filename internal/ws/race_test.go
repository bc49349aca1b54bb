//go:build race

package ws

// raceEnabled: the race detector's shadow memory inflates RSS, so memory
// budgets are only checked without it.
const raceEnabled = true
