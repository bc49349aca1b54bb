// Package testutil holds the helpers every package's tests share. Tests wait
// for conditions through WaitFor, never for a fixed time: asynchronous work
// (ticks, pub/sub, processes starting) finishes when it finishes, and a busy
// machine only makes the wait longer, never the test wrong.
package testutil

import (
	"os"
	"strconv"
	"testing"
	"time"
)

// Scale multiplies every WaitFor deadline; ROOMCAST_TEST_TIMEOUT_SCALE=3 gives
// a slow or heavily loaded machine three times as long.
func Scale() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("ROOMCAST_TEST_TIMEOUT_SCALE"), 64); err == nil && v > 0 {
		return v
	}
	return 1
}

// WaitFor polls cond until it returns true, failing the test with what if it
// has not within d (scaled by Scale). Polling starts at 1 ms and backs off to
// 50 ms, so fast conditions are seen quickly and slow ones cost little CPU.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	if !Eventually(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", time.Duration(float64(d)*Scale()), what)
	}
}

// Eventually is WaitFor without a test: it reports whether cond became true
// within d (scaled by Scale).
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(time.Duration(float64(d) * Scale()))
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		if pause < 50*time.Millisecond {
			pause *= 2
		}
	}
}
