package store

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"roomcast/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSharedDatabases runs the store against PostgreSQL and MariaDB (a
// fresh database each): three nodes opening at once, rooms, unique keys,
// settings, and case-sensitive ids.
func TestSharedDatabases(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"postgres": redistest.Postgres, "mysql": redistest.MySQL} {
		t.Run(name, func(t *testing.T) {
			url := dsn(t)
			ctx := context.Background()
			stores := make([]*Store, 3)
			errs := make([]error, 3)
			var wg sync.WaitGroup
			for i := range stores {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					stores[i], errs[i] = Open(ctx, url)
				}(i)
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("node %d: %v", i, err)
				}
				defer stores[i].Close()
			}
			a, b := stores[0], stores[1]
			now := time.UnixMilli(time.Now().UnixMilli())
			r := Room{ID: "Room1", Title: "Zoë's 🎉 room", AnchorID: "anc", StreamKey: "k1", CreatedAt: now, Status: "idle"}
			if err := a.CreateRoom(ctx, r); err != nil {
				t.Fatal(err)
			}
			if err := b.CreateRoom(ctx, Room{ID: "Room1", Title: "x", AnchorID: "other", StreamKey: "k2", CreatedAt: now}); !errors.Is(err, ErrConflict) {
				t.Fatalf("duplicate id: %v", err)
			}
			if err := b.CreateRoom(ctx, Room{ID: "room1", Title: "lower", AnchorID: "anc2", StreamKey: "k3", CreatedAt: now}); err != nil {
				t.Fatalf("ids are case-sensitive: %v", err)
			}
			got, err := b.Room(ctx, "Room1")
			if err != nil || got.Title != r.Title || got.AnchorID != "anc" || !got.CreatedAt.Equal(now) || got.Status != "idle" {
				t.Fatalf("room %+v %v", got, err)
			}
			if got, err := b.RoomByKey(ctx, "k1"); err != nil || got.ID != "Room1" {
				t.Fatalf("by key %+v %v", got, err)
			}
			if _, err := b.RoomByKey(ctx, "K1"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("stream keys are case-sensitive: %v", err)
			}
			if err := a.SetStreamKey(ctx, "Room1", "k1"); err != nil { // unchanged value still matches the row
				t.Fatalf("set same key: %v", err)
			}
			if err := a.SetLive(ctx, "Room1", true, now); err != nil {
				t.Fatal(err)
			}
			if rs, err := b.Rooms(ctx); err != nil || len(rs) != 2 {
				t.Fatalf("rooms %v %v", rs, err)
			}
			if err := a.DeleteRoom(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("delete missing: %v", err)
			}
			var vals [3]string
			for i, s := range stores {
				wg.Add(1)
				go func(i int, s *Store) {
					defer wg.Done()
					vals[i], errs[i] = s.SettingOrCreate(ctx, "secret", func() string { return "v" + string(rune('0'+i)) })
				}(i, s)
			}
			wg.Wait()
			if errs[0] != nil || vals[0] != vals[1] || vals[1] != vals[2] {
				t.Fatalf("nodes disagree on a generated setting: %v %v", vals, errs)
			}
			if err := a.SetSetting(ctx, "poll", `{"a":1}`); err != nil {
				t.Fatal(err)
			}
			if err := b.SetSetting(ctx, "poll", `{"a":2}`); err != nil {
				t.Fatal(err)
			}
			if v, err := a.Setting(ctx, "poll"); err != nil || v != `{"a":2}` {
				t.Fatalf("setting %q %v", v, err)
			}
		})
	}
}

// TestAnchorsUniqueOnOldData: a database written before one room per anchor
// was enforced may hold an anchor with two rooms. Opening it must still work
// (without the unique index) and say which anchor, for every dialect.
func TestAnchorsUniqueOnOldData(t *testing.T) {
	opens := map[string]func(t *testing.T) (func() (*Store, error), string){
		"sqlite": func(t *testing.T) (func() (*Store, error), string) {
			dir := t.TempDir()
			return func() (*Store, error) { return OpenSQLite(dir) }, `DROP INDEX rooms_anchor_one`
		},
		"postgres": func(t *testing.T) (func() (*Store, error), string) {
			url := redistest.Postgres(t)
			return func() (*Store, error) { return Open(context.Background(), url) }, `DROP INDEX rooms_anchor_one`
		},
		"mysql": func(t *testing.T) (func() (*Store, error), string) {
			url := redistest.MySQL(t)
			return func() (*Store, error) { return Open(context.Background(), url) }, `DROP INDEX rooms_anchor_one ON rooms`
		},
	}
	for name, mk := range opens {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open, drop := mk(t)
			s, err := open()
			if err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.AnchorsUnique(); !ok {
				t.Fatal("fresh database: anchors not unique")
			}
			now := time.Now()
			if err := s.CreateRoom(ctx, Room{ID: "r1", Title: "a", AnchorID: "anc", StreamKey: "k1", CreatedAt: now}); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateRoom(ctx, Room{ID: "r2", Title: "b", AnchorID: "anc", StreamKey: "k2", CreatedAt: now}); !errors.Is(err, ErrConflict) {
				t.Fatalf("second room for one anchor: %v", err)
			}
			// The old schema: no unique index, and an anchor with two rooms.
			if _, err := s.DB().ExecContext(ctx, drop); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateRoom(ctx, Room{ID: "r2", Title: "b", AnchorID: "anc", StreamKey: "k2", CreatedAt: now}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s2, err := open()
			if err != nil {
				t.Fatalf("reopening old data: %v", err)
			}
			defer s2.Close()
			if ok, anchor := s2.AnchorsUnique(); ok || anchor != "anc" {
				t.Fatalf("AnchorsUnique on old data = %v, %q", ok, anchor)
			}
		})
	}
}
