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

// TestSettleManyRows: a settlement with more winners, card uses and rain
// packets than one statement carries (insertRowsChunk) writes every row
// once, in whole and partial chunks, when three nodes settle at once and
// when a settlement is repeated; the amounts add up to the cent.
func TestSettleManyRows(t *testing.T) {
	const winners, cards, packets = 2*insertRowsChunk + 234, insertRowsChunk + 1, insertRowsChunk
	for name, mk := range storeNodes() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			nodes := mk(t)
			rec := ActivityRecord{ID: "big", Room: "r", Status: "ended", StartsAt: time.UnixMilli(1000).UTC(), CreatedAt: time.UnixMilli(2000).UTC(), Definition: []byte(`{}`)}
			if err := nodes[0].CreateActivity(ctx, rec); err != nil {
				t.Fatal(err)
			}
			const prize = 1_000_003 // not a multiple of the winners: some get a cent more
			prizes := make([]Prize, winners)
			for i := range prizes {
				prizes[i] = Prize{User: fmt.Sprintf("w%05d", i), Kind: "quiz", AmountCents: prize / winners}
				if i < prize%winners {
					prizes[i].AmountCents++
				}
			}
			used := make([]string, cards)
			for i := range used {
				used[i] = fmt.Sprintf("w%05d", i)
				if _, err := nodes[0].GrantCards(ctx, used[i], 1); err != nil {
					t.Fatal(err)
				}
			}
			ps := make([]RainPacket, packets)
			for i := range ps {
				ps[i] = RainPacket{N: i + 1, User: fmt.Sprintf("w%05d", i%7), AmountCents: int64(i%5 + 1), At: 5000}
			}
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range 3 {
				wg.Add(2)
				go func() {
					defer wg.Done()
					errs[i] = nodes[i].Settle(ctx, "big", "settled", prizes, used, time.UnixMilli(3000))
				}()
				go func() {
					defer wg.Done()
					errs[3+i] = nodes[i].SavePackets(ctx, "big", 1, ps)
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := nodes[1].Settle(ctx, "big", "settled", prizes, used, time.UnixMilli(4000)); err != nil {
				t.Fatal(err)
			}
			if err := nodes[2].SavePackets(ctx, "big", 1, ps[:3]); err != nil {
				t.Fatal(err)
			}
			paid, err := nodes[2].ActivityPrizes(ctx, "big", "quiz")
			if err != nil {
				t.Fatal(err)
			}
			if len(paid) != winners {
				t.Fatalf("%d prizes, want %d", len(paid), winners)
			}
			var total int64
			for i, p := range paid {
				total += p.AmountCents
				if p.Activity != "big" || p.User != prizes[i].User || p.AmountCents != prizes[i].AmountCents || p.At != 3000 {
					t.Fatalf("row %d: %+v, want %+v at 3000", i, p, prizes[i])
				}
			}
			if total != prize {
				t.Fatalf("%d cents paid, want %d", total, prize)
			}
			left, err := nodes[0].Cards(ctx, []string{used[0], used[cards-1], "w01000"})
			if err != nil || len(left) != 0 {
				t.Fatalf("cards left after one use each: %v %v", left, err)
			}
			got, err := nodes[1].RainPackets(ctx, "big", 1)
			if err != nil || len(got) != packets {
				t.Fatalf("%d packets, %v", len(got), err)
			}
			for i, p := range got {
				if p != ps[i] {
					t.Fatalf("packet %d: %+v, want %+v", i, p, ps[i])
				}
			}
		})
	}
}

// BenchmarkSettle: one settlement of 10,000 winners (the rows of a
// 10,000-player quiz that everyone wins), on SQLite and PostgreSQL.
func BenchmarkSettle(b *testing.B) {
	open := map[string]func(b *testing.B) (*Store, error){
		"sqlite":   func(b *testing.B) (*Store, error) { return OpenSQLite(b.TempDir()) },
		"postgres": func(b *testing.B) (*Store, error) { return Open(context.Background(), redistest.Postgres(b)) },
	}
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			s, err := open[name](b)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchSettle(b, s)
		})
	}
}

func benchSettle(b *testing.B, s *Store) {
	ctx := context.Background()
	prizes := make([]Prize, 10_000)
	for i := range prizes {
		prizes[i] = Prize{User: fmt.Sprintf("u%05d", i), Kind: "quiz", AmountCents: 100}
	}
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("a%d", i)
		rec := ActivityRecord{ID: id, Room: "r", Status: "ended", StartsAt: time.UnixMilli(1000).UTC(), CreatedAt: time.UnixMilli(2000).UTC(), Definition: []byte(`{}`)}
		if err := s.CreateActivity(ctx, rec); err != nil {
			b.Fatal(err)
		}
		if err := s.Settle(ctx, id, "settled", prizes, nil, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
