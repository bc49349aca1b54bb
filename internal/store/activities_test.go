package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"roomcast/internal/redistest"
)

// TestActivitiesSettleOnce: on SQLite, PostgreSQL and MariaDB, settling an
// activity again or from three nodes at once pays every winner exactly once
// and uses each revival card once.
func TestActivitiesSettleOnce(t *testing.T) {
	open := storeNodes()
	for name, mk := range open {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			nodes := mk(t)
			s := nodes[0]
			big := make([]byte, 100_000) // more than MySQL's TEXT
			for i := range big {
				big[i] = 'x'
			}
			rec := ActivityRecord{ID: "q1", Room: "r", Status: "scheduled", StartsAt: time.UnixMilli(1000).UTC(), CreatedAt: time.UnixMilli(2000).UTC(),
				Definition: []byte(`{"title":"` + string(big) + `"}`)}
			if err := s.CreateActivity(ctx, rec); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateActivity(ctx, rec); err != ErrConflict {
				t.Fatalf("duplicate id: %v", err)
			}
			got, err := nodes[1].Activity(ctx, "q1")
			if err != nil || len(got.Definition) != len(rec.Definition) || !got.StartsAt.Equal(rec.StartsAt) {
				t.Fatalf("activity: %v %d", err, len(got.Definition))
			}
			if n, err := s.GrantCards(ctx, "u2", 2); err != nil || n != 2 {
				t.Fatalf("grant: %d %v", n, err)
			}
			if n, _ := s.GrantCards(ctx, "u2", 1); n != 3 {
				t.Fatalf("grant again: %d", n)
			}
			prizes := []Prize{{User: "a", AmountCents: 34, Kind: "quiz"}, {User: "b", AmountCents: 33, Kind: "quiz"}, {User: "c", AmountCents: 33, Kind: "quiz"}}
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs[i] = nodes[i%3].Settle(ctx, "q1", "settled", prizes, []string{"u2"}, time.Now())
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Settle(ctx, "q1", "settled", prizes, []string{"u2"}, time.Now()); err != nil {
				t.Fatal(err)
			}
			paid, err := nodes[2].ActivityPrizes(ctx, "q1", "quiz")
			var total int64
			for _, p := range paid {
				total += p.AmountCents
			}
			if err != nil || len(paid) != 3 || total != 100 {
				t.Fatalf("paid %v (%d) %v", paid, total, err)
			}
			if ps, _ := s.UserPrizes(ctx, "a"); len(ps) != 1 || ps[0].AmountCents != 34 || ps[0].Activity != "q1" {
				t.Fatalf("a's prizes: %v", ps)
			}
			if m, _ := s.Cards(ctx, []string{"u2", "nobody"}); fmt.Sprint(m) != "map[u2:2]" {
				t.Fatalf("cards after one use: %v", m)
			}
			if got, _ := s.Activity(ctx, "q1"); got.Status != "settled" {
				t.Fatalf("status %q", got.Status)
			}
			if err := s.SaveLive(ctx, "q1", big); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveLive(ctx, "q1", []byte("{}")); err != nil {
				t.Fatal(err)
			}
			if m, err := s.LoadLive(ctx); err != nil || string(m["q1"]) != "{}" {
				t.Fatalf("live: %v", err)
			}
		})
	}
}

// storeNodes opens three Stores on one database per SQL engine (SQLite:
// the same Store three times): three nodes.
func storeNodes() map[string]func(t *testing.T) []*Store {
	open := map[string]func(t *testing.T) []*Store{
		"sqlite": func(t *testing.T) []*Store {
			s, err := OpenSQLite(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return []*Store{s, s, s}
		},
	}
	for name, dsn := range map[string]func(testing.TB) string{"postgres": redistest.Postgres, "mysql": redistest.MySQL} {
		open[name] = func(t *testing.T) []*Store {
			url := dsn(t)
			var out []*Store
			for range 3 {
				s, err := Open(context.Background(), url)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				out = append(out, s)
			}
			return out
		}
	}
	return open
}
