package quiz

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"

	"roomcast/internal/errs"
)

// Rain defaults and limits (issue 13, Q6).
const (
	DefaultRainMaxPerUser = 3
	DefaultRainDurationMS = 20000
	MaxRains              = 20
	MaxRainPackets        = 100000
	maxRainDurationMS     = 10 * 60 * 1000
	maxRainBudgetCents    = 1 << 40
)

// Error codes of the rain (a contract).
const (
	CodeRainNotStarted = "rain_not_started" // grab before the operator started it
	CodeUnknownRain    = "unknown_rain"     // no rain k in the activity
)

// RainRequest is one rain as POST /api/activities defines it.
type RainRequest struct {
	BudgetCents *int64 `json:"budget_cents"`
	Packets     int    `json:"packets"`
	MaxPerUser  int    `json:"max_per_user"`
	DurationMS  int64  `json:"duration_ms"`
}

// Rain is a rain as stored with its activity: the packet amounts are
// computed once, at creation, and never change.
type Rain struct {
	BudgetCents int64   `json:"budget_cents"`
	Packets     int     `json:"packets"`
	MaxPerUser  int     `json:"max_per_user"`
	DurationMS  int64   `json:"duration_ms"`
	Amounts     []int64 `json:"amounts"` // server-only: never in a view
}

// validateRains checks the rains of a create request and computes their packets.
func validateRains(rs []RainRequest) ([]Rain, error) {
	if len(rs) > MaxRains {
		return nil, errs.New(errs.BadRequest, "an activity has at most 20 rains")
	}
	out := make([]Rain, 0, len(rs))
	for i, r := range rs {
		bad := func(msg string) error { return errs.New(errs.BadRequest, "rain "+strconv.Itoa(i)+": "+msg) }
		if r.BudgetCents == nil || *r.BudgetCents < 1 || *r.BudgetCents > maxRainBudgetCents {
			return nil, bad("budget_cents must be a positive integer (cents)")
		}
		if r.Packets < 1 || r.Packets > MaxRainPackets {
			return nil, bad("packets must be 1–100000")
		}
		if int64(r.Packets) > *r.BudgetCents {
			return nil, bad("more packets than cents: every packet holds at least 1 cent")
		}
		if r.MaxPerUser == 0 {
			r.MaxPerUser = DefaultRainMaxPerUser
		}
		if r.MaxPerUser < 1 || r.MaxPerUser > 1000 {
			return nil, bad("max_per_user must be 1–1000")
		}
		if r.DurationMS == 0 {
			r.DurationMS = DefaultRainDurationMS
		}
		if r.DurationMS < 1000 || r.DurationMS > maxRainDurationMS {
			return nil, bad("duration_ms must be 1000–600000")
		}
		out = append(out, Rain{BudgetCents: *r.BudgetCents, Packets: r.Packets, MaxPerUser: r.MaxPerUser,
			DurationMS: r.DurationMS, Amounts: SplitPackets(*r.BudgetCents, r.Packets, cryptoRand)})
	}
	return out, nil
}

// cryptoRand returns a uniform integer in [0, n) (n > 0).
func cryptoRand(n int64) int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) % uint64(n))
}

// SplitPackets divides budget cents into n packets by the double-mean
// method: each packet but the last is uniform in [1, 2·mean−1] where mean is
// the cents left over the packets left (at least 1 cent is kept for each
// packet still to come); the last packet takes the rest. Amounts are
// integers ≥ 1 that add up to budget exactly; their expected value is the
// mean, and no packet exceeds twice the running mean. rnd(k) returns a
// uniform integer in [0, k). Requires 1 ≤ n ≤ budget.
func SplitPackets(budget int64, n int, rnd func(int64) int64) []int64 {
	out := make([]int64, n)
	left := budget
	for i := range n - 1 {
		rest := int64(n - i) // packets left, this one included
		hi := min(2*left/rest-1, left-(rest-1))
		amt := int64(1)
		if hi > 1 {
			amt = 1 + rnd(hi)
		}
		out[i] = amt
		left -= amt
	}
	out[n-1] = left
	return out
}
