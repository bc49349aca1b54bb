package quiz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func TestSplitPackets(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		budget int64
		n      int
	}{{1, 1}, {7, 7}, {100, 1}, {100, 3}, {1000, 999}, {100000, 1000}, {1 << 40, 100000}, {5, 2}} {
		for range 20 {
			ps := SplitPackets(c.budget, c.n, func(k int64) int64 { return rnd.Int64N(k) })
			if len(ps) != c.n {
				t.Fatalf("%v: %d packets", c, len(ps))
			}
			var sum int64
			for _, p := range ps {
				if p < 1 {
					t.Fatalf("%v: packet of %d cents", c, p)
				}
				sum += p
			}
			if sum != c.budget {
				t.Fatalf("%v: sum %d", c, sum)
			}
		}
	}
	// The crypto source used at creation stays in range too.
	for range 1000 {
		if v := cryptoRand(3); v < 0 || v >= 3 {
			t.Fatal(v)
		}
	}
}

func TestValidateRains(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	for _, c := range []struct {
		r   RainRequest
		bad bool
	}{
		{RainRequest{BudgetCents: i(100), Packets: 10}, false},
		{RainRequest{BudgetCents: i(10), Packets: 11}, true}, // impossible: more packets than cents
		{RainRequest{BudgetCents: i(-5), Packets: 1}, true},
		{RainRequest{BudgetCents: i(0), Packets: 1}, true},
		{RainRequest{Packets: 1}, true},
		{RainRequest{BudgetCents: i(100), Packets: 0}, true},
		{RainRequest{BudgetCents: i(100), Packets: 2, MaxPerUser: -1}, true},
		{RainRequest{BudgetCents: i(100), Packets: 2, DurationMS: 10}, true},
	} {
		rs, err := validateRains([]RainRequest{c.r})
		if (err != nil) != c.bad {
			t.Fatalf("%+v: %v", c.r, err)
		}
		if err == nil && (rs[0].MaxPerUser != DefaultRainMaxPerUser || rs[0].DurationMS != DefaultRainDurationMS || len(rs[0].Amounts) != c.r.Packets) {
			t.Fatalf("defaults: %+v", rs[0])
		}
	}
}

func TestBucket(t *testing.T) {
	b := NewBucket(100) // 10 ms a grab, a burst of 100 ms
	now := int64(1e12)
	b.now = func() int64 { return now }
	admitted := 0
	for range 1000 {
		if b.Allow() {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("burst admitted %d, want 10", admitted)
	}
	now += int64(time.Second)
	admitted = 0
	for range 1000 {
		if b.Allow() {
			admitted++
		}
	}
	if admitted != 10 {
		t.Fatalf("after a second admitted %d, want 10 (the burst)", admitted)
	}
	if !NewBucket(0).Allow() {
		t.Fatal("rate 0 refuses")
	}
}

// BenchmarkBucketRefuse is the cost of turning a grab away (the excess).
func BenchmarkBucketRefuse(b *testing.B) {
	k := NewBucket(1)
	k.Allow()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if k.Allow() {
				b.Fatal("admitted")
			}
		}
	})
}

func TestThrottle(t *testing.T) {
	if v := Throttle(10, 10, 20000, 2000); v != 1 {
		t.Fatalf("few players: %v", v)
	}
	if v := Throttle(1_000_000, 100, 20000, 2000); v != 0.001 {
		t.Fatalf("a million players: %v", v)
	}
	if v := Throttle(4000, 100, 20000, 2000); v != 0.1 {
		t.Fatalf("4000 players: %v", v)
	}
	if v := Throttle(100, 1, 1000, 0); v != 1 {
		t.Fatalf("no bucket: %v", v)
	}
}

// TestRainContract runs the rain's rules on memory and Redis: each packet
// paid once, never over budget (and exactly the budget when the packets run
// out), at most max_per_user a user, under concurrent grabs on two nodes.
func TestRainContract(t *testing.T) {
	for name, mk := range stateFactories {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, s2 := mk(t)
			id := "rain1"
			if err := s.Init(ctx, testRules(id)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Grab(ctx, id, 0, "u", 1, 1); err != ErrUnknown {
				t.Fatalf("grab before start: %v", err)
			}
			if l, err := s2.Rain(ctx, id, 0); err != nil || l.Started {
				t.Fatalf("rain before start: %+v %v", l, err)
			}
			amounts := SplitPackets(10_000, 200, cryptoRand)
			now := int64(1_000_000)
			rules := RainRules{ID: id, K: 0, Amounts: amounts, MaxPerUser: 3, EndsAt: now + 20_000}
			l, changed, err := s.RainStart(ctx, rules)
			if err != nil || !changed || l.Packets != 200 || l.Left != 200 || l.EndsAt != now+20_000 {
				t.Fatalf("start: %+v %v %v", l, changed, err)
			}
			rules2 := rules
			rules2.EndsAt += 999
			if l, changed, _ := s2.RainStart(ctx, rules2); changed || l.EndsAt != now+20_000 {
				t.Fatalf("second start: %+v %v", l, changed)
			}
			// 100 users × 10 grabs each on two nodes: 1,000 grabs for 200 packets
			// with at most 3 a user (300 possible).
			const users, taps = 100, 10
			var wg sync.WaitGroup
			var mu sync.Mutex
			won := map[string]int{}
			var paid int64
			reasons := map[string]int{}
			for u := range users {
				for i := range taps {
					st := []State{s, s2}[i%2]
					wg.Add(1)
					go func() {
						defer wg.Done()
						g, err := st.Grab(ctx, id, 0, fmt.Sprint("u", u), now+int64(i), 1)
						mu.Lock()
						defer mu.Unlock()
						if err != nil {
							reasons["error: "+err.Error()]++
							return
						}
						if g.AmountCents > 0 {
							won[fmt.Sprint("u", u)]++
							paid += g.AmountCents
						}
						reasons[g.Reason]++
					}()
				}
			}
			wg.Wait()
			if reasons[""] != 200 || reasons[ReasonEmpty]+reasons[ReasonLimit] != users*taps-200 {
				t.Fatalf("reasons %v", reasons)
			}
			for u, n := range won {
				if n > 3 {
					t.Fatalf("%s won %d packets", u, n)
				}
			}
			if paid != 10_000 {
				t.Fatalf("paid %d of a 10000 budget with every packet taken", paid)
			}
			l, err = s2.Rain(ctx, id, 0)
			if err != nil || l.PaidCents != 10_000 || l.Left != 0 || l.Grabs != users*taps || l.Winners != int64(len(won)) {
				t.Fatalf("live %+v %v (winners %d)", l, err, len(won))
			}
			if g, _ := s.Grab(ctx, id, 0, "late", now+20_001, 1); g.Reason != ReasonEnded || g.AmountCents != 0 {
				t.Fatalf("after the end: %+v", g)
			}
			checkClosed(t, s2, id, amounts, 10_000, won)
			if err := s.RainSettled(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
			if l, _ := s.Rain(ctx, id, 0); !l.Settled {
				t.Fatalf("not settled: %+v", l)
			}
		})
	}
}

// TestRainContractLimitAndClose: the per-user limit with packets left, and
// no packet after the close even before the end.
func TestRainContractLimitAndClose(t *testing.T) {
	for name, mk := range stateFactories {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, s2 := mk(t)
			id := "rain2"
			_ = s.Init(ctx, testRules(id))
			if _, _, err := s.RainStart(ctx, RainRules{ID: id, K: 1, Amounts: []int64{5, 5, 5, 5, 5}, MaxPerUser: 2, EndsAt: 100}); err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{"", "", ReasonLimit} {
				if g, err := []State{s, s2}[i%2].Grab(ctx, id, 1, "a", 10, 1); err != nil || g.Reason != want || (want == "") != (g.AmountCents == 5) {
					t.Fatalf("grab %d: %+v %v", i, g, err)
				}
			}
			if _, err := s.Grab(ctx, id, 0, "a", 10, 1); err != ErrUnknown {
				t.Fatalf("rain 0 never started: %v", err)
			}
			if ps, err := s.RainClose(ctx, id, 1); err != nil || len(ps) != 2 {
				t.Fatalf("close: %v %v", ps, err)
			}
			if g, _ := s2.Grab(ctx, id, 1, "b", 10, 1); g.Reason != ReasonEnded {
				t.Fatalf("grab after the close: %+v", g)
			}
			if l, _ := s.Rain(ctx, id, 1); l.PaidCents != 10 || l.Left != 3 || l.Winners != 1 || l.Grabs != 4 {
				t.Fatalf("live: %+v", l)
			}
		})
	}
}
