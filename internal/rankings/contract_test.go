package rankings

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/redistest"
)

// boards returns two Boards on the same data (two Redis nodes; memory twice).
var boards = map[string]func(t *testing.T) (Board, Board){
	"memory": func(t *testing.T) (Board, Board) { m := NewMemory(); return m, m },
	"redis": func(t *testing.T) (Board, Board) {
		c := redistest.Client(t)
		p := redistest.Prefix(t, c)
		return NewRedis(c, p, nil), NewRedis(c, p, nil)
	},
}

func TestBoardContract(t *testing.T) {
	for name, mk := range boards {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			a, b := mk(t)
			day1 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
			day2 := day1.Add(24 * time.Hour)
			for _, g := range []Gift{
				{Room: "r", Session: "s1", User: "u1", Name: "Ann", ValueCents: 100, Count: 1, At: day1},
				{Room: "r", Session: "s1", User: "u2", Name: "Bob", ValueCents: 500, Count: 5, At: day1},
				{Room: "r", User: "u1", Name: "Ann", ValueCents: 1000, Count: 2, At: day2},
				{Room: "r", Session: "s2", User: "u3", Name: "Cy", ValueCents: 50, Count: 1, At: day2},
				{Room: "other", Session: "x", User: "u9", Name: "Z", ValueCents: 9999, Count: 1, At: day2},
			} {
				if err := a.Add(ctx, g); err != nil {
					t.Fatal(err)
				}
			}
			check := func(period string, limit int, now time.Time, want string) {
				t.Helper()
				got, err := b.Top(ctx, "r", period, limit, now)
				if err != nil || fmt.Sprint(got) != want {
					t.Fatalf("%s top %d: %v %v, want %s", period, limit, got, err, want)
				}
			}
			check(All, 10, day2, "[{u1 Ann 1100 3} {u2 Bob 500 5} {u3 Cy 50 1}]")
			check(All, 1, day2, "[{u1 Ann 1100 3}]")
			check(Day, 10, day2, "[{u1 Ann 1000 2} {u3 Cy 50 1}]")
			check(Day, 10, day1, "[{u2 Bob 500 5} {u1 Ann 100 1}]")
			check(Session, 10, day2, "[{u3 Cy 50 1}]")
			if got, _ := b.Top(ctx, "empty", Session, 10, day2); len(got) != 0 {
				t.Fatalf("empty room: %v", got)
			}
			// Concurrent gifts on two nodes add up exactly.
			var wg sync.WaitGroup
			for i := range 100 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = []Board{a, b}[i%2].Add(ctx, Gift{Room: "c", User: fmt.Sprint("p", i%5), ValueCents: 7, Count: 1, At: day1})
				}()
			}
			wg.Wait()
			got, err := a.Top(ctx, "c", All, 10, day1)
			if err != nil || len(got) != 5 {
				t.Fatalf("concurrent: %v %v", got, err)
			}
			for _, e := range got {
				if e.ValueCents != 140 || e.Gifts != 20 {
					t.Fatalf("concurrent: %v", got)
				}
			}
		})
	}
}

func TestCheckQuery(t *testing.T) {
	if p, l, err := CheckQuery("", 0); err != nil || p != All || l != DefaultLimit {
		t.Fatal(p, l, err)
	}
	for _, c := range []struct {
		p string
		l int
	}{{"week", 1}, {"day", -1}, {"day", 101}} {
		if _, _, err := CheckQuery(c.p, c.l); err == nil {
			t.Fatalf("%+v accepted", c)
		}
	}
}
