package quiz

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestBucketAllowN: a grab of n taps takes up to n tokens, as many as the
// credit holds, and none when it is empty.
func TestBucketAllowN(t *testing.T) {
	b := NewBucket(100) // 10 ms a tap, a burst of 100 ms: 10 tokens
	now := int64(1e12)
	b.now = func() int64 { return now }
	if got := b.AllowN(4); got != 4 {
		t.Fatalf("4 of a full bucket: %d", got)
	}
	if got := b.AllowN(20); got != 6 {
		t.Fatalf("20 with 6 left: %d", got)
	}
	if got := b.AllowN(3); got != 0 {
		t.Fatalf("empty: %d", got)
	}
	now += int64(25 * time.Millisecond)
	if got := b.AllowN(5); got != 2 {
		t.Fatalf("after 25 ms: %d, want 2", got)
	}
	if got := NewBucket(0).AllowN(7); got != 7 {
		t.Fatalf("rate 0: %d", got)
	}
}

// TestRainContractTaps: grabs of several taps each (1–7), concurrently on
// two nodes, keep every rule: each packet paid once, the budget exactly
// when the packets run out, at most max_per_user a user, every tap
// counted as a grab, and the records add up to what the grabs were told.
func TestRainContractTaps(t *testing.T) {
	for name, mk := range stateFactories {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, s2 := mk(t)
			id := "rain3"
			amounts := SplitPackets(20_000, 300, cryptoRand)
			now := int64(1_000_000)
			startRain(t, s, RainRules{ID: id, K: 0, Amounts: amounts, MaxPerUser: 4, EndsAt: now + 20_000})
			const users, frames = 120, 6 // up to 4 × 120 = 480 packets wanted, 300 there
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := map[string]int{}
			var paid, taps int64
			for u := range users {
				for i := range frames {
					n := 1 + (u+i)%7
					taps += int64(n)
					wg.Add(1)
					go func() {
						defer wg.Done()
						user := fmt.Sprint("u", u)
						g, err := []State{s, s2}[(u+i)%2].Grab(ctx, id, 0, user, now+int64(i), n)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err != nil:
							t.Errorf("grab: %v", err)
						case g.Packets < 0 || g.Packets > n || (g.Packets > 0) != (g.AmountCents > 0) || (g.Packets > 0) == (g.Reason != ""):
							t.Errorf("grab of %d taps: %+v", n, g)
						case g.Packets > 0:
							won[user] += g.Packets
							paid += g.AmountCents
						case g.Reason != ReasonEmpty && g.Reason != ReasonLimit:
							t.Errorf("reason %q", g.Reason)
						}
					}()
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			total := 0
			for u, n := range won {
				if n > 4 {
					t.Fatalf("%s won %d packets", u, n)
				}
				total += n
			}
			if total != 300 || paid != 20_000 {
				t.Fatalf("%d packets, %d cents paid: want 300 and the 20000 budget", total, paid)
			}
			l, err := s2.Rain(ctx, id, 0)
			if err != nil || l.PaidCents != 20_000 || l.Left != 0 || l.Grabs != taps || l.Winners != int64(len(won)) {
				t.Fatalf("live %+v %v (taps %d, winners %d)", l, err, taps, len(won))
			}
			if g, _ := s.Grab(ctx, id, 0, "late", now+20_001, 5); g.Reason != ReasonEnded || g.AmountCents != 0 || g.Packets != 0 {
				t.Fatalf("after the end: %+v", g)
			}
			checkClosed(t, s2, id, amounts, 20_000, won)
		})
	}
}

// checkClosed closes rain 0 of id and checks its records: every packet
// in order with its amount, adding up to budget, per user what the grabs
// were told (won).
func checkClosed(t *testing.T, s State, id string, amounts []int64, budget int64, won map[string]int) {
	t.Helper()
	ps, err := s.RainClose(context.Background(), id, 0)
	if err != nil || len(ps) != len(amounts) {
		t.Fatalf("close: %d %v", len(ps), err)
	}
	var sum int64
	per := map[string]int{}
	for i, p := range ps {
		if p.N != i || p.AmountCents != amounts[i] {
			t.Fatalf("packet %d: %+v want amount %d", i, p, amounts[i])
		}
		sum += p.AmountCents
		per[p.User]++
	}
	if sum != budget || fmt.Sprint(per) != fmt.Sprint(won) {
		t.Fatalf("records: sum %d, per user %v vs %v", sum, per, won)
	}
}

// TestRainTapsStopAtTheLimit: one grab of many taps wins up to the
// user's limit and the packets left, in packet order, and says why it
// stopped only when it won nothing.
func TestRainTapsStopAtTheLimit(t *testing.T) {
	for name, mk := range stateFactories {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := mk(t)
			id := "rain4"
			startRain(t, s, RainRules{ID: id, K: 0, Amounts: []int64{1, 2, 3, 4}, MaxPerUser: 3, EndsAt: 100})
			if g, err := s.Grab(ctx, id, 0, "a", 10, 20); err != nil || g.Packets != 3 || g.AmountCents != 6 || g.Packet != 0 || g.Reason != "" {
				t.Fatalf("20 taps, limit 3: %+v %v", g, err)
			}
			if g, _ := s.Grab(ctx, id, 0, "a", 10, 2); g.Packets != 0 || g.Reason != ReasonLimit {
				t.Fatalf("over the limit: %+v", g)
			}
			if g, _ := s.Grab(ctx, id, 0, "b", 10, 5); g.Packets != 1 || g.AmountCents != 4 || g.Packet != 3 {
				t.Fatalf("the last packet: %+v", g)
			}
			if g, _ := s.Grab(ctx, id, 0, "c", 10, 5); g.Packets != 0 || g.Reason != ReasonEmpty {
				t.Fatalf("empty: %+v", g)
			}
			if l, _ := s.Rain(ctx, id, 0); l.PaidCents != 10 || l.Left != 0 || l.Grabs != 32 || l.Winners != 2 {
				t.Fatalf("live: %+v", l)
			}
		})
	}
}

// startRain creates the activity r.ID (testRules) on s and starts its rain r.
func startRain(t *testing.T, s State, r RainRules) {
	t.Helper()
	ctx := context.Background()
	if err := s.Init(ctx, testRules(r.ID)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.RainStart(ctx, r); err != nil {
		t.Fatal(err)
	}
}
